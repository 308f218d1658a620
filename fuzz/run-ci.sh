#!/usr/bin/env bash
# Build every fuzz target and run each for SECONDS (default 60) on stable Rust (`-s none`: no
# sanitizer, so no nightly). Fails on the first crash, printing the artifact to add as a
# regression (see fuzz/README.md).
#
# Usage: fuzz/run-ci.sh [SECONDS] [TARGET...]      (default: every target)
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
shift || true
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

dict_for() {
    case "$1" in
        mupdate_*) echo "dict/mupdate.dict" ;;
        imap_*) echo "dict/imap.dict" ;;
        *) echo "" ;;
    esac
}

echo "== building ${#targets[@]} targets"
start=$(date +%s)
if [ "$#" -gt 0 ]; then
    for t in "${targets[@]}"; do cargo fuzz build -s none "$t"; done
else
    cargo fuzz build -s none
fi
echo "== build took $(( $(date +%s) - start )) s"

# The session targets start a server with a temporary data directory that lives as long as the
# fuzzing process (never removed by it): keep those under target/ and remove them per target.
export TMPDIR="$PWD/target/fuzz-tmp"

status=0
for t in "${targets[@]}"; do
    rm -rf "$TMPDIR" && mkdir -p "$TMPDIR"
    corpus="corpus/$t"
    mkdir -p "$corpus" "artifacts/$t"
    args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=60 -rss_limit_mb=2048
          -print_final_stats=1)
    dict=$(dict_for "$t")
    if [ -n "$dict" ]; then
        args+=(-dict="$dict")
    fi
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    # corpus/<t> (kept between runs, git-ignored) first: new inputs go there; seeds/<t> read-only.
    log="artifacts/$t/run.log"
    if cargo fuzz run -s none "$t" "$corpus" "seeds/$t" -- "${args[@]}" >"$log" 2>&1; then
        grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log" || true
    else
        status=1
        echo "!! $t FAILED; last lines of $log:"
        tail -n 40 "$log"
        for a in "artifacts/$t"/crash-* "artifacts/$t"/timeout-* "artifacts/$t"/oom-* "artifacts/$t"/leak-*; do
            [ -e "$a" ] && echo "!! artifact: fuzz/$a  (copy it to fuzz/regressions/$t/ and see fuzz/README.md)"
        done
    fi
    rm -rf "$TMPDIR"
done
exit "$status"
