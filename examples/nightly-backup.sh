#!/usr/bin/env bash
# Nightly backup any mail program can read: pull the account into a store (only what changed
# since last night), verify the store (a random 10% of it re-hashed every night; run
# `imapferry verify` without --sample weekly), then export a dated Maildir++ copy and keep the
# last $KEEP of them. Any failure stops the script with a non-zero status (verify: 3), so cron
# mails you and no export is made from a damaged store.
#
# Environment (copy this file and set these; the password never goes on the command line):
#   HOST1 USER1 IMAPFERRY_PASSWORD1 [PORT1] [TLS1=imaps|starttls|none]   the account
#   BACKUP    backup directory (default ./mail-backup): BACKUP/store, BACKUP/maildir-<date>
#   KEEP      how many exports to keep (default 7)
#   IMAPFERRY the imapferry binary (default: imapferry on the PATH)
# crontab:  30 2 * * *  HOST1=imap.example.org USER1=me IMAPFERRY_PASSWORD1=… /path/nightly-backup.sh
set -euo pipefail
imapferry=${IMAPFERRY:-imapferry}
backup=${BACKUP:-./mail-backup}
keep=${KEEP:-7}
: "${HOST1:?set HOST1}" "${USER1:?set USER1}"
side1=(--host1 "$HOST1" --user1 "$USER1")
[ -n "${PORT1:-}" ] && side1+=(--port1 "$PORT1")
[ -n "${TLS1:-}" ] && side1+=(--tls1 "$TLS1")
mkdir -p "$backup"

echo "== pull"
"$imapferry" pull "${side1[@]}" --store "$backup/store" -q
echo "== verify"
"$imapferry" verify --store "$backup/store" --sample 10%
out="$backup/maildir-$(date +%Y-%m-%dT%H%M%S)"
[ -e "$out" ] && out="$out-$$"
echo "== export to $out"
"$imapferry" export --store "$backup/store" --format maildir --out "$out"
# Keep the newest $keep exports (names sort by date).
find "$backup" -maxdepth 1 -name 'maildir-*' -type d | sort | head -n -"$keep" | while read -r old; do
    echo "removing old export $old"
    rm -rf -- "$old"
done
