//! The seed's user journey, end to end through the real binary: start a broker, create a topic,
//! produce, describe (table and JSON), replay with consume, list, trim, delete. Outputs are
//! compared exactly; README's session shows the same commands and outputs.

mod common;

use common::{BrokerProcess, fails, ok};
use minikafka::batch::{HEADER_LEN, MIN_RECORD_LEN};

/// Bytes a partition holds for these batches of records with short values (no keys, no headers,
/// each batch's timestamps within 63 ms of its first: every varint takes one byte), plus what
/// the segment file adds on top of its batches.
fn stored_bytes(batches: &[&[&str]]) -> u64 {
    let batch_bytes = |values: &[&str]| {
        HEADER_LEN + values.iter().map(|v| MIN_RECORD_LEN + v.len()).sum::<usize>()
    };
    batches.iter().map(|b| batch_bytes(b) as u64).sum::<u64>() + SEGMENT_OVERHEAD
}

const SEGMENT_OVERHEAD: u64 = 24;

#[test]
fn journey_create_produce_describe_consume_trim_delete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);

    assert_eq!(
        ok(broker.cli(&["topic", "create", "orders"])),
        "created topic orders with 1 partition\n"
    );
    assert_eq!(
        ok(broker.cli(&["topic", "create", "payments", "--partitions", "3"])),
        "created topic payments with 3 partitions\n"
    );

    // Messages as arguments, then as stdin lines; silent on success unless -v.
    assert_eq!(ok(broker.cli(&["produce", "orders", "first order", "second order"])), "");
    assert_eq!(
        ok(broker.cli_stdin(&["produce", "orders", "-v"], Some(b"third order\nfourth order\n"))),
        "partition 0: offsets 2-3\n"
    );

    let values = ["first order", "second order", "third order", "fourth order"];
    // Each produce sent its records as one batch.
    let bytes = stored_bytes(&[&values[..2], &values[2..]]);
    let described = ok(broker.cli(&["topic", "describe", "orders", "--json"]));
    // The topic id is the broker's (a random UUID, 22 characters as Kafka prints it).
    let id = serde_json::from_str::<serde_json::Value>(&described).unwrap()["topic_id"]
        .as_str()
        .expect("a topic id")
        .to_string();
    assert_eq!(id.len(), 22, "{id}");
    assert_eq!(
        described,
        format!(
            "{{\"name\":\"orders\",\"topic_id\":\"{id}\",\"partitions\":[{{\"partition\":0,\
             \"log_start_offset\":0,\"next_offset\":4,\"segments\":1,\"size_bytes\":{bytes},\
             \"leader\":0,\"leader_epoch\":0,\"replicas\":[0],\"isr\":[0]}}],\
             \"configs\":{{}}}}\n"
        )
    );
    assert_eq!(
        ok(broker.cli(&["topic", "describe", "orders"])),
        format!(
            "TOPIC   TOPIC-ID                PARTITIONS  CONFIGS\n\
             orders  {id}  1           -\n\
             \n\
             TOPIC   PARTITION  LOG-START  NEXT-OFFSET  SEGMENTS  BYTES  LEADER  REPLICAS  ISR\n\
             orders  0          0          4            1         {bytes}    0       [0]       [0]\n"
        )
    );

    assert_eq!(
        ok(broker.cli(&["consume", "orders", "--from-beginning"])),
        "first order\nsecond order\nthird order\nfourth order\n"
    );
    // Without a start position a consumer only sees new messages: a replay prints nothing.
    assert_eq!(ok(broker.cli(&["consume", "orders"])), "");
    assert_eq!(
        ok(broker.cli(&["consume", "orders", "--offset", "1", "--max-messages", "2"])),
        "second order\nthird order\n"
    );

    // JSON lines: every field present, key null when absent.
    let json = ok(broker.cli(&["consume", "orders", "--from-beginning", "--format", "json"]));
    let lines: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), 4);
    for (i, obj) in lines.iter().enumerate() {
        assert_eq!(obj["partition"], 0);
        assert_eq!(obj["offset"], i as u64);
        assert!(obj["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "{obj}");
        assert_eq!(obj["key"], serde_json::Value::Null);
        assert_eq!(obj["value"], values[i]);
    }

    assert_eq!(ok(broker.cli(&["topic", "list"])), "orders\npayments\n");

    // Trim: the log start moves, reads below it are a clear error, the rest is still there.
    assert_eq!(
        ok(broker.cli(&["topic", "trim", "orders", "--before", "2"])),
        "trimmed orders partition 0: log start offset is now 2\n"
    );
    assert_eq!(
        fails(broker.cli(&["consume", "orders", "--offset", "0"])),
        "error: offset 0 is out of range for orders/0: the log holds offsets 2..4 \
         (log start inclusive, next offset exclusive)\n"
    );
    assert_eq!(
        ok(broker.cli(&["consume", "orders", "--from-beginning"])),
        "third order\nfourth order\n"
    );

    assert_eq!(ok(broker.cli(&["topic", "delete", "orders"])), "deleted topic orders\n");
    assert_eq!(ok(broker.cli(&["topic", "list"])), "payments\n");
    assert!(!dir.path().join("data").join("orders").exists());
    fails(broker.cli(&["consume", "orders", "--from-beginning"]));
}

#[test]
fn keyed_messages_share_a_partition_and_json_shows_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "events", "--partitions", "4"]));
    let partition = minikafka::client::partition_for_key(b"user-7", 4);
    assert_eq!(
        ok(broker.cli(&["produce", "events", "--key", "user-7", "-v", "a", "b", "c"])),
        format!("partition {partition}: offsets 0-2\n")
    );
    let p = partition.to_string();
    let json = ok(broker.cli(&[
        "consume",
        "events",
        "--partition",
        &p,
        "--from-beginning",
        "--format",
        "json",
    ]));
    let keys: Vec<String> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["key"].to_string())
        .collect();
    assert_eq!(keys, vec!["\"user-7\""; 3]);
    // Explicit partitions, and a consume of every partition gets all of them.
    ok(broker.cli(&["produce", "events", "--partition", "3", "x"]));
    let all = ok(broker.cli(&["consume", "events", "--from-beginning"]));
    let mut got: Vec<&str> = all.lines().collect();
    got.sort();
    assert_eq!(got, vec!["a", "b", "c", "x"]);
    let err = fails(broker.cli(&["produce", "events", "--partition", "9", "y"]));
    assert!(err.contains("partition 9"), "{err}");
}

#[test]
fn produce_from_a_large_file_is_batched_and_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "lines"]));
    let n = 50_000;
    let mut content = String::new();
    for i in 0..n {
        content.push_str(&format!("line {i}\n"));
    }
    // The last line has no newline: it still counts.
    content.push_str("last line");
    let file = dir.path().join("input.txt");
    std::fs::write(&file, &content).unwrap();
    let v = ok(broker.cli(&["produce", "lines", "--file", file.to_str().unwrap(), "-v"]));
    assert_eq!(v, format!("partition 0: offsets 0-{n}\n"));
    let out = ok(broker.cli(&["consume", "lines", "--from-beginning"]));
    assert_eq!(out, content + "\n");
}

#[test]
fn consume_into_a_closed_pipe_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "t"]));
    let input: String = (0..20_000).map(|i| format!("message number {i}\n")).collect();
    ok(broker.cli_stdin(&["produce", "t"], Some(input.as_bytes())));
    // A reader that takes one line and closes the pipe, like `| head -1`.
    let mut child = std::process::Command::new(common::BIN)
        .args(["consume", "t", "--from-beginning"])
        .env("MINIKAFKA_BROKER", &broker.addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = common::wait_with_deadline(child, std::time::Duration::from_secs(60), &["consume"]);
    assert!(out.status.success(), "stderr: {}", common::stderr(&out));
    assert_eq!(common::stderr(&out), "");
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["broker", "--help"],
        &["topic", "--help"],
        &["topic", "create", "--help"],
        &["topic", "list", "--help"],
        &["topic", "describe", "--help"],
        &["topic", "delete", "--help"],
        &["topic", "trim", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
    ] {
        let out = common::run_cli("127.0.0.1:1", args, None);
        let text = ok(out);
        assert!(text.contains("Usage: minikafka"), "{args:?}: {text}");
    }
    let help = ok(common::run_cli("127.0.0.1:1", &["consume", "--help"], None));
    assert!(help.contains("--from-beginning"), "{help}");
    assert!(help.contains("MINIKAFKA_BROKER"), "{help}");
}

#[test]
fn broker_side_key_partitioning_matches_the_client_on_an_auto_created_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(
        &dir.path().join("data"),
        &["--auto-create-topics", "--default-partitions", "4"],
    );
    // The topic does not exist yet, so the client cannot partition: the broker picks by key.
    for key in ["alpha", "beta", "gamma"] {
        let partition = minikafka::client::partition_for_key(key.as_bytes(), 4);
        let out = ok(broker.cli(&["produce", "fresh", "--key", key, "-v", "v1", "v2"]));
        let first = out
            .strip_prefix(&format!("partition {partition}: offsets "))
            .unwrap_or_else(|| panic!("key {key} should land in partition {partition}: {out}"));
        assert!(first.ends_with('\n') && first.contains('-'), "{out}");
    }
    let described = ok(broker.cli(&["topic", "describe", "fresh", "--json"]));
    let d: serde_json::Value = serde_json::from_str(&described).unwrap();
    assert_eq!(d["partitions"].as_array().unwrap().len(), 4);
}

#[test]
fn interactive_stdin_delivers_each_line_without_waiting_for_eof() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "chat"]));
    let mut producer = std::process::Command::new(common::BIN)
        .args(["produce", "chat"])
        .env("MINIKAFKA_BROKER", &broker.addr)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"hello\n").unwrap();
    std::io::Write::flush(&mut stdin).unwrap();
    // The line is sent once it has lingered, while stdin stays open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = ok(broker.cli(&["consume", "chat", "--from-beginning"]));
        if out == "hello\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "line not delivered before EOF: {out:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::io::Write::write_all(&mut stdin, b"bye").unwrap();
    drop(stdin);
    let out =
        common::wait_with_deadline(producer, std::time::Duration::from_secs(30), &["produce"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(ok(broker.cli(&["consume", "chat", "--from-beginning"])), "hello\nbye\n");
}

#[test]
fn trim_without_a_partition_trims_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "wide", "--partitions", "2"]));
    ok(broker.cli(&["produce", "wide", "--partition", "0", "a0", "a1", "a2"]));
    ok(broker.cli(&["produce", "wide", "--partition", "1", "b0"]));
    assert_eq!(
        ok(broker.cli(&["topic", "trim", "wide", "--before", "2"])),
        "trimmed wide partition 0: log start offset is now 2\n\
         trimmed wide partition 1: log start offset is now 1\n"
    );
    assert_eq!(ok(broker.cli(&["consume", "wide", "--from-beginning"])), "a2\n");
    let err = fails(broker.cli(&["topic", "trim", "wide", "--before", "5", "--partition", "1"]));
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn describe_all_and_non_utf8_values() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "b", "--partitions", "2"]));
    ok(broker.cli(&["topic", "create", "a"]));
    let all: serde_json::Value =
        serde_json::from_str(&ok(broker.cli(&["topic", "describe", "--json"]))).unwrap();
    let id = |i: usize| all[i]["topic_id"].as_str().expect("a topic id").to_string();
    let (a, b) = (id(0), id(1));
    assert_eq!(
        ok(broker.cli(&["topic", "describe"])),
        format!(
            "TOPIC  TOPIC-ID                PARTITIONS  CONFIGS\n\
             a      {a}  1           -\n\
             b      {b}  2           -\n\
             \n\
             TOPIC  PARTITION  LOG-START  NEXT-OFFSET  SEGMENTS  BYTES  LEADER  REPLICAS  ISR\n\
             a      0          0          0            1         {SEGMENT_OVERHEAD}     0       [0]       [0]\n\
             b      0          0          0            1         {SEGMENT_OVERHEAD}     0       [0]       [0]\n\
             b      1          0          0            1         {SEGMENT_OVERHEAD}     0       [0]       [0]\n"
        )
    );
    let names: Vec<&str> =
        all.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["a", "b"]);

    // Values are bytes: printed as they are, and lossily as text in JSON.
    ok(broker.cli_stdin(&["produce", "a"], Some(b"caf\xc3\xa9\n\xff\xfe\n")));
    let out = broker.cli(&["consume", "a", "--from-beginning"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, b"caf\xc3\xa9\n\xff\xfe\n");
    let json = ok(broker.cli(&["consume", "a", "--from-beginning", "--format", "json"]));
    let values: Vec<String> = json
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(values, vec!["café".to_string(), "\u{fffd}\u{fffd}".to_string()]);
}

#[test]
fn produce_file_lines_cut_by_the_read_buffer_and_crlf_endings_arrive_whole() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "cut"]));
    // A line longer than the 256 KiB read buffer, an empty line, CRLF endings, and a `\r\n`
    // that may fall on a buffer boundary.
    let long = "y".repeat(300_000);
    let mut content = format!("a\r\n\n{long}\r\n");
    let mut expected = format!("a\n\n{long}\n");
    for i in 0..30_000 {
        content.push_str(&format!("row {i}\r\n"));
        expected.push_str(&format!("row {i}\n"));
    }
    content.push_str("end");
    expected.push_str("end\n");
    let file = dir.path().join("cut.txt");
    std::fs::write(&file, &content).unwrap();
    ok(broker.cli(&["produce", "cut", "--file", file.to_str().unwrap()]));
    let out = ok(broker.cli(&["consume", "cut", "--from-beginning"]));
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "consumed lines differ from the file's lines");
}

#[test]
fn produce_file_with_a_line_over_the_record_limit_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "big"]));
    // Two ordinary lines (taken straight from the read buffer), then one over the 1 MiB record
    // limit (longer than the buffer, so read on the general path).
    let content = format!("one\ntwo\n{}\nfour\n", "z".repeat(1_100_000));
    let file = dir.path().join("big.txt");
    std::fs::write(&file, &content).unwrap();
    let err = fails(broker.cli(&["produce", "big", "--file", file.to_str().unwrap()]));
    assert!(err.contains("line 3") && err.contains("big.txt"), "{err}");
    assert!(err.contains("exceeds the maximum"), "{err}");
}
