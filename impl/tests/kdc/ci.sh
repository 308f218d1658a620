#!/usr/bin/env bash
# CI entry for the GSSAPI tests: install the Kerberos packages, start a throw-away MIT KDC,
# run the GSSAPI unit tests and the ignored KDC tests (mupdated and imapd) with the cargo feature
# `gssapi`, run both conformance suites with `--sasl-mech GSSAPI` against our mupdated and imapd
# (exit 0 required), Cyrus's mupdatetest/imtest against them when the Cyrus peers are
# installed, and stop the KDC and the servers (also on failure). Run from anywhere inside the repository; needs root for apt-get
# (skipped when the packages are already installed).
#
#   bash impl/tests/kdc/ci.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
packages=(libkrb5-dev libclang-dev krb5-kdc krb5-admin-server krb5-user)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Servers this script started (pids), stopped on exit.
servers=()
stop_servers() {
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    servers=()
}

kdc_dir=$(mktemp -d -t murder-kdc.XXXXXX)
cleanup() {
    stop_servers
    "$here/kdc.sh" stop "$kdc_dir" >/dev/null || true
    rm -rf "$kdc_dir"
}
trap cleanup EXIT

"$here/kdc.sh" start "$kdc_dir"
# shellcheck disable=SC1091
. "$kdc_dir/env"

cd "$root"
cargo test -p murder-server --features gssapi --lib auth::gssapi
cargo test -p murder-server --features gssapi --lib auth::exchange
cargo test -p murder-server --features gssapi --test gssapi_mupdate --test gssapi_imapd -- --ignored
cargo test -p conformance --features gssapi --lib run::gssapi
cargo test -p conformance --features gssapi --test gssapi_login -- --ignored

# The conformance suites logging in with GSSAPI (the ccache's tickets of admin and alice, no
# password) against our mupdated and imapd, each with its keytab and nothing else: every case
# must pass or be N/A (PLAIN cases are N/A: no password), exit 0; the GSSAPI cases must PASS.
cargo build -q -p murder-server --features gssapi --bin mupdated --bin imapd
cargo build -q -p conformance --features gssapi --bin conformance
bin="${CARGO_TARGET_DIR:-target}/debug"
suite_dir="$kdc_dir/conformance"
mkdir -p "$suite_dir"
printf 'admin:{PLAIN}secret\nalice:{PLAIN}alicepw\n' >"$suite_dir/passwd"
# start NAME BINARY ARGS...: runs it, waits for its `listening on 127.0.0.1:PORT`; sets $port.
start() {
    local name=$1
    shift
    # Create the output file first: the background job opens it asynchronously, and a sed on a
    # missing file would end this script (set -e).
    : >"$suite_dir/$name.out"
    "$@" >>"$suite_dir/$name.out" 2>"$suite_dir/$name.err" &
    servers+=($!)
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1://p' "$suite_dir/$name.out")
        [[ -n "$port" ]] && return 0
        sleep 0.1
    done
    cat "$suite_dir/$name.err" >&2
    echo "conformance: $name did not start" >&2
    stop_servers
    exit 1
}
# suite NAME PORT USER USER2: the GSSAPI run, then its GSSAPI cases must be PASS.
suite() {
    local name=$1 port=$2 user=$3 user2=$4 code=0
    "$bin/conformance" --target "127.0.0.1:$port" --sasl-mech GSSAPI --sasl-service-host localhost \
        --user "$user" --user2 "$user2" --json "$suite_dir/$name.json" \
        --bundle-dir "$suite_dir/$name-failures" >"$suite_dir/$name.txt" 2>&1 || code=$?
    tail -n 1 "$suite_dir/$name.txt"
    if ((code != 0)); then
        cat "$suite_dir/$name.txt" >&2
        echo "conformance --sasl-mech GSSAPI against $name: exit $code" >&2
        stop_servers
        exit 1
    fi
    if ! python3 - "$suite_dir/$name.json" "$name/auth-gssapi-login" "$name/auth-gssapi-cancel" <<'PY'
import json, sys
grades = {c["id"]: c["grade"] for c in json.load(open(sys.argv[1]))["cases"]}
bad = [f"{i}: {grades.get(i, 'missing')}" for i in sys.argv[2:] if grades.get(i) != "PASS"]
print("\n".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
    then
        echo "conformance: a GSSAPI case did not PASS against $name" >&2
        stop_servers
        exit 1
    fi
}
start mupdated "$bin/mupdated" --listen 127.0.0.1:0 --data "$suite_dir/mupdate-data" \
    --users "$suite_dir/passwd" --keytab "$kdc_dir/mupdate.keytab" --admin admin \
    --auth-failure-delay-ms 0
suite mupdate "$port" admin alice
start imapd "$bin/imapd" --listen 127.0.0.1:0 --data "$suite_dir/imap-data" \
    --users "$suite_dir/passwd" --keytab "$kdc_dir/imap.keytab"
suite imap "$port" alice admin
stop_servers
echo "conformance --sasl-mech GSSAPI: mupdate and imap suites passed"

# Interoperability with Cyrus's own GSSAPI clients (Cyrus SASL's gssapi plugin), when the Cyrus
# peers are installed (bash conformance/peers/install.sh): `mupdatetest -m GSSAPI` against our
# mupdated and `imtest -m GSSAPI` (SASL-IR, `+` continuations) against our imapd must
# authenticate as alice and be refused as alice acting for admin.
cyrus_bin=/opt/murder-peers/cyrus/usr/lib/cyrus/bin
# cyrus_interop CLIENT: CLIENT (a Cyrus test client) against the server on $port.
cyrus_interop() {
    local client=$1 ok denied
    # Default principal of the ccache collection: alice.
    KRB5CCNAME="DIR:$kdc_dir/ccache" kswitch -p "alice@MURDER.TEST"
    ok=$(printf 'N01 NOOP\r\nQ01 LOGOUT\r\n' | timeout 30 "$cyrus_bin/$client" -m GSSAPI -p "$port" localhost 2>&1 || true)
    denied=$(printf 'Q01 LOGOUT\r\n' | timeout 30 "$cyrus_bin/$client" -m GSSAPI -u admin -p "$port" localhost 2>&1 || true)
    stop_servers
    if grep -q '^S: A01 OK' <<<"$ok" && grep -q '^S: A01 NO' <<<"$denied"; then
        echo "cyrus interop: $client GSSAPI ok (alice authenticated, alice as admin refused)"
    else
        echo "cyrus interop ($client) FAILED" >&2
        printf '%s\n---\n%s\n' "$ok" "$denied" >&2
        exit 1
    fi
}
if [[ -x "$cyrus_bin/mupdatetest" && -x "$cyrus_bin/imtest" ]]; then
    if ! dpkg-query -W -f='${Status}' libsasl2-modules-gssapi-mit 2>/dev/null | grep -q "install ok installed"; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsasl2-modules-gssapi-mit >/dev/null
    fi
    start cyrus-mupdated "$bin/mupdated" --listen 127.0.0.1:0 --data "$suite_dir/cyrus-mupdate-data" \
        --users "$suite_dir/passwd" --keytab "$kdc_dir/mupdate.keytab" --admin admin \
        --auth-failure-delay-ms 0
    cyrus_interop mupdatetest
    start cyrus-imapd "$bin/imapd" --listen 127.0.0.1:0 --data "$suite_dir/cyrus-imap-data" \
        --users "$suite_dir/passwd" --keytab "$kdc_dir/imap.keytab"
    cyrus_interop imtest
fi
echo "gssapi ci: all passed"
