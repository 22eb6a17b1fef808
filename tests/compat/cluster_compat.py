"""Unmodified Kafka clients against a three-broker minikafka cluster (issue 14), run by
scripts/cluster-compat: the script starts the brokers itself (the binary in MINIKAFKA_BIN, data
under WORK_DIR, free loopback ports, --broker-session-timeout-ms 2000) so that it can SIGKILL and
restart them.

- kcat -L lists every broker and, per partition, the leader and three in-sync replicas.
- confluent-kafka, idempotent with acks=all, keeps producing while its partition's leader is
  SIGKILLed (restarted later): no delivery error, and kcat then reads every record exactly once.
- kcat as an idempotent acks=all producer through the same kind of kill: the same.
- a confluent-kafka group consumer commits, its coordinator's broker is SIGKILLed, and it goes on
  from its committed offsets: every record exactly once, and a new member of the group afterwards
  finds nothing left and the committed offsets at the end.

Prints `PASS name` / `FAIL name: why` lines (common.check); every wait is bounded.
"""
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

os.environ.setdefault("KAFKA_BOOTSTRAP", "unused")  # common.py wants it; the cluster sets its own
from common import check, expect, finish, name, wait_until  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

BIN = os.environ["MINIKAFKA_BIN"]
WORK = os.environ["WORK_DIR"]
SESSION_MS = 2000


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Cluster:
    """Three `minikafka broker` processes, node ids 1-3, killed on exit."""

    def __init__(self, size=3):
        self.nodes = {}
        for i in range(1, size + 1):
            self.nodes[i] = {"native": free_port(), "kafka": free_port(), "cluster": free_port(),
                             "proc": None, "log": os.path.join(WORK, f"cluster-broker{i}.log")}
        self.controllers = ",".join(f"{i}@127.0.0.1:{n['cluster']}" for i, n in self.nodes.items())
        for i in self.nodes:
            self.spawn(i)
        for i in self.nodes:
            self.wait_listening(i)

    def spawn(self, i):
        n = self.nodes[i]
        log = open(n["log"], "ab")
        n["proc"] = subprocess.Popen(
            [BIN, "broker", "--node-id", str(i), "--data-dir", os.path.join(WORK, f"cluster{i}"),
             "--listen", f"127.0.0.1:{n['native']}", "--kafka-listen", f"127.0.0.1:{n['kafka']}",
             "--cluster-listen", f"127.0.0.1:{n['cluster']}", "--controllers", self.controllers,
             "--http-listen", "off", "--broker-session-timeout-ms", str(SESSION_MS)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")))

    def wait_listening(self, i, timeout=60):
        n = self.nodes[i]

        def up():
            if n["proc"].poll() is not None:
                raise AssertionError(f"broker {i} exited: {open(n['log']).read()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", n["kafka"]), 0.2).close()
                return True
            except OSError:
                return False
        wait_until(up, timeout, f"broker {i} listening")

    def ensure_running(self):
        """Restarts any broker a failed check left dead, and waits for it."""
        for i, n in self.nodes.items():
            if n["proc"].poll() is not None:
                self.restart(i)

    def kill(self, i):
        p = self.nodes[i]["proc"]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def restart(self, i):
        self.spawn(i)
        self.wait_listening(i)

    def bootstrap(self, exclude=()):
        return ",".join(f"127.0.0.1:{n['kafka']}" for i, n in self.nodes.items() if i not in exclude)

    def shutdown(self):
        for n in self.nodes.values():
            if n["proc"] and n["proc"].poll() is None:
                n["proc"].kill()
                n["proc"].wait()

    def panicked(self):
        return [i for i, n in self.nodes.items() if "panicked" in open(n["log"], errors="replace").read()]


def admin(c):
    return AdminClient({"bootstrap.servers": c.bootstrap()})


def create_topic(c, topic, partitions):
    c.ensure_running()
    a = admin(c)  # kept alive until the future resolves: a dropped client cancels it
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=3)],
                         operation_timeout=30)
    fs[topic].result(60)
    wait_healthy(c, topic, partitions)


def wait_healthy(c, topic, partitions, timeout=120):
    """Until metadata shows every partition with a leader and three in-sync replicas."""
    def healthy():
        try:
            md = admin(c).list_topics(topic, timeout=5).topics[topic]
        except KafkaException:
            return False
        return (md.error is None and len(md.partitions) == partitions
                and all(p.leader >= 0 and len(p.isrs) == 3 for p in md.partitions.values()))
    wait_until(healthy, timeout, f"{topic}: a leader and 3 in-sync replicas for every partition")


def leader_of(c, topic, partition):
    return admin(c).list_topics(topic, timeout=10).topics[topic].partitions[partition].leader


def kcat_read_all(c, topic, expect_n, timeout=120):
    """Every value of every partition of `topic`, read from the beginning with kcat."""
    out = subprocess.run(["kcat", "-b", c.bootstrap(), "-C", "-t", topic, "-o", "beginning", "-e",
                          "-q", "-f", "%s\n"], capture_output=True, timeout=timeout, text=True)
    expect(out.returncode == 0, f"kcat -C failed: {out.stderr[-500:]}")
    return out.stdout.splitlines()


def exactly_once(values, n):
    counts = collections.Counter(values)
    missing = [i for i in range(n) if counts.get(str(i), 0) == 0]
    dups = {v: k for v, k in counts.items() if k > 1}
    expect(not missing and not dups and len(values) == n,
           f"{len(values)} read, {len(missing)} missing (first {missing[:5]}), {len(dups)} duplicated"
           f" (first {list(dups.items())[:5]})")


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
