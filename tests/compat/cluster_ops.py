"""Cluster operations (issue 15) under Kafka clients, run by scripts/cluster-compat after
cluster_compat.py: while a confluent-kafka idempotent acks=all producer and a confluent-kafka
group consumer (committing after every batch) run on a topic,

- a fourth broker joins the three controllers and `cluster rebalance --execute` moves replicas
  onto it;
- the target of a partition move is SIGKILLed in the middle of the move: the move waits and
  finishes once the broker is back; another move whose target is killed is cancelled, and the
  partition keeps its replicas;
- `cluster decommission 1` moves every replica off broker 1, which is fenced once emptied and
  then stopped.

Each time the producer ends with no delivery error and the consumer has read every acknowledged
record exactly once. Prints `PASS name` / `FAIL name: why` lines (common.check); every wait is
bounded.
"""
import collections
import json
import os
import signal
import sys
import threading
import time

from cluster_common import (SESSION_MS, Cluster, admin, cli_json, cli_ok, create_topic,
                            wait_healthy)
from common import check, expect, finish, name, wait_until

from confluent_kafka import Consumer, KafkaException, Producer

MOVES_TIMEOUT = 120


class Load:
    """An idempotent acks=all producer writing "0", "1", ... over every partition of `topic`
    (`rate` records a second), and one member of a consumer group reading them, committing
    synchronously after every batch so that nothing it has read is handed to it again. Both run
    in threads from construction to check_exactly_once. `earlier` are values acknowledged before
    the load started, which the consumer must read once too."""

    def __init__(self, c, topic, earlier=(), rate=300):
        self.topic, self.rate, self.earlier = topic, rate, list(earlier)
        self.acked, self.delivery_errors = [], []
        self.consumed, self.consumer_errors = [], []
        self.failure = None  # a thread's exception, reported by check_exactly_once
        self.produced, self.unflushed = 0, None
        self.stop_producing, self.stop_consuming = threading.Event(), threading.Event()
        self.producer = Producer({
            "bootstrap.servers": c.bootstrap(), "enable.idempotence": True, "acks": "all",
            "linger.ms": 10, "message.timeout.ms": 120000, "retry.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500, "topic.metadata.refresh.interval.ms": 1000})
        self.consumer = Consumer({
            "bootstrap.servers": c.bootstrap(), "group.id": name(f"{topic}-g"),
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": 30000, "topic.metadata.refresh.interval.ms": 1000,
            "reconnect.backoff.max.ms": 500})
        self.threads = [threading.Thread(target=self.guarded, args=(f,))
                        for f in (self.produce, self.consume)]
        for t in self.threads:
            t.start()

    def guarded(self, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by check_exactly_once
            self.failure = f"{fn.__name__}: {e!r}"
            self.stop_producing.set()
            self.stop_consuming.set()

    def on_delivery(self, err, msg):
        if err is None:
            self.acked.append(msg.value().decode())
        else:
            self.delivery_errors.append(str(err))

    def produce(self):
        i, step = 0, 0.05
        while not self.stop_producing.is_set():
            for _ in range(max(1, int(self.rate * step))):
                while True:
                    try:
                        self.producer.produce(self.topic, value=str(i).encode(),
                                              on_delivery=self.on_delivery)
                        break
                    except BufferError:  # the local queue is full while a leader is away
                        self.producer.poll(0.1)
                i += 1
            self.producer.poll(step)
        self.produced = i
        self.unflushed = self.producer.flush(150)

    def consume(self):
        self.consumer.subscribe([self.topic])
        while not self.stop_consuming.is_set():
            msgs = self.consumer.consume(500, 0.5)
            for m in msgs:
                if m.error() is None:
                    self.consumed.append(m.value().decode())
                elif m.error().fatal():
                    raise AssertionError(f"fatal consumer error {m.error()}")
                else:
                    self.consumer_errors.append(str(m.error()))
            if any(m.error() is None for m in msgs):
                self.commit()
        self.consumer.close()

    def commit(self):
        # Retried with the same offsets while a coordinator moves or dies, never skipped.
        deadline = time.time() + 60
        while True:
            try:
                self.consumer.commit(asynchronous=False)
                return
            except KafkaException as e:
                if time.time() > deadline:
                    raise AssertionError(f"commit kept failing for 60 s: {e}")
                time.sleep(0.2)

    def wait_flowing(self, records=300, timeout=60):
        """Until `records` more are acknowledged and read than when called."""
        acked, consumed = len(self.acked), len(self.consumed)
        wait_until(lambda: self.failure or (len(self.acked) >= acked + records
                                            and len(self.consumed) >= consumed + records),
                   timeout, f"{records} more records acknowledged and consumed")
        expect(not self.failure, self.failure)

    def check_exactly_once(self, timeout=120):
        """Stops the producer, lets the consumer read until it has every acknowledged record,
        and checks each was read once; returns a one-line summary."""
        self.stop_producing.set()
        self.threads[0].join(180)
        expect(not self.threads[0].is_alive(), "the producer did not stop within 180 s")
        want = set(self.acked) | set(self.earlier)
        wait_until(lambda: self.failure or want <= set(self.consumed), timeout,
                   f"every acknowledged record consumed ({len(want)} acknowledged,"
                   f" {len(set(self.consumed) & want)} consumed)")
        time.sleep(1.0)  # a record read twice would come now
        self.stop_consuming.set()
        self.threads[1].join(60)
        expect(not self.failure, self.failure)
        expect(not self.delivery_errors and self.unflushed == 0
               and len(self.acked) == self.produced,
               f"{self.produced} produced, {len(self.acked)} acknowledged, {self.unflushed} not"
               f" flushed, {len(self.delivery_errors)} delivery errors {self.delivery_errors[:3]}")
        counts = collections.Counter(self.consumed)
        dups = {v: k for v, k in counts.items() if k > 1}
        missing = want - counts.keys()
        strays = counts.keys() - want
        expect(not dups and not missing and not strays,
               f"{len(self.consumed)} consumed for {len(want)} acknowledged: {len(dups)} duplicated"
               f" (first {sorted(dups.items())[:5]}), {len(missing)} missing (first"
               f" {sorted(missing)[:5]}), {len(strays)} never acknowledged")
        return (f"{len(want)} acknowledged, 0 delivery errors, each consumed once"
                f" ({len(self.consumer_errors)} retriable consumer errors)")

    def abandon(self):
        """Stops both threads after a failed check (the producer's records are dropped)."""
        self.stop_producing.set()
        self.stop_consuming.set()
        for t in self.threads:
            t.join(200)


def under_load(c, topic, partitions, body, before=lambda: []):
    """Creates `topic`, calls before() (which returns the values it produced), runs body(load)
    with a Load on the topic, then checks exactly-once."""
    create_topic(c, topic, partitions)
    load = Load(c, topic, earlier=before())
    try:
        load.wait_flowing()
        said = body(load)
        load.wait_flowing()
        print(f"    {said}; {load.check_exactly_once()}", flush=True)
    finally:
        load.abandon()


def replicas(c, topic):
    """Every partition's replicas, by the CLI's `topic describe`."""
    d = cli_json(c, "topic", "describe", topic)
    return {p["partition"]: p["replicas"] for p in d["partitions"]}


def moves(c):
    """The moves under way (`topic reassignments --json` also names the throttle in force)."""
    return cli_json(c, "topic", "reassignments")["reassignments"]


def moves_done(c, timeout=MOVES_TIMEOUT):
    """Until `topic reassignments` lists no move; every wait for it is bounded."""
    last = []

    def done():
        last[:] = moves(c)
        return not last
    try:
        wait_until(done, timeout, "the moves to finish")
    except AssertionError as e:
        raise AssertionError(f"{e}: still {json.dumps(last)[:1500]}") from None


def log_bytes(c, broker, topic, partition):
    """The bytes of a partition's log on a broker's disk: its segments are sparse files (made
    full size up front), so what counts is the blocks written, not the length."""
    d = os.path.join(c.data_dir(broker), topic, str(partition))
    try:
        return sum(os.stat(os.path.join(d, f)).st_blocks * 512
                   for f in os.listdir(d) if f.endswith(".log"))
    except FileNotFoundError:  # not created yet, or a segment deleted between list and stat
        return 0


def wait_live(c, brokers, timeout=60):
    def live():
        s = cli_json(c, "cluster", "status")
        return sorted(b["id"] for b in s["brokers"] if not b["fenced"]) == sorted(brokers)
    wait_until(live, timeout, f"cluster status to list brokers {brokers} unfenced")


def a_fourth_broker_joins_and_takes_replicas(c):
    topic = name("ops-grow")

    def grow(load):
        new = c.add_broker()
        wait_live(c, [1, 2, 3, new])
        started = cli_ok(c, "cluster", "rebalance", "--execute")
        expect(started.strip() and "nothing to move" not in started, f"no moves: {started}")
        moves_done(c)
        on_new = [p for p, r in replicas(c, topic).items() if new in r]
        expect(on_new, f"broker {new} holds no replica of {topic}: {replicas(c, topic)}")
        # What the clients see: Kafka metadata names the newcomer as a replica too.
        md = admin(c).list_topics(topic, timeout=10).topics[topic]
        expect(sorted(p for p, m in md.partitions.items() if new in m.replicas) == sorted(on_new),
               f"Kafka metadata disagrees: {[(p, m.replicas) for p, m in md.partitions.items()]}")
        wait_healthy(c, topic, 6)
        return (f"broker {new} joined; {len(started.splitlines())} moves, {len(on_new)} of 6"
                f" partitions now on it")
    under_load(c, topic, 6, grow)


def a_move_whose_target_is_killed(c):
    """Partition 0 moves to a broker killed in the middle of copying it; partition 1 likewise,
    but that move is cancelled. Both are filled first so that a copy takes a while."""
    topic = name("ops-move")
    filled = 15000  # per partition

    def fill():
        # The bulk is in the keys: the consumer keeps only the values.
        p = Producer({"bootstrap.servers": c.bootstrap(), "enable.idempotence": True,
                      "acks": "all", "linger.ms": 20})
        values = [f"fill-{i}" for i in range(2 * filled)]
        for i, v in enumerate(values):
            while True:
                try:
                    p.produce(topic, partition=i % 2, key=b"k" * 1000, value=v.encode())
                    break
                except BufferError:
                    p.poll(0.1)
        expect(p.flush(120) == 0, "the fill was not all produced")
        return values

    def move_and_kill(partition):
        """Moves `partition` from its first replica to a broker outside it, and SIGKILLs that
        broker once it has copied a quarter of the partition's bytes."""
        old = replicas(c, topic)[partition]
        target_broker = next(b for b in sorted(c.nodes) if b not in old)
        target = [target_broker] + old[1:]
        total = log_bytes(c, old[1], topic, partition)
        cli_ok(c, "topic", "reassign", topic, "--partition", str(partition),
               "--replicas", ",".join(map(str, target)))
        wait_until(lambda: log_bytes(c, target_broker, topic, partition) >= total / 4, 60,
                   f"broker {target_broker} to copy a quarter of {topic}-{partition}",
                   interval=0.002)
        c.kill(target_broker)
        copied[partition] = log_bytes(c, target_broker, topic, partition) / max(total, 1)
        pending = [r for r in moves(c)
                   if r["topic"] == topic and r["partition"] == partition]
        expect(pending and target_broker not in pending[0]["isr"],
               f"the move of {topic}-{partition} finished before its target was killed: {pending}")
        return old, target, target_broker

    copied = {}

    def body(load):
        old0, target0, killed0 = move_and_kill(0)
        time.sleep(SESSION_MS / 1000 + 1)  # fenced by now: the move must wait, the partition serve
        load.wait_flowing(100)
        pending = moves(c)
        expect(any(r["partition"] == 0 for r in pending), f"the move gave up: {pending}")
        c.restart(killed0)
        moves_done(c)
        now = replicas(c, topic)
        expect(now[0] == target0, f"{topic}-0: replicas {now[0]}, want {target0}")

        old1, target1, killed1 = move_and_kill(1)
        load.wait_flowing(100)
        out = cli_ok(c, "topic", "reassign", topic, "--partition", "1", "--cancel")
        expect(out == f"cancelled the move of {topic}-1\n", out)
        moves_done(c)
        now = replicas(c, topic)
        expect(now[1] == old1, f"{topic}-1 after the cancel: replicas {now[1]}, want {old1}")
        c.restart(killed1)
        wait_healthy(c, topic, 2)
        return (f"{filled} records filled into each first; {topic}-0 {old0} -> {target0}, broker"
                f" {killed0} SIGKILLed with {copied[0]:.0%} copied and restarted, the move"
                f" finished; {topic}-1 {old1} -> {target1}, broker {killed1} SIGKILLed with"
                f" {copied[1]:.0%} copied, the move cancelled")
    under_load(c, topic, 2, body, before=fill)


def a_broker_is_decommissioned(c):
    topic = name("ops-decommission")

    def decommission(load):
        out = cli_ok(c, "cluster", "decommission", "1")
        expect("broker 1 is fenced once it holds no replica" in out, out)
        moves_done(c)
        left = [(t["name"], p["partition"]) for t in cli_json(c, "topic", "describe")
                for p in t["partitions"] if 1 in p["replicas"]]
        expect(not left, f"partitions still on broker 1: {left}")
        md = admin(c).list_topics(timeout=10).topics
        on_1 = [(t, p) for t, m in md.items() for p, pm in m.partitions.items() if 1 in pm.replicas]
        expect(not on_1, f"Kafka metadata still places replicas on broker 1: {on_1}")
        wait_healthy(c, topic, 4)
        # Emptied, it is fenced: the clients go on without it, then it is stopped.
        def fenced():
            status = cli_json(c, "cluster", "status")
            return any(b["id"] == 1 and b["fenced"] for b in status["brokers"]) and \
                1 in status["decommissioned"]
        wait_until(fenced, 30, "broker 1 fenced and listed as decommissioned")
        load.wait_flowing()
        code = c.terminate(1)
        expect(code == 0, f"broker 1 exited {code} on SIGTERM")
        load.wait_flowing()
        moves = sum(line.startswith("moving") for line in out.splitlines())
        return (f"broker 1 decommissioned ({moves} moves, no replica left on"
                f" it), fenced, and stopped")
    under_load(c, topic, 4, decommission)


def main():
    # `timeout` sends SIGTERM: exit through the finally below, so the brokers go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    c = Cluster(name="ops")
    try:
        check("a fourth broker joins, `cluster rebalance --execute` moves replicas onto it, under"
              " an idempotent acks=all producer and a group consumer: every acknowledged record"
              " consumed once", lambda: a_fourth_broker_joins_and_takes_replicas(c))
        check("a move's target SIGKILLed mid-move: the move finishes once it returns (another is"
              " cancelled cleanly), under the same clients: every acknowledged record consumed"
              " once", lambda: a_move_whose_target_is_killed(c))
        check("`cluster decommission 1` moves every replica off broker 1 and fences it, then it is stopped,"
              " under the same clients: every acknowledged record consumed once",
              lambda: a_broker_is_decommissioned(c))
        check("no broker log shows a panic",
              lambda: expect(not c.panicked(), f"panics in {c.panicked()}"))
    finally:
        c.shutdown()
    finish()


if __name__ == "__main__":
    sys.exit(main())
