//! Shared harness for the end-to-end tests: runs the real `minikafka` binary as a broker on a
//! temporary data directory and an ephemeral loopback port, and runs CLI commands against it.
//! Every process started here is killed when its handle is dropped.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod checker;
pub mod cluster;
pub mod cluster_client;
pub mod kafka;
pub mod netns;

pub const BIN: &str = env!("CARGO_BIN_EXE_minikafka");

/// How long a broker may take to start listening (debug build, busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    /// The Kafka listener's address when it is on (`start_with_kafka`).
    pub kafka_addr: Option<String>,
    extra: Vec<String>,
    log: PathBuf,
}

/// A free loopback port: bind port 0, read it back, release it. Another process could take it
/// before the broker binds, so `start` retries with a fresh port when the broker fails to start.
/// A free loopback port below the kernel's ephemeral range, never handed out twice by this test
/// process: a port from that range can be taken meanwhile by any outgoing connection, and a
/// restarted broker must get its listeners back.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = u32::from(ephemeral_start.saturating_sub(10_001).max(1000));
    // A different start per process, so parallel test binaries rarely probe the same ports.
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..span {
        let port = 10_000 + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if handed.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed.push(port);
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range");
}

impl BrokerProcess {
    /// Starts a broker on `data_dir` with extra flags (e.g. `--fsync never`).
    pub fn start(data_dir: &Path, extra: &[&str]) -> BrokerProcess {
        Self::start_listening(data_dir, extra, None)
    }

    /// `start`, with the Kafka listener on too (its address in `kafka_addr`).
    pub fn start_with_kafka(data_dir: &Path, extra: &[&str]) -> BrokerProcess {
        Self::start_listening(data_dir, extra, Some(String::new()))
    }

    fn start_listening(data_dir: &Path, extra: &[&str], kafka: Option<String>) -> BrokerProcess {
        let mut b = BrokerProcess {
            child: None,
            addr: String::new(),
            kafka_addr: kafka,
            data_dir: data_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: data_dir.with_extension("broker.log"),
        };
        b.restart();
        b
    }

    /// Starts the broker again (after `kill` or `stop`) on the same data directory and port
    /// when possible.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running broker");
        let mut last_log = String::new();
        for attempt in 0..5 {
            let reuse = attempt == 0 && !self.addr.is_empty();
            let addr = if reuse { self.addr.clone() } else { format!("127.0.0.1:{}", free_port()) };
            let kafka = match &self.kafka_addr {
                None => "off".to_string(),
                Some(a) if reuse && !a.is_empty() => a.clone(),
                Some(_) => format!("127.0.0.1:{}", free_port()),
            };
            let log = std::fs::File::create(&self.log).expect("create the broker log file");
            let mut child = Command::new(BIN)
                .arg("broker")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--listen")
                .arg(&addr)
                // Tests run brokers in parallel; none may take the fixed Kafka or console port
                // (the Kafka listener is off, or on an ephemeral port with `start_with_kafka`).
                .args(["--kafka-listen", &kafka, "--http-listen", "off"])
                .args(&self.extra)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn the minikafka broker");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let kafka_up = kafka == "off" || TcpStream::connect(&kafka).is_ok();
                if kafka_up && TcpStream::connect(&addr).is_ok() {
                    self.child = Some(child);
                    self.addr = addr;
                    if self.kafka_addr.is_some() {
                        self.kafka_addr = Some(kafka);
                    }
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken; try another
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log = std::fs::read_to_string(&self.log).unwrap_or_default();
        }
        panic!("the broker did not start listening; its log:\n{last_log}");
    }

    /// SIGKILL: no shutdown, no sync, no clean marker.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited with status 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker process's id while it runs (e.g. to read its memory use from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The broker's peak resident memory so far, in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> u64 {
        let pid = self.pid().expect("the broker runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in status");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
    }

    /// The broker's CPU time (user + system) so far.
    pub fn cpu(&self) -> Duration {
        let pid = self.pid().expect("the broker runs");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz.max(1))
    }

    /// Waits (generously) for a log line holding every one of `parts`; returns it.
    pub fn log_line_with(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no log line with {parts:?}; the log:\n{log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `minikafka ARGS` against this broker.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None)
    }

    /// Runs `minikafka ARGS` against this broker with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        run_cli(&self.addr, args, input)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `minikafka ARGS` with `MINIKAFKA_BROKER=addr`, optional stdin, and a time limit.
pub fn run_cli(addr: &str, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("MINIKAFKA_BROKER", addr)
        .env_remove("RUST_LOG")
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn minikafka");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // Written from a thread so a large input cannot deadlock against a full stdout pipe.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    wait_with_deadline(child, Duration::from_secs(120), args)
}

/// Waits for a child, killing it (and failing the test) if it outlives `limit`.
pub fn wait_with_deadline(child: Child, limit: Duration, what: &[&str]) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for minikafka"),
        Err(_) => {
            // SAFETY: kill(2) on our own unreaped child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("minikafka {what:?} did not finish within {limit:?}");
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command succeeded and returns its stdout.
#[track_caller]
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Asserts the command failed with an `error: ` message on stderr; returns stderr.
#[track_caller]
pub fn fails(out: Output) -> String {
    assert!(!out.status.success(), "command unexpectedly succeeded: {}", stdout(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "stderr should start with 'error: ': {err}");
    err
}
