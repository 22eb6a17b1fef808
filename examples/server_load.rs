//! A bounded load run against an in-process native server on a temp data directory, over
//! loopback TCP with raw protocol frames: pipelined appends from several connections, then a
//! full replay by fetch. Prints messages/s and MB/s for each phase.
//!
//! ```text
//! cargo run --release --example server_load -- [fsync] [connections] [batches] [batch] [value_bytes]
//! cargo run --release --example server_load -- never 4 500 100 100
//! ```
//! `fsync` is `always`, `never` or `interval=MS`. Every number is bounded; the run ends by itself.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use minikafka::batch::Compression;
use minikafka::broker::topic_config::TopicConfigs;
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::protocol::{self, Request, Response};
use minikafka::record::{self, NewRecord};
use minikafka::server::{Server, ServerConfig};
use minikafka::storage::{FsyncPolicy, LogConfig};

/// Appends each connection keeps in flight before reading responses.
const WINDOW: usize = 16;

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
}

async fn read_frame(s: &mut TcpStream) -> (u32, Response) {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.expect("read a response prefix");
    let len = protocol::frame_len(prefix, protocol::MAX_FRAME_BYTES).expect("a sane frame");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.expect("read a response body");
    protocol::decode_response(&body).expect("a valid response")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let fsync = match args.get(1).map(String::as_str).unwrap_or("never") {
        "always" => FsyncPolicy::Always,
        "never" => FsyncPolicy::Never,
        s => FsyncPolicy::Interval(Duration::from_millis(
            s.strip_prefix("interval=").and_then(|ms| ms.parse().ok()).unwrap_or(100),
        )),
    };
    let connections: u32 = arg(&args, 2, 4);
    let batches: usize = arg(&args, 3, 500);
    let batch: usize = arg(&args, 4, 100);
    let value_bytes: usize = arg(&args, 5, 100);

    let dir = tempfile::tempdir().expect("a temp dir");
    let broker = Broker::open(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        log: LogConfig { fsync, ..LogConfig::default() },
        ..BrokerConfig::default()
    })
    .expect("open the broker");
    broker
        .create_topic("load", connections, TopicConfigs::default(), false)
        .expect("create the topic");
    let server = Server::bind(
        ServerConfig { listen: "127.0.0.1:0".parse().expect("an address"), ..Default::default() },
        broker.clone(),
    )
    .await
    .expect("bind");
    let addr = server.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));

    // One RecordBatch v2, reused: the broker sets the base offset of its own copy.
    let value = vec![b'x'; value_bytes];
    let records = vec![NewRecord::value(&value); batch];
    let encoded = record::build_batch(&records, Compression::None).expect("encode");
    let encoded = Bytes::from(encoded);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..connections {
        let encoded = encoded.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut in_flight = 0;
            for i in 0..batches {
                let mut buf = BytesMut::new();
                let req = Request::Append {
                    topic: "load".into(),
                    partition: Some(p),
                    key_hint: None,
                    records: encoded.clone(),
                };
                protocol::encode_request(&mut buf, i as u32, &req);
                s.write_all(&buf).await.expect("write");
                in_flight += 1;
                if in_flight == WINDOW {
                    let (_, r) = read_frame(&mut s).await;
                    assert!(matches!(r, Response::Appended { .. }), "{r:?}");
                    in_flight -= 1;
                }
            }
            for _ in 0..in_flight {
                let (_, r) = read_frame(&mut s).await;
                assert!(matches!(r, Response::Appended { .. }), "{r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer task");
    }
    let produce = started.elapsed();
    let total = u64::from(connections) * (batches * batch) as u64;
    let bytes = u64::from(connections) * (batches * encoded.len()) as u64;

    let started = Instant::now();
    let mut fetched_bytes = 0u64;
    let mut fetched = 0u64;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for p in 0..connections {
        let mut offset = 0;
        loop {
            let mut buf = BytesMut::new();
            let req = Request::Fetch {
                topic: "load".into(),
                partition: p,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            };
            protocol::encode_request(&mut buf, 0, &req);
            s.write_all(&buf).await.expect("write");
            let (_, r) = read_frame(&mut s).await;
            let Response::Fetched { records, high_watermark, .. } = r else { panic!("{r:?}") };
            if records.is_empty() {
                break;
            }
            // Whole batches from the one holding `offset`: records before it were seen already.
            let from = offset;
            record::for_each_record(&records, true, &mut Vec::new(), |rec| {
                if rec.offset as u64 >= from {
                    offset = rec.offset as u64 + 1;
                    fetched += 1;
                }
                ControlFlow::Continue(())
            })
            .expect("CRC ok");
            fetched_bytes += records.len() as u64;
            if offset == high_watermark {
                break;
            }
        }
    }
    let fetch = started.elapsed();
    assert_eq!(fetched, total, "every message replayed");

    let _ = stop_tx.send(());
    serving.await.expect("server task").expect("clean shutdown");
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "fsync={} connections={connections} batches={batches} batch={batch} value_bytes={value_bytes}",
        args.get(1).map(String::as_str).unwrap_or("never")
    );
    println!(
        "produce: {total} msgs in {:.3}s = {:.0} msg/s, {:.1} MB/s",
        produce.as_secs_f64(),
        rate(total, produce),
        rate(bytes, produce) / 1e6
    );
    println!(
        "fetch:   {fetched} msgs in {:.3}s = {:.0} msg/s, {:.1} MB/s",
        fetch.as_secs_f64(),
        rate(fetched, fetch),
        rate(fetched_bytes, fetch) / 1e6
    );
}
