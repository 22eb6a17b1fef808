//! How a broker joins a cluster: its node id, its broker-to-broker listener, the controllers
//! (the Raft voters) and the timing of heartbeats and replica lag, checked. Owns the
//! `--controllers ID@HOST:PORT,...` syntax; never opens a socket or a file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Kafka's `broker.session.timeout.ms` default: a broker silent this long is fenced.
pub const DEFAULT_BROKER_SESSION_TIMEOUT: Duration = Duration::from_millis(9000);
/// How often leadership goes back to preferred replicas: Kafka checks every 300 s; a tenth of
/// that brings a restarted broker its partitions back within half a minute.
pub const DEFAULT_LEADER_IMBALANCE_CHECK: Duration = Duration::from_secs(30);
/// Kafka's `replica.lag.time.max.ms` default: a follower this far behind leaves the ISR.
pub const DEFAULT_REPLICA_LAG_TIME: Duration = Duration::from_millis(30_000);

/// One broker's cluster settings (the `--node-id`, `--cluster-listen`, `--controllers`, ...
/// flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This broker's id, unique in the cluster and never reused (Kafka's broker id).
    pub node_id: u64,
    /// Where the broker-to-broker listener (Raft, replica fetches) binds.
    pub cluster_listen: SocketAddr,
    /// The Raft voters: node id -> cluster address (HOST:PORT). A broker not named here follows
    /// the metadata as a learner.
    pub controllers: BTreeMap<u64, String>,
    /// The HOST:PORT native clients are told to use for this broker.
    pub advertised_addr: Option<String>,
    /// The HOST:PORT Kafka clients are told to use for this broker.
    pub advertised_kafka_addr: Option<String>,
    /// Replicas of a topic created without a replication factor.
    pub default_replication_factor: u16,
    /// A broker whose heartbeats stop for this long is fenced.
    pub broker_session_timeout: Duration,
    /// A follower lagging this long leaves the ISR.
    pub replica_lag_time: Duration,
    /// How often the controller moves leadership back to preferred replicas in sync again
    /// (Kafka's auto leader rebalance); `None`: never on its own.
    pub leader_imbalance_check_interval: Option<Duration>,
    /// The shared secret brokers present to each other (`--auth-token`).
    pub token: Option<String>,
    /// Allow a non-loopback cluster listener without a token.
    pub allow_remote: bool,
}

impl ClusterConfig {
    /// A config for `node_id` with Kafka's defaults for the timings and a replication factor of
    /// `min(3, controllers)`.
    pub fn new(
        node_id: u64,
        cluster_listen: SocketAddr,
        controllers: BTreeMap<u64, String>,
    ) -> Self {
        let rf = controllers.len().clamp(1, 3) as u16;
        ClusterConfig {
            node_id,
            cluster_listen,
            controllers,
            advertised_addr: None,
            advertised_kafka_addr: None,
            default_replication_factor: rf,
            broker_session_timeout: DEFAULT_BROKER_SESSION_TIMEOUT,
            replica_lag_time: DEFAULT_REPLICA_LAG_TIME,
            leader_imbalance_check_interval: Some(DEFAULT_LEADER_IMBALANCE_CHECK),
            token: None,
            allow_remote: false,
        }
    }

    /// Whether this broker is one of the Raft voters.
    pub fn is_voter(&self) -> bool {
        self.controllers.contains_key(&self.node_id)
    }

    /// How often this broker heartbeats to the controller: a quarter of the session timeout
    /// (Kafka: 2 s against 9 s), so a couple of lost heartbeats never fence a live broker.
    pub fn heartbeat_interval(&self) -> Duration {
        (self.broker_session_timeout / 4).max(Duration::from_millis(50))
    }

    /// The metadata Raft's election timeout range (ms): an eighth to a quarter of the session
    /// timeout, at most Raft's usual 1-2 s. openraft's followers wait out the leader's lease (the
    /// maximum) before their own timeout, so a dead controller is replaced within half a session
    /// and a broker that died with it is still fenced on time (see `Heartbeats::grant_sessions`).
    pub fn raft_election_timeout_ms(&self) -> (u64, u64) {
        let session = self.broker_session_timeout.as_millis() as u64;
        ((session / 8).clamp(100, 1000), (session / 4).clamp(200, 2000))
    }

    /// The Raft leader's heartbeat (ms): a quarter of the shortest election timeout, so a few
    /// lost ones never start an election.
    pub fn raft_heartbeat_ms(&self) -> u64 {
        (self.raft_election_timeout_ms().0 / 4).max(30)
    }

    /// The address other brokers reach this one's cluster listener at: its controllers entry
    /// when it is a voter, else the bound address.
    pub fn cluster_addr(&self, bound: SocketAddr) -> String {
        self.controllers.get(&self.node_id).cloned().unwrap_or_else(|| bound.to_string())
    }
}

/// Why a `--controllers` list is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControllersError {
    #[error("the list is empty")]
    Empty,
    #[error("{entry:?} is not ID@HOST:PORT")]
    Syntax { entry: String },
    #[error("{entry:?}: the node id must be a number from 1 up")]
    BadId { entry: String },
    #[error("node {id} is listed twice")]
    Duplicate { id: u64 },
}

/// Parses `ID@HOST:PORT,ID@HOST:PORT,...` into node id -> address.
pub fn parse_controllers(s: &str) -> Result<BTreeMap<u64, String>, ControllersError> {
    let mut out = BTreeMap::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let syntax = || ControllersError::Syntax { entry: entry.to_owned() };
        let (id, addr) = entry.split_once('@').ok_or_else(syntax)?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| ControllersError::BadId { entry: entry.to_owned() })?;
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(syntax());
        }
        if out.insert(id, addr.to_owned()).is_some() {
            return Err(ControllersError::Duplicate { id });
        }
    }
    if out.is_empty() {
        return Err(ControllersError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_parse_id_at_host_port() {
        let c = parse_controllers("1@127.0.0.1:7080, 2@host-b:7081,3@[::1]:7082").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[&1], "127.0.0.1:7080");
        assert_eq!(c[&2], "host-b:7081");
        assert_eq!(c[&3], "[::1]:7082");
        assert_eq!(parse_controllers("7@h:1").unwrap()[&7], "h:1");
    }

    #[test]
    fn bad_controller_lists_are_refused_with_the_entry() {
        assert_eq!(parse_controllers(""), Err(ControllersError::Empty));
        assert!(matches!(parse_controllers("h:1"), Err(ControllersError::Syntax { .. })));
        assert!(matches!(parse_controllers("1@h"), Err(ControllersError::Syntax { .. })));
        assert!(matches!(parse_controllers("1@:80"), Err(ControllersError::Syntax { .. })));
        assert!(matches!(parse_controllers("x@h:1"), Err(ControllersError::BadId { .. })));
        assert!(matches!(parse_controllers("0@h:1"), Err(ControllersError::BadId { .. })));
        assert_eq!(
            parse_controllers("1@h:1,1@h:2,2@h:3"),
            Err(ControllersError::Duplicate { id: 1 })
        );
    }

    #[test]
    fn defaults_follow_kafka_and_the_voter_count() {
        let c = ClusterConfig::new(
            4,
            "127.0.0.1:0".parse().unwrap(),
            parse_controllers("1@h:1,2@h:2,3@h:3").unwrap(),
        );
        assert!(!c.is_voter());
        assert_eq!(c.default_replication_factor, 3);
        assert_eq!(c.broker_session_timeout, Duration::from_secs(9));
        assert_eq!(c.heartbeat_interval(), Duration::from_millis(2250));
        assert_eq!(c.raft_election_timeout_ms(), (1000, 2000));
        assert_eq!(c.raft_heartbeat_ms(), 250);
        let mut fast = c.clone();
        fast.broker_session_timeout = Duration::from_millis(2000);
        assert_eq!(fast.raft_election_timeout_ms(), (250, 500));
        assert_eq!(fast.raft_heartbeat_ms(), 62);
        assert_eq!(c.cluster_addr("127.0.0.1:9".parse().unwrap()), "127.0.0.1:9");
        let one = ClusterConfig::new(
            1,
            "127.0.0.1:0".parse().unwrap(),
            parse_controllers("1@h:1").unwrap(),
        );
        assert!(one.is_voter());
        assert_eq!(one.default_replication_factor, 1);
        assert_eq!(one.cluster_addr("127.0.0.1:9".parse().unwrap()), "h:1");
    }
}
