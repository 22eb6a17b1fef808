//! Hostile and mistaken input: bad topic names, missing topics, offsets past the end, and raw
//! garbage on the broker's port. Each gets a clear error, and the broker keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{BrokerProcess, fails, ok};

#[test]
fn bad_topic_names_are_refused_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data, &[]);
    let long = "x".repeat(250);
    for name in ["../x", "a/b", "..", ".", &long, "", "sp ace", "@groups"] {
        let err = fails(broker.cli(&["topic", "create", name]));
        assert!(err.contains("topic name"), "{name:?}: {err}");
    }
    // Nothing escaped the data directory or appeared in it.
    assert!(!dir.path().join("x").exists());
    let entries: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('@') && !n.starts_with('.'))
        .collect();
    assert!(entries.is_empty(), "unexpected entries in the data dir: {entries:?}");
    assert_eq!(ok(broker.cli(&["topic", "list"])), "");

    // Deleting, trimming or producing by a path-like name never reaches outside the data dir.
    let outside = dir.path().join("x");
    std::fs::create_dir(&outside).unwrap();
    for args in [
        &["topic", "delete", "../x"][..],
        &["topic", "trim", "../x", "--before", "1", "--partition", "0"],
        &["produce", "../x", "m"],
        &["consume", "../x", "--from-beginning"],
    ] {
        let err = fails(broker.cli(args));
        assert!(err.contains("topic name") || err.contains("unknown topic"), "{args:?}: {err}");
    }
    assert!(outside.exists(), "a directory outside the data dir was touched");
}

#[test]
fn the_longest_valid_topic_name_works() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    // 249 characters is the longest valid name (Kafka's limit, chosen so that the name plus a
    // partition suffix still fits a 255-byte file name).
    let longest = "y".repeat(249);
    ok(broker.cli(&["topic", "create", &longest]));
    ok(broker.cli(&["produce", &longest, "long"]));
    assert_eq!(ok(broker.cli(&["consume", &longest, "--from-beginning"])), "long\n");
    ok(broker.cli(&["topic", "delete", &longest]));
}

#[test]
fn existing_missing_and_out_of_range_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "t"]));
    let err = fails(broker.cli(&["topic", "create", "t"]));
    assert!(err.contains("exists"), "{err}");
    assert_eq!(
        ok(broker.cli(&["topic", "create", "t", "--if-not-exists"])),
        "topic t already exists with 1 partition\n"
    );

    let err = fails(broker.cli(&["consume", "missing", "--from-beginning"]));
    assert!(err.contains("missing"), "{err}");
    let err = fails(broker.cli(&["produce", "missing", "hello"]));
    assert!(err.contains("missing"), "{err}");
    let err = fails(broker.cli(&["topic", "delete", "missing"]));
    assert!(err.contains("missing"), "{err}");

    ok(broker.cli(&["produce", "t", "one", "two"]));
    let err = fails(broker.cli(&["consume", "t", "--offset", "3"]));
    assert!(err.contains("out of range") && err.contains("0..2"), "{err}");
    // The end itself is a valid (empty) place to start.
    assert_eq!(ok(broker.cli(&["consume", "t", "--offset", "2"])), "");
    let err = fails(broker.cli(&["consume", "t", "--partition", "5", "--from-beginning"]));
    assert!(err.contains("partition 5"), "{err}");

    // An unreachable broker is an error naming the address, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let err = fails(common::run_cli(&addr, &["topic", "list"], None));
    assert!(err.contains(&addr), "{err}");
}

/// Sends `bytes` raw to the broker and waits (bounded) for it to answer or close.
fn send_raw(addr: &str, bytes: &[u8]) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = sock.write_all(bytes);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = sock.read_to_end(&mut sink);
}

#[test]
fn garbage_on_the_port_does_not_hurt_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "safe"]));
    ok(broker.cli(&["produce", "safe", "still here"]));

    // A length prefix claiming 4 GiB, then a few bytes.
    send_raw(&broker.addr, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    // A plausible length with a body that is not a request.
    send_raw(&broker.addr, &[8, 0, 0, 0, 1, 0, 0, 0, 250, 9, 9, 9]);
    // Pseudo-random bytes (a fixed xorshift sequence, so failures reproduce).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    send_raw(&broker.addr, &noise);
    // A connection that sends half a frame and hangs up.
    send_raw(&broker.addr, &[100, 0, 0, 0, 1, 2]);

    assert_eq!(ok(broker.cli(&["consume", "safe", "--from-beginning"])), "still here\n");
    assert_eq!(ok(broker.cli(&["topic", "list"])), "safe\n");
}
