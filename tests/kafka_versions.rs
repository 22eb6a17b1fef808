//! Issue 13: the request versions Kafka 3.x serves, through the Kafka listener of the real binary.
//! Topic IDs end to end: Metadata v10-12 gives every topic its ID and finds topics by ID, Fetch
//! v13+ reads by ID, DeleteTopics v6 deletes by ID (a re-created topic gets a new one), an unknown
//! ID is UNKNOWN_TOPIC_ID everywhere; Produce v10-11 and ListOffsets v8-9; and every API at the
//! highest version the broker advertises answers a request the crate encodes at that version.

mod common;

use bytes::Bytes;
use common::BrokerProcess;
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::RecordBatchDecoder;
use minikafka::batch::Compression;
use minikafka::record::{self, NewRecord};
use uuid::Uuid;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_REQUEST: i16 = 42;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn broker(dir: &tempfile::TempDir) -> BrokerProcess {
    BrokerProcess::start_with_kafka(&dir.path().join("data"), &["--fsync", "never"])
}

fn connect(b: &BrokerProcess) -> KafkaConn {
    KafkaConn::connect(b.kafka_addr.as_deref().expect("Kafka listener on"), "versions-test")
}

fn create(b: &BrokerProcess, topic: &str, partitions: u32) {
    common::ok(b.cli(&["topic", "create", topic, "--partitions", &partitions.to_string()]));
}

/// Metadata at `v` for the topics named (by name or by ID).
fn metadata(c: &mut KafkaConn, v: i16, topics: Vec<MetadataRequestTopic>) -> MetadataResponse {
    let req = MetadataRequest::default().with_topics(Some(topics));
    c.call(ApiKey::Metadata, v, &req)
}

fn by_name(topic: &str) -> MetadataRequestTopic {
    MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
}

fn by_id(id: Uuid) -> MetadataRequestTopic {
    MetadataRequestTopic::default().with_name(None).with_topic_id(id)
}

/// The topic's ID, as Metadata v12 gives it.
fn topic_id(c: &mut KafkaConn, topic: &str) -> Uuid {
    let r = metadata(c, 12, vec![by_name(topic)]);
    assert_eq!(r.topics[0].error_code, 0, "{r:?}");
    r.topics[0].topic_id
}

/// Produce at `v` (acks all) of `values` to one partition; the base offset.
fn produce(c: &mut KafkaConn, v: i16, topic: &str, partition: i32, values: &[&str]) -> i64 {
    let recs: Vec<NewRecord<'_>> = values.iter().map(|v| NewRecord::value(v.as_bytes())).collect();
    let batch = Bytes::from(record::build_batch(&recs, Compression::None).unwrap());
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(batch)),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, v, &req);
    assert_eq!(r.responses[0].name.as_str(), topic);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.index, p.error_code), (partition, 0), "{p:?}");
    p.base_offset
}

/// Fetch at `v` (v13+) of one partition of the topic with `id`, from `offset`.
fn fetch_by_id(c: &mut KafkaConn, v: i16, id: Uuid, partition: i32, offset: i64) -> FetchResponse {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default().with_topic_id(id).with_partitions(vec![
            FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20),
        ])]);
    c.call(ApiKey::Fetch, v, &req)
}

/// The values of the records a fetched partition holds, with their offsets.
fn values(records: &Option<Bytes>) -> Vec<(i64, String)> {
    let mut b = records.clone().unwrap_or_default();
    let mut out = Vec::new();
    while !b.is_empty() {
        let set =
            RecordBatchDecoder::decode(&mut b).expect("the crate decodes the fetched batches");
        for r in set.records {
            let v = r.value.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default();
            out.push((r.offset, v));
        }
    }
    out
}

#[test]
fn metadata_v10_to_v12_gives_every_topic_its_id_and_finds_topics_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir);
    create(&b, "orders", 3);
    create(&b, "payments", 1);
    let mut c = connect(&b);

    // By name: the ID is there from v10, the same at every version and on every call.
    let id = topic_id(&mut c, "orders");
    assert!(!id.is_nil());
    for v in [10, 11, 12] {
        let r = metadata(&mut c, v, vec![by_name("orders")]);
        let t = &r.topics[0];
        assert_eq!((t.error_code, t.topic_id, t.partitions.len()), (0, id, 3), "v{v}");
    }
    let other = topic_id(&mut c, "payments");
    assert!(!other.is_nil() && other != id, "each topic has its own ID");
    // Every topic (a null list) carries its ID.
    let all: MetadataResponse =
        c.call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    let mut got: Vec<(String, Uuid)> =
        all.topics.iter().map(|t| (t.name.as_ref().unwrap().to_string(), t.topic_id)).collect();
    got.sort();
    assert_eq!(got, [("orders".to_string(), id), ("payments".to_string(), other)]);
    // Before v10 there is no ID to send; the answer still decodes at v9.
    let r = metadata(&mut c, 9, vec![by_name("orders")]);
    assert_eq!((r.topics[0].error_code, r.topics[0].partitions.len()), (0, 3));

    // By ID (v12, null name): the topic under its name, with its partitions.
    let r = metadata(&mut c, 12, vec![by_id(id), by_id(other)]);
    let names: Vec<_> = r.topics.iter().map(|t| t.name.as_ref().map(|n| n.to_string())).collect();
    assert_eq!(names, [Some("orders".to_string()), Some("payments".to_string())]);
    assert_eq!(r.topics[0].topic_id, id);
    assert_eq!(r.topics[0].partitions.len(), 3);

    // An ID no topic has: UNKNOWN_TOPIC_ID, with the ID and (v12) a null name; never created.
    let unknown = Uuid::from_bytes([9; 16]);
    let r = metadata(&mut c, 12, vec![by_id(unknown)]);
    let t = &r.topics[0];
    assert_eq!((t.error_code, t.topic_id, t.name.clone()), (UNKNOWN_TOPIC_ID, unknown, None));
    let all: MetadataResponse =
        c.call(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
    assert_eq!(all.topics.len(), 2);
    // An unknown name is still UNKNOWN_TOPIC_OR_PARTITION (auto-creation is off by default).
    let r = metadata(&mut c, 12, vec![by_name("nope")]);
    assert_eq!(
        (r.topics[0].error_code, r.topics[0].topic_id),
        (UNKNOWN_TOPIC_OR_PARTITION, Uuid::nil())
    );
}

#[test]
fn fetch_v13_to_v17_reads_by_topic_id_what_produce_v11_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir);
    create(&b, "events", 2);
    let mut c = connect(&b);
    let id = topic_id(&mut c, "events");

    // Produce v11 (and v10) round trip: base offsets as assigned.
    assert_eq!(produce(&mut c, 11, "events", 1, &["a", "b", "c"]), 0);
    assert_eq!(produce(&mut c, 10, "events", 1, &["d"]), 3);
    assert_eq!(produce(&mut c, 11, "events", 1, &["e", "f"]), 4);

    for v in [13, 15, 16, 17] {
        let r = fetch_by_id(&mut c, v, id, 1, 2);
        assert_eq!((r.error_code, r.session_id), (0, 0), "v{v}: no fetch sessions");
        assert_eq!(r.responses.len(), 1);
        let t = &r.responses[0];
        assert_eq!(t.topic_id, id, "v{v}: answered by the ID asked for");
        let p = &t.partitions[0];
        assert_eq!((p.partition_index, p.error_code, p.high_watermark), (1, 0, 6), "v{v}");
        assert_eq!(p.last_stable_offset, 6);
        // Whole stored batches come back (the first holds offsets 0-2): clients skip what lies
        // below the fetch offset.
        let got: Vec<_> = values(&p.records).into_iter().filter(|(o, _)| *o >= 2).collect();
        let want: Vec<(i64, String)> = ["c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, v)| (2 + i as i64, v.to_string()))
            .collect();
        assert_eq!(got, want, "v{v}");
    }
    // The same by name at v12, for comparison: the same records.
    let req =
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(TopicName(s("events"))).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(1)
                    .with_fetch_offset(2)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req);
    assert_eq!(r.responses[0].topic.as_str(), "events");
    assert_eq!(values(&r.responses[0].partitions[0].records).len(), 6);

    // An unknown ID: UNKNOWN_TOPIC_ID for its partitions, at once (no long poll).
    let unknown = Uuid::from_bytes([3; 16]);
    for v in [13, 16] {
        let r = fetch_by_id(&mut c, v, unknown, 0, 0);
        let t = &r.responses[0];
        assert_eq!(t.topic_id, unknown);
        assert_eq!(
            (t.partitions[0].error_code, t.partitions[0].high_watermark),
            (UNKNOWN_TOPIC_ID, -1)
        );
        assert!(values(&t.partitions[0].records).is_empty());
    }
}

/// DeleteTopics v6 naming topics by name or by ID.
fn delete_v6(c: &mut KafkaConn, topics: Vec<DeleteTopicState>) -> DeleteTopicsResponse {
    let req = DeleteTopicsRequest::default().with_timeout_ms(5000).with_topics(topics);
    c.call(ApiKey::DeleteTopics, 6, &req)
}

#[test]
fn delete_topics_v6_deletes_by_id_and_a_recreated_topic_gets_a_new_id() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir);
    create(&b, "temp", 2);
    let mut c = connect(&b);
    let old = topic_id(&mut c, "temp");
    produce(&mut c, 11, "temp", 0, &["gone soon"]);

    let r = delete_v6(&mut c, vec![DeleteTopicState::default().with_name(None).with_topic_id(old)]);
    let t = &r.responses[0];
    assert_eq!(t.error_code, 0, "{t:?}");
    assert_eq!(
        (t.name.as_ref().map(|n| n.to_string()), t.topic_id),
        (Some("temp".to_string()), old)
    );
    let r = metadata(&mut c, 12, vec![by_id(old)]);
    assert_eq!(r.topics[0].error_code, UNKNOWN_TOPIC_ID, "the deleted topic's ID is unknown");
    let out = b.cli(&["topic", "list"]);
    assert!(!common::stdout(&out).contains("temp"), "{}", common::stdout(&out));

    // The same name again: a new topic, a new ID; the old ID still finds nothing, and fetching
    // by it does not read the new topic.
    create(&b, "temp", 1);
    let new = topic_id(&mut c, "temp");
    assert!(!new.is_nil() && new != old);
    let r = metadata(&mut c, 12, vec![by_id(old)]);
    assert_eq!(r.topics[0].error_code, UNKNOWN_TOPIC_ID);
    produce(&mut c, 11, "temp", 0, &["new"]);
    let r = fetch_by_id(&mut c, 16, old, 0, 0);
    assert_eq!(r.responses[0].partitions[0].error_code, UNKNOWN_TOPIC_ID);
    let r = fetch_by_id(&mut c, 16, new, 0, 0);
    assert_eq!(values(&r.responses[0].partitions[0].records), [(0, "new".to_string())]);

    // An unknown ID, and a topic named both ways: refused with a message, nothing deleted.
    let r = delete_v6(
        &mut c,
        vec![
            DeleteTopicState::default().with_name(None).with_topic_id(old),
            DeleteTopicState::default().with_name(Some(TopicName(s("temp")))).with_topic_id(new),
        ],
    );
    assert_eq!(r.responses[0].error_code, UNKNOWN_TOPIC_ID);
    assert_eq!(r.responses[0].topic_id, old);
    assert_eq!(r.responses[1].error_code, INVALID_REQUEST);
    assert!(r.responses[1].error_message.is_some());
    assert_eq!(topic_id(&mut c, "temp"), new, "still there");

    // By name at v6 (the answer carries the ID) and at v4 (no ID field).
    create(&b, "other", 1);
    let other = topic_id(&mut c, "other");
    let r =
        delete_v6(&mut c, vec![DeleteTopicState::default().with_name(Some(TopicName(s("temp"))))]);
    assert_eq!((r.responses[0].error_code, r.responses[0].topic_id), (0, new));
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topic_names(vec![TopicName(s("other"))]);
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &req);
    assert_eq!((r.responses[0].error_code, r.responses[0].topic_id), (0, Uuid::nil()));
    let r = metadata(&mut c, 12, vec![by_id(other)]);
    assert_eq!(r.topics[0].error_code, UNKNOWN_TOPIC_ID);
}

/// ListOffsets at `v` for partition 0 of `topic`: (error code, offset, timestamp).
fn list(c: &mut KafkaConn, v: i16, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
            ListOffsetsPartition::default().with_partition_index(0).with_timestamp(timestamp),
        ]),
    ]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn list_offsets_v8_and_v9_answer_earliest_local_and_latest_tiered() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir);
    create(&b, "lo", 1);
    let mut c = connect(&b);
    produce(&mut c, 11, "lo", 0, &["1", "2", "3", "4", "5"]);
    common::ok(b.cli(&["topic", "trim", "lo", "--partition", "0", "--before", "2"]));

    // Earliest local (-4, v8+) is the log start: every record is local.
    assert_eq!(list(&mut c, 8, "lo", -4), (0, 2, -1));
    assert_eq!(list(&mut c, 9, "lo", -4), (0, 2, -1));
    // Latest tiered (-5, v9+): nothing is tiered, -1 as Kafka without tiered storage says.
    assert_eq!(list(&mut c, 9, "lo", -5).1, -1);
    assert_eq!(list(&mut c, 9, "lo", -5).0, 0);
    // Asked at versions that do not define them: UNSUPPORTED_VERSION.
    assert_eq!(list(&mut c, 7, "lo", -4).0, UNSUPPORTED_VERSION);
    assert_eq!(list(&mut c, 8, "lo", -5).0, UNSUPPORTED_VERSION);
    // Earliest and latest at v9 as before.
    assert_eq!(list(&mut c, 9, "lo", -2), (0, 2, -1));
    assert_eq!(list(&mut c, 9, "lo", -1), (0, 5, -1));
}

/// Sends the crate's default request of `key` at `v` on a fresh connection and decodes the
/// answer as the matching response type; None for a key missing from the table.
fn default_round_trip(b: &BrokerProcess, key: ApiKey, v: i16) -> Option<String> {
    fn go<Q: Encodable + Default, R: Decodable + std::fmt::Debug>(
        b: &BrokerProcess,
        key: ApiKey,
        v: i16,
        req: Q,
    ) -> String {
        let mut c = connect(b);
        let r: R = c.call(key, v, &req);
        format!("{r:?}")
    }
    macro_rules! table {
        ($($k:ident => $q:ty, $r:ty);* $(;)?) => {
            match key {
                // The default acks=0 gets no answer at all.
                ApiKey::Produce => Some(go::<_, ProduceResponse>(b, key, v, ProduceRequest::default().with_acks(1))),
                $(ApiKey::$k => Some(go::<$q, $r>(b, key, v, <$q>::default())),)*
                _ => None,
            }
        };
    }
    table!(
        Fetch => FetchRequest, FetchResponse;
        ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
        Metadata => MetadataRequest, MetadataResponse;
        OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
        OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
        FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
        JoinGroup => JoinGroupRequest, JoinGroupResponse;
        Heartbeat => HeartbeatRequest, HeartbeatResponse;
        LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
        SyncGroup => SyncGroupRequest, SyncGroupResponse;
        DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
        ListGroups => ListGroupsRequest, ListGroupsResponse;
        SaslHandshake => SaslHandshakeRequest, SaslHandshakeResponse;
        ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
        CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
        DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
        DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
        InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
        DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
        AlterConfigs => AlterConfigsRequest, AlterConfigsResponse;
        CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
        DeleteGroups => DeleteGroupsRequest, DeleteGroupsResponse;
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
        OffsetDelete => OffsetDeleteRequest, OffsetDeleteResponse;
        DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
        OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse;
    )
}

#[test]
fn every_api_answers_at_the_highest_version_it_advertises() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir);
    let mut c = connect(&b);
    let versions: ApiVersionsResponse =
        c.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    let max =
        |k: ApiKey| versions.api_keys.iter().find(|a| a.api_key == k as i16).map(|a| a.max_version);
    // Kafka 3.9's maxima for the APIs that carry topic IDs or records.
    assert_eq!(max(ApiKey::Metadata), Some(12));
    assert_eq!(max(ApiKey::Fetch), Some(17));
    assert_eq!(max(ApiKey::Produce), Some(11));
    assert_eq!(max(ApiKey::ListOffsets), Some(9));
    assert_eq!(max(ApiKey::DeleteTopics), Some(6));

    for a in &versions.api_keys {
        let key = ApiKey::try_from(a.api_key).expect("a known API key");
        // SaslAuthenticate is only valid after a SaslHandshake (tests/hostile_auth.rs).
        if key == ApiKey::SaslAuthenticate {
            continue;
        }
        let answer = default_round_trip(&b, key, a.max_version)
            .unwrap_or_else(|| panic!("{key:?} is missing from this test's table"));
        assert!(!answer.is_empty(), "{key:?} v{}", a.max_version);
    }
    assert!(!b.log().contains("panicked"));
}

/// A batch as sarama before 1.23 sends it: records with timestamps, `maxTimestamp` left at -1,
/// the CRC computed over that header.
fn batch_without_max_timestamp(stamps: &[i64]) -> Vec<u8> {
    let recs: Vec<NewRecord<'_>> = stamps
        .iter()
        .map(|&t| NewRecord {
            timestamp_ms: t,
            key: None,
            value: Some(b"old sarama"),
            headers: &[],
        })
        .collect();
    let mut b = record::build_batch(&recs, Compression::None).unwrap();
    set_max_timestamp_and_crc(&mut b, -1);
    b
}

fn set_max_timestamp_and_crc(b: &mut [u8], max: i64) {
    use minikafka::batch::{BatchView, CRC_POS, MAX_TIMESTAMP_POS};
    b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max.to_be_bytes());
    let crc = BatchView::new(b).unwrap().compute_crc();
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Produce v3 (sarama 1.22's) of one raw batch; the partition's error code and base offset.
fn produce_raw(c: &mut KafkaConn, topic: &str, batch: Vec<u8>) -> (i16, i64) {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![
        TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
            PartitionProduceData::default().with_index(0).with_records(Some(Bytes::from(batch))),
        ]),
    ]);
    let r: ProduceResponse = c.call(ApiKey::Produce, 3, &req);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[test]
fn a_batch_without_max_timestamp_as_old_sarama_sends_gets_it_like_kafka_sets_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(&dir);
    create(&b, "old-sarama", 1);
    let mut c = connect(&b);

    // Accepted, and stored with the largest record timestamp as its maxTimestamp: ListOffsets
    // MAX_TIMESTAMP (from the time index) finds the record that holds it.
    assert_eq!(
        produce_raw(&mut c, "old-sarama", batch_without_max_timestamp(&[1000, 3000, 2000])),
        (0, 0)
    );
    assert_eq!(list(&mut c, 7, "old-sarama", -3), (0, 1, 3000));
    let id = topic_id(&mut c, "old-sarama");
    let r = fetch_by_id(&mut c, 16, id, 0, 0);
    let p = &r.responses[0].partitions[0];
    let set = RecordBatchDecoder::decode(&mut p.records.clone().unwrap()).unwrap();
    let stamps: Vec<i64> = set.records.iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, [1000, 3000, 2000]);

    // A damaged batch is not given a fresh CRC: still CORRUPT_MESSAGE.
    let mut damaged = batch_without_max_timestamp(&[5000]);
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    assert_eq!(produce_raw(&mut c, "old-sarama", damaged).0, 2);
    // Any other wrong maxTimestamp is still INVALID_RECORD.
    let mut wrong = batch_without_max_timestamp(&[5000, 6000]);
    set_max_timestamp_and_crc(&mut wrong, 5500);
    assert_eq!(produce_raw(&mut c, "old-sarama", wrong).0, 87);
    assert_eq!(list(&mut c, 7, "old-sarama", -1).1, 3, "nothing more was stored");
}
