//! `minikafka cluster status|rebalance|decommission|elect-leaders|add-voter|remove-voter`:
//! status shows the brokers (id, addresses, alive, fenced or decommissioned, their part in the
//! metadata quorum), the controller, and the partitions that are under-replicated or offline, as
//! the broker asked sees them; the others plan and start moves or change membership through the
//! broker. Owns the output and the plans' shape; the facts and rules are the broker's.

use std::io::Write;

use clap::{Args, Subcommand};

use super::reassign::ThrottleArgs;
use super::topic::id_list;
use super::{CliError, ConnectArgs};
use crate::client::Admin;
use crate::cluster::{BrokerRole, BrokerState, balance};
use crate::protocol::{ClusterInfo, LeaderElection, Membership, PartitionMove, PartitionState};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the brokers (id, native and Kafka addresses, alive or fenced), the controller
    /// (the broker leading the metadata quorum) and every partition that is under-replicated
    /// (fewer replicas in sync than assigned) or offline (no leader).
    Status {
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Plan moves that even out replicas and preferred leaders over the live brokers (Kafka's
    /// reassignment JSON, which `topic reassign --plan` takes); with --execute, start them.
    Rebalance {
        /// Start the moves instead of printing the plan.
        #[arg(long)]
        execute: bool,
        #[command(flatten)]
        throttle: ThrottleArgs,
    },
    /// Move every replica off broker ID (to the least loaded other brokers; a dead broker's
    /// replicas are copied from the partitions' leaders) and fence it once it holds none: it
    /// takes no new replica from now on and stays fenced across restarts. Refused when the
    /// others cannot hold a partition's replication factor. `topic reassignments` shows the
    /// moves; `cluster status` shows it "decommissioned" once they are done.
    Decommission {
        /// The broker to empty.
        #[arg(value_name = "ID")]
        id: i32,
        #[command(flatten)]
        throttle: ThrottleArgs,
        /// Take the decommission back: the broker takes replicas again (moves already under way
        /// go on; `topic reassign --cancel` stops them).
        #[arg(long)]
        cancel: bool,
    },
    /// Make broker ID a metadata voter (a controller) through Raft's joint-consensus membership
    /// change. The broker must be running and joined (started with --controllers naming the
    /// voters). Refused when the voters answering the controller would not make a quorum.
    AddVoter {
        #[arg(value_name = "ID")]
        id: i32,
    },
    /// Turn voter ID back into a plain broker (a learner of the metadata), e.g. before
    /// retiring its machine. Refused for the last voter and when the voters left answering the
    /// controller would not make a quorum.
    RemoveVoter {
        #[arg(value_name = "ID")]
        id: i32,
    },
    /// Move leadership back to each partition's preferred (first) replica where it is live and
    /// in sync (Kafka's preferred leader election; the brokers also do it on their own every
    /// --leader-imbalance-check-interval-ms).
    ElectLeaders {
        /// Only this topic's partitions (default: every topic).
        #[arg(long)]
        topic: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(super) async fn run(args: ClusterArgs) -> Result<(), CliError> {
    let admin = Admin::new(args.connect.connect().await?);
    match args.command {
        ClusterCommand::Status { json } => {
            let status = admin.cluster_status().await?;
            let membership = admin.membership().await?;
            let text = if json {
                #[derive(serde::Serialize)]
                struct Out<'a> {
                    #[serde(flatten)]
                    status: &'a ClusterInfo,
                    #[serde(flatten)]
                    membership: &'a Membership,
                }
                // Plain structs of strings, integers and lists: encoding cannot fail.
                serde_json::to_string(&Out { status: &status, membership: &membership })
                    .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?
                    + "\n"
            } else {
                status_text(&status, &membership)
            };
            write_out(&text)
        }
        ClusterCommand::Rebalance { execute, throttle } => {
            if !execute && throttle.bytes_per_s().is_some() {
                return Err(CliError::Usage(
                    "--throttle-mb-per-s applies to the moves --execute starts".into(),
                ));
            }
            let (live, placements) = placements(&admin).await?;
            let moves = balance::plan_rebalance(&live, &placements);
            if !execute {
                return write_out(&plan_json(&moves));
            }
            write_out(&start(&admin, moves, &throttle).await?)
        }
        ClusterCommand::Decommission { id: broker, cancel: true, throttle } => {
            if throttle.bytes_per_s().is_some() {
                return Err(CliError::Usage(
                    "--throttle-mb-per-s starts moves: not with --cancel".into(),
                ));
            }
            admin.decommission(broker, true).await?;
            write_out(&format!("broker {broker} takes replicas again\n"))
        }
        ClusterCommand::Decommission { id: broker, cancel: false, throttle } => {
            let status = admin.cluster_status().await?;
            let voters = admin.membership().await?.voters;
            if !status.brokers.iter().any(|b| b.id == broker) {
                return Err(CliError::Usage(format!("broker {broker} is not in the cluster")));
            }
            let (live, placements) = placements(&admin).await?;
            let moves = balance::plan_decommission(&live, &placements, broker).map_err(|why| {
                CliError::Usage(format!("cannot decommission broker {broker}: {why}"))
            })?;
            // Marked first, so that no new replica lands on it while its own move away.
            admin.decommission(broker, false).await?;
            let mut text = start(&admin, moves, &throttle).await?;
            text.push_str(&format!(
                "broker {broker} is fenced once it holds no replica (`minikafka topic \
                 reassignments` lists the moves left)\n"
            ));
            if voters.contains(&broker) {
                text.push_str(&format!(
                    "broker {broker} is a controller: `minikafka cluster remove-voter {broker}` \
                     before retiring it\n"
                ));
            }
            write_out(&text)
        }
        ClusterCommand::AddVoter { id } => {
            admin.change_voter(id, true).await?;
            write_out(&format!("broker {id} is a voter\n"))
        }
        ClusterCommand::RemoveVoter { id } => {
            admin.change_voter(id, false).await?;
            write_out(&format!("broker {id} is no longer a voter\n"))
        }
        ClusterCommand::ElectLeaders { topic, json } => {
            let elections = admin.elect_leaders(topic.as_deref()).await?;
            let text = if json {
                // Plain structs of strings, integers and booleans: encoding cannot fail.
                serde_json::to_string(&elections)
                    .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?
                    + "\n"
            } else {
                elections_text(&elections)
            };
            write_out(&text)
        }
    }
}

/// The live brokers that take replicas (not decommissioned) and every partition's replicas,
/// leaving out partitions already moving.
async fn placements(admin: &Admin) -> Result<(Vec<i32>, Vec<balance::Placement>), CliError> {
    let (brokers, partitions) = admin.describe_partitions(None).await?;
    let decommissioned = admin.membership().await?.decommissioned;
    let moving = admin.reassignments().await?;
    let live: Vec<i32> = brokers
        .iter()
        .filter(|b| !b.fenced && !decommissioned.contains(&b.id))
        .map(|b| b.id)
        .collect();
    let placements = partitions
        .into_iter()
        .filter(|p| !moving.iter().any(|m| m.topic == p.topic && m.partition == p.partition))
        .map(|p| (p.topic, p.partition, p.replicas))
        .collect();
    Ok((live, placements))
}

/// Kafka's reassignment JSON for `moves`.
fn plan_json(moves: &[balance::Placement]) -> String {
    let partitions: Vec<serde_json::Value> = moves
        .iter()
        .map(|(t, p, r)| serde_json::json!({"topic": t, "partition": p, "replicas": r}))
        .collect();
    serde_json::json!({"version": 1, "partitions": partitions}).to_string() + "\n"
}

/// Starts `moves` (under the throttle, if one is given); one line each.
async fn start(
    admin: &Admin,
    moves: Vec<balance::Placement>,
    throttle: &ThrottleArgs,
) -> Result<String, CliError> {
    if moves.is_empty() {
        return Ok("nothing to move\n".into());
    }
    let list: Vec<PartitionMove> = moves
        .iter()
        .map(|(topic, partition, replicas)| PartitionMove {
            topic: topic.clone(),
            partition: *partition,
            replicas: replicas.clone(),
        })
        .collect();
    admin.reassign_throttled(list, throttle.bytes_per_s()).await?;
    let lines: String =
        moves.iter().map(|(t, p, r)| format!("moving {t}-{p} to {}\n", id_list(r))).collect();
    Ok(lines + &throttle.note())
}

fn write_out(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
    out.flush().map_err(CliError::stdout)
}

/// One row per partition the election looked at, or a line saying none needed it.
fn elections_text(elections: &[LeaderElection]) -> String {
    if elections.is_empty() {
        return "every partition is led by its preferred replica\n".to_string();
    }
    let mut rows: Vec<[String; 5]> = vec![[
        "TOPIC".into(),
        "PARTITION".into(),
        "PREFERRED".into(),
        "LEADER".into(),
        "RESULT".into(),
    ]];
    for e in elections {
        let result = if e.elected {
            "elected".to_string()
        } else {
            format!("not moved: replica {} is not live and in sync", e.preferred)
        };
        rows.push([
            e.topic.clone(),
            e.partition.to_string(),
            e.preferred.to_string(),
            e.leader.map_or_else(|| "none".to_string(), |l| l.to_string()),
            result,
        ]);
    }
    render(&rows)
}

/// The brokers as a table, the controller, then the troubled partitions (or a line saying
/// there are none).
fn status_text(s: &ClusterInfo, m: &Membership) -> String {
    let mut brokers: Vec<[String; 5]> = vec![[
        "BROKER".into(),
        "ADDRESS".into(),
        "KAFKA-ADDRESS".into(),
        "STATE".into(),
        "ROLE".into(),
    ]];
    for b in &s.brokers {
        let id = if b.id == s.node_id { format!("{} (this)", b.id) } else { b.id.to_string() };
        let state = BrokerState::of(b.fenced, m.decommissioned.contains(&b.id));
        let role = BrokerRole::of(b.id, s.controller, m.voters.contains(&b.id));
        brokers.push([
            id,
            b.native_addr.clone().unwrap_or_else(|| "-".into()),
            b.kafka_addr.clone().unwrap_or_else(|| "-".into()),
            state.as_str().into(),
            role.as_str().into(),
        ]);
    }
    let mut text = render(&brokers);
    let controller = s.controller.map_or_else(|| "none".to_string(), |c| c.to_string());
    text.push_str(&format!("\ncontroller: {controller}\n"));
    text.push_str(&partitions_text("under-replicated partitions", &s.under_replicated));
    text.push_str(&partitions_text("offline partitions", &s.offline));
    text
}

fn partitions_text(title: &str, partitions: &[PartitionState]) -> String {
    if partitions.is_empty() {
        return format!("{title}: none\n");
    }
    let mut rows: Vec<[String; 5]> = vec![[
        "TOPIC".into(),
        "PARTITION".into(),
        "LEADER".into(),
        "REPLICAS".into(),
        "ISR".into(),
    ]];
    for p in partitions {
        rows.push([
            p.topic.clone(),
            p.partition.to_string(),
            p.leader.map_or_else(|| "none".to_string(), |l| l.to_string()),
            id_list(&p.replicas),
            id_list(&p.isr),
        ]);
    }
    format!("\n{title}: {}\n{}", partitions.len(), render(&rows))
}

/// Rows as lines, columns padded to their widest cell (the last one not padded).
fn render<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::BrokerInfo;

    #[test]
    fn an_election_reads_as_a_table_or_says_nothing_needed_it() {
        assert_eq!(elections_text(&[]), "every partition is led by its preferred replica\n");
        let e = |partition, leader, elected| LeaderElection {
            topic: "orders".into(),
            partition,
            preferred: 1,
            leader,
            elected,
        };
        assert_eq!(
            elections_text(&[e(0, Some(1), true), e(2, Some(3), false)]),
            "TOPIC   PARTITION  PREFERRED  LEADER  RESULT\n\
             orders  0          1          1       elected\n\
             orders  2          1          3       not moved: replica 1 is not live and in sync\n"
        );
    }

    #[test]
    fn a_status_with_a_fenced_broker_and_troubled_partitions_reads_as_tables() {
        let status = ClusterInfo {
            node_id: 1,
            clustered: true,
            controller: Some(2),
            brokers: vec![
                BrokerInfo {
                    id: 1,
                    native_addr: Some("127.0.0.1:7070".into()),
                    kafka_addr: Some("127.0.0.1:9092".into()),
                    fenced: false,
                },
                BrokerInfo { id: 2, native_addr: None, kafka_addr: None, fenced: true },
                BrokerInfo { id: 3, native_addr: None, kafka_addr: None, fenced: false },
                BrokerInfo { id: 4, native_addr: None, kafka_addr: None, fenced: true },
            ],

            under_replicated: vec![PartitionState {
                topic: "orders".into(),
                partition: 3,
                leader: Some(1),
                leader_epoch: 4,
                replicas: vec![1, 2],
                isr: vec![1],
            }],
            offline: vec![],
        };
        let membership = Membership { voters: vec![1, 2, 3], decommissioned: vec![3, 4] };
        assert_eq!(
            status_text(&status, &membership),
            "BROKER    ADDRESS         KAFKA-ADDRESS   STATE            ROLE\n\
             1 (this)  127.0.0.1:7070  127.0.0.1:9092  alive            voter\n\
             2         -               -               fenced           controller\n\
             3         -               -               decommissioning  voter\n\
             4         -               -               decommissioned   broker\n\
             \n\
             controller: 2\n\
             \n\
             under-replicated partitions: 1\n\
             TOPIC   PARTITION  LEADER  REPLICAS  ISR\n\
             orders  3          1       [1,2]     [1]\n\
             offline partitions: none\n"
        );
    }
}
