//! Clients across a broker restart (SIGKILL, then a new broker on the same data directory and
//! port): `consume --follow` prints every record exactly once and in order, `produce` from a pipe
//! loses no line and stores what was acknowledged before the kill exactly once, `produce` gives up
//! with an error after --reconnect-timeout, and the library's Producer and Consumer carry on.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, BrokerProcess, ok};
use minikafka::client::{
    Admin, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, Reconnect, StartFrom,
};

/// Generous: a debug broker restarting on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(120);

/// Runs `minikafka ARGS` against `addr` with stdout and stderr piped (stdin as given).
fn spawn_cli(addr: &str, args: &[&str], stdin: Stdio) -> Child {
    Command::new(BIN)
        .args(args)
        .env("MINIKAFKA_BROKER", addr)
        .env_remove("RUST_LOG")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minikafka")
}

/// Reads a child's stdout line by line on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects a child's stderr on a thread; join for the text.
fn stderr_of(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut err = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    })
}

/// Takes lines from `rx` until `got` holds `n` of them.
fn receive_until(rx: &mpsc::Receiver<String>, got: &mut Vec<String>, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => got.push(line),
            Err(e) => panic!("{} of {n} lines received ({e:?}); last: {:?}", got.len(), got.last()),
        }
    }
}

fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own unreaped child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// Kills the broker and starts it again on the same data directory and port.
fn kill_and_restart(broker: &mut BrokerProcess) {
    let addr = broker.addr.clone();
    broker.kill();
    broker.restart();
    assert_eq!(broker.addr, addr, "the broker came back on another port; clients cannot follow");
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:05}")).collect()
}

fn as_input(lines: &[String]) -> Vec<u8> {
    lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect()
}

/// (a) A follow consumer (on a broker with a token, which it must present again) keeps running
/// through SIGKILL and restart, and prints all 200 records exactly once, in order.
#[test]
fn consume_follow_survives_a_broker_restart_printing_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "reconnect-test-token-0123456789\n").unwrap();
    let token = token.to_str().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &["--auth-token-file", token]);
    ok(broker.cli(&["topic", "create", "t", "--auth-token-file", token]));

    let mut consumer = spawn_cli(
        &broker.addr,
        &["consume", "t", "--follow", "--from-beginning", "--auth-token-file", token],
        Stdio::null(),
    );
    let rx = lines_of(&mut consumer);
    let stderr = stderr_of(&mut consumer);

    let first = numbered("a", 0..100);
    ok(broker.cli_stdin(&["produce", "t", "--auth-token-file", token], Some(&as_input(&first))));
    let mut got = Vec::new();
    receive_until(&rx, &mut got, 100);

    kill_and_restart(&mut broker);
    let second = numbered("b", 0..100);
    ok(broker.cli_stdin(&["produce", "t", "--auth-token-file", token], Some(&as_input(&second))));
    receive_until(&rx, &mut got, 200);

    // Nothing more comes (no record printed twice), and Ctrl-C/SIGTERM still ends it cleanly.
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&consumer);
    let status = consumer.wait().unwrap();
    got.extend(rx.try_iter());
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "consume --follow failed: {stderr}");
    let want: Vec<String> = first.into_iter().chain(second).collect();
    assert_eq!(got, want, "every record exactly once, in order; stderr: {stderr}");
    assert!(
        stderr.contains("unavailable")
            && stderr.contains("reconnecting...")
            && stderr.contains("reconnected"),
        "the consumer says it reconnects: {stderr}"
    );
}

/// A follow consumer of a group that waits for a broker that stays down still stops on SIGTERM
/// (Ctrl-C), having committed what it printed.
#[test]
fn consume_follow_stops_on_sigterm_while_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "t"]));
    ok(broker.cli(&["produce", "t", "one", "two"]));
    let mut consumer =
        spawn_cli(&broker.addr, &["consume", "t", "--follow", "--group", "g"], Stdio::null());
    let rx = lines_of(&mut consumer);
    let stderr = stderr_of(&mut consumer);
    let mut got = Vec::new();
    receive_until(&rx, &mut got, 2);
    // Printed, then committed: wait for the commit, so that nothing is left to commit at the end.
    let deadline = Instant::now() + PATIENCE;
    while !broker
        .cli(&["group", "describe", "g"])
        .stdout
        .starts_with(b"group g: 1 partition, total lag 0")
    {
        assert!(Instant::now() < deadline, "the group never committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.kill();
    // Wait until it noticed (it said so), then ask it to stop.
    std::thread::sleep(Duration::from_secs(1));
    sigterm(&consumer);
    let status = common::wait_with_deadline(consumer, PATIENCE, &["consume", "--follow"]).status;
    let stderr = stderr.join().unwrap();
    assert!(stderr.contains("reconnecting..."), "{stderr}");
    assert!(status.success(), "stopped cleanly, everything printed was committed: {stderr}");
    broker.restart();
    let described = ok(broker.cli(&["group", "describe", "g"]));
    assert!(described.contains("total lag 0"), "the group committed both records: {described}");
}

/// (b) `produce` reading a pipe: lines acknowledged before the kill are stored exactly once; a
/// stream of lines written while the broker dies and comes back is stored completely, in order
/// (a batch in flight at the kill may be stored twice: at-least-once).
#[test]
fn produce_from_a_pipe_survives_a_broker_restart_and_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "t"]));
    let mut producer =
        spawn_cli(&broker.addr, &["produce", "t", "--reconnect-timeout", "300"], Stdio::piped());
    let mut stdin = producer.stdin.take().unwrap();
    let stderr = stderr_of(&mut producer);

    // Phase 1: acknowledged before the kill (stored, then time for the acks to arrive).
    let acked = numbered("p1", 0..100);
    stdin.write_all(&as_input(&acked)).unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while ok(broker.cli(&["consume", "t", "--from-beginning"])).lines().count() < acked.len() {
        assert!(Instant::now() < deadline, "phase 1 never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    // Phase 2: a stream of lines; the broker is killed part way and restarted.
    let streamed = numbered("p2", 0..3000);
    let (progress_tx, progress_rx) = mpsc::channel();
    let writer = {
        let streamed = streamed.clone();
        std::thread::spawn(move || {
            for (i, line) in streamed.iter().enumerate() {
                stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
                if i % 10 == 9 {
                    stdin.flush().unwrap();
                    let _ = progress_tx.send(i + 1);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            // Dropping stdin closes the pipe: produce flushes and exits.
        })
    };
    while progress_rx.recv_timeout(PATIENCE).expect("the writer stalled") < 1000 {}
    kill_and_restart(&mut broker);
    writer.join().unwrap();
    let status = common::wait_with_deadline(producer, PATIENCE, &["produce"]).status;
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "produce failed: {stderr}");
    assert!(stderr.contains("reconnected"), "produce says it reconnected: {stderr}");

    let stored: Vec<String> =
        ok(broker.cli(&["consume", "t", "--from-beginning"])).lines().map(str::to_string).collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for line in &stored {
        *count.entry(line.as_str()).or_default() += 1;
    }
    let input: HashSet<&str> = acked.iter().chain(&streamed).map(String::as_str).collect();
    for line in count.keys() {
        assert!(input.contains(line), "stored a line never written: {line}");
    }
    for line in &acked {
        assert_eq!(count.get(line.as_str()), Some(&1), "{line} acknowledged before the kill");
    }
    // Every line is there, and their first appearances are in the order written.
    let mut seen = HashSet::new();
    let firsts: Vec<&str> = stored.iter().map(String::as_str).filter(|l| seen.insert(*l)).collect();
    let want: Vec<&str> = acked.iter().chain(&streamed).map(String::as_str).collect();
    assert_eq!(firsts.len(), want.len(), "lines lost");
    assert!(firsts == want, "lines out of order");
    eprintln!("{} lines written, {} stored", want.len(), stored.len());
}

/// `produce` does not wait forever for a broker that stays down: it fails after
/// --reconnect-timeout, saying why.
#[test]
fn produce_gives_up_after_its_reconnect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    ok(broker.cli(&["topic", "create", "t"]));
    let mut producer =
        spawn_cli(&broker.addr, &["produce", "t", "--reconnect-timeout", "1"], Stdio::piped());
    let mut stdin = producer.stdin.take().unwrap();
    let stderr = stderr_of(&mut producer);
    stdin.write_all(b"one\n").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + PATIENCE;
    while ok(broker.cli(&["consume", "t", "--from-beginning"])).lines().count() < 1 {
        assert!(Instant::now() < deadline, "the first line never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    broker.kill();
    stdin.write_all(b"two\n").unwrap();
    drop(stdin);
    let status = common::wait_with_deadline(producer, PATIENCE, &["produce"]).status;
    let stderr = stderr.join().unwrap();
    assert!(!status.success(), "produce must fail when the broker stays away: {stderr}");
    assert!(
        stderr.contains("unavailable (connection refused); reconnecting...")
            && stderr.contains("error: broker")
            && stderr.contains("gave up reconnecting"),
        "{stderr}"
    );
}

/// (partition, offset, value); every value produced here is non-null.
type Consumed = (u32, u64, Option<Vec<u8>>);

/// Receives records into `got` until it holds `n`.
async fn wait_for(
    got: &mut Vec<Consumed>,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Consumed>,
    n: usize,
) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => got.push(r),
            other => panic!("{} of {n} records consumed: {other:?}", got.len()),
        }
    }
}

/// (c) The library: a Producer and a Consumer with `reconnect` set carry on across a restart;
/// the consumer hands out every record exactly once, in order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_producer_and_consumer_carry_on_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(&dir.path().join("data"), &[]);
    let conn = Connection::connect(&broker.addr).await.unwrap();
    Admin::new(conn.clone()).create_topic("lib", 2, false).await.unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let policy = Reconnect {
        give_up_after: Some(PATIENCE),
        listener: Some({
            let events = events.clone();
            Arc::new(move |e| events.lock().unwrap().push(e.to_string()))
        }),
        ..Reconnect::default()
    };
    let config = ProducerConfig { reconnect: Some(policy.clone()), ..ProducerConfig::default() };
    let mut producer = Producer::new(conn, "lib", config).await.unwrap();

    let consumer_conn = Connection::connect(&broker.addr).await.unwrap();
    let config = ConsumerConfig {
        stop_at_end: false,
        reconnect: Some(Reconnect { give_up_after: None, ..policy }),
        ..ConsumerConfig::default()
    };
    let mut consumer =
        Consumer::new(consumer_conn, "lib", StartFrom::Beginning, config).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match consumer.next().await {
                Ok(Some(r)) => {
                    if tx.send((r.partition, r.offset, r.value)).is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });

    let mut acked = 0;
    for i in 0..100 {
        producer
            .send(Some(format!("k{i}").as_bytes()), format!("v{i:03}").as_bytes())
            .await
            .unwrap();
    }
    acked += producer.flush().await.unwrap().iter().map(|a| a.len()).sum::<u64>();
    let mut got = Vec::new();
    wait_for(&mut got, &mut rx, 100).await;

    tokio::task::block_in_place(|| kill_and_restart(&mut broker));
    for i in 100..200 {
        producer
            .send(Some(format!("k{i}").as_bytes()), format!("v{i:03}").as_bytes())
            .await
            .unwrap();
    }
    acked += producer.flush().await.unwrap().iter().map(|a| a.len()).sum::<u64>();
    assert_eq!(acked, 200, "every record acknowledged once");
    wait_for(&mut got, &mut rx, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(r) = rx.try_recv() {
        got.push(r);
    }
    reader.abort();

    let values: HashSet<Vec<u8>> =
        got.iter().map(|(_, _, v)| v.clone().expect("a value, not a null")).collect();
    assert_eq!(got.len(), 200, "no record handed out twice");
    assert_eq!(values.len(), 200, "every record handed out");
    for p in 0..2 {
        let offsets: Vec<u64> = got.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let want: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, want, "partition {p}: every offset once, in order");
    }
    let events = events.lock().unwrap().clone();
    assert!(events.iter().any(|e| e.contains("unavailable")), "{events:?}");
    assert!(events.iter().filter(|e| e.starts_with("reconnected")).count() >= 2, "{events:?}");
}

/// A batch the broker refuses by closing the connection (a frame past its limit) is an answer,
/// not a lost connection: produce fails at once with the broker's reason instead of reconnecting
/// and sending the same batch again for ever.
#[test]
fn a_batch_the_broker_refuses_by_closing_fails_at_once_without_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"), &["--max-frame-bytes", "65536"]);
    ok(broker.cli(&["topic", "create", "t"]));
    let lines = dir.path().join("lines.txt");
    std::fs::write(&lines, format!("{}\n", "x".repeat(1000)).repeat(300)).unwrap();
    let started = Instant::now();
    let out = broker.cli(&["produce", "t", "--file", lines.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a refused batch is an error: {stderr}");
    assert!(stderr.contains("exceeds the maximum of 65536 bytes"), "{stderr}");
    assert!(!stderr.contains("reconnect"), "no reconnecting for a refusal: {stderr}");
    assert!(started.elapsed() < PATIENCE, "it fails at once, not after retrying");
}
