"""One canonical line per record, `[partition, offset, key, value]` as JSON (null for a null key
or value), so that what different consumers read from a topic can be compared with `cmp`.

usage: records_view.py normalize    < JSON lines from `kcat -J` or `minikafka consume --format json`
       records_view.py kafka-python TOPIC    (reads TOPIC from the beginning to its end offsets)
"""
import json
import os
import sys
import time


def line(partition, offset, key, value):
    return json.dumps([partition, offset, key, value])


def normalize():
    for raw in sys.stdin:
        r = json.loads(raw)
        value = r["value"] if "value" in r else r["payload"]  # minikafka / kcat
        print(line(r["partition"], r["offset"], r["key"], value))


def kafka_python(topic):
    from kafka import KafkaConsumer, TopicPartition

    def text(b):
        return None if b is None else b.decode()

    c = KafkaConsumer(bootstrap_servers=os.environ["KAFKA_BOOTSTRAP"], enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic))]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end = c.end_offsets(tps)
    deadline = time.time() + 60
    while any(c.position(tp) < end[tp] for tp in tps) and time.time() < deadline:
        for tp, recs in c.poll(timeout_ms=500).items():
            for r in recs:
                print(line(tp.partition, r.offset, text(r.key), text(r.value)))
    c.close()


if __name__ == "__main__":
    if sys.argv[1] == "normalize":
        normalize()
    else:
        kafka_python(sys.argv[2])
