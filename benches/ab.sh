#!/usr/bin/env bash
# Before/after in one sitting: two minikafka binaries, alternated, on the same workload, so that a
# change's effect is not lost in this machine's drift between sittings.
#
#   benches/ab.sh OLD_BINARY NEW_BINARY          # ROUNDS=2 by default
#   SIZE=100 COUNT=2000000 benches/ab.sh OLD NEW # other record sizes (default 1000 B x 400,000)
#
# Per binary and round: a fresh broker (--fsync interval=1000) on a temp data dir; 3 topics of
# COUNT x SIZE B produced with `perf produce` (1 MiB batches); each replayed twice with `perf
# consume`; then the broker's peak RSS (VmHWM). Prints MB/s of every run. Build the old binary from
# a worktree, e.g. `git worktree add /tmp/old <commit> && cargo build --release` there.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
ROUNDS=${ROUNDS:-2}
SIZE=${SIZE:-1000}
COUNT=${COUNT:-400000}
STEP_TIMEOUT=${STEP_TIMEOUT:-60}
WORK=$(mktemp -d /tmp/minikafka-ab.XXXXXX)
BPID=
cleanup() {
    if [[ -n "$BPID" ]]; then
        kill "$BPID" 2>/dev/null || true
        wait "$BPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
mbs() { python3 -c "import json,sys; print(round(json.load(sys.stdin)['mb_per_sec']), end=' ')"; }

for _ in $(seq "$ROUNDS"); do
    for bin in "$1" "$2"; do
        rm -rf "$WORK/data"
        addr=127.0.0.1:$(free_port)
        "$bin" broker --data-dir "$WORK/data" --listen "$addr" --kafka-listen off \
            --http-listen off --fsync interval=1000 >"$WORK/broker.log" 2>&1 &
        BPID=$!
        for _ in $(seq 100); do
            "$bin" topic list --broker "$addr" >/dev/null 2>&1 && break
            sleep 0.1
        done
        echo -n "$bin produce $SIZE B MB/s: "
        for t in 1 2 3; do
            timeout "$STEP_TIMEOUT" "$bin" perf produce --broker "$addr" --topic "t$t" \
                --record-size "$SIZE" --num-records "$COUNT" --batch-size 1048576 --json | mbs
        done
        echo -n "| replay MB/s: "
        for _ in 1 2; do
            for t in 1 2 3; do
                timeout "$STEP_TIMEOUT" "$bin" perf consume --broker "$addr" --topic "t$t" --json | mbs
            done
        done
        echo "| peak RSS $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$BPID/status") MiB"
        kill "$BPID"
        wait "$BPID" 2>/dev/null || true
        BPID=
    done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
