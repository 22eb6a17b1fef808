//! CPU cost of the codecs on the hot paths, without sockets or disk I/O:
//! - `record/*`: encoding a producer batch, CRC-checking decode (`RecordIter`, what a consumer
//!   does), and `assign_offsets` (what the broker does to every appended batch); 100-byte and
//!   1 KiB values, 1 MiB of records per iteration.
//! - `protocol/*`: encoding and decoding an Append request carrying a 256 KiB batch.
//! - `fetch/*`: the fetch response path: `Log::read` of 1 MiB from a log in page cache, the
//!   response head the server writes in front of the mapped bytes, and the client's decode of
//!   the frame plus its CRC check of every record.
//!
//! Run: `cargo bench --bench codec -- --quick`. Storage benches (append, replay, random reads,
//! open) are in `benches/append.rs` and `benches/read.rs`.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minikafka::protocol::{self, Request, Response};
use minikafka::record::{self, NewRecord, RecordIter};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::hint::black_box;

const BATCH_BYTES: usize = 1 << 20;
const MAX: u32 = record::DEFAULT_MAX_RECORD_BYTES;

/// About `bytes` of encoded records with `value_len`-byte values; returns the buffer and count.
fn encoded_batch(value_len: usize, bytes: usize) -> (Vec<u8>, u64) {
    let value = vec![0x5au8; value_len];
    let rec = NewRecord { timestamp_ms: 1_700_000_000_000, key: None, value: &value, headers: &[] };
    let n = (bytes / rec.encoded_len()).max(1);
    let mut buf = Vec::with_capacity(n * rec.encoded_len());
    for _ in 0..n {
        record::encode(&mut buf, 0, &rec, MAX).expect("encode");
    }
    (buf, n as u64)
}

fn bench_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for value_len in [100usize, 1024] {
        let (batch, n) = encoded_batch(value_len, BATCH_BYTES);
        group.throughput(Throughput::Elements(n));
        let value = vec![0x5au8; value_len];
        let mut buf = Vec::with_capacity(batch.len());
        group.bench_function(format!("encode/{value_len}B"), |b| {
            b.iter(|| {
                buf.clear();
                let rec = NewRecord { timestamp_ms: 1, key: None, value: &value, headers: &[] };
                for _ in 0..n {
                    record::encode(&mut buf, 0, black_box(&rec), MAX).expect("encode");
                }
                black_box(buf.len())
            })
        });
        group.bench_function(format!("decode_crc/{value_len}B"), |b| {
            b.iter(|| {
                let mut sum = 0usize;
                for v in RecordIter::new(black_box(&batch), MAX) {
                    sum += v.expect("valid").value.len();
                }
                black_box(sum)
            })
        });
        let mut work = batch.clone();
        group.bench_function(format!("assign_offsets/{value_len}B"), |b| {
            b.iter(|| record::assign_offsets(black_box(&mut work), 1000, MAX).expect("valid"))
        });
    }
    group.finish();
}

fn bench_protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    let (batch, _) = encoded_batch(100, 256 * 1024);
    let req = Request::Append {
        topic: "orders".to_string(),
        partition: Some(0),
        key_hint: None,
        records: Bytes::from(batch.clone()),
    };
    group.throughput(Throughput::Bytes(batch.len() as u64));
    let mut out = BytesMut::with_capacity(batch.len() + 64);
    group.bench_function("append_request/encode", |b| {
        b.iter(|| {
            out.clear();
            protocol::encode_request(&mut out, 7, black_box(&req));
            black_box(out.len())
        })
    });
    let mut frame = BytesMut::new();
    protocol::encode_request(&mut frame, 7, &req);
    let body = frame.freeze().slice(protocol::FRAME_PREFIX_LEN..);
    group.bench_function("append_request/decode", |b| {
        b.iter(|| protocol::decode_request_bytes(black_box(&body)).expect("valid"))
    });
    group.finish();
}

fn bench_fetch(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig { fsync: FsyncPolicy::Never, ..LogConfig::default() };
    let log = Log::open(dir.path(), config).expect("open");
    let (mut batch, per_batch) = encoded_batch(100, BATCH_BYTES);
    for _ in 0..64 {
        log.append_encoded(&mut batch).expect("append");
    }
    let end = log.next_offset();
    let mut group = c.benchmark_group("fetch");
    group.throughput(Throughput::Elements(per_batch));
    let mut head = BytesMut::with_capacity(64);
    let mut at = 0;
    group.bench_function("server_read_1MiB/100B", |b| {
        b.iter(|| {
            let slice = log.read(at, BATCH_BYTES).expect("read");
            head.clear();
            protocol::encode_fetched_head(&mut head, 1, 0, 0, end, slice.len() as u32);
            at = if slice.next_offset() >= end { 0 } else { slice.next_offset() };
            black_box((head.len(), slice.bytes().len()))
        })
    });
    // The client side: one response frame as it arrives, decoded and every record CRC-checked.
    let slice = log.read(0, BATCH_BYTES).expect("read");
    let resp = Response::Fetched {
        partition: 0,
        log_start_offset: 0,
        high_watermark: end,
        records: Bytes::copy_from_slice(slice.bytes()),
    };
    let mut frame = BytesMut::new();
    protocol::encode_response(&mut frame, 1, &resp);
    let body = frame.freeze().slice(protocol::FRAME_PREFIX_LEN..);
    group.bench_function("client_decode_verify_1MiB/100B", |b| {
        b.iter(|| {
            let (_, resp) = protocol::decode_response_bytes(black_box(&body)).expect("valid");
            let Response::Fetched { records, .. } = resp else { unreachable!("a Fetched frame") };
            let mut n = 0u64;
            for v in RecordIter::new(&records, MAX) {
                n += v.expect("valid").offset & 1;
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_record, bench_protocol, bench_fetch);
criterion_main!(benches);
