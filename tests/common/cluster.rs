//! Three (or more) real `minikafka broker` processes forming one cluster, for the fault tests:
//! free loopback ports (or, with a `NetLab`, one network namespace per broker, started through
//! `ip netns exec`), waiting until every broker listens, SIGKILL / SIGTERM / SIGSTOP / SIGCONT of
//! any one of them, restart on the same data directory and addresses, and each broker's log kept
//! in a file: its tail is printed when a test fails. Dropping the cluster kills every process
//! (continuing paused ones first). It knows nothing of topics or records; see cluster_client.rs.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::NetLab;
use super::{BIN, free_port};

/// How long a broker may take to start listening (debug build, busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One broker of the cluster.
pub struct Node {
    /// Its node id (== Kafka broker id), from 1.
    pub id: u64,
    pub native_addr: String,
    pub kafka_addr: String,
    pub cluster_addr: String,
    /// Its console and `/metrics` listener; `None`: started with `--http-listen off`.
    pub http_addr: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The network namespace it runs in, with a `NetLab`.
    pub netns: Option<String>,
    child: Option<Child>,
    paused: bool,
    /// Starts so far (the log marks each).
    starts: u32,
}

impl Node {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own unreaped child's pid has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }
}

pub struct TestCluster {
    pub nodes: Vec<Node>,
    controllers: String,
    extra: Vec<String>,
}

/// Broker `id` on loopback ports, its data and log under `dir`; not started.
fn loopback_node(dir: &Path, id: u64) -> Node {
    let port = || format!("127.0.0.1:{}", free_port());
    Node {
        id,
        native_addr: port(),
        kafka_addr: port(),
        cluster_addr: port(),
        http_addr: None,
        data_dir: dir.join(format!("broker{id}")),
        log: dir.join(format!("broker{id}.log")),
        netns: None,
        child: None,
        paused: false,
        starts: 0,
    }
}

fn connects(addr: &str) -> bool {
    let Some(sa) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else { return false };
    TcpStream::connect_timeout(&sa, Duration::from_millis(500)).is_ok()
}

impl TestCluster {
    /// `size` brokers on loopback, data under `dir`, each with the flags `extra` too (e.g.
    /// `--broker-session-timeout-ms 2000`). Returns once every broker listens.
    pub fn start(dir: &Path, size: usize, extra: &[&str]) -> TestCluster {
        let nodes = (1..=size as u64).map(|id| loopback_node(dir, id)).collect();
        Self::launch(nodes, extra)
    }

    /// [`TestCluster::start`], each broker with its HTTP listener (console and `/metrics`) on a
    /// free loopback port too.
    pub fn start_with_http(dir: &Path, size: usize, extra: &[&str]) -> TestCluster {
        let nodes = (1..=size as u64)
            .map(|id| Node {
                http_addr: Some(format!("127.0.0.1:{}", free_port())),
                ..loopback_node(dir, id)
            })
            .collect();
        Self::launch(nodes, extra)
    }

    /// `size` brokers, broker i in the lab's namespace i at 10.213.1.i (fixed ports: each has
    /// its own namespace). The caller must be in the lab's client namespace to reach them.
    pub fn start_in(lab: &NetLab, dir: &Path, size: usize, extra: &[&str]) -> TestCluster {
        let mut nodes = Vec::new();
        for i in 1..=size {
            let ip = lab.node_ip(i);
            nodes.push(Node {
                id: i as u64,
                native_addr: format!("{ip}:7070"),
                kafka_addr: format!("{ip}:9092"),
                cluster_addr: format!("{ip}:7080"),
                http_addr: None,
                data_dir: dir.join(format!("broker{i}")),
                log: dir.join(format!("broker{i}.log")),
                netns: Some(lab.node_ns(i)),
                child: None,
                paused: false,
                starts: 0,
            });
        }
        // Outside loopback a listener without a token must be allowed explicitly; the lab's
        // addresses exist only inside its own namespaces.
        let mut extra = extra.to_vec();
        extra.push("--allow-unauthenticated-remote");
        Self::launch(nodes, &extra)
    }

    fn launch(nodes: Vec<Node>, extra: &[&str]) -> TestCluster {
        let controllers = nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.cluster_addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = TestCluster {
            nodes,
            controllers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // All spawned first: the voters need each other to elect a controller.
        for i in 0..c.nodes.len() {
            c.spawn(i);
        }
        for i in 0..c.nodes.len() {
            c.wait_listening(i);
        }
        c
    }

    /// Starts one more broker on loopback, not among the controllers: it follows the metadata
    /// as a learner. Returns its index in `nodes`.
    pub fn add_broker(&mut self, dir: &Path) -> usize {
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(loopback_node(dir, id));
        let i = self.nodes.len() - 1;
        self.spawn(i);
        self.wait_listening(i);
        i
    }

    pub fn kafka_addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.kafka_addr.clone()).collect()
    }

    pub fn native_addrs(&self) -> String {
        self.nodes.iter().map(|n| n.native_addr.clone()).collect::<Vec<_>>().join(",")
    }

    /// The index in `nodes` of broker `id`.
    pub fn index(&self, id: i32) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id as i32 == id)
            .unwrap_or_else(|| panic!("no broker {id}"))
    }

    fn spawn(&mut self, i: usize) {
        let controllers = self.controllers.clone();
        let extra = self.extra.clone();
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "broker {} is already running", n.id);
        n.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("open the broker log file");
        use std::io::Write;
        let _ = writeln!(log, "===== start {} of broker {} =====", n.starts, n.id);
        let mut cmd = match &n.netns {
            Some(ns) => {
                // `ip netns exec` execs the broker itself: signals reach it, not a wrapper.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("broker")
            .args(["--node-id", &n.id.to_string()])
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--listen", &n.native_addr])
            .args(["--kafka-listen", &n.kafka_addr])
            .args(["--cluster-listen", &n.cluster_addr])
            .args(["--controllers", &controllers])
            .args(["--http-listen", n.http_addr.as_deref().unwrap_or("off")])
            .args(&extra)
            .env("RUST_LOG", std::env::var("MINIKAFKA_CLUSTER_LOG").unwrap_or("info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        n.child = Some(cmd.spawn().expect("spawn the minikafka broker"));
        n.paused = false;
    }

    /// Waits until broker `i` listens on its native and Kafka ports; panics with its log if it
    /// exits or takes longer than START_TIMEOUT.
    fn wait_listening(&mut self, i: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let n = &mut self.nodes[i];
            if connects(&n.kafka_addr) && connects(&n.native_addr) {
                return;
            }
            let exited = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            let id = n.id;
            if let Some(status) = exited {
                n.child = None;
                panic!(
                    "broker {id} exited ({status}) while starting; its log:\n{}",
                    self.log_tail(i, 80)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "broker {id} did not listen within {START_TIMEOUT:?}; its log:\n{}",
                    self.log_tail(i, 80)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL broker `i`: no shutdown, nothing flushed by the broker itself.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut child) = n.child.take() {
            let _ = child.kill(); // SIGKILL works on a stopped process too
            let _ = child.wait();
        }
        n.paused = false;
    }

    /// SIGTERM (a controlled shutdown) and wait up to 60 s; true when it exited with status 0.
    pub fn terminate(&mut self, i: usize) -> bool {
        self.resume(i);
        let n = &mut self.nodes[i];
        let Some(mut child) = n.child.take() else { return false };
        n.signal_pid(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
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

    /// Starts broker `i` again on the same data directory and addresses; waits until it listens.
    /// A port of a just-killed broker may be briefly unavailable: retried for a while.
    pub fn restart(&mut self, i: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.spawn(i);
            let started = Instant::now();
            loop {
                let n = &mut self.nodes[i];
                if connects(&n.kafka_addr) && connects(&n.native_addr) {
                    return;
                }
                let exited = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() {
                    n.child = None;
                    break;
                }
                let id = n.id;
                if Instant::now() > deadline || started.elapsed() > START_TIMEOUT {
                    panic!("broker {id} did not listen again; its log:\n{}", self.log_tail(i, 80));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Instant::now() > deadline {
                panic!(
                    "broker {} kept exiting on restart; its log:\n{}",
                    self.nodes[i].id,
                    self.log_tail(i, 80)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGSTOP broker `i`: a pause (GC, VM steal, a stuck disk) with every socket left open.
    pub fn pause(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.child.is_some() && !n.paused {
            n.signal(libc::SIGSTOP);
            n.paused = true;
        }
    }

    /// SIGCONT broker `i` after `pause`.
    pub fn resume(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.paused {
            n.signal(libc::SIGCONT);
            n.paused = false;
        }
    }

    /// Whether broker `i` is still alive (not exited on its own).
    pub fn alive(&mut self, i: usize) -> bool {
        let n = &mut self.nodes[i];
        match n.child.as_mut() {
            None => false,
            Some(c) => matches!(c.try_wait(), Ok(None)),
        }
    }

    /// The controller (the metadata Raft leader) as `minikafka cluster status --json` on the
    /// running brokers reports it; `None` while none is known.
    pub fn controller(&mut self) -> Option<u64> {
        let mut running = Vec::new();
        for i in 0..self.nodes.len() {
            if self.alive(i) && !self.nodes[i].paused {
                running.push(self.nodes[i].native_addr.clone());
            }
        }
        let out = Command::new(BIN)
            .args(["cluster", "status", "--json", "--broker", &running.join(",")])
            .output()
            .ok()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        status.get("controller")?.as_u64()
    }

    /// The last `lines` lines of broker `i`'s log (all its starts).
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every broker's whole log, for a grep (panics, "acknowledged" lines, ...).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The tails of every broker's log, one after the other.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            out.push_str(&format!(
                "----- broker {} ({}) -----\n{}\n",
                n.id,
                n.log.display(),
                self.log_tail(i, lines)
            ));
        }
        out
    }
}

impl Node {
    fn signal_pid(&self, pid: u32, sig: i32) {
        // SAFETY: kill(2) on our own unreaped child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            eprintln!("the brokers' logs (last 60 lines each):\n{}", self.logs_tail(60));
        }
    }
}
