#!/usr/bin/env bash
# The published compatibility table (README.md and COMPATIBILITY.md, between the marker lines
# "<!-- BEGIN compatibility table ... -->" and "<!-- END compatibility table -->"), generated from
# conformance runs: one row per server and version, pass / fail / non-strict / n/a counts by
# level, and a link to its expected-failure file.
#
#   compat-table.sh [--check] [--reports DIR]
#
# Without --reports it runs conformance-peers.sh into a fresh directory (Cyrus mupdate, Cyrus
# imapd, Dovecot; root, install.sh first). DIR/murder.json (our servers, in-process) is made by
# `conformance --json` when missing. --check writes nothing and exits 1 when a file's table differs
# from the results (CI); otherwise both files are rewritten. CONFORMANCE: the runner binary
# (default: built here). Last line: "COMPAT-TABLE up to date", "COMPAT-TABLE written" or
# "COMPAT-TABLE stale".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check="" out=""
while [ $# -gt 0 ]; do
    case $1 in
        --check) check=--check; shift ;;
        --reports) out=$2; shift 2 ;;
        *) sed -n '2,14p' "$0" >&2; exit 2 ;;
    esac
done
cd "$root"
if [ -z "${CONFORMANCE:-}" ]; then
    cargo build -q -p conformance --bin conformance
    CONFORMANCE=$root/target/debug/conformance
fi
if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/murder-compat.XXXXXX)
    CONFORMANCE=$CONFORMANCE bash "$here/conformance-peers.sh" "$out"
fi
for f in cyrus-mupdate cyrus-imapd dovecot; do
    [ -f "$out/$f.json" ] || { echo "compat-table.sh: ERROR: $out/$f.json missing (conformance-peers.sh did not run?)" >&2; exit 1; }
done
if [ ! -f "$out/murder.json" ]; then
    rc=0
    "$CONFORMANCE" --json "$out/murder.json" --bundle-dir "$out/bundles-murder" >"$out/murder.txt" 2>&1 || rc=$?
    echo "   murder (embedded mupdated master + slave, imapd): exit $rc, $(grep -E '^[0-9]+ cases:' "$out/murder.txt" || echo 'no summary')"
    [ "$rc" -le 1 ] || { cat "$out/murder.txt" >&2; echo "compat-table.sh: ERROR: the embedded run did not happen" >&2; exit 1; }
fi
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
murder=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)
dove=$(version dovecot-imapd)
cyrus=$(version cyrus-common)
shopt -s nullglob
isolated=("$out"/cyrus-mupdate-isolated-*.json)
rc=0
"$CONFORMANCE" report "$out/murder.json" "$out/cyrus-mupdate.json" "${isolated[@]}" \
    "$out/cyrus-imapd.json" "$out/dovecot.json" --expect-fail-dir conformance/peers/expected \
    --label "murder/imap=murder imapd $murder" \
    --label "dovecot=Dovecot ${dove#*:} (Debian 12 package)" \
    --label "cyrus-imapd=Cyrus IMAP imapd $cyrus (Debian 12 package)" \
    --into README.md --into COMPATIBILITY.md $check || rc=$?
case $rc in
    0) [ -n "$check" ] && echo "COMPAT-TABLE up to date" || echo "COMPAT-TABLE written" ;;
    1) echo "COMPAT-TABLE stale: run 'bash conformance/peers/compat-table.sh' (root, peers) and commit README.md and COMPATIBILITY.md"; exit 1 ;;
    *) echo "compat-table.sh: ERROR: conformance report exit $rc" >&2; exit 1 ;;
esac
