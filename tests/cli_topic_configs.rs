//! Topic configs and partition growth through the real binary, as an operator uses them with
//! Kafka's meanings: `topic create --config`, `topic describe` (id and non-default configs),
//! `topic alter --config/--delete-config` (all or nothing), invalid configs refused with which
//! and why, `topic add-partitions` (Kafka's refusals), and all of it surviving a restart.

mod common;

use common::{BrokerProcess, fails, ok};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The topic's configs as `describe --json` shows them.
fn configs(broker: &BrokerProcess, topic: &str) -> serde_json::Value {
    json(&ok(broker.cli(&["topic", "describe", topic, "--json"])))["configs"].clone()
}

#[test]
fn configs_are_set_at_creation_shown_altered_and_kept_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);

    assert_eq!(
        ok(broker.cli(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "retention.ms=3600000",
            "--config",
            "cleanup.policy=compact,delete",
        ])),
        "created topic orders with 2 partitions and configs \
         cleanup.policy=compact,delete,retention.ms=3600000\n"
    );
    ok(broker.cli(&["topic", "create", "plain"]));

    // JSON: the id as Kafka prints one (22 characters of URL-safe base64), the configs set.
    let d = json(&ok(broker.cli(&["topic", "describe", "orders", "--json"])));
    let id = d["topic_id"].as_str().expect("a topic id").to_string();
    assert_eq!(id.len(), 22, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
    assert_eq!(
        d["configs"],
        serde_json::json!({"cleanup.policy": "compact,delete", "retention.ms": "3600000"})
    );
    assert_eq!(d["partitions"].as_array().unwrap().len(), 2);
    let plain = json(&ok(broker.cli(&["topic", "describe", "plain", "--json"])));
    let plain_id = plain["topic_id"].as_str().unwrap().to_string();
    assert_ne!(plain_id, id, "every topic has its own id");
    assert_eq!(plain["configs"], serde_json::json!({}), "nothing set: every config is a default");

    // The table: a row per topic with its id and the configs set on it, then the partitions.
    let table = ok(broker.cli(&["topic", "describe"]));
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    assert_eq!(
        head.split_whitespace().collect::<Vec<_>>(),
        ["TOPIC", "TOPIC-ID", "PARTITIONS", "CONFIGS"]
    );
    let orders: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(orders, ["orders", &id, "2", "cleanup.policy=compact,delete,retention.ms=3600000"]);
    let plain_row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(plain_row, ["plain", &plain_id, "1", "-"]);
    assert_eq!(lines.next(), Some(""));
    assert!(lines.next().unwrap().starts_with("TOPIC"), "{table}");
    assert_eq!(lines.filter(|l| l.starts_with("orders ")).count(), 2, "{table}");

    // Alter: set one, return another to its default, in one all-or-nothing change.
    assert_eq!(
        ok(broker.cli(&[
            "topic",
            "alter",
            "orders",
            "--config",
            "retention.ms=60000",
            "--delete-config",
            "cleanup.policy",
        ])),
        "altered topic orders: set retention.ms=60000; deleted cleanup.policy\n"
    );
    assert_eq!(configs(&broker, "orders"), serde_json::json!({"retention.ms": "60000"}));

    // alter needs something to change.
    let out = broker.cli(&["topic", "alter", "orders"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("--config"), "{}", common::stderr(&out));

    // Restart: configs and ids are stored with the topic.
    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    let d = json(&ok(broker.cli(&["topic", "describe", "orders", "--json"])));
    assert_eq!(d["topic_id"], id.as_str(), "the id is kept for the topic's life");
    assert_eq!(d["configs"], serde_json::json!({"retention.ms": "60000"}));

    // Re-creation gives a new id.
    ok(broker.cli(&["topic", "delete", "plain"]));
    ok(broker.cli(&["topic", "create", "plain"]));
    let again = json(&ok(broker.cli(&["topic", "describe", "plain", "--json"])));
    assert_ne!(again["topic_id"], plain_id.as_str(), "a re-created topic is another topic");
}

#[test]
fn invalid_configs_are_refused_with_which_and_why_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);

    // Creation: an invalid value, an unknown name; nothing is created.
    let err = fails(broker.cli(&["topic", "create", "bad", "--config", "retention.ms=abc"]));
    assert!(err.contains("retention.ms") && err.contains("abc"), "says which config: {err}");
    assert!(!err.contains("InvalidConfig"), "the broker's words, not a code name: {err}");
    let err = fails(broker.cli(&["topic", "create", "bad", "--config", "no.such.config=1"]));
    assert!(err.contains("no.such.config"), "{err}");
    let err = fails(broker.cli(&["topic", "create", "bad", "--config", "cleanup.policy=nonsense"]));
    assert!(err.contains("cleanup.policy") && err.contains("nonsense"), "{err}");
    assert_eq!(ok(broker.cli(&["topic", "list"])), "", "no topic was created");
    assert!(!dir.path().join("data").join("bad").exists());

    // A malformed flag is a usage error before anything is sent.
    let out = broker.cli(&["topic", "create", "bad", "--config", "retention.ms"]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("NAME=VALUE"), "{}", common::stderr(&out));

    // Alter is all or nothing: one valid and one invalid config change neither.
    ok(broker.cli(&["topic", "create", "t", "--config", "retention.ms=1000"]));
    let err = fails(broker.cli(&[
        "topic",
        "alter",
        "t",
        "--config",
        "retention.ms=5000",
        "--config",
        "segment.bytes=lots",
    ]));
    assert!(err.contains("segment.bytes") && err.contains("lots"), "{err}");
    let err = fails(broker.cli(&["topic", "alter", "t", "--delete-config", "no.such.config"]));
    assert!(err.contains("no.such.config"), "{err}");
    let err = fails(broker.cli(&[
        "topic",
        "alter",
        "t",
        "--config",
        "retention.ms=5",
        "--delete-config",
        "retention.ms",
    ]));
    assert!(err.contains("both set"), "{err}");
    assert_eq!(configs(&broker, "t"), serde_json::json!({"retention.ms": "1000"}), "unchanged");

    // An unknown topic is named.
    let err = fails(broker.cli(&["topic", "alter", "nope", "--config", "retention.ms=1"]));
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn add_partitions_grows_a_topic_that_serves_the_new_partitions_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "wide", "--partitions", "2"]));
    ok(broker.cli(&["produce", "wide", "--partition", "0", "old"]));

    // Kafka's refusals, in Kafka's words; nothing changes.
    assert_eq!(
        fails(broker.cli(&["topic", "add-partitions", "wide", "--partitions", "2"])),
        "error: Topic already has 2 partitions.\n"
    );
    assert_eq!(
        fails(broker.cli(&["topic", "add-partitions", "wide", "--partitions", "1"])),
        "error: Topic currently has 2 partitions, which is higher than the requested 1.\n"
    );
    let err = fails(broker.cli(&["topic", "add-partitions", "nope", "--partitions", "3"]));
    assert!(err.contains("nope"), "{err}");

    assert_eq!(
        ok(broker.cli(&["topic", "add-partitions", "wide", "--partitions", "4"])),
        "topic wide now has 4 partitions (was 2)\n"
    );
    let d = json(&ok(broker.cli(&["topic", "describe", "wide", "--json"])));
    let parts: Vec<u64> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(parts, [0, 1, 2, 3]);

    // The new partitions take records and give them back; the old one is untouched.
    ok(broker.cli(&["produce", "wide", "--partition", "3", "fresh-1", "fresh-2"]));
    assert_eq!(
        ok(broker.cli(&[
            "consume",
            "wide",
            "--partition",
            "3",
            "--from-beginning",
            "--max-messages",
            "2"
        ])),
        "fresh-1\nfresh-2\n"
    );
    assert_eq!(
        ok(broker.cli(&[
            "consume",
            "wide",
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "1"
        ])),
        "old\n"
    );

    assert!(broker.stop(), "clean shutdown");
    broker.restart();
    let d = json(&ok(broker.cli(&["topic", "describe", "wide", "--json"])));
    assert_eq!(d["partitions"].as_array().unwrap().len(), 4, "{d}");
    assert_eq!(
        ok(broker.cli(&[
            "consume",
            "wide",
            "--partition",
            "3",
            "--from-beginning",
            "--max-messages",
            "2"
        ])),
        "fresh-1\nfresh-2\n"
    );
}

#[test]
fn shell_completions_offer_the_new_subcommands_and_flags() {
    let out = common::run_cli("127.0.0.1:1", &["completions", "bash"], None);
    let script = ok(out);
    for word in ["add-partitions", "alter", "--delete-config", "--config"] {
        assert!(script.contains(word), "bash completions lack {word}");
    }
}
