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
