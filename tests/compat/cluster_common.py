"""What the cluster checks (cluster_compat.py, cluster_ops.py; run by scripts/cluster-compat)
share: brokers started, killed and restarted by the script itself (the binary in MINIKAFKA_BIN,
data and logs under WORK_DIR, free loopback ports, --broker-session-timeout-ms 2000), the
minikafka CLI against them, and the exactly-once check of what was read.
"""
import collections
import json
import os
import random
import signal
import socket
import subprocess

os.environ.setdefault("KAFKA_BOOTSTRAP", "unused")  # common.py wants it; the cluster sets its own
from common import expect, wait_until  # noqa: E402

from confluent_kafka import KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

BIN = os.environ["MINIKAFKA_BIN"]
WORK = os.environ["WORK_DIR"]
SESSION_MS = 2000


_HANDED_OUT = set()


def _ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A free port below the kernel's ephemeral range, never handed out twice here: a port from
    that range can be taken meanwhile by any outgoing connection (the clients' own), and a
    restarted broker must get its listener back."""
    hi = max(_ephemeral_start() - 1, 11000)
    for _ in range(10000):
        port = random.randint(10000, hi)
        if port in _HANDED_OUT:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


class Cluster:
    """`minikafka broker` processes, node ids 1-`size` (the controllers), killed on exit.
    `name` keeps the data dirs and logs of two clusters of one run apart."""

    def __init__(self, size=3, name="cluster"):
        self.name = name
        self.nodes = {}
        for i in range(1, size + 1):
            self.nodes[i] = self.node(i)
        self.controllers = ",".join(f"{i}@127.0.0.1:{n['cluster']}" for i, n in self.nodes.items())
        for i in self.nodes:
            self.spawn(i)
        for i in self.nodes:
            self.wait_listening(i)

    def node(self, i):
        return {"native": free_port(), "kafka": free_port(), "cluster": free_port(), "proc": None,
                "log": os.path.join(WORK, f"{self.name}-broker{i}.log")}

    def add_broker(self):
        """Starts one more broker, not a controller: it names the same controllers as the
        others and joins as a learner of the metadata. Returns its id."""
        i = max(self.nodes) + 1
        self.nodes[i] = self.node(i)
        self.spawn(i)
        self.wait_listening(i)
        return i

    def data_dir(self, i):
        return os.path.join(WORK, f"{self.name}{i}")

    def spawn(self, i):
        n = self.nodes[i]
        log = open(n["log"], "ab")
        n["proc"] = subprocess.Popen(
            [BIN, "broker", "--node-id", str(i),
             "--data-dir", self.data_dir(i),
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

    def terminate(self, i, timeout=30):
        """SIGTERM, as an operator stops a broker; returns its exit code."""
        p = self.nodes[i]["proc"]
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"broker {i} did not exit within {timeout} s of SIGTERM") from None

    def restart(self, i):
        self.spawn(i)
        self.wait_listening(i)

    def bootstrap(self, exclude=()):
        return ",".join(f"127.0.0.1:{n['kafka']}" for i, n in self.nodes.items() if i not in exclude)

    def native(self):
        """Every broker's native address, for the CLI's comma-separated --broker list."""
        return ",".join(f"127.0.0.1:{n['native']}" for n in self.nodes.values())

    def shutdown(self):
        for n in self.nodes.values():
            if n["proc"] and n["proc"].poll() is None:
                n["proc"].kill()
                n["proc"].wait()

    def panicked(self):
        return [i for i, n in self.nodes.items() if "panicked" in open(n["log"], errors="replace").read()]


def cli(c, *args, timeout=60):
    """Runs `minikafka ARGS` against the whole cluster; returns the completed process."""
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, MINIKAFKA_BROKER=c.native()))


def cli_ok(c, *args, timeout=60):
    out = cli(c, *args, timeout=timeout)
    expect(out.returncode == 0,
           f"minikafka {' '.join(args)} exited {out.returncode}: {out.stderr[-800:]}")
    return out.stdout


def cli_json(c, *args):
    return json.loads(cli_ok(c, *args, "--json"))


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
