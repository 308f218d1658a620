#!/usr/bin/env bash
# The README's second test command: everything that needs real peers (Debian packages), run on
# loopback. Installs what is missing, builds our binaries and the runner, then:
#   1. mailutil (UW c-client, a real MULTIAPPEND client) copies 60 messages into our imapd and
#      the copy is verified byte for byte (impl/tests/imap_interop.rs, an ignored cargo test);
#   2. interop-ours.sh: Cyrus slave <- our master, Cyrus backend -> our master, our slave <- Cyrus
#      master through a crash and a restart of it, mailutil copies Dovecot -> ours -> Cyrus ->
#      Dovecot checked by `conformance verify-copy`, ctl_mboxlist -m -> our master;
#   3. selftest.sh: the peers themselves (Cyrus master/slave/imapd, Dovecot, mailutil copy
#      Dovecot -> Cyrus checked by verify-copy);
#   4. impl/tests/kdc/ci.sh: GSSAPI logins to mupdated and imapd against a real MIT KDC (also
#      `conformance --sasl-mech GSSAPI` and Cyrus mupdatetest/imtest);
#   5. conformance-peers.sh: the conformance suites against Cyrus mupdate, Cyrus imapd and
#      Dovecot, each held to its expected-failure file (peers/expected/<peer>.txt); any change in
#      either direction (a new failure or a listed case passing) fails the step;
#   6. compat-table.sh --check: the compatibility table in README.md and COMPATIBILITY.md matches
#      the results of step 5 (and of our servers);
#   7. imapd's start-up reconcile (a Murder backend's LIST/FIND/RESERVE/ACTIVATE/DELETE pass)
#      against a real Cyrus mupdate master (impl/tests/imap_reconcile.rs, an ignored cargo test).
# A missing peer is a loud failure (non-zero exit), never a skip. PEER_PORT_OFFSET (default 0)
# moves every port (for running next to another user of the default ports; keep every port below
# 32768, where Linux's ephemeral range starts, or an outgoing connection may already hold it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
off=${PEER_PORT_OFFSET:-0}
export INTEROP_PORT_BASE=$((13900 + off)) SELFTEST_PORT_OFFSET=$off
export CONF_MUPDATE_PORT=$((13905 + off)) CONF_CYRUS_IMAP_PORT=$((13143 + off))
export CONF_DOVECOT_PORT=$((13243 + off))
step() { echo; echo "== $(date +%T) $*"; }
t0=$SECONDS

step "install peers (apt)"
bash "$here/install.sh"
for c in mailutil /usr/lib/cyrus/bin/ctl_mboxlist /usr/sbin/dovecot; do
    command -v "$c" >/dev/null || { echo "ci.sh: $c missing after install" >&2; exit 1; }
done

step "build mupdated, imapd and conformance"
cargo build -p murder-server --bin mupdated --bin imapd
cargo build -p conformance --bin conformance
export CONFORMANCE=$root/target/debug/conformance

step "mailutil copy into our imapd (byte-for-byte check)"
cargo test -p murder-server --test imap_interop -- --ignored --nocapture

step "our servers against Cyrus and Dovecot"
bash "$here/interop-ours.sh" --conformance "$CONFORMANCE"

step "peer self-test"
bash "$here/selftest.sh"

step "GSSAPI against a throw-away MIT KDC (feature gssapi; includes Cyrus mupdatetest -m GSSAPI)"
bash "$root/impl/tests/kdc/ci.sh"

step "conformance suites against the peers (expected-failure files)"
reports=$(mktemp -d /tmp/murder-conformance-peers.XXXXXX)
bash "$here/conformance-peers.sh" "$reports"

step "the published compatibility table is current"
bash "$here/compat-table.sh" --check --reports "$reports"

step "imapd start-up reconcile against a Cyrus mupdate master"
recon_dir=$(mktemp -d /tmp/murder-peers-recon.XXXXXX)
chmod a+x "$recon_dir"
recon_port=$((13965 + off))
stop_recon() { PEER_DIR=$recon_dir bash "$here/stop-all.sh" >/dev/null 2>&1 || true; }
trap stop_recon EXIT
PEER_DIR=$recon_dir bash "$here/cyrus-mupdate.sh" start master "$recon_port" >/dev/null
MURDER_CYRUS_MUPDATE=127.0.0.1:$recon_port \
    cargo test -p murder-server --test imap_reconcile -- --ignored --exact \
    reconcile_against_a_cyrus_master --nocapture
stop_recon
trap - EXIT

echo
echo "peers: 7 passed, 0 failed ($((SECONDS - t0)) s)"
