#!/usr/bin/env bash
# The walk-through of examples/demo.rs: two throwaway Dovecot servers on 127.0.0.1, sample mail
# seeded into the first, `imapferry pull` into a store, `imapferry status`, `imapferry push`
# into the second and `imapferry check`, then the servers stopped. Installs Debian's
# dovecot-imapd and openssl when missing (as root, or through sudo, as scripts/test does). Uses
# the `imapferry` on PATH (after `cargo install --path .`) when there is one, else builds it;
# the demo program itself is built here (it shares the test harness).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages) for the demo's test servers" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

if installed=$(command -v imapferry); then
    bin="$installed"
    cargo build --release --quiet --example demo
else
    cargo build --release --quiet --bin imapferry --example demo
    bin="$PWD/target/release/imapferry"
fi
IMAPFERRY_BIN="$bin" exec target/release/examples/demo
