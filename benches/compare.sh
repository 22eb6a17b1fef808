#!/usr/bin/env bash
# Side-by-side benchmark: Redis Streams (AOF), NATS JetStream (file store) and minikafka, same
# machine, same sitting, same record sizes. Prints one table: figure, Redis, NATS, minikafka, and
# minikafka's ratio to each peer; the durability of each peer is printed under the table.
# minikafka is measured twice over: through its native protocol (`minikafka perf`) and through
# its Kafka listener with librdkafka (benches/kafka-bench), with the broker's CPU time per
# produced and per fetched record for each.
#
#   benches/compare.sh                 # RUNS=3 by default: every figure is the median of 3 runs
#   RUNS=1 benches/compare.sh          # quicker, noisier
#   MINIKAFKA=path/to/minikafka benches/compare.sh   # skip the release build
#   NATS_BENCH=path/to/nats-bench benches/compare.sh # skip building benches/nats-bench
#   KAFKA_BENCH=path/to/kafka-bench benches/compare.sh # skip building benches/kafka-bench
#
# Installs redis-server/redis-tools, nats-server and librdkafka-dev from Debian if missing
# (apt-get), and builds benches/nats-bench (a small `nats bench` on the async-nats crate: the Go
# `nats` CLI is not packaged) into target/nats-bench and benches/kafka-bench (librdkafka through
# the rdkafka crate, linked to Debian's librdkafka) into target/kafka-bench. Everything runs on loopback ports picked at random, in a temp
# dir that is removed at the end; every process this script starts is stopped by the EXIT trap.
# Each step has a timeout, so the whole run is bounded (about 5-8 minutes on 2 busy cores with
# RUNS=3, most of it NATS publishing).
set -euo pipefail

RUNS=${RUNS:-3}
N100=${N100:-2000000}      # records of 100 B per produce run
N1K=${N1K:-400000}         # records of 1000 B per produce run
NALWAYS=${NALWAYS:-500000} # records per fsync-always run
STEP_TIMEOUT=${STEP_TIMEOUT:-60}
NATS_STEP_TIMEOUT=${NATS_STEP_TIMEOUT:-240} # one NATS publish of N100 records runs ~15-40 s here
KAFKA_STEP_TIMEOUT=${KAFKA_STEP_TIMEOUT:-120} # one librdkafka produce of N100 records: ~5-15 s

cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/minikafka-compare.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "compare.sh: failed at line $LINENO (exit $?)" >&2' ERR

log() { echo "# $*" >&2; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else print a[int((NR+1)/2)]}'; }

# --- tools -------------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    log "installing redis-server and redis-tools from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if ! command -v nats-server >/dev/null; then
    log "installing nats-server from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi
if [[ -z "${NATS_BENCH:-}" ]]; then
    log "building benches/nats-bench (release)"
    (cd benches/nats-bench && CARGO_TARGET_DIR=../../target/nats-bench \
        timeout 1800 cargo build --release --quiet --locked)
    NATS_BENCH=target/nats-bench/release/nats-bench
fi
if [[ -z "${KAFKA_BENCH:-}" ]]; then
    if ! dpkg -s librdkafka-dev >/dev/null 2>&1; then
        log "installing librdkafka-dev from Debian"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librdkafka-dev >/dev/null
    fi
    log "building benches/kafka-bench (release)"
    (cd benches/kafka-bench && CARGO_TARGET_DIR=../../target/kafka-bench \
        timeout 1800 cargo build --release --quiet --locked)
    KAFKA_BENCH=target/kafka-bench/release/kafka-bench
fi
if [[ -z "${MINIKAFKA:-}" ]]; then
    log "building minikafka (release)"
    cargo build --release --quiet --bin minikafka
    MINIKAFKA=target/release/minikafka
fi

# Before each replay: write back what the produce runs left dirty, so that the replay measures
# reading, not the kernel flushing the previous step's data on the same two cores.
settle() { sync; }

# --- Redis -------------------------------------------------------------------------------------
start_redis() { # $1 = appendfsync policy; sets RPORT
    local dir="$WORK/redis-$1"
    mkdir -p "$dir"
    RPORT=$(free_port)
    redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync "$1" --save '' --daemonize no --protected-mode yes \
        >"$dir/redis.log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    for _ in $(seq 100); do
        redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis did not start" >&2
    exit 1
}
stop_redis() { kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; }

# requests/s of one redis-benchmark custom command run
redis_rps() { # $1 = -n, rest = command
    local n=$1
    shift
    timeout "$STEP_TIMEOUT" redis-benchmark -p "$RPORT" -c 50 -P 64 -n "$n" --csv "$@" 2>/dev/null |
        tail -1 | cut -d, -f2 | tr -d '"'
}

V100=$(head -c 100 /dev/zero | tr '\0' 'x')
V1000=$(head -c 1000 /dev/zero | tr '\0' 'x')

log "Redis, appendfsync everysec"
start_redis everysec
R_XADD100=$(for _ in $(seq "$RUNS"); do redis_rps "$N100" XADD s100 '*' f "$V100"; done | median)
R_XADD1K=$(for _ in $(seq "$RUNS"); do redis_rps "$N1K" XADD s1k '*' f "$V1000"; done | median)
# XRANGE replay: each call returns 100 entries; entries/s = calls/s * 100.
settle
R_XRANGE100=$(for _ in $(seq "$RUNS"); do redis_rps 20000 XRANGE s100 - + COUNT 100; done | median)
R_XRANGE1K=$(for _ in $(seq "$RUNS"); do redis_rps 4000 XRANGE s1k - + COUNT 100; done | median)
R_XRANGE100=$(awk -v x="$R_XRANGE100" 'BEGIN {print x * 100}')
R_XRANGE1K=$(awk -v x="$R_XRANGE1K" 'BEGIN {print x * 100}')
stop_redis

log "Redis, appendfsync always"
start_redis always
R_ALWAYS=$(for _ in $(seq "$RUNS"); do redis_rps "$NALWAYS" XADD sa '*' f "$V100"; done | median)
stop_redis

# --- NATS JetStream -----------------------------------------------------------------------------
# nats-server 2.9 has no fsync setting: every stream's file store writes each message to its block
# file before the publish ack and fsyncs on a fixed 2-minute timer (sync_interval / sync: always
# arrived in 2.10), so only the timer-fsync rows can be measured.
start_nats() { # sets NPORT, NPID
    local dir="$WORK/nats"
    mkdir -p "$dir"
    NPORT=$(free_port)
    nats-server -js -sd "$dir/js" -a 127.0.0.1 -p "$NPORT" >"$dir/nats.log" 2>&1 &
    NPID=$!
    PIDS+=("$NPID")
    for _ in $(seq 100); do
        grep -q 'Server is ready' "$dir/nats.log" && return 0
        sleep 0.1
    done
    echo "nats-server did not start" >&2
    exit 1
}
stop_nats() { kill "$NPID" 2>/dev/null || true; wait "$NPID" 2>/dev/null || true; }

# field of the JSON report of one nats-bench run
nats_field() { # $1 = field, rest = nats-bench args
    local field=$1
    shift
    timeout "$NATS_STEP_TIMEOUT" "$NATS_BENCH" --server "nats://127.0.0.1:$NPORT" --json "$@" |
        python3 -c "import json,sys; print(json.load(sys.stdin)['$field'])"
}

log "NATS JetStream $(nats-server --version | awk '{print $2}'), file store"
start_nats
N_P100=()
N_P1K=()
for r in $(seq "$RUNS"); do
    N_P100+=("$(nats_field records_per_sec publish --stream p100-$r --records "$N100" --size 100 --in-flight 1000)")
    N_P1K+=("$(nats_field records_per_sec publish --stream p1k-$r --records "$N1K" --size 1000 --in-flight 1000)")
done
settle
N_C100=()
N_C1K=()
for r in $(seq "$RUNS"); do
    N_C100+=("$(nats_field records_per_sec consume --stream p100-$r --expect "$N100" --size 100)")
    N_C1K+=("$(nats_field records_per_sec consume --stream p1k-$r --expect "$N1K" --size 1000)")
done
stop_nats
ints() { printf '%.0f ' "$@"; }
log "NATS runs, records/s: publish 100 B $(ints "${N_P100[@]}"); 1000 B $(ints "${N_P1K[@]}");" \
    "replay 100 B $(ints "${N_C100[@]}"); 1000 B $(ints "${N_C1K[@]}")"

# --- minikafka ---------------------------------------------------------------------------------
start_broker() { # $1 = fsync policy, $2 = "kafka" for a Kafka listener too; sets BROKER, KBROKER, BPID
    local dir="$WORK/mk-${1//=/-}"
    mkdir -p "$dir"
    local port
    port=$(free_port)
    BROKER=127.0.0.1:$port
    # The Kafka listener on a port picked here, or off, and the HTTP listener off: their default
    # ports may belong to a broker already running.
    KBROKER=off
    [[ "${2:-}" == kafka ]] && KBROKER=127.0.0.1:$(free_port)
    "$MINIKAFKA" broker --data-dir "$dir/data" --listen "$BROKER" --fsync "$1" \
        --kafka-listen "$KBROKER" --http-listen off \
        >"$dir/broker.log" 2>&1 &
    BPID=$!
    PIDS+=("$BPID")
    for _ in $(seq 100); do
        if "$MINIKAFKA" topic list --broker "$BROKER" >/dev/null 2>&1 &&
            { [[ "$KBROKER" == off ]] || grep -q 'Kafka listener ready' "$dir/broker.log"; }; then
            return 0
        fi
        sleep 0.1
    done
    echo "minikafka did not start" >&2
    exit 1
}
stop_broker() { kill "$BPID" 2>/dev/null || true; wait "$BPID" 2>/dev/null || true; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
anon_mib() { awk '/RssAnon/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# the peak resident set since the process started (the kernel's high-water mark)
peak_mib() { awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# field of the JSON report of one `minikafka perf` run
perf_field() { # $1 = field, rest = perf args
    local field=$1
    shift
    timeout "$STEP_TIMEOUT" "$MINIKAFKA" perf "$@" --broker "$BROKER" --json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['$field'])"
}
# field of the JSON report (stdout) of one kafka-bench run against the Kafka listener; its text
# report (stderr) goes to the log
kafka_field() { # $1 = field, rest = kafka-bench args
    local field=$1
    shift
    timeout "$KAFKA_STEP_TIMEOUT" "$KAFKA_BENCH" --brokers "$KBROKER" "$@" 2> >(sed 's/^/# kafka-bench /' >&2) |
        python3 -c "import json,sys; print(json.load(sys.stdin)['$field'])"
}
# The broker's CPU time (user + system, all threads) from /proc/PID/stat, in clock ticks.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
us_per_record() { # ticks before, ticks after, records
    awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN {print (b - a) / hz * 1e6 / n}'
}
perf_latency_p99() {
    timeout "$STEP_TIMEOUT" "$MINIKAFKA" perf latency "$@" --broker "$BROKER" --json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['latency']['p99_us'])"
}

log "minikafka, --fsync interval=1000, with a Kafka listener"
start_broker interval=1000 kafka
IDLE_TOPICS_RSS=$(
    for i in $(seq 100); do "$MINIKAFKA" topic create "idle$i" --broker "$BROKER" >/dev/null; done
    sleep 0.5
    rss_mib "$BPID"
)
# Each produce and replay, native or Kafka, is bracketed by readings of the broker's CPU time:
# the CPU_* arrays hold the broker's microseconds per record of each run.
M_P100=()
M_P1K=()
CPU_MP100=()
CPU_MP1K=()
for r in $(seq "$RUNS"); do
    c0=$(cpu_ticks "$BPID")
    M_P100+=("$(perf_field records_per_sec produce --topic p100-$r --record-size 100 --num-records "$N100" --batch-size 262144)")
    c1=$(cpu_ticks "$BPID")
    M_P1K+=("$(perf_field records_per_sec produce --topic p1k-$r --record-size 1000 --num-records "$N1K" --batch-size 1048576)")
    c2=$(cpu_ticks "$BPID")
    CPU_MP100+=("$(us_per_record "$c0" "$c1" "$N100")")
    CPU_MP1K+=("$(us_per_record "$c1" "$c2" "$N1K")")
done
# The same records through the Kafka listener, with librdkafka's defaults (acks=1, no
# compression, linger.ms 5, batch.size 1 MB), into topics of their own.
K_P100=()
K_P1K=()
CPU_KP100=()
CPU_KP1K=()
for r in $(seq "$RUNS"); do
    "$MINIKAFKA" topic create "k100-$r" --broker "$BROKER" >/dev/null
    "$MINIKAFKA" topic create "k1k-$r" --broker "$BROKER" >/dev/null
    c0=$(cpu_ticks "$BPID")
    K_P100+=("$(kafka_field records_per_sec produce --topic k100-$r --records "$N100" --size 100)")
    c1=$(cpu_ticks "$BPID")
    K_P1K+=("$(kafka_field records_per_sec produce --topic k1k-$r --records "$N1K" --size 1000)")
    c2=$(cpu_ticks "$BPID")
    CPU_KP100+=("$(us_per_record "$c0" "$c1" "$N100")")
    CPU_KP1K+=("$(us_per_record "$c1" "$c2" "$N1K")")
done
settle
# Native and Kafka replays read the same topics (written by perf produce), so both protocols
# fetch the same stored records.
M_C100=()
M_C1K=()
K_C100=()
K_C1K=()
CPU_MC100=()
CPU_MC1K=()
CPU_KC100=()
CPU_KC1K=()
for r in $(seq "$RUNS"); do
    c0=$(cpu_ticks "$BPID")
    M_C100+=("$(perf_field records_per_sec consume --topic p100-$r)")
    c1=$(cpu_ticks "$BPID")
    M_C1K+=("$(perf_field records_per_sec consume --topic p1k-$r)")
    c2=$(cpu_ticks "$BPID")
    K_C100+=("$(kafka_field records_per_sec consume --topic p100-$r --records "$N100")")
    c3=$(cpu_ticks "$BPID")
    K_C1K+=("$(kafka_field records_per_sec consume --topic p1k-$r --records "$N1K")")
    c4=$(cpu_ticks "$BPID")
    CPU_MC100+=("$(us_per_record "$c0" "$c1" "$N100")")
    CPU_MC1K+=("$(us_per_record "$c1" "$c2" "$N1K")")
    CPU_KC100+=("$(us_per_record "$c2" "$c3" "$N100")")
    CPU_KC1K+=("$(us_per_record "$c3" "$c4" "$N1K")")
done
M_LAT=()
for r in $(seq "$RUNS"); do
    M_LAT+=("$(perf_latency_p99 --topic lat-$r --rate 10000 --duration 5)")
done
# The user-facing paths: 100-byte lines through `produce --file` and `consume > file`, as many
# as the perf rows they are compared with (each CLI run is timed whole, process start included).
awk -v v="$V100" -v n="$N100" 'BEGIN { for (i = 0; i < n; i++) print v }' >"$WORK/lines.txt"
NLINES=$(wc -l <"$WORK/lines.txt")
M_CLI_P=()
M_CLI_C=()
for r in $(seq "$RUNS"); do
    "$MINIKAFKA" topic create "cli-$r" --broker "$BROKER" >/dev/null
    # Deleting the previous run's 100 MB output is the shell's work, not the consumer's: untimed.
    rm -f "$WORK/out.txt"
    t0=$(date +%s.%N)
    timeout "$STEP_TIMEOUT" "$MINIKAFKA" produce "cli-$r" --file "$WORK/lines.txt" --broker "$BROKER"
    t1=$(date +%s.%N)
    timeout "$STEP_TIMEOUT" "$MINIKAFKA" consume "cli-$r" --from-beginning --broker "$BROKER" >"$WORK/out.txt"
    t2=$(date +%s.%N)
    got=$(wc -l <"$WORK/out.txt")
    [[ "$got" == "$NLINES" ]] || { echo "consume printed $got lines, expected $NLINES" >&2; exit 1; }
    M_CLI_P+=("$(awk -v n="$NLINES" -v a="$t0" -v b="$t1" 'BEGIN {print n / (b - a)}')")
    M_CLI_C+=("$(awk -v n="$NLINES" -v a="$t1" -v b="$t2" 'BEGIN {print n / (b - a)}')")
done
rm -f "$WORK/out.txt"
BUSY_RSS=$(rss_mib "$BPID")
BUSY_ANON=$(anon_mib "$BPID")
PEAK_RSS=$(peak_mib "$BPID")
stop_broker

log "minikafka, --fsync always"
start_broker always
M_ALWAYS=()
for r in $(seq "$RUNS"); do
    # 50 producers, each with one batch of 64 records in flight: Redis's -c 50 -P 64.
    M_ALWAYS+=("$(perf_field records_per_sec produce --topic always-$r --record-size 100 --num-records "$NALWAYS" --producers 50 --batch-size 8576 --in-flight 1)")
done
PEAK_RSS_ALWAYS=$(peak_mib "$BPID")
stop_broker

med() { printf '%s\n' "$@" | median; }
M_P100=$(med "${M_P100[@]}")
M_P1K=$(med "${M_P1K[@]}")
M_C100=$(med "${M_C100[@]}")
M_C1K=$(med "${M_C1K[@]}")
K_P100=$(med "${K_P100[@]}")
K_P1K=$(med "${K_P1K[@]}")
K_C100=$(med "${K_C100[@]}")
K_C1K=$(med "${K_C1K[@]}")
CPU_MP100=$(med "${CPU_MP100[@]}")
CPU_MP1K=$(med "${CPU_MP1K[@]}")
CPU_KP100=$(med "${CPU_KP100[@]}")
CPU_KP1K=$(med "${CPU_KP1K[@]}")
CPU_MC100=$(med "${CPU_MC100[@]}")
CPU_MC1K=$(med "${CPU_MC1K[@]}")
CPU_KC100=$(med "${CPU_KC100[@]}")
CPU_KC1K=$(med "${CPU_KC1K[@]}")
M_LAT=$(med "${M_LAT[@]}")
M_ALWAYS=$(med "${M_ALWAYS[@]}")
M_CLI_P=$(med "${M_CLI_P[@]}")
M_CLI_C=$(med "${M_CLI_C[@]}")
N_P100=$(med "${N_P100[@]}")
N_P1K=$(med "${N_P1K[@]}")
N_C100=$(med "${N_C100[@]}")
N_C1K=$(med "${N_C1K[@]}")

# A peer's cell is a number, "-" (no such figure) or "n/a" (the peer cannot do it); ratios only
# between numbers.
row() { # figure, redis, nats, minikafka
    awk -v f="$1" -v r="$2" -v n="$3" -v m="$4" '
        function num(x) { return x ~ /^[0-9.eE+-]+$/ && x != "-" }
        function cell(x) { return num(x) ? sprintf(x < 10 ? "%.2f" : "%.0f", x) : x }
        function ratio(x) { return (num(x) && x > 0 && num(m)) ? sprintf("%.2fx", m / x) : "-" }
        BEGIN { printf "| %-52s | %10s | %10s | %10s | %8s | %8s |\n", f, cell(r), cell(n), cell(m), ratio(r), ratio(n) }'
}
mb() { awk -v x="$1" 'BEGIN {print x / 1000}'; }
dashes() { printf -- '-%.0s' $(seq "$1"); }
echo
echo "minikafka vs Redis $(redis-server --version | awk '{print $3}' | tr -d 'v=') and NATS JetStream $(nats-server --version | awk '{print $2}' | tr -d 'v'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), medians of $RUNS"
echo
printf "| %-52s | %10s | %10s | %10s | %8s | %8s |\n" "figure (records/s unless said)" "Redis" "NATS" "minikafka" "vs Redis" "vs NATS"
printf "|%s|%s|%s|%s|%s|%s|\n" "$(dashes 54)" "$(dashes 12)" "$(dashes 12)" "$(dashes 12)" "$(dashes 10)" "$(dashes 10)"
row "produce 100 B, fsync on a timer (see below)" "$R_XADD100" "$N_P100" "$M_P100"
row "  Kafka listener produce 100 B (librdkafka)" "-" "-" "$K_P100"
row "produce 1000 B, fsync on a timer" "$R_XADD1K" "$N_P1K" "$M_P1K"
row "  same, MB/s" "$(mb "$R_XADD1K")" "$(mb "$N_P1K")" "$(mb "$M_P1K")"
row "  Kafka listener produce 1000 B (librdkafka)" "-" "-" "$K_P1K"
row "replay 100 B from offset 0" "$R_XRANGE100" "$N_C100" "$M_C100"
row "  Kafka listener consume 100 B (librdkafka)" "-" "-" "$K_C100"
row "replay 1000 B from offset 0" "$R_XRANGE1K" "$N_C1K" "$M_C1K"
row "  same, MB/s" "$(mb "$R_XRANGE1K")" "$(mb "$N_C1K")" "$(mb "$M_C1K")"
row "  Kafka listener consume 1000 B (librdkafka)" "-" "-" "$K_C1K"
row "broker CPU per produced record (us), native 100 B" "-" "-" "$CPU_MP100"
row "  same, Kafka listener 100 B" "-" "-" "$CPU_KP100"
row "  same, native 1000 B" "-" "-" "$CPU_MP1K"
row "  same, Kafka listener 1000 B" "-" "-" "$CPU_KP1K"
row "broker CPU per fetched record (us), native 100 B" "-" "-" "$CPU_MC100"
row "  same, Kafka listener 100 B" "-" "-" "$CPU_KC100"
row "  same, native 1000 B" "-" "-" "$CPU_MC1K"
row "  same, Kafka listener 1000 B" "-" "-" "$CPU_KC1K"
row "produce 100 B, fsync always, 50 clients x 64" "$R_ALWAYS" "n/a" "$M_ALWAYS"
row "produce --file, 100 B lines (vs perf produce)" "-" "-" "$M_CLI_P"
row "consume --from-beginning > file (vs perf consume)" "-" "-" "$M_CLI_C"
echo
echo "durability of the timer rows: each peer acks after writing to its file (page cache), before fsync:"
echo "  Redis: appendonly yes, appendfsync everysec (fsync every 1 s); minikafka: --fsync interval=1000 (every 1 s);"
echo "  NATS 2.9: JetStream file store, fsync of the stream's blocks every 2 minutes (fixed in 2.9: no sync_interval"
echo "  option until 2.10), so NATS's timer rows are the least durable of the three."
echo "fsync always: Redis appendfsync always, minikafka --fsync always (every ack after fdatasync, group commit);"
echo "  NATS n/a: nats-server 2.9 has no per-message fsync mode (sync: always arrived in 2.10)."
echo "clients: Redis redis-benchmark -c 50 -P 64 (XADD; replay = XRANGE COUNT 100 calls x 100);"
echo "  NATS benches/nats-bench (async-nats), 1 connection, 1000 publish acks in flight, replay = ephemeral"
echo "  pull consumer, no acks, 10,000-message pulls; minikafka perf, 1 connection, 8 batches in flight;"
echo "  replay = 4 MiB fetches, 4 in flight (FETCH_CONTINUE). Every peer's replays start after a sync(1)."
echo "  Kafka listener: benches/kafka-bench, librdkafka $(dpkg-query -W -f='${Version}' librdkafka1 2>/dev/null || echo '?')" \
    "(Debian) through the rdkafka crate, 1 connection;"
echo "  produce: acks=1, no compression, linger.ms 5, batch.size 1 MB, every delivery report awaited;"
echo "  consume: the topics perf produce wrote, every partition assigned from the beginning, 4 MiB"
echo "  max.partition.fetch.bytes, check.crcs=true."
echo "broker CPU: user + system time of the broker process (/proc/PID/stat, ${CLK_TCK} ticks/s) over each run,"
echo "  divided by its records."
echo
ratio2() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
echo "Kafka listener / native: produce 100 B $(ratio2 "$K_P100" "$M_P100"), 1000 B $(ratio2 "$K_P1K" "$M_P1K");" \
    "consume 100 B $(ratio2 "$K_C100" "$M_C100"), 1000 B $(ratio2 "$K_C1K" "$M_C1K");" \
    "broker CPU per fetched record 100 B $(ratio2 "$CPU_KC100" "$CPU_MC100"), 1000 B $(ratio2 "$CPU_KC1K" "$CPU_MC1K");" \
    "per produced record 100 B $(ratio2 "$CPU_KP100" "$CPU_MP100"), 1000 B $(ratio2 "$CPU_KP1K" "$CPU_MP1K")"
echo "produce --file / perf produce: $(awk -v a="$M_CLI_P" -v b="$M_P100" 'BEGIN {printf "%.2f", a / b}');" \
    "consume > file / perf consume: $(awk -v a="$M_CLI_C" -v b="$M_C100" 'BEGIN {printf "%.2f", a / b}')"
echo "produce-to-consume latency at 10,000 msg/s, p99: ${M_LAT} us"
echo "broker RSS: ${IDLE_TOPICS_RSS} MiB idle with 100 topics; peak (VmHWM) during all the runs above: ${PEAK_RSS} MiB" \
    "(interval broker), ${PEAK_RSS_ALWAYS} MiB (fsync-always broker); ${BUSY_RSS} MiB after them (${BUSY_ANON} MiB anonymous)"
