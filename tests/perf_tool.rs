//! `minikafka perf` against a real broker: the produce, consume and latency load tools store,
//! read back and report exactly the records they say they did (small counts; no speed asserted).

mod common;

use common::{BrokerProcess, fails, ok};
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {out}"))
}

#[test]
fn produce_then_consume_reports_every_record_and_the_broker_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);

    // Three producers, two partitions, small batches so many are in flight.
    let p = json(&ok(broker.cli(&[
        "perf",
        "produce",
        "--topic",
        "load",
        "--partitions",
        "2",
        "--num-records",
        "10001",
        "--record-size",
        "50",
        "--producers",
        "3",
        "--batch-size",
        "2000",
        "--in-flight",
        "4",
        "--broker-fsync",
        "never",
        "--json",
    ])));
    assert_eq!(p["mode"], "produce");
    assert_eq!(p["records"], 10001);
    assert_eq!(p["value_bytes"], 10001 * 50);
    assert_eq!(p["partitions"], 2);
    assert_eq!(p["broker_fsync"], "never");
    assert_eq!(p["latency"]["samples"], 10001, "one latency sample per record");
    assert!(p["records_per_sec"].as_f64().unwrap() > 0.0);
    let lat = &p["latency"];
    assert!(lat["p50_us"].as_u64() <= lat["p99_us"].as_u64());
    assert!(lat["p99_us"].as_u64() <= lat["max_us"].as_u64());

    let described = json(&ok(broker.cli(&["topic", "describe", "load", "--json"])));
    let stored: u64 = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["next_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 10001, "the broker holds what perf produce reported");

    // Fire and forget stores the same.
    let p = json(&ok(broker.cli(&[
        "perf",
        "produce",
        "--topic",
        "load",
        "--num-records",
        "999",
        "--record-size",
        "50",
        "--acks",
        "0",
        "--json",
    ])));
    assert_eq!(p["records"], 999);

    // Two consumers split the partitions and together read everything, CRC-checked.
    let c = json(&ok(broker.cli(&[
        "perf",
        "consume",
        "--topic",
        "load",
        "--consumers",
        "2",
        "--fetch-size",
        "4096",
        "--json",
    ])));
    assert_eq!(c["mode"], "consume");
    assert_eq!(c["records"], 11000);
    assert_eq!(c["value_bytes"], 11000 * 50);
    assert_eq!(c["record_size"], 50);

    // Text output names the figures.
    let text = ok(broker.cli(&["perf", "consume", "--topic", "load", "--num-records", "10"]));
    assert!(text.contains("20 records of 50 B") && text.contains("records/s"), "{text}");
    assert!(text.contains("p99.9") && text.contains("MB/s"), "{text}");
}

#[test]
fn latency_mode_sees_every_record_it_produced() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    let l = json(&ok(broker.cli(&[
        "perf",
        "latency",
        "--topic",
        "lat",
        "--rate",
        "2000",
        "--duration",
        "1",
        "--max-wait-ms",
        "100",
        "--json",
    ])));
    assert_eq!(l["mode"], "latency");
    assert_eq!(l["records"], 2000, "the follower saw every record produced");
    assert_eq!(l["latency"]["samples"], 2000);
    assert!(l["latency"]["max_us"].as_u64().unwrap() > 0);
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let err = fails(broker.cli(&["perf", "produce", "--producers", "0", "--num-records", "1"]));
    assert!(err.contains("--producers"), "{err}");
    let err = fails(broker.cli(&["perf", "latency", "--record-size", "4"]));
    assert!(err.contains("--record-size"), "{err}");
    let err = fails(broker.cli(&["perf", "consume", "--topic", "missing"]));
    assert!(err.contains("missing"), "{err}");
    let err = fails(broker.cli(&["perf", "consume", "--topic", "t", "--fetch-depth", "0"]));
    assert!(err.contains("--fetch-depth"), "{err}");
}
