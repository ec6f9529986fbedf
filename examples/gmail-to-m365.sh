#!/usr/bin/env bash
# Gmail (Google Workspace) → Microsoft 365, staged: run this as often as you like before the
# cutover (each round pulls what is new on Gmail and pushes what is new in the store), then once
# with `cutover` after the MX records point at Microsoft 365.
#
#   gmail-to-m365.sh           one round
#   gmail-to-m365.sh cutover   the last round, then a check of Microsoft 365 against the store
#
# Both sides log in with OAuth2 (Microsoft 365 has no passwords over IMAP; Gmail wants an app
# password or OAuth2): each refresh file holds the token endpoint, client id and refresh token,
# and imapferry fetches access tokens itself (docs/oauth2.md). Environment:
#   GMAIL_USER  GMAIL_REFRESH   the Gmail account and its refresh file
#   M365_USER   M365_REFRESH    the Microsoft 365 account and its refresh file
#   WORK        where the store lives (default ./gmail-to-m365)
#   IMAPFERRY   the imapferry binary (default: imapferry on the PATH)
#   HOST1/PORT1/TLS1, HOST2/PORT2/TLS2  other servers than imap.gmail.com and
#               outlook.office365.com (the walk-through's test uses the emulation on loopback)
#
# What the rules are and where they come from: docs/providers.md. In short: Gmail's labels are
# pulled once (each message downloaded once, its labels as folder rows); every label becomes a
# Microsoft 365 folder with its own copy, from the store; a Gmail daily limit or one of
# Microsoft 365's throttles ends a round with exit status 4 or a wait, never a failure.
set -euo pipefail
imapferry=${IMAPFERRY:-imapferry}
work=${WORK:-./gmail-to-m365}
: "${GMAIL_USER:?set GMAIL_USER}" "${GMAIL_REFRESH:?set GMAIL_REFRESH}"
: "${M365_USER:?set M365_USER}" "${M365_REFRESH:?set M365_REFRESH}"
side1=(--host1 "${HOST1:-imap.gmail.com}" --user1 "$GMAIL_USER" --oauth2-refresh1 "$GMAIL_REFRESH")
[ -n "${PORT1:-}" ] && side1+=(--port1 "$PORT1")
[ -n "${TLS1:-}" ] && side1+=(--tls1 "$TLS1")
side2=(--host2 "${HOST2:-outlook.office365.com}" --user2 "$M365_USER" --oauth2-refresh2 "$M365_REFRESH")
[ -n "${PORT2:-}" ] && side2+=(--port2 "$PORT2")
[ -n "${TLS2:-}" ] && side2+=(--tls2 "$TLS2")
store="$work/store"
mkdir -p "$work"
step() { printf '\n== %s\n' "$*"; }

# Exit status 4: a daily budget is spent (Gmail: 2 500 MB down, 500 MB up); the round stops
# cleanly and the next one goes on. Anything else but 0 stops the script.
run() {
    local rc=0
    "$imapferry" "$@" || rc=$?
    if [ "$rc" -eq 4 ]; then
        echo "(a daily budget is spent: run this again after the time above)"
        exit 0
    fi
    return "$rc"
}

step "pull Gmail into the store (All Mail, Spam and Trash first; label folders cost metadata)"
run pull "${side1[@]}" --store "$store"
step "push the store into Microsoft 365"
run push "${side2[@]}" --store "$store"
if [ "${1:-}" = cutover ]; then
    step "cutover: compare Microsoft 365 with the store"
    "$imapferry" check "${side2[@]}" --store "$store"
fi
"$imapferry" status --store "$store"
