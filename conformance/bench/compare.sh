#!/usr/bin/env bash
# Our mupdated/imapd against Cyrus mupdate (master), Dovecot and Cyrus imapd, with
# `conformance bench`, all on loopback; writes BENCHMARKS.md at the top level.
#
#   conformance/bench/compare.sh [--duration S] [--mailboxes M] [--quick]
#
# Needs root and conformance/peers/install.sh done. Builds release binaries, starts every server
# (ours with their defaults: fsync on; Cyrus with its defaults; Dovecot with mail_fsync=always as
# dovecot.sh configures it), runs each workload against each, stops everything by pid.
# Raw results: $OUT (default target/bench-compare/): one JSON and one text table per run,
# commands.txt with every command line, machine.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=$root/conformance/peers
export PEER_DIR=${PEER_DIR:-$(mktemp -d /tmp/murder-bench.XXXXXX)}
source "$peers/lib.sh"
need_root
D=5 M=20000 QUICK=0
while [ $# -gt 0 ]; do
    case $1 in
        --duration) D=$2; shift 2 ;;
        --mailboxes) M=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        *) sed -n '2,12p' "$0" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$root/target/bench-compare}
rm -rf "$OUT"; mkdir -p "$OUT"
P=peer-secret
chmod a+x "$PEER_DIR"
step() { echo "== $(date +%T) $*" >&2; }

step "release build"
(cd "$root" && cargo build --release -q -p murder-server --bin mupdated --bin imapd \
    && cargo build --release -q -p conformance --bin conformance)
conf=$root/target/release/conformance

step "machine"
{
    echo "nproc=$(nproc)"
    echo "memory=$(free -m | awk '/^Mem:/{print $2" MiB"}')"
    echo "kernel=$(uname -r)"
    echo "cpu=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
    echo "fs=$(df -T "$PEER_DIR" | awk 'NR==2{print $1" "$2}')"
    # fsync rate of the disk the servers write to: 2000 synchronous 4 KiB writes.
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$PEER_DIR/dsync.test" bs=4k count=2000 oflag=dsync status=none
    t1=$(date +%s.%N)
    echo "dsync_writes_per_s=$(echo "2000 / ($t1 - $t0)" | bc -l | cut -d. -f1)"
    # The same 4 KiB blocks overwritten in place (no file growth, so no metadata to journal):
    # closer to what a database's fdatasync of an already allocated page costs.
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$PEER_DIR/dsync.test" bs=4k count=2000 oflag=dsync conv=notrunc status=none
    t1=$(date +%s.%N)
    rm -f "$PEER_DIR/dsync.test"
    echo "dsync_overwrites_per_s=$(echo "2000 / ($t1 - $t0)" | bc -l | cut -d. -f1)"
    echo "date=$(date -u +%FT%TZ)"
    echo "commit=$(cd "$root" && git rev-parse --short HEAD)"
} | tee "$OUT/machine.txt" >&2

# tree_rss PID: sum of VmRSS (kB) over PID and its descendants.
tree_rss() {
    ps -e -o pid=,ppid=,rss= | awk -v root="$1" '{p[$1]=$2; r[$1]=$3}
        END { for (i in p) { x=i; n=0; while (x!="" && x>1 && n<50) { if (x==root) { s+=r[i]; break }
              x=p[x]; n++ } } print s+0 }'
}
# sample_rss PID FILE: keep the largest tree_rss in FILE, every 0.2 s, until stopped.
sample_rss() {
    local max=0 v
    while kill -0 "$1" 2>/dev/null; do
        v=$(tree_rss "$1"); if [ "$v" -gt "$max" ]; then max=$v; echo "$max" >"$2"; fi
        sleep 0.2
    done
}
sampler_pid=
start_sampler() { sample_rss "$1" "$OUT/rss-$2.txt" & sampler_pid=$!; }
stop_sampler() { [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=; }

# run NAME USER TARGET WORKLOAD ARGS...: one bench run, JSON in $OUT/NAME.json.
run() {
    local name=$1 user=$2 target=$3 wl=$4
    shift 4
    echo "conformance bench --workload $wl --target $target --user $user --password $P $*" \
        >>"$OUT/commands.txt"
    step "$name"
    "$conf" bench --workload "$wl" --target "$target" --user "$user" --password "$P" \
        --json "$OUT/$name.json" "$@" | tee "$OUT/$name.txt" >&2 || echo "(exit $?)" >&2
}

o=$PEER_DIR/ours
mkdir -p "$o"
printf 'admin:{PLAIN}%s\ntest:{PLAIN}%s\n' "$P" "$P" >"$o/users"
cleanup() {
    stop_sampler
    stop_pid "$o/mupdated.pid"; stop_pid "$o/imapd.pid"
    "$peers/stop-all.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

clients_list="1 2 4 8 16"
reps=3
[ "$QUICK" = 1 ] && clients_list="8" && reps=1

# mupdate_suite KEY USER ADDR PID
mupdate_suite() {
    local key=$1 user=$2 addr=$3 pid=$4 c r extra=()
    [ "$key" = ours ] && extra=(--server-pid "$pid")
    start_sampler "$pid" "$key-mupdate"
    for c in $clients_list; do
        if [ "$c" = 8 ]; then
            for r in $(seq "$reps"); do
                run "$key-write-c8-r$r" "$user" "$addr" mupdate-write --clients 8 --duration "$D" "${extra[@]}"
            done
        else
            run "$key-write-c$c" "$user" "$addr" mupdate-write --clients "$c" --duration "$D"
        fi
    done
    run "$key-fanout" "$user" "$addr" mupdate-fanout --streams 100 --rate 1000 --clients 16 --duration "$D"
    # Cyrus mupdate serves at most mupdate_workers_max (default 50) connections at once.
    run "$key-fanout40" "$user" "$addr" mupdate-fanout --streams 40 --rate 1000 --clients 8 --duration "$D"
    run "$key-list" "$user" "$addr" mupdate-list --mailboxes "$M" --clients 4 --duration "$D" "${extra[@]}"
    stop_sampler
}

# imap_suite KEY ADDR PID
imap_suite() {
    local key=$1 addr=$2 pid=$3 extra=()
    [ "$key" = ours ] && extra=(--server-pid "$pid")
    start_sampler "$pid" "$key-imap"
    run "$key-imap" test "$addr" imap-multiappend --clients 1 --duration "$D" "${extra[@]}"
    stop_sampler
}

step "start our mupdated (127.0.0.1:23905) and imapd (127.0.0.1:23143)"
start_ours "$o" mupdated 23905 "$root/target/release/mupdated" --listen 127.0.0.1:23905 \
    --data "$o/mupdate-data" --users "$o/users" --admin admin
start_ours "$o" imapd 23143 "$root/target/release/imapd" --listen 127.0.0.1:23143 \
    --data "$o/imapd-data" --users "$o/users"
mupdate_suite ours admin 127.0.0.1:23905 "$(cat "$o/mupdated.pid")"
imap_suite ours 127.0.0.1:23143 "$(cat "$o/imapd.pid")"
stop_pid "$o/mupdated.pid"; stop_pid "$o/imapd.pid"

step "start Cyrus mupdate master (13905)"
"$peers/cyrus-mupdate.sh" start master >/dev/null
mupdate_suite cyrus admin 127.0.0.1:13905 "$(cat "$PEER_DIR/cyrus-mupdate-master/master.pid")"
"$peers/cyrus-mupdate.sh" stop master >/dev/null

step "start Dovecot (13243)"
"$peers/dovecot.sh" start >/dev/null
imap_suite dovecot 127.0.0.1:13243 "$(cat "$PEER_DIR/dovecot/dovecot.pid")"
"$peers/dovecot.sh" stop >/dev/null

step "start Cyrus imapd (13143)"
"$peers/cyrus-imapd.sh" start >/dev/null
imap_suite cyrus-imapd 127.0.0.1:13143 "$(cat "$PEER_DIR/cyrus-imapd/master.pid")"
"$peers/cyrus-imapd.sh" stop >/dev/null

step "write BENCHMARKS.md"
python3 "$here/report.py" "$OUT" "$root/BENCHMARKS.md" "$D" "$M"
echo "COMPARE ok out=$OUT report=$root/BENCHMARKS.md"
