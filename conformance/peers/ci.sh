#!/usr/bin/env bash
# The README's second test command: everything that needs real peers (Debian packages), run on
# loopback. Installs what is missing, builds our binaries, then:
#   1. mailutil (UW c-client, a real MULTIAPPEND client) copies 60 messages into our imapd and
#      the copy is verified byte for byte (impl/tests/imap_interop.rs, an ignored cargo test);
#   2. interop-ours.sh: Cyrus slave <- our master, Cyrus backend -> our master, our slave <- Cyrus
#      master, mailutil Dovecot -> our imapd;
#   3. selftest.sh: the peers themselves (Cyrus master/slave/imapd, Dovecot, mailutil copy);
#   4. impl/tests/kdc/ci.sh: GSSAPI logins to mupdated against a real MIT KDC;
#   5. conformance-peers.sh: the conformance suites against Cyrus mupdate, Cyrus imapd and
#      Dovecot, each held to its expected-failure file (peers/expected/<peer>.txt); any change in
#      either direction (a new failure or a listed case passing) fails the step.
# A missing peer is a loud failure (non-zero exit), never a skip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
step() { echo; echo "== $(date +%T) $*"; }

step "install peers (apt)"
bash "$here/install.sh"
command -v mailutil >/dev/null || { echo "ci.sh: mailutil missing after install" >&2; exit 1; }

step "build mupdated and imapd"
cargo build -p murder-server --bin mupdated --bin imapd

step "mailutil copy into our imapd (byte-for-byte check)"
cargo test -p murder-server --test imap_interop -- --ignored --nocapture

step "our servers against Cyrus and Dovecot"
bash "$here/interop-ours.sh"

step "peer self-test"
bash "$here/selftest.sh"

step "GSSAPI against a throw-away MIT KDC (feature gssapi; includes Cyrus mupdatetest -m GSSAPI)"
bash "$root/impl/tests/kdc/ci.sh"

step "conformance suites against the peers (expected-failure files)"
bash "$here/conformance-peers.sh"

echo
echo "peers: 5 passed, 0 failed"
