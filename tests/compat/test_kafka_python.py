"""kafka-python against minikafka: metadata, admin, keyed lz4 produce with acks=all, exact
manual-assignment consume, the default (idempotent) producer, a two-member group with
leave/takeover, and a group restart that resumes from committed offsets."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from common import BOOTSTRAP, check, expect, finish, messages, name, wait_until

N = 10_000
TOPIC = name("kp-orders")
GROUP_TOPIC = name("kp-group")
IDEM_TOPIC = name("kp-idem")
GROUP = name("kp-g")


def produce(topic, msgs, **cfg):
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, **cfg)
    futures = [p.send(topic, key=k, value=v) for k, v in msgs]
    p.flush(60)
    metas = [f.get(timeout=60) for f in futures]
    p.close()
    return metas


def test_metadata():
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    topics = c.topics()
    expect(isinstance(topics, set), "topics listed")
    brokers = c._client.cluster.brokers()
    expect(len(brokers) == 1, f"brokers {brokers}")
    b = list(brokers)[0]
    expect(f"{b.host}:{b.port}" == BOOTSTRAP, f"advertised {b.host}:{b.port}")
    c.close()


def test_create_topic():
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                         for t in (TOPIC, GROUP_TOPIC, IDEM_TOPIC)])
    admin.close()
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    wait_until(lambda: c.partitions_for_topic(TOPIC) == {0, 1, 2}, 20, "3 partitions in metadata")
    c.close()


def consume_assigned(topic, want, timeout=60):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(3)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = {0: [], 1: [], 2: []}
    deadline = time.time() + timeout
    while sum(len(v) for v in got.values()) < want and time.time() < deadline:
        for tp, recs in c.poll(timeout_ms=500).items():
            for r in recs:
                expect(r.offset == len(got[tp.partition]), f"offset {r.offset} in p{tp.partition}")
                got[tp.partition].append((r.key, r.value))
    time.sleep(1)
    for tp, recs in c.poll(timeout_ms=500).items():
        got[tp.partition].extend((r.key, r.value) for r in recs)
    c.close()
    return got


def test_produce_consume_exact():
    msgs = messages(N, "kp")
    metas = produce(TOPIC, msgs, acks="all", compression_type="lz4", linger_ms=5)
    expect(len(metas) == N, "every send acknowledged")
    got = consume_assigned(TOPIC, N)
    total = sum(len(v) for v in got.values())
    expect(total == N, f"consumed {total} of {N}")
    order = {v: i for i, (_, v) in enumerate(msgs)}
    for p, recs in got.items():
        idx = [order[v] for _, v in recs]
        expect(idx == sorted(idx), f"p{p} out of order")
    expect(sorted(r for recs in got.values() for r in recs) == sorted(msgs), "payloads differ")
    # Offsets the producer was told match where the consumer found each record.
    pos = {(p, i): v for p, recs in got.items() for i, (_, v) in enumerate(recs)}
    for (k, v), m in zip(msgs, metas):
        expect(pos[(m.partition, m.offset)] == v, "acknowledged offset differs from stored one")


def test_default_idempotent_producer():
    msgs = messages(2000, "kp-idem")
    metas = produce(IDEM_TOPIC, msgs)  # kafka-python defaults: acks=all, idempotence on
    expect(len(metas) == len(msgs), "all acknowledged")
    got = consume_assigned(IDEM_TOPIC, len(msgs))
    expect(sorted(r for recs in got.values() for r in recs) == sorted(msgs), "payloads differ")


def group_consumer():
    return KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=GROUP, enable_auto_commit=False,
                         auto_offset_reset="earliest", session_timeout_ms=10000,
                         heartbeat_interval_ms=500)


def drain(consumers, want, timeout):
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        for c in consumers:
            for tp, recs in c.poll(timeout_ms=1000).items():
                got.extend((tp.partition, r.offset, r.value) for r in recs)
    end = time.time() + 2
    while time.time() < end:
        for c in consumers:
            for tp, recs in c.poll(timeout_ms=200).items():
                got.extend((tp.partition, r.offset, r.value) for r in recs)
    return got


def test_group_share_leave_takeover_restart():
    a, b = group_consumer(), group_consumer()
    a.subscribe([GROUP_TOPIC])
    b.subscribe([GROUP_TOPIC])

    # Generous poll timeouts: kafka-python 3.0 can leave heartbeats disabled when a join
    # completes after poll() already returned on its timeout.
    def both_assigned():
        a.poll(timeout_ms=1000)
        b.poll(timeout_ms=1000)
        pa = {tp.partition for tp in a.assignment()}
        pb = {tp.partition for tp in b.assignment()}
        return pa and pb and not (pa & pb) and (pa | pb) == {0, 1, 2}

    wait_until(both_assigned, 60, "both members to share the 3 partitions")
    first = messages(3000, "kp-g1")
    produce(GROUP_TOPIC, first, acks="all")
    got = drain([a, b], len(first), 60)
    expect(sorted(v for _, _, v in got) == sorted(v for _, v in first), f"shared consume got {len(got)}")
    a.commit()
    b.commit()

    a.close()  # leaves the group
    wait_until(lambda: (b.poll(timeout_ms=1000), {tp.partition for tp in b.assignment()} == {0, 1, 2})[1],
               60, "the survivor to take over all partitions")
    second = messages(300, "kp-g2")
    produce(GROUP_TOPIC, second, acks="all")
    got = drain([b], len(second), 60)
    expect(sorted(v for _, _, v in got) == sorted(v for _, v in second),
           f"takeover got {len(got)} (lost or repeated)")
    b.commit()
    b.close()

    third = messages(300, "kp-g3")
    produce(GROUP_TOPIC, third, acks="all")
    c = group_consumer()
    c.subscribe([GROUP_TOPIC])
    got = drain([c], len(third), 60)
    c.close()
    expect(sorted(v for _, _, v in got) == sorted(v for _, v in third),
           f"restart got {len(got)} of {len(third)} (resume from committed offsets)")



if __name__ == "__main__":
    check("kafka-python: metadata advertises the listener", test_metadata)
    check("kafka-python: create topic with 3 partitions", test_create_topic)
    check("kafka-python: 10,000 keyed lz4 acks=all, exact consume by assignment", test_produce_consume_exact)
    check("kafka-python: default idempotent producer", test_default_idempotent_producer)
    check("kafka-python: group share, leave, takeover, restart resumes", test_group_share_leave_takeover_restart)
    finish()
