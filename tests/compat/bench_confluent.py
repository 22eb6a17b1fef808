"""Throughput through the Kafka listener with confluent-kafka (librdkafka): N records of SIZE
bytes produced with librdkafka defaults plus linger.ms=5 to a 1-partition topic, then consumed
back from the beginning. Prints records/s both ways. Not part of the pass/fail suite.

usage: KAFKA_BOOTSTRAP=host:port python bench_confluent.py [N] [SIZE]
"""
import os
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ["KAFKA_BOOTSTRAP"]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
SIZE = int(sys.argv[2]) if len(sys.argv) > 2 else 100
TOPIC = f"bench-{os.getpid()}-{int(time.time())}"

admin = AdminClient({"bootstrap.servers": BOOTSTRAP})  # kept alive until the topic exists
admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[TOPIC].result(10)

payload = b"x" * SIZE
p = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5})
start = time.perf_counter()
for _ in range(N):
    while True:
        try:
            p.produce(TOPIC, payload)
            break
        except BufferError:
            p.poll(0.001)
left = p.flush(300)
produce_s = time.perf_counter() - start
if left:
    raise SystemExit(f"{left} records not delivered")

c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": TOPIC, "enable.auto.commit": False,
              "enable.partition.eof": True})
c.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
got = 0
start = time.perf_counter()
deadline = start + 300
while got < N and time.perf_counter() < deadline:
    for m in c.consume(num_messages=10_000, timeout=1.0):
        if m.error() is None:
            got += 1
        elif m.error().code() != KafkaError._PARTITION_EOF:
            raise SystemExit(f"consume error: {m.error()}")
consume_s = time.perf_counter() - start
c.close()
if got != N:
    raise SystemExit(f"consumed {got} of {N}")
print(f"produce {N / produce_s:,.0f} records/s ({produce_s:.2f}s), "
      f"consume {N / consume_s:,.0f} records/s ({consume_s:.2f}s)")
