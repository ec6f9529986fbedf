#!/usr/bin/env bash
# Build imapferry and run the walk-through in examples/demo.rs: two throwaway Dovecot servers on
# 127.0.0.1, sample mail, `imapferry pull`, `imapferry status`. Needs dovecot-imapd and openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/lib/dovecot/imap ]; then
    echo "Dovecot's IMAP server is missing: sudo apt-get install -y dovecot-imapd" >&2
    exit 1
fi
cargo build --release --quiet --bin imapferry --example demo
IMAPFERRY_BIN="$PWD/target/release/imapferry" exec target/release/examples/demo
