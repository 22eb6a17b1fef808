"""Null values (tombstones) and repeated header keys round trip through minikafka: records
produced by confluent-kafka and by kafka-python are read back, identically, by confluent-kafka,
kafka-python and `minikafka consume --format json`: a null value stays null (not empty), an empty
value stays empty, a null key stays null, headers keep their order, a repeated key and a null
header value. kafka-python's producer accepts only bytes header values, so the null header value
comes from confluent-kafka alone. Needs MINIKAFKA_BIN and MINIKAFKA_BROKER (native address)."""
import json
import os
import subprocess
import time

from confluent_kafka import Consumer, KafkaError, OFFSET_BEGINNING, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition

from common import BOOTSTRAP, check, expect, finish, name

BIN = os.environ["MINIKAFKA_BIN"]
NATIVE = os.environ["MINIKAFKA_BROKER"]

# (key, value, headers): what each producer sends, in order, to one partition.
CF_RECORDS = [
    (b"user-1", b'{"name":"a"}', [("trace", b"t1"), ("hop", b"edge"), ("hop", b"core")]),
    (b"user-1", None, [("hop", b"1"), ("hop", b"2"), ("reason", None)]),  # tombstone
    (b"user-2", b"", [("empty", b"")]),  # empty, not null
    (None, b"no key", []),
    (b"user-3", None, []),  # tombstone without headers
]
KP_RECORDS = [
    (b"user-1", b'{"name":"b"}', [("hop", b"edge"), ("trace", b"t2"), ("hop", b"core")]),
    (b"user-1", None, [("hop", b"1"), ("hop", b"2"), ("hop", b"")]),  # tombstone
    (b"user-2", b"", []),
    (None, b"no key", [("k", b"v")]),
    (b"user-3", None, []),
]
CF_TOPIC = name("nh-confluent")
KP_TOPIC = name("nh-kafka-python")


def expected(records):
    return [(i, k, v, list(h)) for i, (k, v, h) in enumerate(records)]


def create_topics():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept alive until the results
    fs = admin.create_topics(
        [NewTopic(t, num_partitions=1, replication_factor=1) for t in (CF_TOPIC, KP_TOPIC)])
    for f in fs.values():
        f.result(timeout=10)


def produce_confluent():
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "compression.type": "zstd"})
    errors = []
    for k, v, h in CF_RECORDS:
        p.produce(CF_TOPIC, key=k, value=v, headers=h,
                  on_delivery=lambda err, _m: err is not None and errors.append(err))
    expect(p.flush(30) == 0, "not all delivered")
    expect(not errors, f"delivery errors: {errors}")


def produce_kafka_python():
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", compression_type="lz4")
    metas = [p.send(KP_TOPIC, key=k, value=v, headers=h).get(timeout=30) for k, v, h in KP_RECORDS]
    p.close()
    expect([m.offset for m in metas] == list(range(len(KP_RECORDS))), f"offsets {metas}")


def consume_confluent(topic, want):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": name("nh-cf"),
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF and len(got) >= want:
                break
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(m.error())
        got.append((m.offset(), m.key(), m.value(), list(m.headers() or [])))
    c.close()
    return got


def consume_kafka_python(topic, want):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
    tp = KpTopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    got = []
    deadline = time.time() + 30
    while len(got) < want and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.extend((r.offset, r.key, r.value, list(r.headers)) for r in recs)
    c.close()
    return got


def consume_minikafka(topic, _want):
    out = subprocess.run([BIN, "consume", topic, "--from-beginning", "--format", "json",
                          "--broker", NATIVE], capture_output=True, timeout=60, check=True).stdout

    def b(s):
        return None if s is None else s.encode()

    got = []
    for line in out.decode().splitlines():
        r = json.loads(line)
        got.append((r["offset"], b(r["key"]), b(r["value"]), [(k, b(v)) for k, v in r["headers"]]))
    return got


def check_round_trip(topic, records, consume):
    def run():
        got = consume(topic, len(records))
        want = expected(records)
        for g, w in zip(got, want):
            expect(g == w, f"offset {w[0]}: got {g}, want {w}")
        expect(len(got) == len(want), f"{len(got)} records, want {len(want)}")
    return run


if __name__ == "__main__":
    check("nulls/headers: create topics", create_topics)
    check("nulls/headers: confluent produces tombstones, repeated and null headers (zstd)",
          produce_confluent)
    check("nulls/headers: kafka-python produces tombstones and repeated headers (lz4)",
          produce_kafka_python)
    for producer, topic, records in (("confluent", CF_TOPIC, CF_RECORDS),
                                     ("kafka-python", KP_TOPIC, KP_RECORDS)):
        for consumer, fn in (("confluent", consume_confluent), ("kafka-python", consume_kafka_python),
                             ("minikafka consume --format json", consume_minikafka)):
            check(f"nulls/headers: {producer} -> {consumer}: null values, header order and repeats",
                  check_round_trip(topic, records, fn))
    finish()
