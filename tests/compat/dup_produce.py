"""A duplicate ProduceRequest built by hand with kafka-python's protocol classes, on a raw socket:
`init` gets a producer id from InitProducerId and saves it; `send SEQ N` sends one ProduceRequest
(acks=all, v7) of N records with that producer id, epoch and base sequence SEQ, and prints the
answer as JSON. The batch is built deterministically (timestamps saved at `init`), so sending the
same SEQ N again is the same request, byte for byte, as a client's retry would be.

usage: dup_produce.py HOST:PORT TOPIC STATE_FILE init
       dup_produce.py HOST:PORT TOPIC STATE_FILE send SEQ N
"""
import json
import socket
import sys
import time

from kafka.protocol.parser import KafkaProtocol
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder


def call(addr, request):
    host, port = addr.rsplit(":", 1)
    proto = KafkaProtocol(client_id="compat-dup-produce")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        proto.send_request(request)
        s.sendall(proto.send_bytes())
        while True:
            data = s.recv(65536)
            if not data:
                raise ConnectionError("the broker closed the connection")
            responses = proto.receive_bytes(data)
            if responses:
                return responses[0][1]


def init(addr, state_file):
    r = call(addr, InitProducerIdRequest[1](transactional_id=None, transaction_timeout_ms=-1))
    if r.error_code != 0:
        raise SystemExit(f"InitProducerId failed: error {r.error_code}")
    with open(state_file, "w") as f:
        json.dump({"producer_id": r.producer_id, "epoch": r.producer_epoch,
                   "timestamp": int(time.time() * 1000)}, f)
    print(json.dumps({"producer_id": r.producer_id, "epoch": r.producer_epoch}))


def send(addr, topic, state_file, seq, n):
    with open(state_file) as f:
        st = json.load(f)
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=st["producer_id"], producer_epoch=st["epoch"],
                                  base_sequence=seq, batch_size=1 << 20)
    for i in range(n):
        b.append(i, timestamp=st["timestamp"] + seq + i, key=b"dup",
                 value=f"dup-{seq + i}".encode(), headers=[])
    records = bytes(b.build())
    Topic = ProduceRequest.TopicProduceData
    req = ProduceRequest[7](transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
        Topic(name=topic, partition_data=[Topic.PartitionProduceData(index=0, records=records)])])
    p = call(addr, req).responses[0].partition_responses[0]
    print(json.dumps({"error_code": p.error_code, "base_offset": p.base_offset}))


if __name__ == "__main__":
    addr, topic, state = sys.argv[1:4]
    if sys.argv[4] == "init":
        init(addr, state)
    else:
        send(addr, topic, state, int(sys.argv[5]), int(sys.argv[6]))
