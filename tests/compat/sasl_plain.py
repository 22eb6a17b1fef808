"""SASL/PLAIN against a broker run with --auth-token-file (run by scripts/kafka-compat with
KAFKA_SASL_PASSWORD set to the token): confluent-kafka produces and consumes with the token as
password and fails with a wrong one; kafka-python pinned to Kafka 0.10 authenticates through
SaslHandshake v0, whose PLAIN message travels as a bare frame without a request header."""
import os
import threading
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from common import check, expect, finish, messages, name, BOOTSTRAP

PASSWORD = os.environ["KAFKA_SASL_PASSWORD"]
TOPIC = name("sasl-orders")
N = 1000


def conf(password, **extra):
    c = {"bootstrap.servers": BOOTSTRAP, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanisms": "PLAIN", "sasl.username": "compat", "sasl.password": password}
    c.update(extra)
    return c


def test_confluent_produce_consume():
    admin = AdminClient(conf(PASSWORD))
    created = admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    for f in created.values():
        f.result(timeout=10)
    msgs = messages(N, "sasl")
    p = Producer(conf(PASSWORD, acks="all"))
    errors = []
    for k, v in msgs:
        p.produce(TOPIC, key=k, value=v, on_delivery=lambda err, _m: err and errors.append(err))
        p.poll(0)
    left = p.flush(60)
    expect(left == 0 and not errors, f"{left} undelivered, errors {errors[:3]}")
    c = Consumer(conf(PASSWORD, **{"group.id": name("sasl-g"), "enable.auto.commit": False,
                                   "enable.partition.eof": True}))
    c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.time() + 60
    while time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                raise AssertionError(m.error())
            if len(got) >= N:
                break
            continue
        got.append((m.key(), m.value()))
    c.close()
    expect(got == msgs, f"consumed {len(got)} of {N} (exact and in order: {got == msgs})")


def test_confluent_wrong_password():
    # Metadata and produce both fail, with an authentication error.
    auth_errors = []
    bad = conf("wrong-" + PASSWORD, error_cb=auth_errors.append)
    try:
        md = AdminClient(bad).list_topics(timeout=10)
        raise AssertionError(f"listed {sorted(md.topics)} with a wrong password")
    except KafkaException:
        pass
    p = Producer(dict(bad, **{"message.timeout.ms": 5000}))
    delivered = []
    p.produce(TOPIC, value=b"must-not-land", on_delivery=lambda err, _m: delivered.append(err))
    p.flush(15)
    expect(delivered and delivered[0] is not None, f"delivery with a wrong password: {delivered}")
    expect(any(e.code() == KafkaError._AUTHENTICATION for e in auth_errors),
           f"no authentication error reported: {auth_errors[:3]}")


def test_kafka_python_handshake_v0():
    from kafka import KafkaConsumer
    # Kafka 0.10's protocol: SaslHandshake v0, then the PLAIN message as a bare frame. A failed
    # authentication makes kafka-python retry forever, so the wait is bounded here.
    result = {}

    def list_topics():
        c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="PLAIN", sasl_plain_username="compat",
                          sasl_plain_password=PASSWORD, api_version=(0, 10, 0),
                          request_timeout_ms=10000)
        try:
            result["topics"] = c.topics()
        finally:
            c.close()

    t = threading.Thread(target=list_topics, daemon=True)
    t.start()
    t.join(60)
    expect("topics" in result, "no metadata within 60 s of a v0 handshake")
    expect(TOPIC in result["topics"], f"metadata after a v0 handshake: {sorted(result['topics'])}")


if __name__ == "__main__":
    check("sasl: confluent-kafka produce and consume with the token",
          test_confluent_produce_consume)
    check("sasl: confluent-kafka with a wrong password fails", test_confluent_wrong_password)
    check("sasl: kafka-python SaslHandshake v0 with a bare PLAIN frame",
          test_kafka_python_handshake_v0)
    finish()
