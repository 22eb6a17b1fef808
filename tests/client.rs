//! The Rust client library against a real broker process: batching and partitioning in the
//! producer, positions, polling, long-polling and group commits in the consumer.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::BrokerProcess;
use minikafka::batch;
use minikafka::client::{
    Admin, ClientError, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
    partition_for_key,
};
use minikafka::protocol::{ErrorCode, Request, Response};
use minikafka::record::NewRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_batches_by_count_partitions_by_key_and_acknowledges_everything() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    Admin::new(conn.clone()).create_topic("keyed", 3, false).await.unwrap();

    let config = ProducerConfig {
        batch_max_records: 10,
        max_in_flight: 3,
        linger: Duration::from_secs(60),
        ..ProducerConfig::default()
    };
    let mut producer = Producer::new(conn.clone(), "keyed", config).await.unwrap();
    assert_eq!(producer.partitions(), Some(3));
    let mut sent_per_partition: HashMap<u32, Vec<String>> = HashMap::new();
    for i in 0..1000 {
        let key = format!("k{}", i % 17);
        let value = format!("v{i}");
        producer.send(Some(key.as_bytes()), value.as_bytes()).await.unwrap();
        let p = partition_for_key(key.as_bytes(), 3);
        sent_per_partition.entry(p).or_default().push(value);
    }
    let mut acks = producer.take_acks();
    acks.extend(producer.flush().await.unwrap());
    assert_eq!(acks.iter().map(|a| a.len()).sum::<u64>(), 1000);
    assert!(acks.iter().all(|a| a.len() <= 10), "batches hold at most batch_max_records");
    // Batches of one partition were acknowledged in the order they were sent.
    for p in 0..3 {
        let mut expected_first = 0;
        for a in acks.iter().filter(|a| a.partition == p) {
            assert_eq!(a.first_offset, expected_first, "partition {p} batches in order");
            expected_first = a.next_offset;
        }
        assert_eq!(expected_first, sent_per_partition[&p].len() as u64);
    }

    // Every record is where its key says, in send order.
    let mut consumer =
        Consumer::new(conn, "keyed", StartFrom::Beginning, ConsumerConfig::default())
            .await
            .unwrap();
    let mut got: HashMap<u32, Vec<String>> = HashMap::new();
    while let Some(rec) = consumer.next().await.unwrap() {
        let key = rec.key.clone().unwrap();
        assert_eq!(rec.partition, partition_for_key(&key, 3));
        got.entry(rec.partition).or_default().push(String::from_utf8(rec.value.unwrap()).unwrap());
    }
    assert_eq!(got, sent_per_partition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_positions_commits_and_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    Admin::new(conn.clone()).create_topic("t", 2, false).await.unwrap();
    let producer = Producer::new(conn.clone(), "t", ProducerConfig::default()).await.unwrap();
    for p in 0..2 {
        let values: Vec<String> = (0..5).map(|i| format!("p{p}-{i}")).collect();
        let records: Vec<_> =
            values.iter().map(|v| minikafka::record::NewRecord::value(v.as_bytes())).collect();
        producer.send_batch(Some(p), &records).await.unwrap();
    }

    // Committed start without a group is refused; an unknown partition too.
    let err = Consumer::new(conn.clone(), "t", StartFrom::Committed, ConsumerConfig::default())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err}");
    let one = ConsumerConfig { partitions: Some(vec![7]), ..ConsumerConfig::default() };
    let err = Consumer::new(conn.clone(), "t", StartFrom::Beginning, one).await.err().unwrap();
    assert!(err.to_string().contains("partition 7"), "{err}");
    let err = Consumer::new(conn.clone(), "nope", StartFrom::Beginning, ConsumerConfig::default())
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTopic));

    // poll() hands out a whole fetch round and moves the positions.
    let group = ConsumerConfig { group: Some("g".into()), ..ConsumerConfig::default() };
    let mut c =
        Consumer::new(conn.clone(), "t", StartFrom::Committed, group.clone()).await.unwrap();
    let first = c.poll().await.unwrap();
    assert_eq!(first.len(), 10);
    assert_eq!((c.position(0), c.position(1)), (Some(5), Some(5)));
    assert!(c.poll().await.unwrap().is_empty(), "at the end as it stood at start");
    c.commit().await.unwrap();
    let mut again = Consumer::new(conn.clone(), "t", StartFrom::Committed, group).await.unwrap();
    assert_eq!(again.next().await.unwrap(), None, "the group's position is the end");

    // A following consumer from the end long-polls and wakes when a record is appended.
    let follow = ConsumerConfig {
        partitions: Some(vec![1]),
        stop_at_end: false,
        max_wait: Duration::from_millis(200),
        ..ConsumerConfig::default()
    };
    let mut tail = Consumer::new(conn.clone(), "t", StartFrom::End, follow).await.unwrap();
    let waiter = tokio::spawn(async move { tail.next().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "nothing to read yet");
    producer.send_batch(Some(1), &[minikafka::record::NewRecord::value(b"late")]).await.unwrap();
    let rec = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("the long-poll wakes up")
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((rec.partition, rec.offset, rec.value.as_deref()), (1, 5, Some(&b"late"[..])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_records_travel_in_few_requests() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    Admin::new(conn.clone()).create_topic("bulk", 1, false).await.unwrap();
    // Linger out of the picture: batches close on size alone.
    let config = ProducerConfig { linger: Duration::from_secs(600), ..ProducerConfig::default() };
    let batch_max_bytes = config.batch_max_bytes;
    let mut producer = Producer::new(conn.clone(), "bulk", config).await.unwrap();
    let n = 20_000u64;
    for i in 0..n {
        let value = format!("record number {i:08}");
        producer.send(None, value.as_bytes()).await.unwrap();
    }
    let mut acks = producer.take_acks();
    acks.extend(producer.flush().await.unwrap());
    assert_eq!(acks.iter().map(|a| a.len()).sum::<u64>(), n);
    // The records' encoded bytes (batch headers aside), as stored: a record's size in a batch
    // depends on its deltas from the batch's first record, so they are read back, not guessed.
    let encoded_bytes = stored_records_bytes(&conn, "bulk", n).await;
    let most = encoded_bytes.div_ceil(batch_max_bytes);
    assert!(acks.len() <= most, "{} requests for {n} records; at most {most} expected", acks.len());
}

/// Bytes of the records areas of the stored batches of partition 0 of `topic`, up to offset `end`.
async fn stored_records_bytes(conn: &Connection, topic: &str, end: u64) -> usize {
    let mut total = 0;
    let mut offset = 0;
    while offset < end {
        let req = Request::Fetch {
            topic: topic.into(),
            partition: 0,
            offset,
            max_bytes: 1 << 20,
            max_wait_ms: 0,
        };
        let Response::Fetched { records, .. } = conn.request(&req).await.unwrap() else {
            panic!("a fetch of {topic}/0 at {offset} failed")
        };
        for b in batch::batches(&records) {
            let b = b.unwrap();
            assert_eq!(b.base_offset() as u64, offset, "fetches start at batch boundaries here");
            total += b.len() - batch::HEADER_LEN;
            offset = b.last_offset() as u64 + 1;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingered_batch_is_sent_by_later_sends_without_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    let admin = Admin::new(conn.clone());
    admin.create_topic("linger", 2, false).await.unwrap();
    let config = ProducerConfig { linger: Duration::from_millis(20), ..ProducerConfig::default() };
    let mut producer = Producer::new(conn, "linger", config).await.unwrap();
    let next_offsets = || async {
        let d = admin.describe_topic("linger").await.unwrap();
        d.partitions.iter().map(|p| p.next_offset).collect::<Vec<_>>()
    };
    // Polled with a generous deadline: the batch goes out without `flush` or `flush_lingering`.
    let wait_for = |want: fn(&[u64]) -> bool| {
        let next_offsets = &next_offsets;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let got = next_offsets().await;
                if want(&got) {
                    return;
                }
                assert!(std::time::Instant::now() < deadline, "offsets {got:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Records keep coming to one batch: the clock is checked every so many records.
    producer.send_record(Some(0), &NewRecord::value(b"first")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..40 {
        producer.send_record(Some(0), &NewRecord::value(b"more")).await.unwrap();
    }
    // The lingered batch went out with the records that had joined it by then.
    wait_for(|o| o[0] > 1 && o[1] == 0).await;

    // A record starting another batch sends the lingered one at once.
    producer.send_record(Some(0), &NewRecord::value(b"alone")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    producer.send_record(Some(1), &NewRecord::value(b"other")).await.unwrap();
    wait_for(|o| o == [42, 0]).await;

    producer.flush().await.unwrap();
    assert_eq!(next_offsets().await, vec![42, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_keeps_fetches_in_flight_and_still_reads_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    Admin::new(conn.clone()).create_topic("deep", 2, false).await.unwrap();
    let mut producer =
        Producer::new(conn.clone(), "deep", ProducerConfig::default()).await.unwrap();
    let n = 3000u64;
    for i in 0..n {
        let value = format!("{i:06}{}", "x".repeat(200));
        let rec =
            NewRecord { timestamp_ms: 0, key: None, value: Some(value.as_bytes()), headers: &[] };
        producer.send_record(Some((i % 2) as u32), &rec).await.unwrap();
    }
    producer.flush().await.unwrap();
    let want = |p: u64| -> Vec<String> {
        (0..n).filter(|i| i % 2 == p).map(|i| format!("{i:06}{}", "x".repeat(200))).collect()
    };
    // Small fetches: every partition stays behind, so rounds pipeline continuations.
    let config = ConsumerConfig { fetch_max_bytes: 4096, ..ConsumerConfig::default() };

    // Record by record.
    let mut consumer =
        Consumer::new(conn.clone(), "deep", StartFrom::Beginning, config.clone()).await.unwrap();
    let mut got: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut offsets = [0u64; 2];
    while let Some(rec) = consumer.next().await.unwrap() {
        let p = rec.partition as usize;
        assert_eq!(rec.offset, offsets[p], "partition {p} in order, no gap");
        offsets[p] += 1;
        got[p].push(String::from_utf8(rec.value.unwrap()).unwrap());
    }
    assert_eq!(got, [want(0), want(1)]);

    // Borrowed views, stopping every 7 records: the fetches still in flight are dropped and
    // the next poll goes on right after the last record seen.
    let mut consumer = Consumer::new(conn, "deep", StartFrom::Beginning, config).await.unwrap();
    let mut got: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    loop {
        let mut seen_in_poll = 0;
        let r = consumer
            .poll_views(|partition, view| {
                let value = view.value.expect("every record has a value");
                got[partition as usize].push(String::from_utf8(value.to_vec()).unwrap());
                seen_in_poll += 1;
                Ok::<_, ClientError>(if seen_in_poll % 7 == 0 {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                })
            })
            .await
            .unwrap();
        if r.is_none() {
            break;
        }
    }
    assert_eq!(got, [want(0), want(1)]);
}
