//! The single-node cluster: what the listeners see from a broker that is a cluster of one.

use std::time::Duration;

use super::*;
use crate::broker::BrokerConfig;
use crate::broker::topic_config::TopicConfigs;
use crate::record::NewRecord;

fn open(dir: &std::path::Path) -> Arc<Cluster> {
    let broker =
        Broker::open(BrokerConfig { data_dir: dir.to_path_buf(), ..BrokerConfig::default() })
            .unwrap();
    Cluster::single(broker)
}

fn values(r: &FetchResult) -> Vec<(u64, Vec<u8>)> {
    r.records
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.value.unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acks_value_appends_and_fetch_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    assert!(!c.is_clustered());
    assert_eq!(c.node_id(), 0);
    c.create_topic("t", 2, None, TopicConfigs::default(), false).await.unwrap();
    let t = Duration::from_secs(5);
    for (next, acks) in [Acks::None, Acks::Leader, Acks::All].into_iter().enumerate() {
        let r = c
            .produce("t", Some(1), None, AppendBatch::Records(&[NewRecord::value(b"v")]), acks, t)
            .await
            .unwrap();
        assert_eq!((r.partition, r.offsets.first), (1, next as u64));
    }
    assert_eq!(c.high_watermark("t", 1).unwrap(), 3);
    assert_eq!(c.high_watermark("t", 0).unwrap(), 0);
    let f = c.fetch("t", 1, 0, 1 << 20, 0, Duration::ZERO, Some(0)).await.unwrap();
    assert_eq!(values(&f), vec![(0, b"v".to_vec()), (1, b"v".to_vec()), (2, b"v".to_vec())]);
    assert_eq!(f.high_watermark, 3);
    assert!(matches!(
        c.high_watermark("t", 2),
        Err(ClusterError::Broker(BrokerError::UnknownPartition { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_checks_the_clients_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    c.create_topic("t", 1, None, TopicConfigs::default(), false).await.unwrap();
    let fetch = |epoch| c.fetch("t", 0, 0, 1024, 0, Duration::ZERO, epoch);
    assert!(fetch(None).await.is_ok());
    assert!(fetch(Some(-1)).await.is_ok());
    assert!(matches!(
        fetch(Some(1)).await,
        Err(ClusterError::UnknownLeaderEpoch { requested: 1, current: 0, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_show_this_node_leading_everything_at_its_advertised_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    c.set_advertised(Some("h:7070".into()), None);
    c.set_advertised(None, Some("h:9092".into()));
    assert_eq!(
        c.brokers(),
        vec![BrokerView {
            id: 0,
            native_addr: Some("h:7070".into()),
            kafka_addr: Some("h:9092".into()),
            cluster_addr: None,
            fenced: false,
            decommissioned: false,
            voter: true,
        }]
    );
    assert_eq!(c.controller(), Some(0));
    assert_eq!(c.coordinator_for("any-group"), 0);
    c.create_topic("t", 2, Some(1), TopicConfigs::default(), false).await.unwrap();
    let v = c.partition_view("t", 1).unwrap();
    assert_eq!(
        (v.leader, v.leader_epoch, v.replicas.clone(), v.isr.clone()),
        (Some(0), 0, vec![0], vec![0])
    );
    assert!(!v.offline());
    assert_eq!(c.topic_view("t").len(), 2);
    assert!(c.partition_view("t", 2).is_none());
    assert!(c.partition_view("nope", 0).is_none());
    let s = c.status();
    assert!(!s.clustered);
    assert_eq!(s.brokers.len(), 1);
    assert!(s.under_replicated.is_empty() && s.offline.is_empty());
    // The status is what `cluster status --json` prints.
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["controller"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_factor_above_one_is_refused_on_a_single_node() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    let err = c.create_topic("t", 1, Some(3), TopicConfigs::default(), false).await.unwrap_err();
    assert!(
        matches!(err, ClusterError::InvalidReplicationFactor { requested: 3, brokers: 1 }),
        "{err}"
    );
    assert!(c.partition_view("t", 0).is_none(), "nothing was created");
    // validate_only checks and creates nothing.
    c.create_topic("t", 1, None, TopicConfigs::default(), true).await.unwrap();
    assert!(c.partition_view("t", 0).is_none());
    c.create_topic("t", 1, None, TopicConfigs::default(), false).await.unwrap();
    c.delete_topic("t").await.unwrap();
    assert!(c.partition_view("t", 0).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_never_handed_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path());
    let a = c.next_producer_id().await.unwrap();
    let b = c.next_producer_id().await.unwrap();
    assert_ne!(a, b);
}

#[test]
fn acks_come_from_kafkas_field() {
    assert_eq!(Acks::from_kafka(0), Some(Acks::None));
    assert_eq!(Acks::from_kafka(1), Some(Acks::Leader));
    assert_eq!(Acks::from_kafka(-1), Some(Acks::All));
    assert_eq!(Acks::from_kafka(2), None);
}

#[test]
fn the_coordinator_is_the_same_on_every_broker_whatever_the_order() {
    let a = pick_by_hash("g", &[3, 1, 2]);
    assert_eq!(a, pick_by_hash("g", &[1, 2, 3]));
    assert!(matches!(a, Some(1..=3)));
    assert_eq!(pick_by_hash("g", &[]), None);
}
