#!/usr/bin/env bash
# Log compaction throughput, and what it costs producers (issue 13's target: at least 200 MB/s of
# log cleaned, produce p99 within 2x of idle).
#
# 1. A broker with its cleaner off gets one compacted partition (cleanup.policy=compact) of SIZE
#    bytes of RECORD-byte values, 1 distinct key per KEY_EVERY records (1%), in SEGMENT-byte
#    segments.
# 2. A latency probe (`perf produce` to another topic, one small batch in flight) runs for
#    PROBE_SECS: the idle produce p99.
# 3. The broker restarts with its cleaner on (throttled with THROTTLE bytes/s if set); the same
#    probe runs while it compacts: the produce p99 under compaction.
# 4. The cleaner's own log line gives the bytes cleaned and the time it took (MB/s of log read,
#    10^6 bytes); the probe runs once more after it finished (idle again, same broker).
#
#   benches/compaction.sh target/release/minikafka                  # 1 GiB
#   SIZE=104857600 benches/compaction.sh target/release/minikafka   # 100 MiB, a quick run
set -euo pipefail
BIN=${1:?usage: $0 MINIKAFKA_BINARY}
SIZE=${SIZE:-1073741824}
RECORD=${RECORD:-100}
KEY_EVERY=${KEY_EVERY:-100}
SEGMENT=${SEGMENT:-67108864}
PROBE_SECS=${PROBE_SECS:-3}
THROTTLE=${THROTTLE:-}
N=$((SIZE / RECORD))
KEYS=$((N / KEY_EVERY))
WORK=$(mktemp -d /tmp/minikafka-compaction.XXXXXX)
B=
cleanup() {
    if [[ -n "$B" ]]; then kill "$B" 2>/dev/null || true; wait "$B" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port)

start_broker() { # extra flags...
    "$BIN" broker --data-dir "$WORK/data" --listen "127.0.0.1:$P" --kafka-listen off \
        --http-listen off --fsync never --segment-bytes "$SEGMENT" "$@" >>"$WORK/broker.log" 2>&1 &
    B=$!
    for _ in $(seq 600); do "$BIN" topic list --broker "127.0.0.1:$P" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the broker did not start:" >&2; cat "$WORK/broker.log" >&2; exit 1
}
stop_broker() {
    kill -TERM "$B"; wait "$B" || true; B=
}
probe() { # name
    "$BIN" perf produce --broker "127.0.0.1:$P" --topic probe --record-size "$RECORD" \
        --duration "$PROBE_SECS" --batch-size 16384 --in-flight 1 --json >"$WORK/$1.json"
}

echo "==> filling: $N records of $RECORD B, $KEYS distinct keys, segments of $SEGMENT B (load: $(cut -d' ' -f1-3 /proc/loadavg))"
if "$BIN" topic create --help 2>&1 | grep -q -- '--config'; then
    start_broker --log-cleaner-enable false
    "$BIN" topic create c --broker "127.0.0.1:$P" --config cleanup.policy=compact >/dev/null
else
    # A binary whose CLI cannot set topic configs: the topic is laid out as the broker keeps it
    # (topic.json with its configs, one partition directory) before the broker opens it.
    mkdir -p "$WORK/data/c/0"
    echo '{"partitions": 1, "configs": {"cleanup.policy": "compact"}}' >"$WORK/data/c/topic.json"
    start_broker --log-cleaner-enable false
fi
"$BIN" perf produce --broker "127.0.0.1:$P" --topic c --record-size "$RECORD" --num-records "$N" \
    --keys "$KEYS" --json >"$WORK/fill.json"
"$BIN" topic create probe --broker "127.0.0.1:$P" >/dev/null 2>&1 || true
probe idle-before
stop_broker

echo "==> compacting (cleaner on${THROTTLE:+, throttled to $THROTTLE B/s}) with the probe running"
start_broker --log-cleaner-backoff-ms 100 ${THROTTLE:+--log-cleaner-max-bytes-per-sec "$THROTTLE"}
probe during
for _ in $(seq 6000); do
    grep -q "log cleaner compacted a partition" "$WORK/broker.log" && break
    sleep 0.1
done
probe idle-after
stop_broker

python3 - "$WORK" <<'PY'
import json, re, sys
work = sys.argv[1]
log = open(f"{work}/broker.log").read()
line = next(l for l in log.splitlines() if "log cleaner compacted a partition" in l)
field = lambda name: float(re.search(rf"{name}=([0-9.]+)", line).group(1))
before, after, ms = field("bytes_before"), field("bytes_after"), field("elapsed_ms")
fill = json.load(open(f"{work}/fill.json"))
p99 = {n: json.load(open(f"{work}/{n}.json"))["latency"]["p99_us"] for n in ("idle-before", "during", "idle-after")}
idle = min(p99["idle-before"], p99["idle-after"])
print(f"fill: {fill['records']} records, {fill['mb_per_sec']:.0f} MB/s")
print(f"cleaned {before / 1e6:.0f} MB -> {after / 1e6:.1f} MB in {ms / 1000:.2f} s: "
      f"{before / 1e6 / (ms / 1000):.0f} MB/s of log cleaned")
print(f"produce p99: idle {p99['idle-before']} us before, {p99['idle-after']} us after; "
      f"{p99['during']} us while cleaning ({p99['during'] / max(idle, 1):.2f}x idle)")
if ms / 1000 < float(json.load(open(f"{work}/during.json"))["seconds"]):
    print("note: the cleaning ended before the probe did; part of the 'while cleaning' probe was idle")
PY
