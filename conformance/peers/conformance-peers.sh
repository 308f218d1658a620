#!/usr/bin/env bash
# The conformance suites against the real peers, each held to its expected-failure file
# (conformance/peers/expected/<peer>.txt, BoGo style): a peer that fails a case not listed there,
# or passes one that is listed, makes this script exit 1. Run install.sh first (root).
#
#   conformance-peers.sh [OUT_DIR]        (default: a fresh mktemp -d; reports are left there)
#
# Peers and runs:
#   cyrus-mupdate  Cyrus 3.6.1 mupdate master: one run (--jobs 1) of every case except the
#                  ISOLATED ones below, then each ISOLATED case alone against a freshly started
#                  master (they crash the mupdate process, or leave a garbage record in its
#                  database that shows up in other cases' LIST/UPDATE; Cyrus master disables the
#                  service after 5 crashes in 10 s, so a shared run would not be repeatable).
#   cyrus-imapd    Cyrus 3.6.1 imapd (users test and admin).
#   dovecot        Dovecot 2.3.19.1 imap (user test).
# Reports: OUT_DIR/<peer>.json and .xml (cyrus-mupdate-isolated.json/.xml: one file per isolated
# case, cyrus-mupdate-isolated-N.*). Ports: CONF_MUPDATE_PORT (13905), CONF_CYRUS_IMAP_PORT
# (13143), CONF_DOVECOT_PORT (13243). CONFORMANCE: the runner binary (default: built here).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export PEER_DIR=${PEER_DIR:-$(mktemp -d /tmp/murder-peers-conf.XXXXXX)}
out=${1:-$(mktemp -d /tmp/murder-conformance-peers.XXXXXX)}
mkdir -p "$out"
mup_port=${CONF_MUPDATE_PORT:-13905}
cimap_port=${CONF_CYRUS_IMAP_PORT:-13143}
dove_port=${CONF_DOVECOT_PORT:-13243}
exp=$here/expected
P=peer-secret

if [ -z "${CONFORMANCE:-}" ]; then
    (cd "$root" && cargo build -q -p conformance --bin conformance)
    CONFORMANCE=$root/target/debug/conformance
fi

ISOLATED=(
    mupdate/deactivate-missing
    mupdate/deactivate-reserved
    mupdate/delete-missing
    mupdate/robust-crash-isolation
    mupdate/robust-delete-missing
    mupdate/robust-huge-nonsync-literal
    mupdate/robust-huge-tag
    mupdate/robust-literal-count-overflow
    mupdate/update-no-delete-for-missing
    mupdate/robust-empty-name
)

failed=()
cleanup() { bash "$here/stop-all.sh" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# run NAME EXPECTFILE ARGS...: one conformance run; records NAME in $failed when its result
# differs from the expected-failure file (exit 1) or the run could not happen (exit 2/3).
run() {
    local name=$1 file=$2
    shift 2
    local rc=0
    "$CONFORMANCE" --expect-fail "$file" --json "$out/$name.json" --junit "$out/$name.xml" \
        --bundle-dir "$out/bundles-$name" "$@" >"$out/$name.txt" 2>&1 || rc=$?
    echo "   $name: exit $rc, $(grep -E '^[0-9]+ cases:' "$out/$name.txt" || echo 'no summary')"
    [ "$rc" -eq 0 ] || failed+=("$name (exit $rc, see $out/$name.txt)")
}

echo "== $(date +%T) Cyrus mupdate master on $mup_port"
bash "$here/cyrus-mupdate.sh" start master "$mup_port" >/dev/null
skips=()
for id in "${ISOLATED[@]}"; do skips+=(--skip "$id"); done
run cyrus-mupdate "$exp/cyrus-mupdate.txt" --target "127.0.0.1:$mup_port" --user admin \
    --password "$P" --jobs 1 "${skips[@]}"
n=0
for id in "${ISOLATED[@]}"; do
    n=$((n + 1))
    bash "$here/cyrus-mupdate.sh" start master "$mup_port" >/dev/null 2>&1
    run "cyrus-mupdate-isolated-$n" "$exp/cyrus-mupdate.txt" --target "127.0.0.1:$mup_port" \
        --user admin --password "$P" --jobs 1 --filter "$id"
done
bash "$here/cyrus-mupdate.sh" stop master >/dev/null 2>&1

echo "== $(date +%T) Cyrus imapd on $cimap_port"
bash "$here/cyrus-imapd.sh" start "$cimap_port" >/dev/null
run cyrus-imapd "$exp/cyrus-imapd.txt" --target "127.0.0.1:$cimap_port" --user test \
    --password "$P" --user2 admin --password2 "$P"
bash "$here/cyrus-imapd.sh" stop >/dev/null 2>&1

echo "== $(date +%T) Dovecot on $dove_port"
bash "$here/dovecot.sh" start "$dove_port" >/dev/null
run dovecot "$exp/dovecot.txt" --target "127.0.0.1:$dove_port" --user test --password "$P"
bash "$here/dovecot.sh" stop >/dev/null 2>&1

echo "reports in $out"
if [ ${#failed[@]} -gt 0 ]; then
    printf 'CONFORMANCE-PEERS changed: %s\n' "${failed[@]}"
    exit 1
fi
echo "CONFORMANCE-PEERS ok"
