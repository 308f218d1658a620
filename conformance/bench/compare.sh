#!/usr/bin/env bash
# Our mupdated/imapd against Cyrus mupdate (master), Dovecot and Cyrus imapd, with
# `conformance bench`, all on loopback; writes BENCHMARKS.md at the top level.
#
#   conformance/bench/compare.sh [--duration S] [--mailboxes M] [--big N] [--rounds R] [--quick]
#
# Needs root and conformance/peers/install.sh done. Builds release binaries, starts every server
# (ours with their defaults: fsync on; Cyrus with its defaults; Dovecot with mail_fsync=always as
# dovecot.sh configures it), runs each workload against each, stops everything by pid. Then
# big-db.sh (ours with --big mailboxes, default 1,000,000: LIST, restart, memory, slave).
# The page cache is emptied (sync; drop_caches) before each server's runs and before each
# MULTIAPPEND round: a page cache full of an earlier run's files halves write rates here.
# Raw results: $OUT (default target/bench-compare/): one JSON and one text table per run,
# commands.txt with every command line, machine.txt, disk-seq-r*.txt, big/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=$root/conformance/peers
# A PEER_DIR made here holds tens of GB of mail afterwards: removed at exit unless KEEP=1.
made_peer_dir=
[ -z "${PEER_DIR:-}" ] && made_peer_dir=1
export PEER_DIR=${PEER_DIR:-$(mktemp -d /tmp/murder-bench.XXXXXX)}
source "$peers/lib.sh"
need_root
D=5 M=20000 BIG=1000000 ROUNDS=3 QUICK=0
while [ $# -gt 0 ]; do
    case $1 in
        --duration) D=$2; shift 2 ;;
        --mailboxes) M=$2; shift 2 ;;
        --big) BIG=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        *) sed -n '2,15p' "$0" >&2; exit 2 ;;
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
# Every server starts its runs with the same (empty) page cache.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# disk_seq FILE: the disk's fsynced sequential write rate in the shape of one 10 x 10 MB
# MULTIAPPEND: 100 MiB written in 1 MiB writes to a new file, fdatasync, 5 files; measured
# through the page cache and with O_DIRECT (what the disk itself takes). FILE gets
# "buffered=MB/s direct=MB/s best=MB/s" (10^6 bytes/s); the goal is judged against best.
disk_seq() {
    python3 - "$PEER_DIR" "$1" <<'PY'
import mmap, os, sys, time
d, out = sys.argv[1], sys.argv[2]
block = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT needs
block.write(os.urandom(1 << 20))
rates = {}
for mode in ("buffered", "direct"):
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if mode == "direct" else 0)
    t0, n = time.monotonic(), 0
    for i in range(5):
        p = os.path.join(d, f"disk-seq.{i}")
        fd = os.open(p, flags, 0o644)
        for _ in range(100):
            n += os.write(fd, block)
        os.fdatasync(fd)
        os.close(fd)
    rates[mode] = n / (time.monotonic() - t0) / 1e6
    for i in range(5):
        os.unlink(os.path.join(d, f"disk-seq.{i}"))
with open(out, "w") as f:
    f.write(f"buffered={rates['buffered']:.1f} direct={rates['direct']:.1f} best={max(rates.values()):.1f}\n")
PY
}

# run NAME USER TARGET WORKLOAD ARGS...: one bench run, JSON in $OUT/NAME.json.
# The server process (tree) whose peak RSS is sampled during each run, into rss-run-NAME.txt.
server_pid=
run() {
    local name=$1 user=$2 target=$3 wl=$4 sp=
    shift 4
    echo "conformance bench --workload $wl --target $target --user $user --password $P $*" \
        >>"$OUT/commands.txt"
    step "$name"
    if [ -n "$server_pid" ]; then sample_rss "$server_pid" "$OUT/rss-run-$name.txt" & sp=$!; fi
    "$conf" bench --workload "$wl" --target "$target" --user "$user" --password "$P" \
        --json "$OUT/$name.json" "$@" | tee "$OUT/$name.txt" >&2 || echo "(exit $?)" >&2
    if [ -n "$sp" ]; then kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true; fi
}

o=$PEER_DIR/ours
mkdir -p "$o"
printf 'admin:{PLAIN}%s\ntest:{PLAIN}%s\n' "$P" "$P" >"$o/users"
cleanup() {
    stop_pid "$o/mupdated.pid"; stop_pid "$o/imapd.pid"
    "$peers/stop-all.sh" >/dev/null 2>&1 || true
    if [ -n "$made_peer_dir" ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$PEER_DIR"; fi
}
trap cleanup EXIT

clients_list="1 2 4 8 16"
reps=3
[ "$QUICK" = 1 ] && clients_list="8" && reps=1 && ROUNDS=1 && BIG=100000

# mupdate_suite KEY USER ADDR PID
mupdate_suite() {
    local key=$1 user=$2 addr=$3 pid=$4 c r extra=()
    [ "$key" = ours ] && extra=(--server-pid "$pid")
    drop_caches
    server_pid=$pid
    tree_rss "$pid" >"$OUT/rss-$key-mupdate-idle.txt"
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
    tree_rss "$pid" >"$OUT/rss-$key-mupdate-after-list.txt"
}

# imap_round R KEY ADDR PID: one imap-multiappend run, after emptying the page cache.
imap_round() {
    local r=$1 key=$2 addr=$3 pid=$4 extra=()
    [ "$key" = ours ] && extra=(--server-pid "$pid")
    drop_caches
    server_pid=$pid
    run "$key-imap-r$r" test "$addr" imap-multiappend --clients 1 --duration "$D" "${extra[@]}"
}

step "start our mupdated (127.0.0.1:23905) and imapd (127.0.0.1:23143)"
start_ours "$o" mupdated 23905 "$root/target/release/mupdated" --listen 127.0.0.1:23905 \
    --data "$o/mupdate-data" --users "$o/users" --admin admin
start_ours "$o" imapd 23143 "$root/target/release/imapd" --listen 127.0.0.1:23143 \
    --data "$o/imapd-data" --users "$o/users"
mupdate_suite ours admin 127.0.0.1:23905 "$(cat "$o/mupdated.pid")"
stop_pid "$o/mupdated.pid"

step "start Cyrus mupdate master (13905)"
"$peers/cyrus-mupdate.sh" start master >/dev/null
mupdate_suite cyrus admin 127.0.0.1:13905 "$(cat "$PEER_DIR/cyrus-mupdate-master/master.pid")"
"$peers/cyrus-mupdate.sh" stop master >/dev/null

step "start Dovecot (13243) and Cyrus imapd (13143); MULTIAPPEND rounds interleaved"
"$peers/dovecot.sh" start >/dev/null
"$peers/cyrus-imapd.sh" start >/dev/null
pid_ours=$(cat "$o/imapd.pid") pid_dov=$(cat "$PEER_DIR/dovecot/dovecot.pid")
pid_cyi=$(cat "$PEER_DIR/cyrus-imapd/master.pid")
for r in $(seq "$ROUNDS"); do
    drop_caches
    disk_seq "$OUT/disk-seq-r$r.txt"
    echo "disk, 100 MiB per file, fdatasync (MB/s): $(cat "$OUT/disk-seq-r$r.txt")" >&2
    imap_round "$r" ours 127.0.0.1:23143 "$pid_ours"
    imap_round "$r" dovecot 127.0.0.1:13243 "$pid_dov"
    imap_round "$r" cyrus-imapd 127.0.0.1:13143 "$pid_cyi"
done
# One 1 GiB message in one APPEND: the server's memory must not follow the literal's size.
# A fresh imapd (VmHWM is a lifetime peak, and the rounds above filled the first one's view).
stop_pid "$o/imapd.pid"
start_ours "$o" imapd 23143 "$root/target/release/imapd" --listen 127.0.0.1:23143 \
    --data "$o/imapd-data-1g" --users "$o/users"
pid_ours=$(cat "$o/imapd.pid")
drop_caches
server_pid=$pid_ours
run ours-imap-1g test 127.0.0.1:23143 imap-multiappend --ops 1 --large-count 1 \
    --large-size 1073741824 --server-pid "$pid_ours"
server_pid=$pid_dov
run dovecot-imap-1g test 127.0.0.1:13243 imap-multiappend --ops 1 --large-count 1 \
    --large-size 1073741824
"$peers/cyrus-imapd.sh" stop >/dev/null
"$peers/dovecot.sh" stop >/dev/null
stop_pid "$o/imapd.pid"

step "big-db.sh --mailboxes $BIG (ours: LIST, restart, memory per mailbox, slave)"
drop_caches
echo "conformance/bench/big-db.sh --mailboxes $BIG" >>"$OUT/commands.txt"
OUT=$OUT/big "$here/big-db.sh" --mailboxes "$BIG" >&2

step "write BENCHMARKS.md"
python3 "$here/report.py" "$OUT" "$root/BENCHMARKS.md" "$D" "$M" "$ROUNDS"
echo "COMPARE ok out=$OUT report=$root/BENCHMARKS.md"
