"""A TCP proxy between Kafka clients and a broker that records what clients produce: for every
ProduceRequest it forwards, one JSON line per record batch (topic, partition, batch bytes,
compression codec, record count, producer id, base sequence) in the report file. It measures what was sent on the wire,
independently of what the broker stores; bytes are forwarded unchanged both ways. Run the broker
with --advertised-kafka-addr pointing here so that clients send through it after bootstrap.
With HOLD_MS, the broker's answers reach the client that much later, so that a broker killed
meanwhile has stored requests the client must retry (see `broker_to_client`).

usage: produce_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT REPORT_FILE [HOLD_MS]
"""
import asyncio
import json
import struct
import sys

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
PRODUCE = 0


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        b = self.buf[self.pos:self.pos + n]
        if len(b) != n:
            raise ValueError("short request")
        self.pos += n
        return b

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        shift = result = 0
        while True:
            b = self.take(1)[0]
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def string(self, flexible):
        n = self.uvarint() - 1 if flexible else self.i16()
        return None if n < 0 else self.take(n).decode()

    def array_len(self, flexible):
        return self.uvarint() - 1 if flexible else self.i32()

    def nullable_bytes(self, flexible):
        n = self.uvarint() - 1 if flexible else self.i32()
        return None if n < 0 else self.take(n)

    def skip_tags(self, flexible):
        if flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())


def batches(records):
    """(bytes, codec, record count, producer id, base sequence) of each RecordBatch v2 in a
    records field."""
    pos = 0
    while pos + 12 <= len(records):
        length = struct.unpack_from(">i", records, pos + 8)[0]
        attributes = struct.unpack_from(">h", records, pos + 21)[0]
        producer_id, _epoch, base_sequence, count = struct.unpack_from(">qhii", records, pos + 43)
        yield 12 + length, CODECS.get(attributes & 0x7, "?"), count, producer_id, base_sequence
        pos += 12 + length


def produce_batches(frame):
    """The batches of a ProduceRequest frame (v3+, magic 2), or nothing for other requests."""
    r = Reader(frame)
    api_key, version = r.i16(), r.i16()
    if api_key != PRODUCE:
        return []
    flexible = version >= 9
    r.i32()  # correlation id
    r.string(False)  # client id: a classic string even in flexible headers
    r.skip_tags(flexible)
    r.string(flexible)  # transactional id
    r.i16(), r.i32()  # acks, timeout
    out = []
    for _ in range(r.array_len(flexible)):
        topic = r.string(flexible)
        for _ in range(r.array_len(flexible)):
            partition = r.i32()
            records = r.nullable_bytes(flexible) or b""
            r.skip_tags(flexible)
            for size, codec, count, producer_id, base_sequence in batches(records):
                out.append({"topic": topic, "partition": partition, "bytes": size,
                            "codec": codec, "records": count, "producer_id": producer_id,
                            "base_sequence": base_sequence})
        r.skip_tags(flexible)
    return out


async def client_to_broker(src, dst, report):
    while True:
        head = await src.readexactly(4)
        frame = await src.readexactly(struct.unpack(">i", head)[0])
        try:
            for b in produce_batches(frame):
                report.write(json.dumps(b) + "\n")
        except (ValueError, struct.error) as e:  # reported, so that the check using it fails
            report.write(json.dumps({"error": repr(e)}) + "\n")
        report.flush()
        dst.write(head + frame)
        await dst.drain()


async def broker_to_client(src, dst, hold):
    """Forwards the broker's answers, each `hold` seconds late. Answers still held when the
    broker goes away are dropped with the connection: the client never learns that those
    requests were stored, as when a broker dies between writing and answering."""
    if not hold:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
        return
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def forward():
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            dst.write(data)
            await dst.drain()

    forwarder = asyncio.create_task(forward())
    try:
        while data := await src.read(65536):
            queue.put_nowait((loop.time() + hold, data))
    finally:
        forwarder.cancel()


async def main(listen_port, upstream, report_path, hold):
    host, port = upstream.rsplit(":", 1)
    report = open(report_path, "a")

    async def serve(cr, cw):
        try:
            br, bw = await asyncio.open_connection(host, int(port))
        except OSError:  # the broker is down (restarting): the client reconnects later
            cw.close()
            return
        # When either side closes (a killed broker, a client done), close the other, so a
        # client sees its broker go away as it would without the proxy.
        tasks = [asyncio.create_task(client_to_broker(cr, bw, report)),
                 asyncio.create_task(broker_to_client(br, cw, hold))]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cw.close()
        bw.close()

    server = await asyncio.start_server(serve, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    hold_ms = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], hold_ms / 1000))
