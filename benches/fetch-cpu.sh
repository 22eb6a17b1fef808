#!/usr/bin/env bash
# Broker CPU per fetched record: native `minikafka perf consume` against librdkafka
# (benches/kafka-bench consume) reading the same topic on one broker, three times each, from the
# broker's utime+stime in /proc/PID/stat (10 ms ticks: use enough records).
#
#   benches/fetch-cpu.sh target/release/minikafka                 # 400,000 x 1000 B
#   SIZE=100 N=2000000 benches/fetch-cpu.sh target/release/minikafka
#
# Needs target/kafka-bench/release/kafka-bench (benches/compare.sh builds it) or KB=path.
set -euo pipefail
BIN=${1:?usage: $0 MINIKAFKA_BINARY}
SIZE=${SIZE:-1000}
N=${N:-400000}
BATCH=${BATCH:-1048576}
KB=${KB:-target/kafka-bench/release/kafka-bench}
WORK=$(mktemp -d /tmp/minikafka-fetch-cpu.XXXXXX)
B=
cleanup() {
    if [[ -n "$B" ]]; then kill "$B" 2>/dev/null || true; wait "$B" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port)
K=$(free_port)
"$BIN" broker --data-dir "$WORK/data" --listen "127.0.0.1:$P" --kafka-listen "127.0.0.1:$K" \
    --http-listen off --fsync interval=1000 >"$WORK/broker.log" 2>&1 &
B=$!
for _ in $(seq 100); do "$BIN" topic list --broker "127.0.0.1:$P" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN" perf produce --broker "127.0.0.1:$P" --topic t --record-size "$SIZE" --num-records "$N" \
    --batch-size "$BATCH" --json >/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$B/stat"; }
for _ in 1 2 3; do
    c0=$(cpu)
    "$BIN" perf consume --broker "127.0.0.1:$P" --topic t --json >"$WORK/native.json"
    c1=$(cpu)
    "$KB" consume --brokers "127.0.0.1:$K" --topic t --records "$N" >"$WORK/kafka.json" 2>/dev/null
    c2=$(cpu)
    python3 - "$WORK" "$N" "$c0" "$c1" "$c2" <<'PY'
import json, os, sys
work, n, c0, c1, c2 = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
nat = json.load(open(f"{work}/native.json"))
kb = json.load(open(f"{work}/kafka.json"))
print("native %.3f us/record (%d MB/s)   Kafka %.3f us/record (%d MB/s)" % (
    (c1 - c0) * tick_us / n, nat["mb_per_sec"], (c2 - c1) * tick_us / n, kb["mb_per_sec"]))
PY
done
