#!/usr/bin/env bash
# Our mupdated with a large database: LIST records/s of N mailboxes (default 1,000,000), restart
# (recovery) time after a clean stop and after SIGKILL, resident memory per mailbox; then the
# slave figures (impl/tests/mupdate_slave_bench.rs: fresh slave resync, reconnect + resync of
# 100,000 mailboxes after a master restart).
#
#   conformance/bench/big-db.sh [--mailboxes N] [--port P] [--no-slave]
#
# Needs no root and no peer: ours only (Cyrus populates ~500-1,000 mailboxes/s here, so 1M
# would take 20-30 min; BENCHMARKS.md quotes its 20,000-mailbox figures instead). Loopback
# only; every process is stopped by its pid. Output: stdout, and $OUT (default
# target/bench-big/): list.json, summary.txt (key=value: restart times, bytes per mailbox),
# slave.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
N=1000000 PORT=23906 SLAVE=1
while [ $# -gt 0 ]; do
    case $1 in
        --mailboxes) N=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --no-slave) SLAVE=0; shift ;;
        *) sed -n '2,12p' "$0" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$root/target/bench-big}
rm -rf "$OUT"; mkdir -p "$OUT"
(cd "$root" && cargo build --release -q -p murder-server --bin mupdated \
    && cargo build --release -q -p conformance --bin conformance)
bin=$root/target/release/mupdated
conf=$root/target/release/conformance
echo 'admin:{PLAIN}peer-secret' >"$OUT/users"
pid= elapsed=
# start: run mupdated in the background (pid in $pid), wait until it listens, time in $elapsed.
start() {
    RUST_LOG=info setsid "$bin" --listen "127.0.0.1:$PORT" --data "$OUT/db" \
        --users "$OUT/users" --admin admin >"$OUT/mupdated.log" 2>&1 &
    pid=$!
    # Bounded wait for the "mupdated listening" log line (after the store is loaded).
    local t0 i
    t0=$(date +%s.%N)
    for i in $(seq 1200); do
        grep -q "mupdated listening" "$OUT/mupdated.log" && break
        kill -0 "$pid" || { cat "$OUT/mupdated.log" >&2; exit 1; }
        sleep 0.05
    done
    elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
}
stop() { kill "-$1" "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=; }
trap '[ -n "$pid" ] && stop TERM' EXIT
mem() { grep -E 'VmRSS|VmHWM' "/proc/$pid/status" | awk '{printf "%s %d MiB  ", $1, $2/1024}'; }
per_mailbox() { awk -v n="$N" '/VmRSS/{printf "%.0f", $2*1024/n}' "/proc/$pid/status"; }

start
"$conf" bench --workload mupdate-list --target "127.0.0.1:$PORT" --user admin \
    --password peer-secret --mailboxes "$N" --clients 4 --duration 10 --server-pid "$pid" \
    --json "$OUT/list.json" | tee "$OUT/list.txt"
echo "after LIST: $(mem)"
du -sh "$OUT/db"
stop TERM
start; sleep 1
echo "restart after a clean stop: ${elapsed}s to listening; $(mem); $(per_mailbox) bytes of VmRSS per mailbox"
{ echo "mailboxes=$N"; echo "restart_clean_s=$elapsed"; echo "rss_per_mailbox_bytes=$(per_mailbox)"; } >"$OUT/summary.txt"
stop KILL
start
echo "restart after SIGKILL: ${elapsed}s to listening; $(mem)"
echo "restart_kill_s=$elapsed" >>"$OUT/summary.txt"
grep -o 'store opened.*' "$OUT/mupdated.log" | sed 's/\x1b\[[0-9;]*m//g'
stop TERM
if [ "$SLAVE" = 1 ]; then
    (cd "$root" && cargo test --release -q -p murder-server --test mupdate_slave_bench \
        -- --ignored --nocapture) 2>&1 | grep -vE '^(running|test |$)' | tee "$OUT/slave.txt"
fi
