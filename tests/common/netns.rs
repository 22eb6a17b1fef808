//! Real network partitions for the cluster tests: a lab of Linux network namespaces, one per
//! broker plus one for the test's clients, each joined by a veth pair to a bridge that lives in a
//! namespace of its own, and nftables `drop` rules that cut one broker off. Every name starts
//! `mkt-<pid>-`, every address is 10.213.1.x and exists only inside the lab's namespaces, and
//! `Drop` deletes the namespaces (which removes their veths and rules). It needs root, `ip` and
//! `nft`; `NetLab::unavailable` says why not, and the tests skip with that reason. It never
//! touches the host's own namespace: no address, route or rule is added there.
//!
//! ```text
//!   mkt-<pid>-<k>-c  (clients, 10.213.1.100) ─ veth ─┐
//!   mkt-<pid>-<k>-n1 (broker 1, 10.213.1.1)  ─ veth ─┤ br0 in mkt-<pid>-<k>-br
//!   mkt-<pid>-<k>-n2 (broker 2, 10.213.1.2)  ─ veth ─┤
//!   mkt-<pid>-<k>-n3 (broker 3, 10.213.1.3)  ─ veth ─┘
//! ```

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Distinguishes the labs of one test process.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);
/// An `ip` or `nft` call that takes longer is stuck.
const CMD_LIMIT: Duration = Duration::from_secs(20);

/// How a broker is cut off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cut {
    /// From everyone: the other brokers and the clients.
    Full,
    /// From the other brokers only: clients still reach it (a would-be stale leader).
    FromPeers,
}

pub struct NetLab {
    prefix: String,
    nodes: usize,
}

/// Runs `cmd args` to completion within `CMD_LIMIT`, with `input` on stdin; Err with its output.
fn run(cmd: &str, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(|e| format!("{cmd} stdin: {e}"))?;
    }
    let deadline = Instant::now() + CMD_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd} {args:?} did not finish within {CMD_LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("{cmd}: {e}")),
        }
    }
    let out = child.wait_with_output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have(cmd: &str, version_flag: &str) -> bool {
    Command::new(cmd)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Moves the calling thread into network namespace `name` (threads it spawns later follow).
pub fn enter(name: &str) -> Result<(), String> {
    let f =
        std::fs::File::open(format!("/run/netns/{name}")).map_err(|e| format!("{name}: {e}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) on a namespace fd we hold open; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

impl NetLab {
    /// Why the lab cannot be built here, if it cannot: not root, or `ip`/`nft` missing.
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not running as root".into());
        }
        if !have("ip", "-V") {
            return Some("`ip` (iproute2) is not installed".into());
        }
        if !have("nft", "--version") {
            return Some("`nft` (nftables) is not installed".into());
        }
        None
    }

    /// Builds the lab: a bridge namespace, a client namespace and `nodes` broker namespaces.
    pub fn create(nodes: usize) -> Result<NetLab, String> {
        remove_stale();
        let prefix =
            format!("mkt-{}-{}", std::process::id(), NEXT_LAB.fetch_add(1, Ordering::Relaxed));
        // From here on Drop removes whatever was made, also when a step fails.
        let lab = NetLab { prefix, nodes };
        let br = lab.ns("br");
        run("ip", &["netns", "add", &br], None)?;
        run("ip", &["-n", &br, "link", "set", "lo", "up"], None)?;
        run("ip", &["-n", &br, "link", "add", "br0", "type", "bridge"], None)?;
        run("ip", &["-n", &br, "link", "set", "br0", "up"], None)?;
        let mut members = vec![("c".to_string(), lab.client_ip())];
        for i in 1..=nodes {
            members.push((format!("n{i}"), lab.node_ip(i)));
        }
        for (m, ip) in members {
            let ns = lab.ns(&m);
            let veth = format!("v{m}");
            run("ip", &["netns", "add", &ns], None)?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"], None)?;
            run(
                "ip",
                &[
                    "-n", &br, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ],
                None,
            )?;
            run("ip", &["-n", &br, "link", "set", &veth, "master", "br0"], None)?;
            run("ip", &["-n", &br, "link", "set", &veth, "up"], None)?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"], None)?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"], None)?;
        }
        Ok(lab)
    }

    fn ns(&self, member: &str) -> String {
        format!("{}-{member}", self.prefix)
    }

    pub fn node_ns(&self, i: usize) -> String {
        self.ns(&format!("n{i}"))
    }

    pub fn client_ns(&self) -> String {
        self.ns("c")
    }

    pub fn node_ip(&self, i: usize) -> String {
        format!("10.213.1.{i}")
    }

    pub fn client_ip(&self) -> String {
        "10.213.1.100".to_string()
    }

    /// Cuts broker `i` off (nftables drop rules in its namespace, both directions).
    pub fn cut(&self, i: usize, how: Cut) -> Result<(), String> {
        let rules = match how {
            Cut::Full => "add rule inet mkt in iifname \"eth0\" drop\n\
                          add rule inet mkt out oifname \"eth0\" drop\n"
                .to_string(),
            Cut::FromPeers => {
                let peers: Vec<String> =
                    (1..=self.nodes).filter(|&j| j != i).map(|j| self.node_ip(j)).collect();
                let set = peers.join(", ");
                format!(
                    "add rule inet mkt in ip saddr {{ {set} }} drop\n\
                     add rule inet mkt out ip daddr {{ {set} }} drop\n"
                )
            }
        };
        let script = format!(
            "add table inet mkt\n\
             add chain inet mkt in {{ type filter hook input priority 0 ; policy accept ; }}\n\
             add chain inet mkt out {{ type filter hook output priority 0 ; policy accept ; }}\n\
             {rules}"
        );
        let ns = self.node_ns(i);
        run("ip", &["netns", "exec", &ns, "nft", "-f", "/dev/stdin"], Some(&script))
    }

    /// Removes the cut on broker `i` (nothing to do when there is none).
    pub fn heal(&self, i: usize) -> Result<(), String> {
        let ns = self.node_ns(i);
        match run("ip", &["netns", "exec", &ns, "nft", "delete", "table", "inet", "mkt"], None) {
            Err(e) if !e.contains("No such file") => Err(e),
            _ => Ok(()),
        }
    }

    /// The namespaces of this lab that exist now.
    pub fn existing(&self) -> Vec<String> {
        list().into_iter().filter(|n| n.starts_with(&format!("{}-", self.prefix))).collect()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        for ns in self.existing() {
            if let Err(e) = run("ip", &["netns", "del", &ns], None) {
                eprintln!("netns: cannot remove {ns}: {e}");
            }
        }
    }
}

/// The names of every network namespace `ip` knows.
fn list() -> Vec<String> {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Deletes labs left behind by test processes that died before their Drop ran (the pid in the
/// name no longer runs).
fn remove_stale() {
    for ns in list() {
        let Some(pid) = ns.strip_prefix("mkt-").and_then(|r| r.split('-').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", &ns], None);
        }
    }
}
