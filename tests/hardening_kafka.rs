//! Issue 11's bounded-resource items on the Kafka listener, against the real binary: a Fetch naming
//! one partition 40 times, a gzip batch of millions of tiny records, JoinGroup without a member id
//! in a loop, an OffsetCommit of 8,192 partitions beside a producer, over-long topic admin requests
//! and a long poll over thousands of partitions. Requests are hand-built with `kafka-protocol`
//! types (no client library would send them); memory and CPU are read from `/proc/<pid>/`.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::BrokerProcess;
use common::kafka::{KafkaConn, read_response, s};
use kafka_protocol::messages::*;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// A broker with its Kafka listener on (and `extra` flags), on a temporary data directory.
fn start(extra: &[&str]) -> (BrokerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut flags = vec!["--fsync", "never"];
    flags.extend_from_slice(extra);
    let broker = BrokerProcess::start_with_kafka(&dir.path().join("data"), &flags);
    (broker, dir)
}

fn connect(broker: &BrokerProcess) -> KafkaConn {
    KafkaConn::connect(broker.kafka_addr.as_deref().expect("Kafka listener on"), "hardening")
}

fn create_topic(c: &mut KafkaConn, name: &str, partitions: i32) {
    let req = CreateTopicsRequest::default().with_timeout_ms(60_000).with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(s(name).into())
            .with_num_partitions(partitions)
            .with_replication_factor(-1),
    ]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 4, &req);
    assert_eq!(r.topics[0].error_code, 0, "create {name}: {:?}", r.topics[0].error_message);
}

fn record(i: i64, value: Bytes) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(value),
        headers: Default::default(),
    }
}

/// An uncompressed v2 batch of `n` records of `size` bytes each.
fn batch(n: usize, size: usize) -> Bytes {
    let records: Vec<Record> =
        (0..n).map(|i| record(i as i64, Bytes::from(vec![b'x'; size]))).collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

/// A Produce (acks=1) of one record set per `(topic, partition)`.
fn produce_request(parts: &[(&str, i32)], records: &Bytes) -> ProduceRequest {
    let mut topics: Vec<produce_request::TopicProduceData> = Vec::new();
    for (topic, p) in parts {
        let pd = produce_request::PartitionProduceData::default()
            .with_index(*p)
            .with_records(Some(records.clone()));
        match topics.last_mut() {
            Some(t) if t.name.as_str() == *topic => t.partition_data.push(pd),
            _ => topics.push(
                produce_request::TopicProduceData::default()
                    .with_name(s(topic).into())
                    .with_partition_data(vec![pd]),
            ),
        }
    }
    ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(topics)
}

/// Every partition's error code in a Produce response.
fn produce_errors(r: &ProduceResponse) -> Vec<i16> {
    r.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect()
}

fn produce(c: &mut KafkaConn, parts: &[(&str, i32)], records: &Bytes) -> ProduceResponse {
    c.call(ApiKey::Produce, 7, &produce_request(parts, records))
}

fn fetch_request(
    parts: &[(&str, i32)],
    max_bytes: i32,
    min_bytes: i32,
    wait_ms: i32,
) -> FetchRequest {
    let mut topics: Vec<fetch_request::FetchTopic> = Vec::new();
    for (topic, p) in parts {
        let fp = fetch_request::FetchPartition::default()
            .with_partition(*p)
            .with_fetch_offset(0)
            .with_partition_max_bytes(i32::MAX);
        match topics.last_mut() {
            Some(t) if t.topic.as_str() == *topic => t.partitions.push(fp),
            _ => topics.push(
                fetch_request::FetchTopic::default()
                    .with_topic(s(topic).into())
                    .with_partitions(vec![fp]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_topics(topics)
}

/// Item 8: one Fetch naming a partition 40 times with max_bytes = -1 is answered once per
/// partition and within `--fetch-max-bytes`, and the broker's memory stays small.
#[test]
fn a_fetch_naming_one_partition_forty_times_is_bounded_by_the_cap() {
    let cap: usize = 1024 * 1024;
    let (broker, _dir) = start(&["--fetch-max-bytes", &cap.to_string()]);
    let mut c = connect(&broker);
    create_topic(&mut c, "big", 1);
    // 6 MB in the partition: 6 requests of 10 records of 100 KB.
    let records = batch(10, 100 * 1024);
    for _ in 0..6 {
        assert_eq!(produce_errors(&produce(&mut c, &[("big", 0)], &records)), vec![0]);
    }
    let parts = vec![("big", 0); 40];
    let (r, frame_len): (FetchResponse, _) =
        c.call_sized(ApiKey::Fetch, 11, &fetch_request(&parts, -1, 1, 0));
    assert_eq!(r.error_code, 0);
    let answered: Vec<_> = r.responses.iter().flat_map(|t| t.partitions.iter()).collect();
    assert_eq!(answered.len(), 1, "a partition named 40 times is answered once");
    assert_eq!(answered[0].error_code, 0);
    let got = answered[0].records.as_ref().map_or(0, |b| b.len());
    assert!(got > 0, "records come back");
    assert!(frame_len <= cap, "a {frame_len}-byte response exceeds the {cap}-byte cap");
    // A request asking less than the cap gets what it asked.
    let r: FetchResponse =
        c.call(ApiKey::Fetch, 11, &fetch_request(&[("big", 0)], 300 * 1024, 1, 0));
    let got = r.responses[0].partitions[0].records.as_ref().map_or(0, |b| b.len());
    assert!(got <= 300 * 1024 + 1024, "{got} bytes for a 300 KiB max_bytes");
    let peak = broker.peak_rss_mib();
    eprintln!("fetch x40: response frame {frame_len} bytes, peak RSS {peak} MiB");
    assert!(peak < 256, "peak RSS {peak} MiB");
}

/// A gzip v2 batch of `count` minimal records (7 bytes each before compression, more once offset
/// deltas take more than a byte), built by hand: an encoder would need every record in memory
/// first. With `offset_deltas`, record i says offset delta i, as a producer writes it (a batch
/// the broker stores); without, every record says 0, which keeps a huge batch small on the wire
/// (one the broker must refuse from its header alone).
fn gzip_batch_of_tiny_records(count: usize, offset_deltas: bool) -> Bytes {
    use kafka_protocol::compression::{Compressor, Gzip};
    let mut compressed = BytesMut::new();
    Gzip::compress(&mut compressed, |plain: &mut BytesMut| {
        plain.reserve(count * 7);
        for i in 0..count {
            let delta = if offset_deltas { i } else { 0 };
            // The offset delta as a zigzag varint.
            let mut zz = (delta as u64) << 1;
            let mut varint = Vec::with_capacity(5);
            while zz >= 0x80 {
                varint.push((zz as u8 & 0x7f) | 0x80);
                zz >>= 7;
            }
            varint.push(zz as u8);
            // length (zigzag), attributes 0, timestamp delta 0, the offset delta, null key,
            // null value, 0 headers
            plain.put_u8(((5 + varint.len()) << 1) as u8);
            plain.put_slice(&[0, 0]);
            plain.put_slice(&varint);
            plain.put_slice(&[0x01, 0x01, 0]);
        }
        Ok(())
    })
    .unwrap();
    let mut b = BytesMut::new();
    b.put_i64(0); // base offset
    b.put_i32((49 + compressed.len()) as i32); // batch length: from the leader epoch on
    b.put_i32(0); // partition leader epoch
    b.put_i8(2); // magic
    let crc_at = b.len();
    b.put_u32(0); // CRC, filled below
    b.put_i16(1); // attributes: gzip
    b.put_i32(count as i32 - 1); // last offset delta
    b.put_i64(1_700_000_000_000);
    b.put_i64(1_700_000_000_000);
    b.put_i64(-1); // producer id
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(count as i32);
    b.put_slice(&compressed);
    let crc = crc32c::crc32c(&b[crc_at + 4..]);
    b[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Item 9: a small gzip batch claiming millions of tiny records is refused before it is decoded,
/// with INVALID_RECORD and a message saying why; memory stays small. A modest one still works.
#[test]
fn a_gzip_batch_of_millions_of_tiny_records_is_refused_before_decoding() {
    let (broker, _dir) = start(&[]);
    let mut c = connect(&broker);
    create_topic(&mut c, "tiny", 1);
    let ok = gzip_batch_of_tiny_records(1_000, true);
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_request(&[("tiny", 0)], &ok));
    assert_eq!(produce_errors(&r), vec![0], "a modest gzip batch of tiny records is stored");

    let bomb = gzip_batch_of_tiny_records(4_000_000, false);
    assert!(bomb.len() < 200 * 1024, "{} bytes on the wire", bomb.len());
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_request(&[("tiny", 0)], &bomb));
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 87, "INVALID_RECORD");
    let msg = p.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
    assert!(msg.contains("record count 4000000 exceeds"), "the reason is given: {msg:?}");
    let peak = broker.peak_rss_mib();
    eprintln!("gzip batch of 4M records ({} bytes): peak RSS {peak} MiB", bomb.len());
    assert!(peak < 200, "peak RSS {peak} MiB while refusing the batch");
    // The connection and the partition still work.
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_request(&[("tiny", 0)], &ok));
    assert_eq!(produce_errors(&r), vec![0]);
}

/// Item 10: 100,000 JoinGroups without a member id hand out a capped number of pending ids; the
/// rest are refused with GROUP_MAX_SIZE_REACHED, and memory stays flat.
#[test]
fn joins_without_a_member_id_leave_a_capped_number_of_pending_ids() {
    const JOINS: usize = 100_000;
    let (broker, _dir) = start(&[]);
    let c = connect(&broker);
    let mut reader = c.s.try_clone().unwrap();
    let counter = std::thread::spawn(move || {
        let (mut required, mut full) = (0usize, 0usize);
        for _ in 0..JOINS {
            let (r, _): (JoinGroupResponse, _) = read_response(&mut reader, ApiKey::JoinGroup, 5);
            match r.error_code {
                79 => required += 1,
                81 => full += 1,
                other => panic!("unexpected JoinGroup error {other}"),
            }
        }
        (required, full)
    });
    let mut w = std::io::BufWriter::new(c.s.try_clone().unwrap());
    for i in 0..JOINS {
        let req = JoinGroupRequest::default()
            .with_group_id(s(&format!("g{}", i % 200)).into())
            .with_session_timeout_ms(120_000)
            .with_rebalance_timeout_ms(120_000)
            .with_member_id(s(""))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"m")),
            ]);
        w.write_all(&c.frame(ApiKey::JoinGroup, 5, &req)).unwrap();
    }
    w.flush().unwrap();
    let (required, full) = counter.join().unwrap();
    eprintln!("{JOINS} empty joins: {required} MEMBER_ID_REQUIRED, {full} GROUP_MAX_SIZE_REACHED");
    assert!(required <= 10_000, "{required} pending member ids handed out");
    assert!(required >= 1_000, "joins are still served ({required})");
    assert_eq!(required + full, JOINS);
    let peak = broker.peak_rss_mib();
    assert!(peak < 128, "peak RSS {peak} MiB");
}

/// Item 14: an OffsetCommit of 8,192 partitions is one write of the group's file, off the async
/// workers: an unrelated producer barely notices, and every offset is committed and readable.
#[test]
fn a_large_offset_commit_does_not_stall_an_unrelated_producer() {
    let (broker, _dir) = start(&[]);
    let mut c = connect(&broker);
    let topics: Vec<String> = (0..8).map(|i| format!("wide{i}")).collect();
    for t in &topics {
        create_topic(&mut c, t, 1024);
    }
    create_topic(&mut c, "other", 1);

    let stop = Arc::new(AtomicBool::new(false));
    let mut pc = connect(&broker);
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let one = batch(1, 100);
            let (mut worst, mut n) = (Duration::ZERO, 0u32);
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                assert_eq!(produce_errors(&produce(&mut pc, &[("other", 0)], &one)), vec![0]);
                worst = worst.max(t.elapsed());
                n += 1;
            }
            (worst, n)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let commit = OffsetCommitRequest::default()
        .with_group_id(s("wide-group").into())
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(s(t).into())
                        .with_partitions(
                            (0..1024)
                                .map(|p| {
                                    offset_commit_request::OffsetCommitRequestPartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(i64::from(p) + 1)
                                        .with_committed_metadata(Some(s("")))
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let started = Instant::now();
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 5, &commit);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let (worst, n) = producer.join().unwrap();
    eprintln!("OffsetCommit of 8192 partitions took {took:?}; producer worst {worst:?} over {n}");
    let codes: Vec<i16> =
        r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
    assert_eq!(codes.len(), 8192);
    assert!(codes.iter().all(|c| *c == 0), "every partition committed");
    assert!(n > 2, "the producer ran ({n} requests)");
    assert!(worst < Duration::from_secs(2), "worst produce latency {worst:?} (commit {took:?})");

    let fetch =
        OffsetFetchRequest::default().with_group_id(s("wide-group").into()).with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(s(t).into())
                        .with_partition_indexes((0..1024).collect())
                })
                .collect(),
        ));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 5, &fetch);
    for t in &r.topics {
        for p in &t.partitions {
            assert_eq!(p.committed_offset, i64::from(p.partition_index) + 1);
        }
    }
    assert_eq!(r.topics.iter().map(|t| t.partitions.len()).sum::<usize>(), 8192);
}

/// Item 14: CreateTopics and DeleteTopics handle at most 1,000 topics per request; the rest get
/// POLICY_VIOLATION (with a message where the version has one).
#[test]
fn topic_admin_requests_are_bounded() {
    let (broker, _dir) = start(&[]);
    let mut c = connect(&broker);
    let names: Vec<String> = (0..1_200).map(|i| format!("t{i}")).collect();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(60_000)
        .with_validate_only(true)
        .with_topics(
            names
                .iter()
                .map(|n| {
                    create_topics_request::CreatableTopic::default()
                        .with_name(s(n).into())
                        .with_num_partitions(1)
                        .with_replication_factor(-1)
                })
                .collect(),
        );
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 4, &req);
    assert_eq!(r.topics.len(), 1_200);
    assert!(r.topics[..1_000].iter().all(|t| t.error_code == 0));
    for t in &r.topics[1_000..] {
        assert_eq!(t.error_code, 44, "POLICY_VIOLATION");
        let msg = t.error_message.as_ref().map(|m| m.to_string()).unwrap_or_default();
        assert!(msg.contains("1000 topics per request"), "{msg}");
    }
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(60_000)
        .with_topic_names(names.iter().map(|n| s(n).into()).collect());
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &req);
    assert_eq!(r.responses.len(), 1_200);
    assert!(r.responses[..1_000].iter().all(|t| t.error_code == 3), "UNKNOWN_TOPIC_OR_PARTITION");
    assert!(r.responses[1_000..].iter().all(|t| t.error_code == 44), "POLICY_VIOLATION");
}

/// Item 15: a long poll over 2,000 partitions, while another client appends to every one of them,
/// costs CPU per append, not per append times partitions.
#[test]
fn a_long_poll_over_many_partitions_rereads_only_what_changed() {
    let (broker, _dir) = start(&[]);
    let mut c = connect(&broker);
    create_topic(&mut c, "lp0", 1000);
    create_topic(&mut c, "lp1", 1000);
    let parts: Vec<(&str, i32)> =
        ["lp0", "lp1"].iter().flat_map(|t| (0..1000).map(move |p| (*t, p))).collect();
    let mut pc = connect(&broker);
    let before = broker.cpu();
    // min_bytes far above what arrives: the poll lasts its whole 2 s.
    let fetch = fetch_request(&parts, -1, 100 << 20, 2_000);
    let mut fs = c.s.try_clone().unwrap();
    fs.write_all(&c.frame(ApiKey::Fetch, 11, &fetch)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Every partition receives a record, in a few requests of 500 partitions.
    let one = batch(1, 10);
    for chunk in parts.chunks(500) {
        let r = produce(&mut pc, chunk, &one);
        assert!(produce_errors(&r).iter().all(|e| *e == 0));
    }
    let started = Instant::now();
    let (r, _): (FetchResponse, _) = read_response(&mut fs, ApiKey::Fetch, 11);
    let waited = started.elapsed();
    let cpu = broker.cpu() - before;
    let with_data = r
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.records.as_ref().is_some_and(|b| !b.is_empty()))
        .count();
    assert!(with_data > 0, "the poll returns what arrived");
    eprintln!("long poll over 2000 partitions: {cpu:?} CPU, {waited:?} wall");
    assert!(cpu < Duration::from_secs(5), "{cpu:?} of CPU for one 2 s long poll ({waited:?})");
}
