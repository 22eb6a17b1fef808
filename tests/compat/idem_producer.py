"""An idempotent confluent-kafka producer (enable.idempotence, acks=all) that sends the numbers
0..N-1 as values, paced over a few seconds so that a broker killed meanwhile has requests in
flight; message.timeout.ms covers a restart, so librdkafka retries what was not acknowledged.
Prints one JSON line: records delivered, delivery errors, records not flushed.

usage: idem_producer.py TOPIC N SECONDS
"""
import json
import os
import sys

from confluent_kafka import Producer


def main(topic, n, seconds):
    p = Producer({"bootstrap.servers": os.environ["KAFKA_BOOTSTRAP"], "enable.idempotence": True,
                  "acks": "all", "linger.ms": 20, "message.timeout.ms": 60000,
                  "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err is not None else delivered).append(str(err) if err else msg.offset())

    chunk = 100
    pause = seconds / (n / chunk)
    for start in range(0, n, chunk):
        for i in range(start, min(start + chunk, n)):
            p.produce(topic, key=str(i % 10).encode(), value=str(i).encode(), on_delivery=on_delivery)
        p.poll(pause)
    left = p.flush(90)
    print(json.dumps({"delivered": len(delivered), "errors": errors[:5], "error_count": len(errors),
                      "not_flushed": left}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
