//! Issue 14: the Kafka listener over `minikafka::cluster::Cluster`, as Kafka clients see it. On a
//! single node (a cluster of one) it answers as before: broker 0 leads every partition at leader
//! epoch 0, its only replica and ISR, and Fetch and ListOffsets check a client's leader epoch
//! against it (KIP-320). Brokers run in the test process on ephemeral ports; requests are raw
//! frames built with `kafka-protocol` (what a client sends, field by field, at a chosen version).
//! Three real broker processes then show that the admin requests sent to any one of them change
//! the topic on every broker: CreatePartitions, and IncrementalAlterConfigs seen by DescribeConfigs
//! everywhere, across a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::cluster::TestCluster;
use common::cluster_client::{CallError, ClusterClient, NONE, TOPIC_ALREADY_EXISTS, retriable};
use common::kafka::{KafkaConn, s};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use minikafka::batch::{BatchBuilder, Compression};
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::cluster::Cluster;
use minikafka::kafka::{KafkaConfig, KafkaServer};
use minikafka::record::{self, NewRecord};

const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const INVALID_REQUIRED_ACKS: i16 = 21;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const UNKNOWN_LEADER_EPOCH: i16 = 75;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_CONFIG: i16 = 40;

/// DescribeConfigs' resource type of a topic, and the source of a value set on it.
const RESOURCE_TOPIC: i8 = 2;
const SOURCE_TOPIC: i8 = 1;
/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
/// Each step of the cluster tests converges well within this (a debug build, a busy machine).
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// One broker in the test process: its cluster and a Kafka listener on an ephemeral port.
struct Node {
    addr: String,
    cluster: Arc<Cluster>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Serves `cluster` on a Kafka listener at `listen` (port 0: any).
    async fn serve(cluster: Arc<Cluster>, listen: &str) -> Node {
        let config = KafkaConfig::new(listen.parse().unwrap());
        let server = KafkaServer::bind_cluster(config, cluster.clone()).await.unwrap();
        let addr = server.local_addr().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Node { addr, cluster, stop: Some(tx), task: Some(task) }
    }

    /// A single-node broker on `dir` (what `KafkaServer::bind` serves).
    async fn single(dir: &std::path::Path) -> Node {
        let config = BrokerConfig { data_dir: dir.to_path_buf(), ..Default::default() };
        Node::serve(Cluster::single(Broker::open(config).unwrap()), "127.0.0.1:0").await
    }

    /// Stops the listener, then the cluster member and its broker.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("the listener stops promptly")
            .unwrap();
        self.cluster.shutdown().await;
        self.cluster.broker().shutdown().unwrap();
    }

    fn port(&self) -> i32 {
        self.addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }
}

/// Sends one request on a fresh connection to `addr` and reads its response (off the async
/// workers: the raw connection is blocking).
async fn call<T, R>(addr: &str, key: ApiKey, v: i16, body: T) -> R
where
    T: Encodable + Send + 'static,
    R: Decodable + Send + 'static,
{
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        KafkaConn::connect(&addr, "kafka-cluster").call(key, v, &body)
    })
    .await
    .unwrap()
}

/// CreateTopics v5 of one topic: its result.
async fn create(addr: &str, name: &str, partitions: i32, rf: i16) -> CreatableTopicResult {
    let req = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(rf),
    ]);
    let r: CreateTopicsResponse = call(addr, ApiKey::CreateTopics, 5, req).await;
    r.topics.into_iter().next().unwrap()
}

/// Metadata at `v` for `topics`.
async fn metadata(addr: &str, v: i16, topics: &[&str]) -> MetadataResponse {
    let topics =
        topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(s(t)))));
    let req = MetadataRequest::default().with_topics(Some(topics.collect()));
    call(addr, ApiKey::Metadata, v, req).await
}

/// One batch of `n` records, values `{tag}-{i}`.
fn batch(tag: &str, n: usize) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..n {
        let v = format!("{tag}-{i}");
        let r = NewRecord {
            timestamp_ms: 1_000 + i as i64,
            key: None,
            value: Some(v.as_bytes()),
            headers: &[],
        };
        record::push_record(&mut b, &r).unwrap();
    }
    Bytes::from(b.build().unwrap())
}

/// Produce v7 of one batch to one partition: (error code, base offset).
async fn produce(addr: &str, topic: &str, p: i32, acks: i16, records: Bytes) -> (i16, i64) {
    let req =
        ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
            TopicProduceData::default().with_name(TopicName(s(topic))).with_partition_data(vec![
                PartitionProduceData::default().with_index(p).with_records(Some(records)),
            ]),
        ]);
    let r: ProduceResponse = call(addr, ApiKey::Produce, 7, req).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// What a Fetch answered for one partition.
#[derive(Debug)]
struct Fetched {
    error: i16,
    high_watermark: i64,
    log_start: i64,
    /// The record values, in offset order.
    values: Vec<String>,
}

/// Fetch v11 of one partition from `offset`, naming `epoch` as the current leader epoch (-1:
/// none), without waiting.
async fn fetch(addr: &str, topic: &str, p: i32, offset: i64, epoch: i32) -> Fetched {
    let req =
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(TopicName(s(topic))).with_partitions(vec![
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(offset)
                    .with_current_leader_epoch(epoch)
                    .with_partition_max_bytes(1 << 20),
            ]),
        ]);
    let r: FetchResponse = call(addr, ApiKey::Fetch, 11, req).await;
    let p = &r.responses[0].partitions[0];
    let mut values = Vec::new();
    if let Some(mut bytes) = p.records.clone() {
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).unwrap();
        for rec in sets.into_iter().flat_map(|s| s.records) {
            values.push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
        }
    }
    Fetched {
        error: p.error_code,
        high_watermark: p.high_watermark,
        log_start: p.log_start_offset,
        values,
    }
}

/// ListOffsets v4 of one partition at `timestamp` (-1 latest, -2 earliest) naming `epoch`:
/// (error code, offset).
async fn list_offset(addr: &str, topic: &str, p: i32, timestamp: i64, epoch: i32) -> (i16, i64) {
    let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
        ListOffsetsTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![
            ListOffsetsPartition::default()
                .with_partition_index(p)
                .with_timestamp(timestamp)
                .with_current_leader_epoch(epoch),
        ]),
    ]);
    let r: ListOffsetsResponse = call(addr, ApiKey::ListOffsets, 4, req).await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// OffsetForLeaderEpoch v3 of one partition for `epoch`, naming `current` as the current leader
/// epoch: (error code, epoch, end offset).
async fn epoch_end(addr: &str, topic: &str, p: i32, current: i32, epoch: i32) -> (i16, i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let req =
        OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            OffsetForLeaderTopic::default().with_topic(TopicName(s(topic))).with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(epoch),
            ]),
        ]);
    let r: OffsetForLeaderEpochResponse = call(addr, ApiKey::OffsetForLeaderEpoch, 3, req).await;
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// One partition of a Metadata answer as (leader, leader epoch, replicas, isr, offline).
fn leadership(
    p: &metadata_response::MetadataResponsePartition,
) -> (i32, i32, Vec<i32>, Vec<i32>, Vec<i32>) {
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    (
        p.leader_id.0,
        p.leader_epoch,
        ids(&p.replica_nodes),
        ids(&p.isr_nodes),
        ids(&p.offline_replicas),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_is_broker_0_leading_every_partition_at_epoch_0() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::single(dir.path()).await;

    let created = create(&node.addr, "orders", 2, -1).await;
    assert_eq!((created.error_code, created.num_partitions, created.replication_factor), (0, 2, 1));
    let refused = create(&node.addr, "wide", 1, 2).await;
    assert_eq!(refused.error_code, INVALID_REPLICATION_FACTOR, "{refused:?}");
    assert!(refused.error_message.as_deref().unwrap().contains("replication factor 2"));

    let md = metadata(&node.addr, 9, &["orders"]).await;
    let brokers: Vec<_> =
        md.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
    assert_eq!(brokers, vec![(0, "127.0.0.1".to_string(), node.port())]);
    assert_eq!(md.controller_id.0, 0);
    let t = &md.topics[0];
    assert_eq!(t.error_code, 0);
    assert_eq!(t.partitions.len(), 2);
    for p in &t.partitions {
        assert_eq!(p.error_code, 0);
        assert_eq!(leadership(p), (0, 0, vec![0], vec![0], vec![]));
    }
    // Before v7 there is no leader epoch on the wire, before v5 no offline replicas: the
    // answer still decodes and names the leader.
    let old = metadata(&node.addr, 4, &["orders"]).await;
    assert_eq!(old.topics[0].partitions[0].leader_id.0, 0);

    let dc: DescribeClusterResponse =
        call(&node.addr, ApiKey::DescribeCluster, 0, DescribeClusterRequest::default()).await;
    assert_eq!(dc.controller_id.0, 0);
    let ids: Vec<_> = dc.brokers.iter().map(|b| (b.broker_id.0, b.port)).collect();
    assert_eq!(ids, vec![(0, node.port())]);

    let fc: FindCoordinatorResponse = call(
        &node.addr,
        ApiKey::FindCoordinator,
        3,
        FindCoordinatorRequest::default().with_key(s("billing")),
    )
    .await;
    assert_eq!((fc.error_code, fc.node_id.0, fc.port), (0, 0, node.port()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_checks_the_clients_leader_epoch_on_fetch_and_list_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::single(dir.path()).await;
    assert_eq!(create(&node.addr, "events", 1, 1).await.error_code, 0);

    assert_eq!(produce(&node.addr, "events", 0, -1, batch("all", 3)).await, (0, 0));
    assert_eq!(produce(&node.addr, "events", 0, 1, batch("one", 2)).await, (0, 3));
    assert_eq!(produce(&node.addr, "events", 0, 2, batch("two", 1)).await.0, INVALID_REQUIRED_ACKS);

    let f = fetch(&node.addr, "events", 0, 0, 0).await;
    assert_eq!((f.error, f.high_watermark, f.log_start), (0, 5, 0), "{f:?}");
    assert_eq!(f.values, ["all-0", "all-1", "all-2", "one-0", "one-1"]);
    // No epoch (-1) is no check; an epoch this broker has not seen is UNKNOWN_LEADER_EPOCH.
    assert_eq!(fetch(&node.addr, "events", 0, 3, -1).await.values, ["one-0", "one-1"]);
    assert_eq!(fetch(&node.addr, "events", 0, 0, 1).await.error, UNKNOWN_LEADER_EPOCH);

    assert_eq!(list_offset(&node.addr, "events", 0, -1, 0).await, (0, 5));
    assert_eq!(list_offset(&node.addr, "events", 0, -2, -1).await, (0, 0));
    assert_eq!(list_offset(&node.addr, "events", 0, -1, 4).await.0, UNKNOWN_LEADER_EPOCH);
    // A partition the topic does not have is no leadership question.
    assert_ne!(list_offset(&node.addr, "events", 7, -1, 0).await.0, NOT_LEADER_OR_FOLLOWER);

    // Every record was written at epoch 0, the current one: it ends at the log end. An epoch
    // newer than any is undefined (-1, -1); a client ahead of the broker is told so.
    assert_eq!(epoch_end(&node.addr, "events", 0, 0, 0).await, (0, 0, 5));
    assert_eq!(epoch_end(&node.addr, "events", 0, -1, 3).await, (0, -1, -1));
    assert_eq!(epoch_end(&node.addr, "events", 0, 2, 0).await.0, UNKNOWN_LEADER_EPOCH);
    node.stop().await;
}

/// Retries `step` until it returns `Some`, for at most `STEP_LIMIT`; panics with `what`, the last
/// failure and the brokers' logs.
#[track_caller]
fn within<T>(cluster: &TestCluster, what: &str, mut step: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + STEP_LIMIT;
    loop {
        match step() {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("{what}: still failing after {STEP_LIMIT:?}: {e}\n{}", cluster.logs_tail(40))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Three brokers with one RF-3 topic of `partitions` partitions, every one led and fully in
/// sync; the client's metadata is fresh.
fn cluster_with_topic(
    dir: &std::path::Path,
    topic: &str,
    partitions: i32,
) -> (TestCluster, ClusterClient) {
    let cluster = TestCluster::start(dir, 3, &["--fsync", "never"]);
    let mut client = ClusterClient::new(&cluster.kafka_addrs(), topic, "kafka-cluster");
    within(&cluster, "create the topic", || match client.create_topic(partitions, 3) {
        Ok(NONE | TOPIC_ALREADY_EXISTS) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    client.wait_healthy(partitions, 3, STEP_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    (cluster, client)
}

/// CreatePartitions v3 of `topic` to `count` partitions through `addr`: (error, message).
fn create_partitions(
    client: &mut ClusterClient,
    addr: &str,
    topic: &str,
    count: i32,
) -> Result<(i16, String), CallError> {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default().with_name(TopicName(s(topic))).with_count(count),
        ])
        .with_timeout_ms(30_000);
    let r: CreatePartitionsResponse = client.call(addr, ApiKey::CreatePartitions, 3, &req)?;
    let t = &r.results[0];
    Ok((t.error_code, t.error_message.as_deref().unwrap_or("").to_string()))
}

/// IncrementalAlterConfigs v1 of one topic through `addr`: (error, message).
fn alter_configs(
    client: &mut ClusterClient,
    addr: &str,
    topic: &str,
    ops: &[(&str, i8, Option<&str>)],
) -> Result<(i16, String), CallError> {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(v.map(s))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configs(configs),
    ]);
    let r: IncrementalAlterConfigsResponse =
        client.call(addr, ApiKey::IncrementalAlterConfigs, 1, &req)?;
    let res = &r.responses[0];
    Ok((res.error_code, res.error_message.as_deref().unwrap_or("").to_string()))
}

/// DescribeConfigs v1 of `keys` of one topic through `addr`: (name, value, set on the topic).
fn describe_configs(
    client: &mut ClusterClient,
    addr: &str,
    topic: &str,
    keys: &[&str],
) -> Result<Vec<(String, String, bool)>, CallError> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(keys.iter().map(|k| s(k)).collect())),
    ]);
    let r: DescribeConfigsResponse = client.call(addr, ApiKey::DescribeConfigs, 1, &req)?;
    let res = &r.results[0];
    if res.error_code != NONE {
        return Err(CallError::Kafka(res.error_code));
    }
    let mut configs: Vec<_> = res
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_deref().unwrap_or("<null>").to_string();
            (c.name.to_string(), value, c.config_source == SOURCE_TOPIC)
        })
        .collect();
    configs.sort();
    Ok(configs)
}

/// A topic created with one partition grows to three through one broker's CreatePartitions:
/// every broker's Metadata then shows three partitions, each led and in sync on all three
/// brokers, and a record produced to the new partition 2 is read back.
#[test]
fn create_partitions_on_one_broker_grows_the_topic_on_every_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, mut client) = cluster_with_topic(dir.path(), "growing", 1);
    let addrs = cluster.kafka_addrs();

    let mut tried = false;
    within(&cluster, "grow the topic to 3 partitions", || {
        match create_partitions(&mut client, &addrs[0], "growing", 3) {
            Ok((NONE, _)) => Ok(()),
            // An earlier attempt that timed out was applied after all.
            Ok((INVALID_PARTITIONS, m)) if tried && m.contains("already has 3") => Ok(()),
            Ok((code, m)) if !retriable(code) => panic!("CreatePartitions refused: {code} {m}"),
            other => {
                tried = true;
                Err(format!("{other:?}"))
            }
        }
    });

    for addr in &addrs {
        within(&cluster, &format!("3 led, in-sync partitions in {addr}'s metadata"), || {
            let m = client.metadata_from(addr).map_err(|e| e.to_string())?;
            let parts: Vec<_> = m.partitions.values().collect();
            let healthy = parts.len() == 3
                && parts.iter().all(|p| {
                    p.error == NONE && p.leader >= 0 && p.replicas.len() == 3 && p.isr.len() == 3
                });
            if healthy { Ok(()) } else { Err(format!("{:?}", m.partitions)) }
        });
    }

    client.refresh().unwrap();
    within(&cluster, "produce to partition 2", || {
        client.produce(2, batch("new", 1)).map_err(|e| {
            let _ = client.refresh();
            e.to_string()
        })
    });
    let read = client.read_all(2, STEP_LIMIT).unwrap_or_else(|e| panic!("{e}"));
    let values: Vec<&str> = read.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["new-0"]);

    // A topic never shrinks, whichever broker is asked.
    let (code, message) = create_partitions(&mut client, &addrs[1], "growing", 2).unwrap();
    assert_eq!(code, INVALID_PARTITIONS, "{message}");
    assert!(message.contains("currently has 3 partitions"), "{message}");
}

/// Configs changed through broker 1 are what DescribeConfigs shows on brokers 2 and 3 (they
/// converge in moments), and still after broker 3 restarts; an unknown config name is refused
/// and changes nothing anywhere; a config deleted through broker 2 is back at its default
/// everywhere.
#[test]
fn configs_altered_through_one_broker_are_seen_on_every_broker_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, mut client) = cluster_with_topic(dir.path(), "settings", 1);
    let addrs = cluster.kafka_addrs();
    let keys = ["cleanup.policy", "max.message.bytes", "retention.ms"];
    let altered = vec![
        ("cleanup.policy".to_string(), "compact".to_string(), true),
        ("max.message.bytes".to_string(), "65536".to_string(), true),
        ("retention.ms".to_string(), "3600000".to_string(), true),
    ];
    let sees = |client: &mut ClusterClient, addr: &str, expected: &[(String, String, bool)]| {
        let seen = describe_configs(client, addr, "settings", &keys).map_err(|e| e.to_string())?;
        if seen == expected { Ok(()) } else { Err(format!("{addr} shows {seen:?}")) }
    };

    let ops = [
        ("retention.ms", SET, Some("3600000")),
        ("max.message.bytes", SET, Some("65536")),
        ("cleanup.policy", SET, Some("compact")),
    ];
    within(&cluster, "alter the configs through broker 1", || {
        match alter_configs(&mut client, &addrs[0], "settings", &ops) {
            Ok((NONE, _)) => Ok(()),
            Ok((code, m)) if !retriable(code) => panic!("alter refused: {code} {m}"),
            other => Err(format!("{other:?}")),
        }
    });
    // The broker asked answers once its own copy has them.
    sees(&mut client, &addrs[0], &altered).unwrap();
    for addr in &addrs[1..] {
        within(&cluster, "the others converge", || sees(&mut client, addr, &altered));
    }

    cluster.kill(2);
    cluster.restart(2);
    within(&cluster, "broker 3 after its restart", || sees(&mut client, &addrs[2], &altered));

    // An unknown name fails the whole alteration: the valid change beside it is not made.
    let (code, message) = alter_configs(
        &mut client,
        &addrs[0],
        "settings",
        &[("retention.ms", SET, Some("1000")), ("retention.forever", SET, Some("1"))],
    )
    .unwrap();
    assert_eq!(code, INVALID_CONFIG, "{message}");
    assert!(message.contains("retention.forever"), "{message}");
    for addr in &addrs {
        sees(&mut client, addr, &altered).unwrap();
    }

    // Deleted through broker 2: back at the broker default on every broker.
    within(&cluster, "delete max.message.bytes through broker 2", || {
        match alter_configs(
            &mut client,
            &addrs[1],
            "settings",
            &[("max.message.bytes", DELETE, None)],
        ) {
            Ok((NONE, _)) => Ok(()),
            Ok((code, m)) if !retriable(code) => panic!("delete refused: {code} {m}"),
            other => Err(format!("{other:?}")),
        }
    });
    let default = describe_configs(&mut client, &addrs[1], "settings", &["max.message.bytes"])
        .unwrap()
        .remove(0);
    assert!(!default.2, "max.message.bytes is no longer set on the topic: {default:?}");
    let mut deleted = altered.clone();
    deleted[1] = default;
    for addr in &addrs {
        within(&cluster, "the deletion converges", || sees(&mut client, addr, &deleted));
    }
}
