"""confluent-kafka (librdkafka) against minikafka: metadata, admin, keyed lz4 produce with
acks=all, exact manual-assignment consume, a two-member group with leave/takeover, and a group
restart that resumes from committed offsets; a transactional producer refused at once."""
import time

from confluent_kafka import (Consumer, KafkaError, KafkaException, OFFSET_BEGINNING, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from common import BOOTSTRAP, check, expect, finish, messages, name, wait_until

N = 10_000
TOPIC = name("cf-orders")
GROUP_TOPIC = name("cf-group")
GROUP = name("cf-g")


def produce(topic, msgs):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "compression.type": "lz4",
                  "linger.ms": 5})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    for k, v in msgs:
        while True:
            try:
                p.produce(topic, key=k, value=v, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(60)
    expect(left == 0, f"{left} messages not delivered")
    expect(not errors, f"delivery errors: {errors[:3]}")


def test_metadata():
    md = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=10)
    expect(len(md.brokers) == 1, f"brokers: {md.brokers}")
    b = list(md.brokers.values())[0]
    expect(f"{b.host}:{b.port}" == BOOTSTRAP, f"advertised {b.host}:{b.port}")
    expect(md.controller_id == b.id, "controller is ourselves")


def create(topic):
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    fs = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    for f in fs.values():
        f.result(timeout=10)
    md = admin.list_topics(topic=topic, timeout=10)
    expect(len(md.topics[topic].partitions) == 3, "3 partitions")


def test_create_topic():
    create(TOPIC)
    create(GROUP_TOPIC)


def test_produce_consume_exact():
    msgs = messages(N, "cf")
    produce(TOPIC, msgs)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": name("cf-manual"),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in range(3)])
    got = {0: [], 1: [], 2: []}
    eof = set()
    deadline = time.time() + 60
    while len(eof) < 3 and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise AssertionError(m.error())
        eof.discard(m.partition())
        expect(m.offset() == len(got[m.partition()]), f"offset {m.offset()} in p{m.partition()}")
        got[m.partition()].append((m.key(), m.value()))
    c.close()
    total = sum(len(v) for v in got.values())
    expect(total == N, f"consumed {total} of {N}")
    # Same key -> same partition, and each partition keeps produce order.
    order = {v: i for i, (_, v) in enumerate(msgs)}
    for p, recs in got.items():
        idx = [order[v] for _, v in recs]
        expect(idx == sorted(idx), f"p{p} out of order")
        expect(len({k for k, _ in recs} & set().union(*[{k for k, _ in got[q]} for q in got if q != p])) == 0,
               "a key landed in two partitions")
    expect(sorted(r for recs in got.values() for r in recs) == sorted(msgs), "payloads differ")


def group_consumer():
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": GROUP, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
                     "heartbeat.interval.ms": 500})


def drain(consumers, want, timeout):
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        for c in consumers:
            for m in c.consume(num_messages=1000, timeout=0.1):
                if not m.error():
                    got.append((m.partition(), m.offset(), m.value()))
    # Anything beyond `want` is a duplicate or a stray: look briefly.
    end = time.time() + 2
    while time.time() < end:
        for c in consumers:
            for m in c.consume(num_messages=1000, timeout=0.1):
                if not m.error():
                    got.append((m.partition(), m.offset(), m.value()))
    return got


def test_group_share_leave_takeover_restart():
    a, b = group_consumer(), group_consumer()
    a.subscribe([GROUP_TOPIC])
    b.subscribe([GROUP_TOPIC])

    def both_assigned():
        a.poll(0.1)
        b.poll(0.1)
        pa = {tp.partition for tp in a.assignment()}
        pb = {tp.partition for tp in b.assignment()}
        return pa and pb and not (pa & pb) and (pa | pb) == {0, 1, 2}

    wait_until(both_assigned, 60, "both members to share the 3 partitions")
    first = messages(3000, "cf-g1")
    produce(GROUP_TOPIC, first)
    got = drain([a, b], len(first), 60)
    expect(sorted(v for _, _, v in got) == sorted(v for _, v in first), f"shared consume got {len(got)}")
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)

    a.close()  # leaves the group: b takes over every partition
    wait_until(lambda: (b.poll(0.1), {tp.partition for tp in b.assignment()} == {0, 1, 2})[1], 60,
               "the survivor to take over all partitions")
    second = messages(300, "cf-g2")
    produce(GROUP_TOPIC, second)
    got = drain([b], len(second), 60)
    expect(sorted(v for _, _, v in got) == sorted(v for _, v in second),
           f"takeover got {len(got)} (lost or repeated)")
    b.commit(asynchronous=False)
    b.close()

    third = messages(300, "cf-g3")
    produce(GROUP_TOPIC, third)
    c = group_consumer()
    c.subscribe([GROUP_TOPIC])
    got = drain([c], len(third), 60)
    c.close()
    expect(sorted(v for _, _, v in got) == sorted(v for _, v in third),
           f"restart got {len(got)} of {len(third)} (resume from committed offsets)")


def test_transactional_producer_refused_at_once():
    # Transactions are out of scope: init_transactions() must fail fast with a fatal error, not
    # retry until its own timeout (librdkafka's FindCoordinator answer decides that).
    p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": name("cf-txn")})
    start = time.time()
    try:
        p.init_transactions(60)
    except KafkaException as e:
        err = e.args[0]
    else:
        raise AssertionError("init_transactions() succeeded against a broker without transactions")
    took = time.time() - start
    expect(took < 15, f"init_transactions() took {took:.1f}s to fail: {err}")
    expect(err.fatal(), f"not fatal: {err}")
    expect(not err.retriable(), f"retriable: {err}")
    expect(err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, f"code: {err}")
    expect("transactions are not supported" in err.str(), f"no reason given: {err}")


def test_group_admin():
    """Issue 13: the AdminClient sees an active group (list, describe with its member), cannot
    delete it while the member is live, and resets and deletes it once the member left."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    group = name("cf-admin")
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "client.id": "cf-admin-app",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([GROUP_TOPIC])
    deadline = time.time() + 30
    while not c.assignment() and time.time() < deadline:
        c.poll(0.2)
    expect(c.assignment(), "the consumer got partitions")
    c.commit(offsets=[TopicPartition(GROUP_TOPIC, 0, 1)], asynchronous=False)
    listed = {g.group_id: g for g in admin.list_consumer_groups().result(timeout=10).valid}
    expect(group in listed, f"active group listed: {sorted(listed)}")
    expect(str(listed[group].state) == "ConsumerGroupState.STABLE", f"state {listed[group].state}")
    d = admin.describe_consumer_groups([group])[group].result(timeout=10)
    expect(len(d.members) == 1, f"members {d.members}")
    m = d.members[0]
    expect(m.client_id == "cf-admin-app" and m.host == "/127.0.0.1", f"member {m.client_id} {m.host}")
    expect(len(m.assignment.topic_partitions) == 3, f"assignment {m.assignment.topic_partitions}")
    try:
        admin.delete_consumer_groups([group])[group].result(timeout=10)
        raise AssertionError("a group with a live member was deleted")
    except KafkaException as e:
        expect(e.args[0].code() == KafkaError.NON_EMPTY_GROUP, f"code: {e}")
    c.close()
    admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(GROUP_TOPIC, 0, 0)])])[group].result(timeout=10)
    off = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
    expect([(tp.partition, tp.offset) for tp in off.topic_partitions] == [(0, 0)],
           f"offsets {off.topic_partitions}")
    admin.delete_consumer_groups([group])[group].result(timeout=10)
    listed = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid]
    expect(group not in listed, f"deleted group still listed: {listed}")


if __name__ == "__main__":
    check("confluent: metadata advertises the listener", test_metadata)
    check("confluent: create topic with 3 partitions", test_create_topic)
    check("confluent: 10,000 keyed lz4 acks=all, exact consume by assignment", test_produce_consume_exact)
    check("confluent: group share, leave, takeover, restart resumes", test_group_share_leave_takeover_restart)
    check("confluent: transactional producer fails at once, fatal", test_transactional_producer_refused_at_once)
    check("confluent: group admin: list, describe, delete refused then done, offsets altered", test_group_admin)
    finish()
