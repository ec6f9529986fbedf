#!/usr/bin/env bash
# Staged migration by disk ("sneakernet"): host1 is only reachable from site A, host2 only from
# site B. Every week (or whenever) site A pulls and writes a bundle onto a disk; site B applies it
# and pushes. The first bundle is full, later ones hold only what changed. At cutover, a last
# round with `push --delete2` makes host2 match host1 exactly, and `check` confirms it.
#
#   staged-migration.sh           one round (first run: full bundle; then incremental)
#   staged-migration.sh cutover   the last round: also delete on host2 what host1 no longer has
#
# Environment (copy this file and set these; passwords never go on the command line):
#   HOST1 USER1 IMAPFERRY_PASSWORD1 [PORT1] [TLS1=imaps|starttls|none]    site A's account
#   HOST2 USER2 IMAPFERRY_PASSWORD2 [PORT2] [TLS2=imaps|starttls|none]    site B's account
#   WORK      where the two stores and the "disk" live (default ./ferry-work)
#   IMAPFERRY the imapferry binary (default: imapferry on the PATH)
# In real life the two halves run on two machines; here they run one after the other.
set -euo pipefail
imapferry=${IMAPFERRY:-imapferry}
work=${WORK:-./ferry-work}
: "${HOST1:?set HOST1}" "${USER1:?set USER1}" "${HOST2:?set HOST2}" "${USER2:?set USER2}"
side1=(--host1 "$HOST1" --user1 "$USER1")
[ -n "${PORT1:-}" ] && side1+=(--port1 "$PORT1")
[ -n "${TLS1:-}" ] && side1+=(--tls1 "$TLS1")
side2=(--host2 "$HOST2" --user2 "$USER2")
[ -n "${PORT2:-}" ] && side2+=(--port2 "$PORT2")
[ -n "${TLS2:-}" ] && side2+=(--tls2 "$TLS2")
mkdir -p "$work/disk"
step() { printf '\n== %s\n' "$*"; }

# --- site A ---------------------------------------------------------------------------------
step "site A: pull host1 into the store"
"$imapferry" pull "${side1[@]}" --store "$work/site-a.store"
bundle="$work/disk/mail-$(date +%Y%m%d-%H%M%S)-$$.bundle"
step "site A: write a bundle onto the disk (volumes under 4 GiB, for FAT32)"
"$imapferry" bundle create --store "$work/site-a.store" --out "$bundle" --max-size 4G
ls -l "$bundle".*

# --- carry the disk to site B -----------------------------------------------------------------
# --- site B ---------------------------------------------------------------------------------
step "site B: check the bundle completely, then apply it (refused if damaged or out of order)"
"$imapferry" bundle apply --store "$work/site-b.store" "$bundle"
"$imapferry" bundle list --store "$work/site-b.store"
if [ "${1:-}" = cutover ]; then
    step "site B: cutover: push, deleting on host2 what host1 no longer has"
    "$imapferry" push "${side2[@]}" --store "$work/site-b.store" --delete2
    step "site B: compare host2 with the store"
    "$imapferry" check "${side2[@]}" --store "$work/site-b.store"
else
    step "site B: push to host2"
    "$imapferry" push "${side2[@]}" --store "$work/site-b.store"
fi
