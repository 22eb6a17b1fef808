//! `minikafka topic reassign` and `topic reassignments`: moving partitions' replicas between
//! brokers (one partition from the flags, or a plan in the JSON that Kafka's
//! `kafka-reassign-partitions.sh` reads), cancelling a move, and listing the moves under way with
//! how much each new replica still has to copy, and the replication throttle of moves
//! (`--throttle-mb-per-s`, also taken by `cluster rebalance --execute` and `cluster
//! decommission`; alone, it changes the throttle of the moves under way). Owns the flags, the plan format and the output; the brokers do the moving.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::topic::id_list;
use super::{CliError, ConnectArgs};
use crate::client::{Admin, Connection};
use crate::protocol::{PartitionMove, Reassignment, ReplicaCopy};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").args(["replicas", "cancel"])))]
pub(super) struct ReassignArgs {
    /// The topic whose partition moves (with --partition and --replicas or --cancel). Without
    /// it or --plan, --throttle-mb-per-s changes the throttle of the moves under way.
    #[arg(required_unless_present_any = ["plan", "mb_per_s"], requires_all = ["partition", "what"])]
    topic: Option<String>,
    /// The partition to move.
    #[arg(long, value_name = "P")]
    partition: Option<u32>,
    /// Its new replicas, comma-separated; the first is its preferred leader.
    #[arg(long, value_name = "ID,...", value_delimiter = ',')]
    replicas: Vec<i32>,
    /// Cancel the partition's move under way instead (the added replicas are dropped again).
    #[arg(long, conflicts_with_all = ["replicas", "plan"])]
    cancel: bool,
    /// Moves from a file in Kafka's reassignment JSON:
    /// {"version":1,"partitions":[{"topic":"T","partition":0,"replicas":[1,2,4]}]}.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["topic", "replicas"])]
    plan: Option<PathBuf>,
    #[command(flatten)]
    throttle: ThrottleArgs,
}

/// Bytes in the MB of `--throttle-mb-per-s`: 10^6, the unit `benches/reassign.sh` reports.
const MB: u64 = 1_000_000;

/// The replication throttle of partition moves.
#[derive(Debug, Args)]
pub(super) struct ThrottleArgs {
    /// Limit the copying of the new replicas to N MB/s (1 MB = 1,000,000 bytes) per receiving
    /// broker, over all its moves together; in-sync replicas are never slowed. It applies to
    /// every move under way and is lifted when the last one ends.
    #[arg(long = "throttle-mb-per-s", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=u64::MAX / MB))]
    mb_per_s: Option<u64>,
}

impl ThrottleArgs {
    pub(super) fn bytes_per_s(&self) -> Option<u64> {
        // The parser keeps N * MB within u64.
        self.mb_per_s.map(|mb| mb * MB)
    }

    /// The line saying the throttle is set, empty when none was asked for.
    pub(super) fn note(&self) -> String {
        self.mb_per_s.map_or_else(String::new, |mb| {
            format!("throttled to {mb} MB/s per broker until the last move ends\n")
        })
    }
}

#[derive(Debug, Deserialize)]
struct Plan {
    #[serde(default = "one")]
    version: u32,
    partitions: Vec<PlanEntry>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct PlanEntry {
    topic: String,
    partition: u32,
    replicas: Vec<i32>,
}

/// The moves a plan file asks for; a clear error for a file that is not one.
fn read_plan(path: &PathBuf) -> Result<Vec<PartitionMove>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        what: format!("reading --plan {}", path.display()),
        source,
    })?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        CliError::Usage(format!("--plan {}: not a reassignment plan: {e}", path.display()))
    })?;
    if plan.version != 1 {
        return Err(CliError::Usage(format!(
            "--plan {}: version {} (only version 1 is known)",
            path.display(),
            plan.version
        )));
    }
    if plan.partitions.is_empty() {
        return Err(CliError::Usage(format!("--plan {}: no partitions to move", path.display())));
    }
    if let Some(e) = plan.partitions.iter().find(|e| e.replicas.is_empty()) {
        return Err(CliError::Usage(format!(
            "--plan {}: {}-{} has no replicas",
            path.display(),
            e.topic,
            e.partition
        )));
    }
    Ok(plan
        .partitions
        .into_iter()
        .map(|e| PartitionMove { topic: e.topic, partition: e.partition, replicas: e.replicas })
        .collect())
}

pub(super) async fn reassign(admin: &Admin, args: ReassignArgs) -> Result<String, CliError> {
    let moves = match (&args.plan, &args.topic, args.partition) {
        (Some(path), _, _) => read_plan(path)?,
        (None, Some(topic), Some(partition)) => {
            // Cancelling is an empty target on the wire.
            let replicas = if args.cancel { Vec::new() } else { args.replicas.clone() };
            vec![PartitionMove { topic: topic.clone(), partition, replicas }]
        }
        // No move: a new throttle for the moves under way (the broker refuses it when none is).
        (None, None, _) if let Some(mb) = args.throttle.mb_per_s => {
            admin.reassign_throttled(Vec::new(), args.throttle.bytes_per_s()).await?;
            return Ok(format!(
                "the moves under way are now throttled to {mb} MB/s per broker until the last \
                 one ends\n"
            ));
        }
        _ => return Err(CliError::Usage("give TOPIC --partition P, or --plan FILE".into())),
    };
    if args.cancel && args.throttle.mb_per_s.is_some() {
        return Err(CliError::Usage("--throttle-mb-per-s starts moves; --cancel ends one".into()));
    }
    admin.reassign_throttled(moves.clone(), args.throttle.bytes_per_s()).await?;
    let mut out = String::new();
    for m in &moves {
        if m.replicas.is_empty() {
            out.push_str(&format!("cancelled the move of {}-{}\n", m.topic, m.partition));
        } else {
            out.push_str(&format!(
                "moving {}-{} to {} (see `minikafka topic reassignments`)\n",
                m.topic,
                m.partition,
                id_list(&m.replicas)
            ));
        }
    }
    out.push_str(&args.throttle.note());
    Ok(out)
}

/// What `topic reassignments --json` prints.
#[derive(Serialize)]
struct ReassignmentsJson<'a> {
    /// Bytes per second per receiving broker; null when no throttle is in force.
    throttle_bytes_per_s: Option<u64>,
    reassignments: &'a [Reassignment],
}

/// The moves under way. Copy progress is known by each partition's leader: a partition led by
/// another broker than the one asked gets its progress from that leader.
pub(super) async fn reassignments(
    admin: &Admin,
    connect: &ConnectArgs,
    json: bool,
) -> Result<String, CliError> {
    let (mut list, throttle) = admin.reassignments_and_throttle().await?;
    let (brokers, _) = admin.describe_partitions(None).await?;
    let token = connect.token()?;
    for r in list
        .iter_mut()
        .filter(|r| r.behind.is_empty() && r.adding.iter().any(|a| !r.isr.contains(a)))
    {
        let addr = r
            .leader
            .and_then(|l| brokers.iter().find(|b| b.id == l))
            .and_then(|b| b.native_addr.clone());
        let Some(addr) = addr else { continue };
        // Best effort: a leader that cannot be asked leaves the progress unknown.
        if let Ok(conn) = Connection::connect_with_token(&addr, token.as_deref()).await
            && let Ok(theirs) = Admin::new(conn).reassignments().await
            && let Some(t) =
                theirs.iter().find(|t| t.topic == r.topic && t.partition == r.partition)
        {
            r.behind = t.behind.clone();
        }
    }
    if json {
        // Plain structs of strings and integers: encoding cannot fail.
        let out = ReassignmentsJson { throttle_bytes_per_s: throttle, reassignments: &list };
        return Ok(serde_json::to_string(&out)
            .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?
            + "\n");
    }
    Ok(table(&list) + &throttle_line(throttle))
}

fn throttle_line(throttle: Option<u64>) -> String {
    match throttle {
        None => String::new(),
        Some(b) if b % MB == 0 => format!("throttle: {} MB/s per broker\n", b / MB),
        Some(b) => format!("throttle: {b} bytes/s per broker\n"),
    }
}

fn progress(r: &Reassignment) -> String {
    let waiting: Vec<String> = r
        .adding
        .iter()
        .filter(|a| !r.isr.contains(a))
        .map(|a| match r.behind.iter().find(|c| c.replica == *a) {
            Some(ReplicaCopy {
                records, bytes: Some(bytes), log_bytes: Some(log_bytes), ..
            }) => {
                format!(
                    "broker {a}: {}% copied, {} ({records} records) to copy",
                    copied_percent(*bytes, *log_bytes),
                    bytes_text(*bytes)
                )
            }
            Some(c) => format!("broker {a}: {} records to copy", c.records),
            None => format!("broker {a}: catching up"),
        })
        .collect();
    if waiting.is_empty() { "dropping old replicas".into() } else { waiting.join(", ") }
}

/// The share of the leader's log a replica holds, rounded down (100 only when nothing is left).
fn copied_percent(bytes: u64, log_bytes: u64) -> u64 {
    if log_bytes == 0 {
        return 100;
    }
    let done = log_bytes.saturating_sub(bytes);
    // u128: no overflow for any log size.
    (u128::from(done) * 100 / u128::from(log_bytes)) as u64
}

/// Bytes in decimal units, as `--throttle-mb-per-s` counts them (1 MB = 1,000,000 bytes).
fn bytes_text(b: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "GB"), (MB, "MB"), (1_000, "kB")];
    match UNITS.iter().find(|(size, _)| b >= *size) {
        Some((size, unit)) => format!("{:.1} {unit}", b as f64 / *size as f64),
        None => format!("{b} B"),
    }
}

fn table(list: &[Reassignment]) -> String {
    if list.is_empty() {
        return "no reassignment under way\n".into();
    }
    let mut rows: Vec<[String; 6]> = vec![[
        "TOPIC".into(),
        "PARTITION".into(),
        "TARGET".into(),
        "ISR".into(),
        "LEADER".into(),
        "PROGRESS".into(),
    ]];
    for r in list {
        rows.push([
            r.topic.clone(),
            r.partition.to_string(),
            id_list(&r.target),
            id_list(&r.isr),
            r.leader.map_or_else(|| "none".into(), |l| l.to_string()),
            progress(r),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> =
                row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_plan_file_is_read_and_a_bad_one_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        std::fs::write(
            &path,
            r#"{"version":1,"partitions":[{"topic":"orders","partition":2,"replicas":[2,3,4],"log_dirs":["any","any","any"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            read_plan(&path).unwrap(),
            vec![PartitionMove { topic: "orders".into(), partition: 2, replicas: vec![2, 3, 4] }]
        );
        std::fs::write(&path, r#"{"version":1,"partitions":[]}"#).unwrap();
        assert!(read_plan(&path).unwrap_err().to_string().contains("no partitions"));
        std::fs::write(&path, "not json").unwrap();
        assert!(read_plan(&path).unwrap_err().to_string().contains("not a reassignment plan"));
    }

    #[test]
    fn moves_under_way_read_as_a_table_with_their_progress() {
        let r = Reassignment {
            topic: "orders".into(),
            partition: 0,
            target: vec![2, 3, 4, 5],
            adding: vec![4, 5],
            removing: vec![1],
            isr: vec![1, 2, 3],
            leader: Some(1),
            behind: vec![
                ReplicaCopy {
                    replica: 4,
                    records: 1200,
                    bytes: Some(688_000_000),
                    log_bytes: Some(1_000_000_000),
                },
                // From a leader of an earlier release: records only.
                ReplicaCopy { replica: 5, records: 300, bytes: None, log_bytes: None },
            ],
        };
        assert_eq!(
            table(&[r]),
            "TOPIC   PARTITION  TARGET     ISR      LEADER  PROGRESS\n\
             orders  0          [2,3,4,5]  [1,2,3]  1       broker 4: 31% copied, 688.0 MB (1200 records) to copy, broker 5: 300 records to copy\n"
        );
        assert_eq!(table(&[]), "no reassignment under way\n");
        assert_eq!(throttle_line(Some(50_000_000)), "throttle: 50 MB/s per broker\n");
        assert_eq!(throttle_line(Some(1_500)), "throttle: 1500 bytes/s per broker\n");
        assert_eq!(throttle_line(None), "");
    }

    #[test]
    fn copy_progress_reads_in_decimal_units_and_whole_percents() {
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(999), "999 B");
        assert_eq!(bytes_text(1_500), "1.5 kB");
        assert_eq!(bytes_text(52_400_000), "52.4 MB");
        assert_eq!(bytes_text(3_210_000_000), "3.2 GB");
        assert_eq!(copied_percent(0, 0), 100, "an empty log is copied");
        assert_eq!(copied_percent(1, 1000), 99, "rounded down: 100 only when done");
        assert_eq!(copied_percent(0, 1000), 100);
        assert_eq!(copied_percent(1000, 1000), 0);
        assert_eq!(copied_percent(u64::MAX / 2, u64::MAX), 50);
    }
}
