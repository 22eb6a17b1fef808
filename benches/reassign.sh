#!/usr/bin/env bash
# Issue 15's copy-rate targets, measured: a partition of SIZE_MB MiB on brokers 1-3 is moved so
# that broker 4 (which holds nothing) replaces one of its replicas; the time from
# `topic reassign` to the end of the move (`topic reassignments` empty) gives MB/s (1 MB =
# 10^6 bytes, the unit of --throttle-mb-per-s). Unthrottled (target: at least 500 MB/s on this
# machine), or with THROTTLE_MB=N, passed as `topic reassign --throttle-mb-per-s N` (target:
# within 10% of N).
#
#   benches/reassign.sh [BINARY]          # default target/release/minikafka, ROUNDS=3
#   SIZE_MB=1024 FSYNC=never benches/reassign.sh
#   THROTTLE_MB=50 SIZE_MB=512 benches/reassign.sh
set -euo pipefail

BIN=${1:-target/release/minikafka}
ROUNDS=${ROUNDS:-3}
SIZE_MB=${SIZE_MB:-1024}
FSYNC=${FSYNC:-never}
THROTTLE_MB=${THROTTLE_MB:-}
throttle=()
[[ -n $THROTTLE_MB ]] && throttle=(--throttle-mb-per-s "$THROTTLE_MB")
RECORD=1000
WORK=$(mktemp -d /tmp/minikafka-reassign-bench.XXXXXX)
# shellcheck source=benches/cluster-lib.sh
source "$(dirname "$0")/cluster-lib.sh"
alive() { # $1 broker list
    "$BIN" cluster status --json --broker "$1" 2>/dev/null |
        python3 -c 'import json,sys; print(sum(not b["fenced"] for b in json.load(sys.stdin)["brokers"]))' 2>/dev/null || echo 0
}
wait_alive() { # $1 broker list, $2 count
    for _ in $(seq 600); do
        [[ $(alive "$1") == "$2" ]] && return 0
        sleep 0.1
    done
    echo "brokers did not come up; logs in $WORK" >&2
    exit 1
}

rates=()
for round in $(seq "$ROUNDS"); do
    rm -rf "$WORK"/d*
    native=() cl=() controllers=()
    for i in 1 2 3 4; do
        native+=("127.0.0.1:$(free_port)")
        cl+=("127.0.0.1:$(free_port)")
    done
    for i in 1 2 3; do controllers+=("$i@${cl[$((i - 1))]}"); done
    voters=$(IFS=,; echo "${controllers[*]}")
    start_broker() { # $1 id
        local i=$1
        "$BIN" broker --node-id "$i" --data-dir "$WORK/d$i" --listen "${native[$((i - 1))]}" \
            --kafka-listen off --http-listen off --cluster-listen "${cl[$((i - 1))]}" \
            --controllers "$voters" --fsync "$FSYNC" >"$WORK/broker$i.log" 2>&1 &
        PIDS+=($!)
    }
    for i in 1 2 3; do start_broker "$i"; done
    three=$(IFS=,; echo "${native[*]:0:3}")
    wait_alive "$three" 3
    "$BIN" topic create moving --partitions 1 --replication-factor 3 --broker "$three" >/dev/null
    count=$((SIZE_MB * 1024 * 1024 / RECORD))
    "$BIN" perf produce --broker "$three" --topic moving --partitions 1 --record-size "$RECORD" \
        --num-records "$count" --producers 2 --json >/dev/null
    start_broker 4
    all=$(IFS=,; echo "${native[*]}")
    wait_alive "$all" 4
    bytes=$("$BIN" topic describe moving --json --broker "$all" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["size_bytes"])')
    old=$("$BIN" topic describe moving --json --broker "$all" |
        python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["partitions"][0]["replicas"])))')
    target="4,${old#*,}"
    t0=$(date +%s.%N)
    "$BIN" topic reassign moving --partition 0 --replicas "$target" "${throttle[@]}" \
        --broker "$all" >/dev/null
    until [[ $("$BIN" topic reassignments --broker "$all") == "no reassignment under way" ]]; do
        sleep 0.05
    done
    t1=$(date +%s.%N)
    stop_all
    rate=$(python3 -c "print(round($bytes / ($t1 - $t0) / 1e6))")
    printf 'round %s: moved %s MB (replicas %s -> %s) in %.2f s: %s MB/s\n' \
        "$round" "$((bytes / 1000000))" "$old" "$target" "$(python3 -c "print($t1 - $t0)")" "$rate"
    rates+=("$rate")
done
echo "median of $ROUNDS rounds ($SIZE_MB MiB partition, --fsync $FSYNC, throttle ${THROTTLE_MB:-none} MB/s): $(median "${rates[@]}") MB/s"
echo "load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
