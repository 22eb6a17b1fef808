//! The stored batch format (`minikafka::batch`) against its contract: build -> validate ->
//! iterate gives back exactly the records for every codec (nulls, empties, repeated headers);
//! batches match the kafka-protocol crate's encoder and decoder, both ways and byte for byte; any
//! corruption, cut or lying count is refused with an error and no allocation sized by the lie.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KCompression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KTimestampType,
};
use minikafka::batch::{
    self, BatchBuilder, BatchError, BatchView, Compression, Header, Limits, NewRecord,
};
use proptest::prelude::*;

// ---- A per-thread record of the largest allocation, to prove a lie sizes nothing. ----

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        // SAFETY: `ptr` came from `System` with `layout`; the contract is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result with the largest single allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|m| m.set(0));
    let r = f();
    (r, LARGEST.with(|m| m.get()))
}

const T0: i64 = 1_700_000_000_000;

/// A record as a test owns it, before it is built into a batch and after it is read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn build(recs: &[Rec], compression: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression);
    for r in recs {
        let headers: Vec<Header<'_>> =
            r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
        b.push(&NewRecord {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        })
        .expect("a test record fits");
    }
    b.build().expect("a non-empty batch builds")
}

/// Validates `bytes` and reads its records back (offset, record).
fn read_back(bytes: &[u8]) -> Result<Vec<(i64, Rec)>, BatchError> {
    batch::validate(bytes, &Limits::default())?;
    let view = BatchView::new(bytes)?;
    let mut scratch = Vec::new();
    view.decompress_into(&mut scratch, batch::MAX_DECOMPRESSED_BYTES)?;
    view.records_in(&scratch)
        .map(|r| {
            r.map(|r| {
                let rec = Rec {
                    timestamp: r.timestamp,
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.map(<[u8]>::to_vec),
                    headers: r
                        .headers()
                        .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                };
                (r.offset, rec)
            })
        })
        .collect()
}

fn kcomp(c: Compression) -> KCompression {
    match c {
        Compression::None => KCompression::None,
        Compression::Gzip => KCompression::Gzip,
        Compression::Snappy => KCompression::Snappy,
        Compression::Lz4 => KCompression::Lz4,
        Compression::Zstd => KCompression::Zstd,
    }
}

/// The same records as kafka-protocol's `Record`s, numbered from 0 with sequences from
/// `base_sequence` (offset minus sequence constant, so its encoder keeps them in one batch).
fn to_kafka(recs: &[Rec], producer: (i64, i16, i32)) -> Vec<KRecord> {
    recs.iter()
        .enumerate()
        .map(|(i, r)| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: batch::NO_PARTITION_LEADER_EPOCH,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: KTimestampType::Creation,
            offset: i as i64,
            sequence: producer.2.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone().map(Bytes::from),
            value: r.value.clone().map(Bytes::from),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| {
                    let key =
                        StrBytes::from_utf8(Bytes::from(k.clone())).expect("test keys are UTF-8");
                    (key, v.clone().map(Bytes::from))
                })
                .collect::<IndexMap<_, _>>(),
        })
        .collect()
}

fn from_kafka(r: &KRecord) -> (i64, Rec) {
    let rec = Rec {
        timestamp: r.timestamp,
        key: r.key.as_ref().map(|b| b.to_vec()),
        value: r.value.as_ref().map(|b| b.to_vec()),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_ref().map(|b| b.to_vec())))
            .collect(),
    };
    (r.offset, rec)
}

fn kafka_encode(recs: &[Rec], c: Compression, producer: (i64, i16, i32)) -> Vec<u8> {
    let krecs = to_kafka(recs, producer);
    let mut out = Vec::new();
    RecordBatchEncoder::encode(
        &mut out,
        krecs.iter(),
        &RecordEncodeOptions { version: 2, compression: kcomp(c) },
    )
    .expect("kafka-protocol encodes");
    out
}

fn bytes_strategy(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Records with every field kind: null and empty keys and values, headers with repeated keys.
fn recs_strategy(repeat_header_keys: bool) -> impl Strategy<Value = Vec<Rec>> {
    let header_key = if repeat_header_keys {
        prop_oneof![
            Just(b"h".to_vec()),
            Just(b"".to_vec()),
            "[a-z]{1,3}".prop_map(String::into_bytes)
        ]
        .boxed()
    } else {
        "[a-z]{0,6}".prop_map(String::into_bytes).boxed()
    };
    let header = (header_key, proptest::option::of(bytes_strategy(8)));
    let rec = (
        -5_000i64..5_000,
        proptest::option::of(bytes_strategy(16)),
        proptest::option::of(bytes_strategy(300)),
        proptest::collection::vec(header, 0..4),
    )
        .prop_map(move |(dt, key, value, mut headers)| {
            if !repeat_header_keys {
                let mut seen = std::collections::HashSet::new();
                headers.retain(|(k, _)| seen.insert(k.clone()));
            }
            Rec { timestamp: T0 + dt, key, value, headers }
        });
    proptest::collection::vec(rec, 1..20)
}

fn any_compression() -> impl Strategy<Value = Compression> {
    proptest::sample::select(Compression::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// build -> validate -> iterate gives back exactly the records, numbered 0.., for every codec.
    #[test]
    fn every_codec_round_trips_exactly(recs in recs_strategy(true), c in any_compression()) {
        let bytes = build(&recs, c);
        let s = batch::validate(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(s.record_count, recs.len());
        prop_assert_eq!(s.compression, c);
        prop_assert!(s.contiguous_offsets);
        let back = read_back(&bytes).unwrap();
        let want: Vec<(i64, Rec)> = recs.iter().cloned().enumerate().map(|(i, r)| (i as i64, r)).collect();
        prop_assert_eq!(back, want);
    }

    /// Ours -> kafka-protocol's decoder: the same records, offsets, timestamps and producer fields.
    #[test]
    fn the_crate_decodes_our_batches(recs in recs_strategy(false), c in any_compression()) {
        let mut b = BatchBuilder::new(c).producer(42, 3, 1000);
        for r in &recs {
            let headers: Vec<Header<'_>> =
                r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
            b.push(&NewRecord { timestamp: r.timestamp, key: r.key.as_deref(), value: r.value.as_deref(), headers: &headers }).unwrap();
        }
        let bytes = b.build().unwrap();
        let set = RecordBatchDecoder::decode(&mut Bytes::from(bytes)).expect("the crate decodes our batch");
        prop_assert_eq!(set.compression, kcomp(c));
        let got: Vec<(i64, Rec)> = set.records.iter().map(from_kafka).collect();
        let want: Vec<(i64, Rec)> = recs.iter().cloned().enumerate().map(|(i, r)| (i as i64, r)).collect();
        prop_assert_eq!(got, want);
        for (i, k) in set.records.iter().enumerate() {
            prop_assert_eq!((k.producer_id, k.producer_epoch, k.sequence), (42, 3, 1000 + i as i32));
        }
    }

    /// kafka-protocol's encoder -> ours: valid, and the same records.
    #[test]
    fn we_read_the_crates_batches(recs in recs_strategy(false), c in any_compression()) {
        let bytes = kafka_encode(&recs, c, (42, 3, 1000));
        let s = batch::validate(&bytes, &Limits::default()).expect("we accept the crate's batch");
        prop_assert_eq!((s.producer_id, s.producer_epoch, s.base_sequence), (42, 3, 1000));
        prop_assert_eq!(s.record_count, recs.len());
        let want: Vec<(i64, Rec)> = recs.iter().cloned().enumerate().map(|(i, r)| (i as i64, r)).collect();
        prop_assert_eq!(read_back(&bytes).unwrap(), want);
    }

    /// With non-decreasing timestamps (so both take the first as the base), our builder writes
    /// the very bytes kafka-protocol's encoder writes, compressed or not.
    #[test]
    fn our_bytes_are_the_crates_bytes(mut recs in recs_strategy(false), c in any_compression()) {
        recs.sort_by_key(|r| r.timestamp);
        let mut b = BatchBuilder::new(c).producer(42, 3, 1000);
        for r in &recs {
            let headers: Vec<Header<'_>> =
                r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
            b.push(&NewRecord { timestamp: r.timestamp, key: r.key.as_deref(), value: r.value.as_deref(), headers: &headers }).unwrap();
        }
        prop_assert_eq!(b.build().unwrap(), kafka_encode(&recs, c, (42, 3, 1000)));
    }
}

fn sample(c: Compression) -> Vec<u8> {
    let recs: Vec<Rec> = (0..5)
        .map(|i| Rec {
            timestamp: T0 + i,
            key: (i % 2 == 0).then(|| vec![b'k', i as u8]),
            value: Some(vec![i as u8; 20]),
            headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"h".to_vec(), None)],
        })
        .collect();
    build(&recs, c)
}

#[test]
fn flipping_any_covered_byte_is_a_crc_error() {
    for c in Compression::ALL {
        let good = sample(c);
        for pos in batch::CRC_POS..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[pos] ^= bit;
                let err = batch::validate(&bad, &Limits::default()).unwrap_err();
                assert!(matches!(err, BatchError::Crc { .. }), "{c} byte {pos}: {err}");
            }
        }
    }
}

#[test]
fn the_fields_outside_the_crc_change_freely_and_the_rest_of_the_header_is_checked() {
    let good = sample(Compression::None);
    for pos in batch::BASE_OFFSET_POS..batch::BATCH_LENGTH_POS {
        let mut b = good.clone();
        b[pos] ^= 0x40;
        batch::validate(&b, &Limits::default()).expect("baseOffset is outside the CRC");
    }
    for pos in batch::PARTITION_LEADER_EPOCH_POS..batch::MAGIC_POS {
        let mut b = good.clone();
        b[pos] ^= 0x40;
        batch::validate(&b, &Limits::default()).expect("partitionLeaderEpoch is outside the CRC");
    }
    for pos in batch::BATCH_LENGTH_POS..batch::PARTITION_LEADER_EPOCH_POS {
        let mut b = good.clone();
        b[pos] ^= 0x01;
        let err = batch::validate(&b, &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                BatchError::Truncated { .. }
                    | BatchError::Length { .. }
                    | BatchError::TrailingBatchBytes { .. }
            ),
            "batchLength byte {pos}: {err}"
        );
    }
    let mut b = good.clone();
    b[batch::MAGIC_POS] = 1;
    assert_eq!(batch::validate(&b, &Limits::default()).err(), Some(BatchError::Magic { magic: 1 }));
}

#[test]
fn a_cut_anywhere_is_a_truncation_error() {
    for c in Compression::ALL {
        let good = sample(c);
        for len in 0..good.len() {
            let err = batch::validate(&good[..len], &Limits::default()).unwrap_err();
            assert!(matches!(err, BatchError::Truncated { .. }), "{c} cut at {len}: {err}");
            assert!(err.to_string().contains("truncated"), "{err}");
        }
    }
}

/// `sample`'s header around `records` (an uncompressed records area) claiming `count` records,
/// with batchLength and CRC made right, so only the records' lies are left to find.
fn wrap(records: &[u8], count: i32) -> Vec<u8> {
    let mut b = sample(Compression::None)[..batch::HEADER_LEN].to_vec();
    b.extend_from_slice(records);
    let len = (b.len() - batch::LOG_OVERHEAD) as i32;
    b[batch::BATCH_LENGTH_POS..batch::BATCH_LENGTH_POS + 4].copy_from_slice(&len.to_be_bytes());
    b[batch::RECORDS_COUNT_POS..batch::RECORDS_POS].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[batch::ATTRIBUTES_POS..]);
    b[batch::CRC_POS..batch::ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Zigzag varint of `v`, as Kafka writes it.
fn varint(v: i32) -> Vec<u8> {
    let mut raw = ((v << 1) ^ (v >> 31)) as u32;
    let mut out = Vec::new();
    while raw >= 0x80 {
        out.push(raw as u8 | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
    out
}

#[test]
fn lying_counts_and_lengths_are_refused_without_a_large_allocation() {
    let (_, seen) = largest_allocation(|| std::hint::black_box(vec![1u8; 10_000]));
    assert!(seen >= 10_000, "the allocation tracker works: saw {seen}");
    // A record: length, attrs 0, tsDelta 0, offsetDelta 0, key, value, headers...
    let record = |key_len: i32, value_len: i32, headers: i32, tail: &[u8]| {
        let mut body = vec![0, 0, 0];
        body.extend(varint(key_len));
        body.extend(varint(value_len));
        body.extend(varint(headers));
        body.extend_from_slice(tail);
        let mut r = varint(body.len() as i32);
        r.extend(body);
        r
    };
    let pad = [0u8; 16];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("record length i32::MAX", {
            let mut r = varint(i32::MAX);
            r.extend_from_slice(&pad);
            r
        }),
        ("negative record length", {
            let mut r = varint(-5);
            r.extend_from_slice(&pad);
            r
        }),
        ("key length i32::MAX", record(i32::MAX, -1, 0, &pad)),
        ("key length -2", record(-2, -1, 0, &pad)),
        ("value length i32::MAX", record(-1, i32::MAX, 0, &pad)),
        ("header count i32::MAX", record(-1, -1, i32::MAX, &pad)),
        ("header key length i32::MAX", record(-1, -1, 1, &[varint(i32::MAX), vec![0; 8]].concat())),
        ("null header key", record(-1, -1, 1, &[varint(-1), varint(-1)].concat())),
        ("overlong varint", [vec![0x80; 6], pad.to_vec()].concat()),
    ];
    for (what, records) in cases {
        let bytes = wrap(&records, 1);
        let (res, largest) = largest_allocation(|| batch::validate(&bytes, &Limits::default()));
        let err = res.expect_err(what);
        assert!(largest < 4096, "{what}: allocated {largest} bytes");
        assert!(err.to_string().contains("record 0"), "{what}: {err}");
    }

    // Counts: i32::MAX records in a compressed batch is refused before decompressing.
    let mut b = sample(Compression::Zstd);
    b[batch::RECORDS_COUNT_POS..batch::RECORDS_POS].copy_from_slice(&i32::MAX.to_be_bytes());
    b[batch::LAST_OFFSET_DELTA_POS..batch::LAST_OFFSET_DELTA_POS + 4]
        .copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&b[batch::ATTRIBUTES_POS..]);
    b[batch::CRC_POS..batch::ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
    let (res, largest) = largest_allocation(|| batch::validate(&b, &Limits::default()));
    assert!(matches!(res, Err(BatchError::TooManyRecords { .. })), "{res:?}");
    assert!(largest < 4096, "allocated {largest} bytes");

    // A batchLength of i32::MAX over a few bytes.
    let mut b = sample(Compression::None);
    b[batch::BATCH_LENGTH_POS..batch::BATCH_LENGTH_POS + 4]
        .copy_from_slice(&i32::MAX.to_be_bytes());
    let (res, largest) = largest_allocation(|| batch::validate(&b, &Limits::default()));
    assert!(matches!(res, Err(BatchError::Truncated { .. })), "{res:?}");
    assert!(largest < 4096, "allocated {largest} bytes");
}

#[test]
/// The cap is checked on what the vendored crate hands back: the crate itself only stops at its
/// own 256 MiB cap, so the bomb is expanded (8 MiB here) before our 1 MiB cap refuses it.
fn a_zstd_bomb_is_refused_at_the_callers_cap() {
    let zeros = vec![0u8; 8 << 20];
    let mut b = BatchBuilder::new(Compression::Zstd);
    b.push(&NewRecord { timestamp: T0, key: None, value: Some(&zeros), headers: &[] }).unwrap();
    let bytes = b.build().unwrap();
    drop(zeros);
    assert!(bytes.len() < 4096, "small on the wire: {} bytes", bytes.len());
    let limits = Limits { max_decompressed_bytes: 1 << 20, ..Limits::default() };
    let (res, largest) = largest_allocation(|| batch::validate(&bytes, &limits));
    println!("8 MiB zstd bomb under a 1 MiB cap: largest allocation {largest} bytes");
    assert_eq!(
        res.err(),
        Some(BatchError::DecompressedTooLarge { compression: Compression::Zstd, max: 1 << 20 })
    );
}

#[test]
fn a_record_earlier_than_the_base_timestamp_is_valid_as_kafka_clients_write_it() {
    // Java's MemoryRecordsBuilder and librdkafka take baseTimestamp from the first record.
    let recs = [
        Rec { timestamp: T0, key: None, value: Some(b"a".to_vec()), headers: vec![] },
        Rec { timestamp: T0 - 1000, key: None, value: Some(b"b".to_vec()), headers: vec![] },
    ];
    let bytes = build(&recs, Compression::None);
    let v = BatchView::new(&bytes).unwrap();
    assert_eq!((v.base_timestamp(), v.max_timestamp()), (T0, T0));
    let back = read_back(&bytes).unwrap();
    assert_eq!(back[1].1.timestamp, T0 - 1000);
}

/// A batch assembled by hand, field by field from Kafka's documented layout (the one in the
/// module's byte table): magic 2, no compression, CreateTime, one record with key "key", value
/// "value", header "h" = "v", no producer id. The builder must write exactly these bytes.
#[test]
fn a_hand_assembled_kafka_batch_reads_back() {
    let mut rec = vec![0u8, 0, 0]; // attributes, timestampDelta 0, offsetDelta 0
    rec.extend(varint(3));
    rec.extend_from_slice(b"key");
    rec.extend(varint(5));
    rec.extend_from_slice(b"value");
    rec.extend(varint(1));
    rec.extend(varint(1));
    rec.extend_from_slice(b"h");
    rec.extend(varint(1));
    rec.extend_from_slice(b"v");
    let mut records = varint(rec.len() as i32);
    records.extend(rec);

    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes()); // batchLength
    b.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    b.extend_from_slice(&T0.to_be_bytes()); // baseTimestamp
    b.extend_from_slice(&T0.to_be_bytes()); // maxTimestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    b.extend_from_slice(&1i32.to_be_bytes()); // recordsCount
    assert_eq!(b.len(), batch::HEADER_LEN);
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());

    let built = build(
        &[Rec {
            timestamp: T0,
            key: Some(b"key".to_vec()),
            value: Some(b"value".to_vec()),
            headers: vec![(b"h".to_vec(), Some(b"v".to_vec()))],
        }],
        Compression::None,
    );
    assert_eq!(built, b, "the builder writes the documented bytes");
    let back = read_back(&b).unwrap();
    assert_eq!(back[0].1.headers, vec![(b"h".to_vec(), Some(b"v".to_vec()))]);
}
