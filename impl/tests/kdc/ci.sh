#!/usr/bin/env bash
# CI entry for the GSSAPI tests: install the Kerberos packages, start a throw-away MIT KDC,
# run the GSSAPI unit tests and the ignored KDC tests with the cargo feature `gssapi`, stop the
# KDC (also on failure). Run from anywhere inside the repository; needs root for apt-get
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

kdc_dir=$(mktemp -d -t murder-kdc.XXXXXX)
cleanup() {
    "$here/kdc.sh" stop "$kdc_dir" >/dev/null || true
    rm -rf "$kdc_dir"
}
trap cleanup EXIT

"$here/kdc.sh" start "$kdc_dir"
# shellcheck disable=SC1091
. "$kdc_dir/env"

cd "$root"
cargo test -p murder-server --features gssapi --lib auth::gssapi
cargo test -p murder-server --features gssapi --test gssapi_mupdate -- --ignored

# Interoperability with Cyrus's own GSSAPI client (Cyrus SASL's gssapi plugin), when the Cyrus
# peers are installed (bash conformance/peers/install.sh): `mupdatetest -m GSSAPI` against our
# master must authenticate as alice and be refused as alice acting for admin.
mupdatetest=/opt/murder-peers/cyrus/usr/lib/cyrus/bin/mupdatetest
if [[ -x "$mupdatetest" ]]; then
    if ! dpkg-query -W -f='${Status}' libsasl2-modules-gssapi-mit 2>/dev/null | grep -q "install ok installed"; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsasl2-modules-gssapi-mit >/dev/null
    fi
    cargo build -q -p murder-server --features gssapi --bin mupdated
    work="$kdc_dir/cyrus-interop"
    mkdir -p "$work"
    printf 'admin:{PLAIN}secret\n' >"$work/passwd"
    "${CARGO_TARGET_DIR:-target}/debug/mupdated" --listen 127.0.0.1:0 --data "$work/data" --users "$work/passwd" \
        --keytab "$kdc_dir/mupdate.keytab" --admin admin --auth-failure-delay-ms 0 \
        >"$work/out" 2>"$work/err" &
    server=$!
    stop_server() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/^listening on 127\.0\.0\.1://p' "$work/out")
        [[ -n "$port" ]] && break
        sleep 0.1
    done
    if [[ -z "$port" ]]; then
        stop_server
        cat "$work/err" >&2
        echo "cyrus interop: mupdated did not start" >&2
        exit 1
    fi
    # Default principal of the ccache collection: alice.
    KRB5CCNAME="DIR:$kdc_dir/ccache" kswitch -p "alice@MURDER.TEST"
    ok=$(printf 'N01 NOOP\r\nQ01 LOGOUT\r\n' | timeout 30 "$mupdatetest" -m GSSAPI -p "$port" localhost 2>&1 || true)
    denied=$(printf 'Q01 LOGOUT\r\n' | timeout 30 "$mupdatetest" -m GSSAPI -u admin -p "$port" localhost 2>&1 || true)
    stop_server
    if grep -q '^S: A01 OK' <<<"$ok" && grep -q '^S: A01 NO' <<<"$denied"; then
        echo "cyrus interop: mupdatetest GSSAPI ok (alice authenticated, alice as admin refused)"
    else
        echo "cyrus interop FAILED" >&2
        printf '%s\n---\n%s\n' "$ok" "$denied" >&2
        exit 1
    fi
fi
echo "gssapi ci: all passed"
