//! A tour of the client library against a running broker:
//!
//! ```text
//! cargo run --release -- broker &            # a broker on 127.0.0.1:7070, data in ./data
//! cargo run --example produce_consume        # or: MINIKAFKA_BROKER=host:port cargo run --example produce_consume
//! ```
//!
//! Creates the topic `example` (3 partitions) if needed, produces 1,000 keyed messages with the
//! batching producer, reads them back from the beginning, and uses a consumer group so that a
//! second run only sees the messages the first run has not consumed.

use minikafka::client::{
    Admin, ClientError, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, StartFrom,
};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let addr = std::env::var("MINIKAFKA_BROKER").unwrap_or_else(|_| "127.0.0.1:7070".to_string());
    let conn = Connection::connect(&addr).await?;

    let topic = Admin::new(conn.clone()).create_topic("example", 3, true).await?;
    println!("topic {} has {} partitions", topic.name, topic.partitions.len());

    // Records are batched per partition; several batches are in flight at once.
    let mut producer = Producer::new(conn.clone(), "example", ProducerConfig::default()).await?;
    for i in 0..1000 {
        let key = format!("customer-{}", i % 10);
        producer.send(Some(key.as_bytes()), format!("order {i}").as_bytes()).await?;
    }
    for ack in producer.flush().await? {
        println!(
            "partition {}: offsets {}..{} acknowledged",
            ack.partition, ack.first_offset, ack.next_offset
        );
    }

    // A consumer group: the first run reads from the log start, later runs continue after the
    // position the previous run committed.
    let config =
        ConsumerConfig { group: Some("example-readers".to_string()), ..Default::default() };
    let mut consumer = Consumer::new(conn, "example", StartFrom::Committed, config).await?;
    let mut count = 0;
    let mut last = None;
    while let Some(record) = consumer.next().await? {
        count += 1;
        last = Some(record);
    }
    consumer.commit().await?;
    println!("read {count} records (every CRC checked)");
    if let Some(r) = last {
        println!(
            "last: partition {} offset {} key {} value {}",
            r.partition,
            r.offset,
            String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()),
            String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
        );
    }
    Ok(())
}
