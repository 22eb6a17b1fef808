//! Broker tests against real logs in temp directories: what a user of the broker would see.

use super::*;
use crate::batch::Compression;
use crate::record;
use std::time::Duration;

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig { data_dir: dir.to_path_buf(), ..BrokerConfig::default() }
}

fn open(dir: &Path) -> Arc<Broker> {
    Broker::open(config(dir)).unwrap()
}

fn values(result: &FetchResult) -> Vec<(u64, Vec<u8>)> {
    result
        .records
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.value.unwrap())
        })
        .collect()
}

async fn fetch_all(b: &Broker, topic: &str, partition: u32, offset: u64) -> FetchResult {
    b.fetch(topic, partition, offset, 1 << 20, 0, Duration::ZERO).await.unwrap()
}

#[tokio::test]
async fn create_list_describe_delete() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let d = b.create_topic("orders", 3, TopicConfigs::default(), false).unwrap();
    assert_eq!(d.name, "orders");
    assert_eq!(d.partitions.len(), 3);
    assert!(d.partitions.iter().all(|p| p.next_offset == 0 && p.log_start_offset == 0));
    b.create_topic("audit.log_v-1", 1, TopicConfigs::default(), false).unwrap();
    assert_eq!(
        b.list_topics(),
        vec![
            TopicSummary { name: "audit.log_v-1".into(), partitions: 1 },
            TopicSummary { name: "orders".into(), partitions: 3 },
        ]
    );
    assert!(matches!(
        b.create_topic("orders", 1, TopicConfigs::default(), false),
        Err(BrokerError::TopicAlreadyExists { .. })
    ));
    assert!(dir.path().join("orders/topic.json").is_file());
    assert!(dir.path().join("orders/2").is_dir());

    b.append(
        "orders",
        Some(1),
        None,
        AppendBatch::Records(&[NewRecord::value(b"a"), NewRecord::value(b"b")]),
    )
    .await
    .unwrap();
    let d = b.describe_topic("orders").unwrap();
    assert_eq!(d.partitions[1].next_offset, 2);
    assert_eq!(b.describe_all().len(), 2);
    assert_eq!(b.partition_count("orders").unwrap(), 3);

    b.delete_topic("orders").unwrap();
    assert!(!dir.path().join("orders").exists());
    assert!(matches!(b.describe_topic("orders"), Err(BrokerError::UnknownTopic { .. })));
    assert!(matches!(b.delete_topic("orders"), Err(BrokerError::UnknownTopic { .. })));
    // Re-created under the same name, it starts empty.
    b.create_topic("orders", 1, TopicConfigs::default(), false).unwrap();
    assert_eq!(b.describe_topic("orders").unwrap().partitions[0].next_offset, 0);
    b.shutdown().unwrap();
}

#[test]
fn bad_names_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let long = "x".repeat(250);
    for name in ["", ".", "..", "../x", "a/b", "a\0b", "a b", "@groups", "tópic", long.as_str()] {
        match b.create_topic(name, 1, TopicConfigs::default(), false) {
            Err(BrokerError::InvalidTopicName { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!("{name:?} should be refused, got {other:?}"),
        }
        assert!(matches!(validate_group_name(name), Err(BrokerError::InvalidGroupName { .. })));
    }
    // The longest valid name is a real topic on disk, created and deleted.
    let longest = "x".repeat(249);
    b.create_topic(&longest, 1, TopicConfigs::default(), false).unwrap();
    assert!(dir.path().join(&longest).join("topic.json").is_file());
    b.delete_topic(&longest).unwrap();
    assert!(validate_topic_name("...").is_ok());
    // Nothing was created outside (or inside) the data directory besides the groups dir and
    // the lock file.
    let mut entries: Vec<_> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    entries.sort();
    let want: Vec<std::ffi::OsString> = vec![GROUPS_DIR.into(), LOCK_FILE.into()];
    assert_eq!(entries, want);
    assert!(matches!(
        b.commit_offset("../evil", "t", 0, 1),
        Err(BrokerError::InvalidGroupName { .. })
    ));
}

#[test]
fn partition_and_topic_limits() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig { max_topics: 2, max_partitions: 4, ..config(dir.path()) })
        .unwrap();
    assert!(matches!(
        b.create_topic("t", 0, TopicConfigs::default(), false),
        Err(BrokerError::NoPartitions)
    ));
    assert!(matches!(
        b.create_topic("t", 5, TopicConfigs::default(), false),
        Err(BrokerError::TooManyPartitions { requested: 5, max: 4 })
    ));
    b.create_topic("a", 4, TopicConfigs::default(), false).unwrap();
    b.create_topic("b", 1, TopicConfigs::default(), false).unwrap();
    assert!(matches!(
        b.create_topic("c", 1, TopicConfigs::default(), false),
        Err(BrokerError::TooManyTopics { max: 2, .. })
    ));
}

#[tokio::test]
async fn topics_and_data_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("t", 2, TopicConfigs::default(), false).unwrap();
        b.append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"x")]))
            .await
            .unwrap();
        b.shutdown().unwrap();
    }
    let b = open(dir.path());
    assert_eq!(b.list_topics(), vec![TopicSummary { name: "t".into(), partitions: 2 }]);
    assert_eq!(values(&fetch_all(&b, "t", 0, 0).await), vec![(0, b"x".to_vec())]);
    let r = b
        .append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"y")]))
        .await
        .unwrap();
    assert_eq!(r.offsets, OffsetRange { first: 1, next: 2 });
}

#[test]
fn interrupted_create_and_delete_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("@creating/0")).unwrap();
    fs::write(dir.path().join("@creating/topic.json"), b"{\"partitions\": 1}").unwrap();
    fs::create_dir_all(dir.path().join("@deleting/0")).unwrap();
    fs::create_dir_all(dir.path().join("not a topic")).unwrap();
    let b = open(dir.path());
    assert!(b.list_topics().is_empty());
    assert!(!dir.path().join("@creating").exists());
    assert!(!dir.path().join("@deleting").exists());
    // Foreign directories are left alone.
    assert!(dir.path().join("not a topic").exists());
}

#[tokio::test]
async fn group_offsets_are_durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("t", 2, TopicConfigs::default(), false).unwrap();
        b.create_topic("other", 1, TopicConfigs::default(), false).unwrap();
        assert_eq!(b.committed_offset("g", "t", 0).unwrap(), None);
        b.commit_offset("g", "t", 0, 5).unwrap();
        b.commit_offset("g", "t", 1, 7).unwrap();
        b.commit_offset("g", "t", 0, 6).unwrap();
        b.commit_offset("h", "other", 0, 1).unwrap();
        assert!(matches!(
            b.commit_offset("g", "t", 9, 1),
            Err(BrokerError::UnknownPartition { .. })
        ));
        assert!(matches!(
            b.commit_offset("g", "nope", 0, 1),
            Err(BrokerError::UnknownTopic { .. })
        ));
        // Dropped without shutdown: commits were already durable.
    }
    let b = open(dir.path());
    assert_eq!(b.committed_offset("g", "t", 0).unwrap(), Some(6));
    assert_eq!(b.committed_offset("g", "t", 1).unwrap(), Some(7));
    assert_eq!(b.group_offsets("g").unwrap(), vec![("t".into(), 0, 6), ("t".into(), 1, 7)]);
    assert_eq!(b.list_groups(), vec!["g".to_string(), "h".to_string()]);
    assert!(dir.path().join("@groups/g.json").is_file());
    // Deleting a topic forgets its committed offsets.
    b.delete_topic("t").unwrap();
    assert_eq!(b.group_offsets("g").unwrap(), vec![]);
    assert_eq!(b.committed_offset("h", "other", 0).unwrap(), Some(1));
}

#[tokio::test]
async fn keyed_appends_follow_kafkas_partitioner_and_unkeyed_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 4, TopicConfigs::default(), false).unwrap();
    for key in [&b"user-1"[..], b"user-2", b"21", b"foobar"] {
        let r = b
            .append("t", None, Some(key), AppendBatch::Records(&[NewRecord::value(b"v")]))
            .await
            .unwrap();
        assert_eq!(r.partition, partitioner::partition_for_key(key, 4));
        let again = b
            .append("t", None, Some(key), AppendBatch::Records(&[NewRecord::value(b"v")]))
            .await
            .unwrap();
        assert_eq!(again.partition, r.partition);
    }
    let mut seen: Vec<u32> = Vec::new();
    for _ in 0..4 {
        seen.push(
            b.append("t", None, None, AppendBatch::Records(&[NewRecord::value(b"v")]))
                .await
                .unwrap()
                .partition,
        );
    }
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2, 3]);
    assert!(matches!(
        b.append("t", Some(4), None, AppendBatch::Records(&[NewRecord::value(b"v")])).await,
        Err(BrokerError::UnknownPartition { partition: 4, partitions: 4, .. })
    ));
    assert!(matches!(
        b.append("t", Some(0), None, AppendBatch::Records(&[])).await,
        Err(BrokerError::EmptyBatch)
    ));
}

#[tokio::test]
async fn append_encoded_assigns_offsets_and_auto_create_is_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let recs = [NewRecord::value(b"one"), NewRecord::value(b"two")];
    let mut buf = record::build_batch(&recs, Compression::None).unwrap();
    let b = open(dir.path());
    assert!(matches!(
        b.append("new", None, None, AppendBatch::Encoded(&mut buf.clone())).await,
        Err(BrokerError::UnknownTopic { .. })
    ));
    drop(b);
    let b = Broker::open(BrokerConfig {
        auto_create_topics: true,
        default_partitions: 2,
        ..config(dir.path())
    })
    .unwrap();
    let r = b.append("new", Some(1), None, AppendBatch::Encoded(&mut buf)).await.unwrap();
    assert_eq!(
        r,
        AppendResult {
            partition: 1,
            offsets: OffsetRange { first: 0, next: 2 },
            log_append_time_ms: None
        }
    );
    assert_eq!(b.partition_count("new").unwrap(), 2);
    let got = values(&fetch_all(&b, "new", 1, 0).await);
    assert_eq!(got, vec![(0, b"one".to_vec()), (1, b"two".to_vec())]);
    // Garbage is refused and nothing is stored.
    assert!(b.append("new", Some(1), None, AppendBatch::Encoded(&mut [1, 2, 3])).await.is_err());
    assert_eq!(b.describe_topic("new").unwrap().partitions[1].next_offset, 2);
}

#[tokio::test]
async fn fetch_reports_bounds_and_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    b.append(
        "t",
        Some(0),
        None,
        AppendBatch::Records(&[NewRecord::value(b"a"), NewRecord::value(b"b")]),
    )
    .await
    .unwrap();
    let r = fetch_all(&b, "t", 0, 1).await;
    assert_eq!((r.log_start_offset, r.high_watermark), (0, 2));
    assert_eq!(values(&r), vec![(1, b"b".to_vec())]);
    assert!(fetch_all(&b, "t", 0, 2).await.records.is_empty());
    let err = b.fetch("t", 0, 3, 1024, 0, Duration::ZERO).await.err().unwrap();
    assert_eq!(err.offset_out_of_range(), Some((3, 0, 2)));
    assert!(err.to_string().contains("0..2"), "{err}");
    assert!(matches!(
        b.fetch("t", 1, 0, 1024, 0, Duration::ZERO).await,
        Err(BrokerError::UnknownPartition { .. })
    ));
}

#[tokio::test]
async fn trim_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let recs: Vec<_> = (0..10).map(|_| NewRecord::value(b"v")).collect();
    b.append("t", Some(0), None, AppendBatch::Records(&recs)).await.unwrap();
    assert_eq!(b.trim("t", 0, 4).unwrap(), 4);
    assert_eq!(b.describe_topic("t").unwrap().partitions[0].log_start_offset, 4);
    let err = b.fetch("t", 0, 2, 1024, 0, Duration::ZERO).await.err().unwrap();
    assert_eq!(err.offset_out_of_range(), Some((2, 4, 10)));
    assert_eq!(fetch_all(&b, "t", 0, 4).await.records.first_offset(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let r = b.fetch("t", 0, 0, 1024, 1, Duration::from_secs(30)).await.unwrap();
            (r, started.elapsed())
        })
    };
    // Give the fetch time to start waiting; correctness does not depend on it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"hello")]))
        .await
        .unwrap();
    let (r, elapsed) =
        tokio::time::timeout(Duration::from_secs(20), waiter).await.unwrap().unwrap();
    assert_eq!(values(&r), vec![(0, b"hello".to_vec())]);
    assert!(elapsed < Duration::from_secs(20), "woke by the append, not the 30 s timeout");
}

#[tokio::test]
async fn long_poll_times_out_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let started = std::time::Instant::now();
    let r = b.fetch("t", 0, 0, 1024, 1, Duration::from_millis(200)).await.unwrap();
    assert!(r.records.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.high_watermark, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_fetch_returns_when_the_topic_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.fetch("t", 0, 0, 1024, 1, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deleter = b.clone();
    tokio::task::spawn_blocking(move || deleter.delete_topic("t")).await.unwrap().unwrap();
    // Either it saw the close (empty result) or the closed log (unknown topic): never a hang.
    let r = tokio::time::timeout(Duration::from_secs(20), waiter).await.unwrap().unwrap();
    match r {
        Ok(r) => assert!(r.records.is_empty()),
        Err(e) => assert!(matches!(e, BrokerError::UnknownTopic { .. }), "{e}"),
    }
}

#[tokio::test]
async fn shutdown_refuses_further_appends() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    b.shutdown().unwrap();
    b.shutdown().unwrap();
    assert!(matches!(
        b.append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"x")])).await,
        Err(BrokerError::ShuttingDown)
    ));
}

#[tokio::test]
async fn retention_removes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(BrokerConfig {
        log: LogConfig {
            segment_bytes: 256,
            retention_bytes: Some(512),
            fsync: FsyncPolicy::Never,
            ..LogConfig::default()
        },
        ..config(dir.path())
    })
    .unwrap();
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let value = [7u8; 60];
    for _ in 0..40 {
        b.append("t", Some(0), None, AppendBatch::Records(&[NewRecord::value(&value)]))
            .await
            .unwrap();
    }
    let before = b.describe_topic("t").unwrap().partitions[0].clone();
    assert!(before.segments > 4, "{before:?}");
    assert!(b.enforce_retention() > 0);
    let after = b.describe_topic("t").unwrap().partitions[0].clone();
    assert!(after.log_start_offset > 0 && after.segments < before.segments, "{after:?}");
    assert_eq!(after.next_offset, 40);
    // What is left still reads from the new start.
    let r = fetch_all(&b, "t", 0, after.log_start_offset).await;
    assert_eq!(r.records.first_offset(), after.log_start_offset);
}

#[tokio::test]
async fn append_owned_works_on_a_current_thread_runtime_with_fsync_always() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let buf = record::build_batch(&[NewRecord::value(b"owned")], Compression::None).unwrap();
    let r = b
        .append("t", Some(0), None, AppendBatch::Owned(bytes::BytesMut::from(&buf[..])))
        .await
        .unwrap();
    assert_eq!(r.offsets, OffsetRange { first: 0, next: 1 });
    assert_eq!(values(&fetch_all(&b, "t", 0, 0).await), vec![(0, b"owned".to_vec())]);
    assert!(matches!(
        b.append("t", Some(0), None, AppendBatch::Owned(bytes::BytesMut::new())).await,
        Err(BrokerError::EmptyBatch)
    ));
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    first.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
    let err = Broker::open(config(dir.path())).err().expect("the directory is locked");
    assert!(matches!(err, BrokerError::DataDirInUse { .. }), "{err}");
    assert!(err.to_string().contains("in use by another broker"), "{err}");
    assert!(err.to_string().contains(LOCK_FILE), "{err}");
    // The refused open changed nothing, and once the first is gone the directory opens.
    drop(first);
    let second = open(dir.path());
    assert_eq!(second.describe_all().len(), 1);
}

/// Appends `n` one-record batches to a partition.
async fn fill(b: &Broker, topic: &str, partition: u32, n: usize) {
    for i in 0..n {
        let v = format!("v{i}");
        b.append(
            topic,
            Some(partition),
            None,
            AppendBatch::Records(&[NewRecord::value(v.as_bytes())]),
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn a_damaged_topic_json_takes_only_that_topic_offline() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("good", 1, TopicConfigs::default(), false).unwrap();
        b.create_topic("bad", 2, TopicConfigs::default(), false).unwrap();
        fill(&b, "good", 0, 2).await;
        b.shutdown().unwrap();
    }
    let topic_json = dir.path().join("bad").join(topic::TOPIC_FILE);
    fs::write(&topic_json, b"{\"partitions\": ").unwrap();
    let b = open(dir.path());
    assert_eq!(values(&fetch_all(&b, "good", 0, 0).await).len(), 2);
    fill(&b, "good", 0, 1).await;
    let d = b.describe_topic("bad").unwrap();
    let reason = d.offline.expect("the topic is offline");
    assert!(reason.contains(&topic_json.display().to_string()), "{reason}");
    for err in [
        b.append("bad", Some(0), None, AppendBatch::Records(&[NewRecord::value(b"x")]))
            .await
            .unwrap_err(),
        b.append("bad", None, None, AppendBatch::Records(&[NewRecord::value(b"x")]))
            .await
            .unwrap_err(),
        b.fetch("bad", 0, 0, 1024, 0, Duration::ZERO).await.err().expect("fetch fails"),
    ] {
        assert!(matches!(err, BrokerError::TopicOffline { .. }), "{err}");
        assert!(err.to_string().contains("topic.json"), "{err}");
    }
    // It keeps its name (no silent re-creation) and can be deleted to recover.
    assert!(matches!(
        b.create_topic("bad", 1, TopicConfigs::default(), false),
        Err(BrokerError::TopicAlreadyExists { .. })
    ));
    b.delete_topic("bad").unwrap();
    assert!(!dir.path().join("bad").exists());
    b.create_topic("bad", 1, TopicConfigs::default(), false).unwrap();
}

#[tokio::test]
async fn a_missing_partition_directory_is_offline_and_never_recreated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("t", 3, TopicConfigs::default(), false).unwrap();
        fill(&b, "t", 1, 3).await;
        b.shutdown().unwrap();
    }
    let p1 = dir.path().join("t").join("1");
    fs::remove_dir_all(&p1).unwrap();
    let b = open(dir.path());
    assert!(!p1.exists(), "the partition directory must not be re-created");
    let d = b.describe_topic("t").unwrap();
    assert_eq!(d.partitions.len(), 3);
    let reason = d.partitions[1].offline.clone().expect("partition 1 is offline");
    assert!(reason.contains(&p1.display().to_string()), "{reason}");
    assert!(d.partitions[0].offline.is_none() && d.partitions[2].offline.is_none());
    let err = b
        .append("t", Some(1), None, AppendBatch::Records(&[NewRecord::value(b"x")]))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::PartitionOffline { partition: 1, .. }), "{err}");
    fill(&b, "t", 0, 1).await;
    fill(&b, "t", 2, 1).await;
    // Keyless appends and retention skip nothing they should not; the other partitions serve.
    b.enforce_retention();
    assert!(!p1.exists());
}

#[tokio::test]
async fn a_partition_count_beyond_the_limit_or_the_directories_is_refused_unallocated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        for t in ["many", "huge", "fewer", "more"] {
            b.create_topic(t, 2, TopicConfigs::default(), false).unwrap();
        }
        b.shutdown().unwrap();
    }
    let set = |t: &str, n: u64| {
        fs::write(dir.path().join(t).join(topic::TOPIC_FILE), format!("{{\"partitions\": {n}}}"))
            .unwrap()
    };
    set("many", 3000);
    set("huge", 4_000_000_000);
    set("fewer", 5);
    set("more", 1);
    let b = open(dir.path());
    for (t, needle) in [
        ("many", "3000 partitions"),
        ("huge", "4000000000 partitions"),
        ("fewer", "exist only up to 1"),
        ("more", "a directory of partition 1 exists"),
    ] {
        let reason = b.describe_topic(t).unwrap().offline.expect("offline");
        assert!(reason.contains("topic.json") && reason.contains(needle), "{t}: {reason}");
        let dirs = fs::read_dir(dir.path().join(t)).unwrap().count();
        assert_eq!(dirs, 3, "{t}: topic.json and its two partition directories, nothing made");
    }
}

#[tokio::test]
async fn a_damaged_segment_or_checkpoint_takes_only_its_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.log.segment_bytes = 4096;
    {
        let b = Broker::open(cfg.clone()).unwrap();
        b.create_topic("seg", 2, TopicConfigs::default(), false).unwrap();
        b.create_topic("ckpt", 1, TopicConfigs::default(), false).unwrap();
        let big = vec![b'x'; 1000];
        for _ in 0..20 {
            b.append("seg", Some(0), None, AppendBatch::Records(&[NewRecord::value(&big)]))
                .await
                .unwrap();
        }
        fill(&b, "ckpt", 0, 5).await;
        b.trim("ckpt", 0, 2).unwrap();
        b.shutdown().unwrap();
    }
    let mut segments: Vec<PathBuf> = fs::read_dir(dir.path().join("seg").join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    let middle = &segments[1];
    let mut bytes = fs::read(middle).unwrap();
    bytes[..8].fill(0xAB);
    fs::write(middle, &bytes).unwrap();
    let checkpoint = dir.path().join("ckpt").join("0").join("log-start-offset");
    assert!(checkpoint.exists());
    fs::write(&checkpoint, b"garbage").unwrap();

    let b = Broker::open(cfg).unwrap();
    let seg = b.describe_topic("seg").unwrap();
    let reason = seg.partitions[0].offline.clone().expect("seg/0 offline");
    assert!(reason.contains(&middle.display().to_string()), "{reason}");
    assert!(seg.partitions[1].offline.is_none());
    fill(&b, "seg", 1, 1).await;
    let reason = b.describe_topic("ckpt").unwrap().partitions[0].offline.clone().expect("offline");
    assert!(reason.contains("log-start-offset"), "{reason}");
    let err = b.fetch("seg", 0, 0, 1024, 0, Duration::ZERO).await.err().expect("fetch fails");
    assert!(err.to_string().contains(&middle.display().to_string()), "{err}");
    // The damaged file is left as it was, for the operator.
    assert_eq!(fs::read(middle).unwrap(), bytes);
    b.shutdown().unwrap();
}

#[tokio::test]
async fn a_damaged_group_file_takes_only_that_group_offline() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.create_topic("t", 1, TopicConfigs::default(), false).unwrap();
        b.commit_offset("g1", "t", 0, 1).unwrap();
        b.commit_offset("g2", "t", 0, 2).unwrap();
        b.shutdown().unwrap();
    }
    let g1 = dir.path().join(GROUPS_DIR).join("g1.json");
    fs::write(&g1, b"{not json").unwrap();
    let b = open(dir.path());
    assert_eq!(b.committed_offset("g2", "t", 0).unwrap(), Some(2));
    b.commit_offset("g2", "t", 0, 3).unwrap();
    let offline = b.offline_groups();
    assert_eq!(offline.len(), 1);
    assert!(offline[0].1.contains(&g1.display().to_string()), "{offline:?}");
    for err in [
        b.commit_offset("g1", "t", 0, 5).unwrap_err(),
        b.committed_offset("g1", "t", 0).unwrap_err(),
        b.group_offsets("g1").unwrap_err(),
    ] {
        assert!(matches!(err, BrokerError::GroupOffline { .. }), "{err}");
        assert!(err.to_string().contains("g1.json"), "{err}");
    }
    assert_eq!(fs::read(&g1).unwrap(), b"{not json", "the damaged file is never overwritten");
    // Deleting the topic rewrites the groups that have offsets in it, but never the damaged one.
    b.delete_topic("t").unwrap();
    assert_eq!(fs::read(&g1).unwrap(), b"{not json");
}

#[tokio::test]
async fn a_failed_topic_creation_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = crate::storage::FaultyFs::new();
    let mut cfg = config(dir.path());
    cfg.fs = Some(Arc::new(faulty.clone()));
    let b = Broker::open(cfg).unwrap();
    b.create_topic("kept", 1, TopicConfigs::default(), false).unwrap();
    faulty.set_no_space(true);
    let err = b.create_topic("t", 4, TopicConfigs::default(), false).unwrap_err();
    faulty.set_no_space(false);
    assert!(
        err.to_string().contains("No space left") || err.to_string().contains("os error"),
        "{err}"
    );
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("@lock") && n != GROUPS_DIR)
        .collect();
    names.sort();
    assert_eq!(names, ["kept"]);
    assert_eq!(b.list_topics().len(), 1);
    b.create_topic("t", 4, TopicConfigs::default(), false).unwrap();
    fill(&b, "t", 3, 1).await;
}
