//! Unit tests of the batch format: build, view, validate, and the refusals with their context.
//! Property tests, cross-checks against kafka-protocol and corruption sweeps are in
//! tests/batch_format.rs.

use super::*;

const T0: i64 = 1_700_000_000_000;

fn three_records(compression: Compression) -> Vec<u8> {
    let headers = [
        Header { key: b"h", value: Some(b"1") },
        Header { key: b"h", value: None },
        Header { key: b"other", value: Some(b"") },
    ];
    let mut b = BatchBuilder::new(compression).producer(7, 1, 100);
    b.push(&NewRecord { timestamp: T0, key: Some(b"k"), value: Some(b"v0"), headers: &[] })
        .unwrap();
    b.push(&NewRecord { timestamp: T0 + 5, key: None, value: None, headers: &headers }).unwrap();
    b.push(&NewRecord { timestamp: T0 + 2, key: Some(b""), value: Some(b""), headers: &[] })
        .unwrap();
    b.build().unwrap()
}

/// Recomputes the CRC after a test edits covered bytes, so the edit itself is what is refused.
fn recrc(batch: &mut [u8]) {
    let crc = crc_of(batch);
    batch[CRC_POS..ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn a_built_batch_has_the_documented_header() {
    let b = three_records(Compression::None);
    let v = BatchView::new(&b).unwrap();
    assert_eq!(v.len(), b.len());
    assert_eq!(v.batch_length() as usize, b.len() - LOG_OVERHEAD);
    assert_eq!(v.base_offset(), 0);
    assert_eq!(v.magic(), 2);
    assert_eq!(v.partition_leader_epoch(), NO_PARTITION_LEADER_EPOCH);
    assert_eq!(v.compression(), Ok(Compression::None));
    assert_eq!(v.timestamp_type(), TimestampType::CreateTime);
    assert!(!v.is_transactional() && !v.is_control());
    assert_eq!(v.last_offset_delta(), 2);
    assert_eq!(v.base_timestamp(), T0);
    assert_eq!(v.max_timestamp(), T0 + 5);
    assert_eq!((v.producer_id(), v.producer_epoch(), v.base_sequence()), (7, 1, 100));
    assert_eq!(v.records_count(), 3);
    assert_eq!(v.crc(), crc32c::crc32c(&b[21..]));
    v.verify_crc().unwrap();
}

#[test]
fn records_come_back_with_nulls_empties_and_repeated_headers() {
    let b = three_records(Compression::None);
    let v = BatchView::new(&b).unwrap();
    let recs: Vec<_> = v.records().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!((recs[0].offset, recs[0].timestamp), (0, T0));
    assert_eq!((recs[0].key, recs[0].value), (Some(&b"k"[..]), Some(&b"v0"[..])));
    assert_eq!((recs[1].key, recs[1].value), (None, None));
    let hs: Vec<_> = recs[1].headers().collect();
    assert_eq!(
        hs,
        [
            Header { key: b"h", value: Some(b"1") },
            Header { key: b"h", value: None },
            Header { key: b"other", value: Some(b"") },
        ]
    );
    assert_eq!((recs[2].key, recs[2].value), (Some(&b""[..]), Some(&b""[..])));
    assert_eq!(recs[2].timestamp, T0 + 2, "earlier than the record before it");
    assert_eq!(recs.iter().map(|r| r.encoded_len).sum::<usize>(), b.len() - HEADER_LEN);
}

#[test]
fn validate_summarises_a_valid_batch() {
    let b = three_records(Compression::None);
    let s = validate(&b, &Limits::default()).unwrap();
    assert_eq!(s.record_count, 3);
    assert_eq!(s.batch_bytes, b.len());
    assert!(s.contiguous_offsets);
    assert_eq!((s.base_timestamp, s.max_timestamp), (T0, T0 + 5));
}

#[test]
fn base_offset_and_leader_epoch_are_set_in_place_without_touching_the_crc() {
    let mut b = three_records(Compression::Zstd);
    let crc = BatchView::new(&b).unwrap().crc();
    set_base_offset(&mut b, 1_000_000).unwrap();
    set_partition_leader_epoch(&mut b, 9).unwrap();
    let v = BatchView::new(&b).unwrap();
    assert_eq!((v.base_offset(), v.partition_leader_epoch(), v.crc()), (1_000_000, 9, crc));
    v.verify_crc().unwrap();
    let s = validate(&b, &Limits::default()).unwrap();
    assert_eq!(s.base_offset, 1_000_000);
    let mut scratch = Vec::new();
    v.decompress_into(&mut scratch, 1 << 20).unwrap();
    let offsets: Vec<i64> = v.records_in(&scratch).map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, [1_000_000, 1_000_001, 1_000_002]);
    assert!(matches!(set_base_offset(&mut [0u8; 20], 1), Err(BatchError::Truncated { .. })));
}

#[test]
fn a_compressed_batch_refuses_in_place_iteration() {
    let b = three_records(Compression::Gzip);
    let v = BatchView::new(&b).unwrap();
    assert_eq!(v.records().err(), Some(BatchError::Compressed { compression: Compression::Gzip }));
}

#[test]
fn log_append_time_gives_every_record_the_append_time() {
    let mut b = BatchBuilder::new(Compression::None).log_append_time(T0 + 99);
    b.push(&NewRecord { timestamp: T0, key: None, value: Some(b"x"), headers: &[] }).unwrap();
    let bytes = b.build().unwrap();
    let s = validate(&bytes, &Limits::default()).unwrap();
    assert_eq!((s.timestamp_type, s.max_timestamp), (TimestampType::LogAppendTime, T0 + 99));
    let v = BatchView::new(&bytes).unwrap();
    assert_eq!(v.records().unwrap().next().unwrap().unwrap().timestamp, T0 + 99);
}

#[test]
fn an_empty_builder_does_not_build() {
    assert!(matches!(BatchBuilder::new(Compression::None).build(), Err(BatchError::Build(_))));
}

#[test]
fn a_wrong_magic_or_short_header_is_refused() {
    let mut b = three_records(Compression::None);
    assert!(matches!(BatchView::new(&b[..10]), Err(BatchError::Truncated { .. })));
    assert!(matches!(
        BatchView::new(&b[..40]),
        Err(BatchError::Truncated { field: "batch header", .. })
    ));
    b[MAGIC_POS] = 1;
    assert_eq!(BatchView::new(&b).err(), Some(BatchError::Magic { magic: 1 }));
}

#[test]
fn a_flipped_covered_byte_is_a_crc_error() {
    let mut b = three_records(Compression::None);
    b[ATTRIBUTES_POS + 30] ^= 0x10;
    assert!(matches!(validate(&b, &Limits::default()), Err(BatchError::Crc { .. })));
}

#[test]
fn bytes_after_the_batch_are_refused_by_validate_but_split_by_batches() {
    let one = three_records(Compression::None);
    let mut two = one.clone();
    two.extend_from_slice(&three_records(Compression::Lz4));
    assert_eq!(
        validate(&two, &Limits::default()).err(),
        Some(BatchError::TrailingBatchBytes { extra: two.len() - one.len() })
    );
    let views: Vec<_> = batches(&two).collect::<Result<_, _>>().unwrap();
    assert_eq!(views.len(), 2);
    assert_eq!(views[1].compression(), Ok(Compression::Lz4));
    let mut cut = two.clone();
    cut.truncate(two.len() - 1);
    let mut it = batches(&cut);
    assert!(it.next().unwrap().is_ok());
    assert!(matches!(it.next(), Some(Err(BatchError::Truncated { .. }))));
    assert!(it.next().is_none());
}

#[test]
fn an_unknown_codec_is_refused() {
    let mut b = three_records(Compression::None);
    b[ATTRIBUTES_POS + 1] |= 0x07;
    recrc(&mut b);
    assert!(matches!(
        validate(&b, &Limits::default()),
        Err(BatchError::UnknownCompression { codec: 7, .. })
    ));
}

#[test]
fn a_count_past_the_limit_is_refused_before_decompressing() {
    let b = three_records(Compression::Zstd);
    let limits = Limits { max_records: 2, ..Limits::default() };
    assert!(matches!(
        validate(&b, &limits),
        Err(BatchError::TooManyRecords { count: 3, max: 2, .. })
    ));
}

#[test]
fn a_lying_count_is_refused() {
    for count in [4, i32::MAX, 2, -1] {
        let mut b = three_records(Compression::None);
        b[RECORDS_COUNT_POS..RECORDS_POS].copy_from_slice(&count.to_be_bytes());
        // Keep lastOffsetDelta consistent so the count itself is what is checked.
        b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4]
            .copy_from_slice(&count.max(3).saturating_sub(1).to_be_bytes());
        recrc(&mut b);
        let err = validate(&b, &Limits::default()).unwrap_err();
        match count {
            4 => assert!(matches!(err, BatchError::MissingRecords { count: 4, found: 3 }), "{err}"),
            2 => assert!(matches!(err, BatchError::TrailingRecordBytes { count: 2, .. }), "{err}"),
            -1 => assert!(matches!(err, BatchError::NegativeCount { .. }), "{err}"),
            _ => assert!(matches!(err, BatchError::TooManyRecords { .. }), "{err}"),
        }
    }
}

/// Position of record `i`'s length varint in the records data, for tests that edit a record.
fn record_pos(b: &[u8], i: usize) -> usize {
    let v = BatchView::new(b).unwrap();
    let mut it = v.records().unwrap();
    for _ in 0..i {
        it.next().unwrap().unwrap();
    }
    it.position()
}

#[test]
fn out_of_order_offset_deltas_are_refused_with_the_record_index() {
    // Single-byte records: length, attrs, tsDelta, offsetDelta at +3.
    let mut b = three_records(Compression::None);
    let p = record_pos(&b, 2);
    assert_eq!(b[RECORDS_POS + p + 3], 4, "zigzag 2");
    b[RECORDS_POS + p + 3] = 2; // zigzag 1: same as record 1
    recrc(&mut b);
    let err = validate(&b, &Limits::default()).unwrap_err();
    assert_eq!(
        err,
        BatchError::OffsetDelta {
            index: 2,
            position: p,
            delta: 1,
            previous: Some(1),
            last_offset_delta: 2
        }
    );
    assert!(err.to_string().contains("record 2"), "{err}");
}

#[test]
fn a_timestamp_past_max_or_a_wrong_max_is_refused() {
    let mut b = three_records(Compression::None);
    b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&(T0 + 4).to_be_bytes());
    recrc(&mut b);
    assert!(matches!(
        validate(&b, &Limits::default()),
        Err(BatchError::Timestamp { index: 1, .. })
    ));
    b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&(T0 + 6).to_be_bytes());
    recrc(&mut b);
    assert_eq!(
        validate(&b, &Limits::default()).err(),
        Some(BatchError::MaxTimestamp { header: T0 + 6, actual: T0 + 5 })
    );
}

#[test]
fn a_record_length_that_disagrees_with_its_fields_is_refused() {
    let mut b = three_records(Compression::None);
    let p = record_pos(&b, 0);
    b[RECORDS_POS + p] -= 2; // one byte shorter (zigzag)
    recrc(&mut b);
    let err = validate(&b, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            BatchError::RecordTruncated { index: 0, .. } | BatchError::RecordSize { index: 0, .. }
        ),
        "{err}"
    );
}

#[test]
fn a_decompression_bomb_stops_at_the_cap() {
    let big = vec![0u8; 1 << 20];
    let mut b = BatchBuilder::new(Compression::Zstd);
    b.push(&NewRecord { timestamp: T0, key: None, value: Some(&big), headers: &[] }).unwrap();
    let bytes = b.build().unwrap();
    assert!(bytes.len() < 1024, "the batch is small: {}", bytes.len());
    let limits = Limits { max_decompressed_bytes: 64 << 10, ..Limits::default() };
    assert_eq!(
        validate(&bytes, &limits).err(),
        Some(BatchError::DecompressedTooLarge { compression: Compression::Zstd, max: 64 << 10 })
    );
    validate(&bytes, &Limits::default()).unwrap();
}

#[test]
fn any_compressed_looks_at_every_batch_header() {
    let plain =
        crate::record::build_batch(&[crate::record::NewRecord::value(b"a")], Compression::None)
            .unwrap();
    let zstd =
        crate::record::build_batch(&[crate::record::NewRecord::value(b"b")], Compression::Zstd)
            .unwrap();
    assert!(!super::any_compressed(&plain));
    assert!(super::any_compressed(&[plain.clone(), zstd].concat()));
    assert!(!super::any_compressed(b"not a batch"));
}
