//! CPU cost of the codecs on the hot paths, without sockets or disk I/O:
//! - `record/*`: building a producer's RecordBatch v2 (`record::push_record`), CRC-checking
//!   decode (`record::for_each_record` with verify, what a consumer does), and validation plus
//!   `set_base_offset` (what the broker does to every appended batch); 100-byte and 1 KiB
//!   values, one batch of about 1 MiB per iteration.
//! - `protocol/*`: encoding and decoding an Append request carrying a 256 KiB batch.
//! - `fetch/*`: the fetch response path: `Log::read` of 1 MiB from a log in page cache, the
//!   response head the server writes in front of the mapped bytes, and the client's decode of
//!   the frame plus its CRC-32C check of every batch and decode of every record.
//!
//! - `batch/*`: the stored format (`minikafka::batch`, Kafka's RecordBatch v2) against the
//!   kafka-protocol crate's codec: one batch of 1,000 records of 100 B, uncompressed and zstd;
//!   `validate` + iterate (what the broker and a consumer do) vs `RecordBatchDecoder::decode`,
//!   and building vs `RecordBatchEncoder::encode`.
//!
//! Run: `cargo bench --bench codec -- --quick`. Storage benches (append, replay, random reads,
//! open) are in `benches/append.rs` and `benches/read.rs`.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use minikafka::batch::{self as mbatch, BatchBuilder as Builder, Compression as Codec};
use minikafka::protocol::{self, Request, Response};
use minikafka::record::{self, NewRecord};
use minikafka::storage::{FsyncPolicy, Log, LogConfig};
use std::hint::black_box;
use std::ops::ControlFlow;

/// Bytes of a fetch, and about the size of the batches built here: a little below the default
/// `max_record_bytes` (1 MiB, which bounds a whole batch), so the log takes them.
const BATCH_BYTES: usize = (1 << 20) - 4096;
/// Bytes a record of these benches takes in a batch besides its value, at most: length (2),
/// attributes (1), timestamp delta (1: all equal), offset delta (3 below 2^20), null key (1),
/// value length (2) and header count (1).
const RECORD_OVERHEAD: usize = 11;

/// One uncompressed RecordBatch v2 of about `bytes` with `value_len`-byte values; returns the
/// batch and its record count.
fn encoded_batch(value_len: usize, bytes: usize) -> (Vec<u8>, u64) {
    let value = vec![0x5au8; value_len];
    let rec =
        NewRecord { timestamp_ms: 1_700_000_000_000, key: None, value: Some(&value), headers: &[] };
    let n = ((bytes - mbatch::HEADER_LEN) / (value_len + RECORD_OVERHEAD)).max(1);
    let batch = record::build_batch(&vec![rec; n], Codec::None).expect("build");
    assert!(batch.len() <= bytes, "{}-byte batch", batch.len());
    (batch, n as u64)
}

/// Records of the whole batches in `bytes` from offset `from`, each batch's CRC-32C checked.
fn count_verified(bytes: &[u8], from: u64, scratch: &mut Vec<u8>) -> u64 {
    let mut n = 0u64;
    record::for_each_record(bytes, true, scratch, |r| {
        n += u64::from(r.offset >= from as i64);
        ControlFlow::Continue(())
    })
    .expect("valid");
    n
}

fn bench_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let limits = mbatch::Limits::default();
    for value_len in [100usize, 1024] {
        let (batch, n) = encoded_batch(value_len, BATCH_BYTES);
        group.throughput(Throughput::Elements(n));
        let value = vec![0x5au8; value_len];
        let mut buf = Vec::with_capacity(batch.len());
        group.bench_function(format!("encode/{value_len}B"), |b| {
            b.iter(|| {
                let rec =
                    NewRecord { timestamp_ms: 1, key: None, value: Some(&value), headers: &[] };
                let mut builder = Builder::in_buffer(Codec::None, std::mem::take(&mut buf));
                for _ in 0..n {
                    record::push_record(&mut builder, black_box(&rec)).expect("fits");
                }
                buf = builder.finish().expect("build");
                black_box(buf.len())
            })
        });
        let mut scratch = Vec::new();
        group.bench_function(format!("decode_crc/{value_len}B"), |b| {
            b.iter(|| {
                let mut sum = 0usize;
                record::for_each_record(black_box(&batch), true, &mut scratch, |r| {
                    sum += r.value.map_or(0, <[u8]>::len);
                    ControlFlow::Continue(())
                })
                .expect("valid");
                black_box(sum)
            })
        });
        let mut work = batch.clone();
        group.bench_function(format!("validate_set_base_offset/{value_len}B"), |b| {
            b.iter(|| {
                let s =
                    mbatch::validate_with(black_box(&work), &limits, &mut scratch).expect("valid");
                mbatch::set_base_offset(&mut work, 1000).expect("valid");
                black_box(s.record_count)
            })
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
        log.append_batches(&mut batch).expect("append");
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
    // The client side: one response frame as it arrives, decoded, every batch CRC-checked and
    // every record decoded.
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
    let mut scratch = Vec::new();
    group.bench_function("client_decode_verify_1MiB/100B", |b| {
        b.iter(|| {
            let (_, resp) = protocol::decode_response_bytes(black_box(&body)).expect("valid");
            let Response::Fetched { records, .. } = resp else { unreachable!("a Fetched frame") };
            black_box(count_verified(&records, 0, &mut scratch))
        })
    });
    group.finish();
}

/// 1,000 records of 100 B: one batch as a producer would send it.
fn batch_of_1000(compression: minikafka::batch::Compression) -> Vec<u8> {
    use minikafka::batch::{BatchBuilder, NewRecord};
    let value = [0x5au8; 100];
    let mut b = BatchBuilder::new(compression).producer(1, 0, 0);
    for i in 0..1000 {
        let rec = NewRecord {
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(&value),
            headers: &[],
        };
        b.push(&rec).expect("a 100 B record fits");
    }
    b.build().expect("builds")
}

fn bench_batch(c: &mut Criterion) {
    use kafka_protocol::records::{
        Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };
    use minikafka::batch::{self, BatchBuilder, BatchView, Compression, Limits, NewRecord};
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(1000));
    let limits = Limits::default();
    for (name, compression, kc) in [
        ("none", Compression::None, KCompression::None),
        ("zstd", Compression::Zstd, KCompression::Zstd),
    ] {
        let bytes = batch_of_1000(compression);
        let mut scratch = Vec::new();
        group.bench_function(format!("validate_iterate/{name}"), |b| {
            b.iter(|| {
                let s =
                    batch::validate_with(black_box(&bytes), &limits, &mut scratch).expect("valid");
                let view = BatchView::new(&bytes).expect("valid");
                let data: &[u8] = if compression == Compression::None {
                    view.records_bytes()
                } else {
                    // validate_with left the decompressed records in `scratch`.
                    &scratch
                };
                let mut sum = 0usize;
                for r in view.records_in(data) {
                    sum += r.expect("valid").value.map_or(0, <[u8]>::len);
                }
                assert_eq!(s.record_count, 1000);
                black_box(sum)
            })
        });
        let frozen = Bytes::from(bytes.clone());
        group.bench_function(format!("kafka_protocol_decode/{name}"), |b| {
            b.iter(|| {
                let set =
                    RecordBatchDecoder::decode(&mut black_box(frozen.clone())).expect("valid");
                let sum: usize =
                    set.records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len())).sum();
                black_box(sum)
            })
        });
        let value = [0x5au8; 100];
        let mut out = Vec::with_capacity(bytes.len());
        group.bench_function(format!("build/{name}"), |b| {
            b.iter(|| {
                let mut builder = BatchBuilder::new(compression).producer(1, 0, 0);
                for i in 0..1000 {
                    let rec = NewRecord {
                        timestamp: 1_700_000_000_000 + i,
                        key: None,
                        value: Some(&value),
                        headers: &[],
                    };
                    builder.push(black_box(&rec)).expect("fits");
                }
                out.clear();
                builder.build_into(&mut out).expect("builds");
                black_box(out.len())
            })
        });
        let krecs: Vec<KRecord> = (0..1000)
            .map(|i| KRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: 1,
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: None,
                value: Some(Bytes::copy_from_slice(&value)),
                headers: Default::default(),
            })
            .collect();
        let opts = RecordEncodeOptions { version: 2, compression: kc };
        group.bench_function(format!("kafka_protocol_encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                RecordBatchEncoder::encode(&mut out, black_box(&krecs).iter(), &opts)
                    .expect("encodes");
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_record, bench_protocol, bench_fetch, bench_batch);
criterion_main!(benches);
