"""Unmodified Kafka clients against a three-broker minikafka cluster (issue 14), run by
scripts/cluster-compat: the script starts the brokers itself (cluster_common.Cluster) so that it
can SIGKILL and restart them.

- kcat -L lists every broker and, per partition, the leader and three in-sync replicas.
- confluent-kafka, idempotent with acks=all, keeps producing while its partition's leader is
  SIGKILLed (restarted later): no delivery error, and kcat then reads every record exactly once.
- kcat as an idempotent acks=all producer through the same kind of kill: the same.
- a confluent-kafka group consumer commits, its coordinator's broker is SIGKILLed, and it goes on
  from its committed offsets: every record exactly once, and a new member of the group afterwards
  finds nothing left and the committed offsets at the end.

Prints `PASS name` / `FAIL name: why` lines (common.check); every wait is bounded.
"""
import json
import signal
import subprocess
import sys
import threading
import time

from cluster_common import (Cluster, admin, create_topic, exactly_once, kcat_read_all,
                            leader_of, wait_healthy)
from common import check, expect, finish, name

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def kill_leader_when(c, topic, progress, at, restart_after=3.0):
    """SIGKILLs the leader of partition 0 once progress() reaches `at`; restarts it later.
    Returns the thread and a dict that gets the killed broker's id."""
    state = {}

    def run():
        try:
            deadline = time.time() + 120
            while progress() < at and time.time() < deadline:
                time.sleep(0.02)
            victim = leader_of(c, topic, 0)
            at_kill = progress()
            c.kill(victim)
            state["killed"], state["killed_at"] = victim, at_kill
            time.sleep(restart_after)
            c.restart(victim)
            state["restarted"] = True
        except Exception as e:  # noqa: BLE001 - reported by the check that started it
            state["error"] = repr(e)
    t = threading.Thread(target=run)
    t.start()
    return t, state


def confluent_producer_through_a_leader_kill(c):
    topic = name("cluster-idem")
    create_topic(c, topic, 1)
    n, seconds = 20000, 8.0
    p = Producer({"bootstrap.servers": c.bootstrap(), "enable.idempotence": True, "acks": "all",
                  "linger.ms": 20, "message.timeout.ms": 120000, "retry.backoff.ms": 100,
                  "reconnect.backoff.max.ms": 500, "topic.metadata.refresh.interval.ms": 1000})
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err is not None else delivered).append(str(err) if err else msg.offset())
    killer, state = kill_leader_when(c, topic, lambda: len(delivered), n // 3)
    chunk = 100
    for start in range(0, n, chunk):
        for i in range(start, start + chunk):
            while True:
                try:
                    p.produce(topic, value=str(i).encode(), on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full while the leader is away
                    p.poll(0.1)
        p.poll(seconds / (n / chunk))
    left = p.flush(150)
    killer.join(180)
    expect("error" not in state and "restarted" in state,
           f"the leader was not killed and restarted: {state}")
    expect(not errors and left == 0 and len(delivered) == n,
           f"{len(delivered)} delivered, {len(errors)} delivery errors {errors[:3]}, {left} not flushed")
    wait_healthy(c, topic, 1)
    exactly_once(kcat_read_all(c, topic, n), n)
    print(f"    leader {state['killed']} SIGKILLed at {state['killed_at']} delivered; {n} delivered,"
          f" 0 errors, each read once", flush=True)


def kcat_producer_through_a_leader_kill(c):
    topic = name("cluster-kcat")
    create_topic(c, topic, 1)
    n = 6000
    proc = subprocess.Popen(
        ["kcat", "-b", c.bootstrap(), "-P", "-t", topic, "-X", "enable.idempotence=true",
         "-X", "acks=all", "-X", "message.timeout.ms=120000", "-X", "linger.ms=20"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = [0]
    killer, state = kill_leader_when(c, topic, lambda: sent[0], n // 3)
    try:
        for start in range(0, n, 100):
            proc.stdin.write("".join(f"{i}\n" for i in range(start, start + 100)).encode())
            proc.stdin.flush()
            sent[0] = start + 100
            time.sleep(0.03)
    except BrokenPipeError:
        proc.kill()
        killer.join(180)
        raise AssertionError(f"kcat -P exited early ({proc.wait()}): {proc.stderr.read().decode()[-800:]}")
    try:
        _, err = proc.communicate(timeout=180)  # closes kcat's stdin: it flushes and exits
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("kcat -P did not finish within 180 s")
    killer.join(180)
    err = err.decode(errors="replace")
    expect("error" not in state and "restarted" in state,
           f"the leader was not killed and restarted: {state}")
    # A dead leader's connection shows as "% ERROR: ... Broker transport failure" lines: not a
    # delivery error. A record librdkafka gave up on shows as "Delivery failed".
    expect(proc.returncode == 0 and "Delivery failed" not in err,
           f"kcat -P exited {proc.returncode}: {err[-800:]}")
    wait_healthy(c, topic, 1)
    exactly_once(kcat_read_all(c, topic, n), n)
    print(f"    leader {state['killed']} SIGKILLed with {state['killed_at']} lines written; {n} read once",
          flush=True)


def group_consumer_through_a_coordinator_kill(c):
    topic, group = name("cluster-group"), name("cluster-g")
    create_topic(c, topic, 3)
    n = 3000
    p = Producer({"bootstrap.servers": c.bootstrap(), "enable.idempotence": True, "acks": "all"})
    for i in range(n):
        p.produce(topic, partition=i % 3, value=str(i).encode())
    expect(p.flush(60) == 0, "the records were not all produced")
    conf = {"bootstrap.servers": c.bootstrap(), "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": 30000,
            "topic.metadata.refresh.interval.ms": 1000}
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    got = []

    def consume_until(count, timeout):
        deadline = time.time() + timeout
        while len(got) < count and time.time() < deadline:
            msgs = consumer.consume(200, 0.5)
            for m in msgs:
                if m.error() is None:
                    got.append(m.value().decode())
            if msgs:
                # Synchronous commits, retried: a commit refused while the coordinator moves is
                # retried with the same offsets, never skipped.
                commit_deadline = time.time() + 60
                while True:
                    try:
                        consumer.commit(asynchronous=False)
                        break
                    except KafkaException as e:
                        if time.time() > commit_deadline:
                            raise AssertionError(f"commit kept failing: {e}")
                        time.sleep(0.2)
    consume_until(n // 2, 120)
    expect(len(got) >= n // 2, f"only {len(got)} consumed before the kill")
    a = admin(c)
    described = a.describe_consumer_groups([group])[group].result(30)
    coordinator = described.coordinator.id
    c.kill(coordinator)
    consume_until(n, 180)
    consumer.close()
    exactly_once(got, n)
    c.restart(coordinator)
    # A new member of the group starts from the committed offsets: at the end, nothing left.
    reader = Consumer(conf)
    committed = reader.committed([TopicPartition(topic, i) for i in range(3)], timeout=30)
    reader.close()
    expect(sum(tp.offset for tp in committed) == n, f"committed offsets {committed} do not add up to {n}")
    late = Consumer(conf)
    late.subscribe([topic])
    extra = [m for m in late.consume(100, 5.0) if m.error() is None]
    late.close()
    expect(not extra, f"a new member got {len(extra)} already-committed records")
    print(f"    coordinator broker {coordinator} SIGKILLed after {n // 2}+ records; {n} consumed once,"
          f" committed offsets at the end", flush=True)


def kcat_lists_the_cluster(c):
    topic = name("cluster-meta")
    create_topic(c, topic, 3)
    out = subprocess.run(["kcat", "-b", c.bootstrap(), "-L", "-J", "-t", topic], capture_output=True,
                         timeout=60, text=True)
    expect(out.returncode == 0, f"kcat -L failed: {out.stderr[-300:]}")
    md = json.loads(out.stdout)
    expect(sorted(b["id"] for b in md["brokers"]) == [1, 2, 3], f"brokers {md['brokers']}")
    parts = md["topics"][0]["partitions"]
    expect(len(parts) == 3 and all(len(p["isrs"]) == 3 and p["leader"] in (1, 2, 3) for p in parts),
           f"partitions {parts}")
    leaders = sorted(p["leader"] for p in parts)
    print(f"    brokers 1, 2, 3; leaders of the 3 partitions: {leaders}", flush=True)


def main():
    # `timeout` sends SIGTERM: exit through the finally below, so the brokers go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    c = Cluster()
    try:
        check("kcat -L: three brokers, each partition with a leader and 3 in-sync replicas",
              lambda: kcat_lists_the_cluster(c))
        check("confluent-kafka idempotent acks=all producer: its partition leader SIGKILLed,"
              " no delivery error, every record consumed exactly once",
              lambda: confluent_producer_through_a_leader_kill(c))
        check("kcat idempotent acks=all producer: its partition leader SIGKILLed, no delivery"
              " error, every record consumed exactly once",
              lambda: kcat_producer_through_a_leader_kill(c))
        check("confluent-kafka group consumer: its coordinator's broker SIGKILLed, it continues"
              " from the committed offsets, every record once",
              lambda: group_consumer_through_a_coordinator_kill(c))
        check("no broker log shows a panic", lambda: expect(not c.panicked(), f"panics in {c.panicked()}"))
    finally:
        c.shutdown()
    finish()


if __name__ == "__main__":
    sys.exit(main())
