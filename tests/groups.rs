//! Consumer groups through the CLI: consumes with the same group read disjoint, contiguous
//! ranges, and the committed position survives a broker restart.

mod common;

use common::{BrokerProcess, ok};

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

fn messages(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[test]
fn same_group_reads_disjoint_contiguous_ranges_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "jobs"]));
    let input: String = messages(0..10).iter().map(|m| format!("{m}\n")).collect();
    ok(broker.cli_stdin(&["produce", "jobs"], Some(input.as_bytes())));

    let first = ok(broker.cli(&["consume", "jobs", "--group", "workers", "--max-messages", "4"]));
    assert_eq!(lines(&first), messages(0..4));
    let second = ok(broker.cli(&["consume", "jobs", "--group", "workers", "--max-messages", "3"]));
    assert_eq!(lines(&second), messages(4..7));

    // Another group has its own position: it starts at the log start.
    let other = ok(broker.cli(&["consume", "jobs", "--group", "auditors"]));
    assert_eq!(lines(&other), messages(0..10));

    // The committed position is durable across a restart (clean here; kill below).
    assert!(broker.stop(), "clean shutdown; log:\n{}", broker.log());
    broker.restart();
    let third = ok(broker.cli(&["consume", "jobs", "--group", "workers", "--max-messages", "2"]));
    assert_eq!(lines(&third), messages(7..9));
    broker.kill();
    broker.restart();
    let rest = ok(broker.cli(&["consume", "jobs", "--group", "workers"]));
    assert_eq!(lines(&rest), messages(9..10));

    // Caught up: nothing more until something new is produced.
    assert_eq!(ok(broker.cli(&["consume", "jobs", "--group", "workers"])), "");
    ok(broker.cli(&["produce", "jobs", "m10"]));
    assert_eq!(ok(broker.cli(&["consume", "jobs", "--group", "workers"])), "m10\n");
}

#[test]
fn group_commits_cover_every_partition() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "multi", "--partitions", "3"]));
    for p in 0..3 {
        let p = p.to_string();
        ok(broker.cli(&[
            "produce",
            "multi",
            "--partition",
            &p,
            &format!("p{p}-a"),
            &format!("p{p}-b"),
        ]));
    }
    let mut seen =
        lines(&ok(broker.cli(&["consume", "multi", "--group", "g", "--max-messages", "4"])));
    assert_eq!(seen.len(), 4);
    seen.extend(lines(&ok(broker.cli(&["consume", "multi", "--group", "g"]))));
    seen.sort();
    assert_eq!(seen, vec!["p0-a", "p0-b", "p1-a", "p1-b", "p2-a", "p2-b"]);
    assert_eq!(ok(broker.cli(&["consume", "multi", "--group", "g"])), "");
}

#[test]
fn follow_waits_for_new_messages_and_commits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "live"]));
    ok(broker.cli(&["produce", "live", "old"]));
    let mut child = std::process::Command::new(common::BIN)
        .args(["consume", "live", "--follow", "--group", "tail"])
        .env("MINIKAFKA_BROKER", &broker.addr)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "old\n");
    ok(broker.cli(&["produce", "live", "new"]));
    line.clear();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "new\n", "a following consumer sees messages produced later");
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = common::wait_with_deadline(child, std::time::Duration::from_secs(30), &["consume"]);
    assert!(out.status.success(), "SIGTERM ends --follow cleanly: {}", common::stderr(&out));
    ok(broker.cli(&["produce", "live", "newest"]));
    assert_eq!(ok(broker.cli(&["consume", "live", "--group", "tail"])), "newest\n");
}

#[test]
fn a_group_whose_position_was_trimmed_away_resumes_at_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--fsync", "never"]);
    ok(broker.cli(&["topic", "create", "short"]));
    let input: String = messages(0..6).iter().map(|m| format!("{m}\n")).collect();
    ok(broker.cli_stdin(&["produce", "short"], Some(input.as_bytes())));
    assert_eq!(
        lines(&ok(broker.cli(&["consume", "short", "--group", "slow", "--max-messages", "1"]))),
        messages(0..1)
    );
    ok(broker.cli(&["topic", "trim", "short", "--before", "4"]));
    assert_eq!(lines(&ok(broker.cli(&["consume", "short", "--group", "slow"]))), messages(4..6));
}
