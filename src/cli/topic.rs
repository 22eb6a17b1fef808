//! `minikafka topic create|list|describe|alter|add-partitions|reassign|reassignments|delete|trim`, with Kafka's meanings
//! (kafka-topics.sh, kafka-configs.sh) for topic configs and partition growth.

use std::collections::BTreeMap;
use std::io::Write;

use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;

use super::{CliError, ConnectArgs};
use crate::broker::{PartitionDescription, TopicDescription};
use crate::client::{Admin, ClientError};
use crate::protocol::{ErrorCode, PartitionState, topic_id_text};

/// Each partition's leadership by (topic, partition).
type Leadership = BTreeMap<(String, u32), PartitionState>;

/// The partitions' leaders, replicas and ISR; empty from a broker from before clusters (it does
/// not know the request), whose columns then show `-`.
async fn leadership(admin: &Admin, topic: Option<&str>) -> Result<Leadership, CliError> {
    match admin.describe_partitions(topic).await {
        Ok((_, partitions)) => {
            Ok(partitions.into_iter().map(|p| ((p.topic.clone(), p.partition), p)).collect())
        }
        Err(e) if e.code() == Some(ErrorCode::InvalidRequest) => Ok(Leadership::new()),
        Err(e) => Err(e.into()),
    }
}

/// `[1,2,3]`, as Kafka's tools print replica lists (without spaces, so a column stays one word).
pub(super) fn id_list(ids: &[i32]) -> String {
    let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
    format!("[{}]", ids.join(","))
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic. Names are 1-249 characters of [a-zA-Z0-9._-], not "." or "..".
    Create {
        /// The topic's name.
        name: String,
        /// Number of partitions.
        #[arg(long, value_name = "N", default_value_t = 1)]
        partitions: u32,
        /// Copies of each partition, on as many brokers (a cluster's default when omitted; a
        /// single broker has 1).
        #[arg(long, value_name = "N")]
        replication_factor: Option<u16>,
        /// Succeed (changing nothing) when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        /// A topic config, Kafka's name and value (repeatable): retention.ms, retention.bytes,
        /// cleanup.policy (delete, compact or compact,delete), segment.bytes, segment.ms,
        /// max.message.bytes, message.timestamp.type, min.compaction.lag.ms,
        /// max.compaction.lag.ms, delete.retention.ms, min.cleanable.dirty.ratio,
        /// min.insync.replicas. Unset configs follow the broker's flags.
        #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List topic names, one per line.
    List,
    /// Show each topic's id and non-default configs, each partition's log start offset, next
    /// offset, segments, bytes, leader, replicas and in-sync replicas (ISR), and a line for each
    /// partition or topic that is offline (damaged data the broker does not serve).
    Describe {
        /// The topic to describe (all topics when omitted).
        name: Option<String>,
        /// Print JSON (one object for NAME, an array for all topics) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a topic's configs: set some (--config), return others to their defaults
    /// (--delete-config). All or nothing: an invalid config changes none.
    #[command(group(ArgGroup::new("change").required(true).multiple(true)))]
    Alter {
        /// The topic to change.
        name: String,
        /// A config to set, NAME=VALUE (repeatable).
        #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_config, group = "change")]
        configs: Vec<(String, String)>,
        /// A config to return to its default, the broker's flag (repeatable).
        #[arg(long = "delete-config", value_name = "NAME", group = "change")]
        delete: Vec<String>,
    },
    /// Grow a topic to N partitions (the new total; a topic never shrinks). Keys hash to
    /// partitions by the partition count, so a keyed topic's new records for a key may land in
    /// another partition than its old ones.
    AddPartitions {
        /// The topic to grow.
        name: String,
        /// The new total number of partitions, larger than the current one.
        #[arg(long, value_name = "N")]
        partitions: u32,
    },
    /// Move a partition's replicas to other brokers (Kafka's kafka-reassign-partitions.sh):
    /// the new replicas copy the partition and join the in-sync replicas, then the old ones are
    /// dropped (and the leader moves if it was one). Clients keep producing and consuming.
    Reassign(super::reassign::ReassignArgs),
    /// List the partition moves under way, with how far each new replica still has to copy,
    /// and the replication throttle in force.
    Reassignments {
        /// Print a JSON object instead of a table:
        /// {"throttle_bytes_per_s": N or null, "reassignments": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and all its data.
    Delete {
        /// The topic to delete.
        name: String,
    },
    /// Delete the records below an offset (the log start offset becomes OFFSET).
    Trim {
        /// The topic to trim.
        name: String,
        /// The first offset to keep.
        #[arg(long, value_name = "OFFSET")]
        before: u64,
        /// Trim only this partition. By default every partition is trimmed; one whose log ends
        /// below OFFSET loses all its records.
        #[arg(long, value_name = "P")]
        partition: Option<u32>,
    },
}

pub(super) async fn run(args: TopicArgs) -> Result<(), CliError> {
    let admin = Admin::new(args.connect.connect().await?);
    let mut out = std::io::stdout().lock();
    match args.command {
        TopicCommand::Create { name, partitions, replication_factor, if_not_exists, configs } => {
            if partitions == 0 {
                return Err(CliError::Usage("--partitions must be at least 1".to_string()));
            }
            // Told apart only to report honestly whether anything was created.
            let existed = if_not_exists && admin.describe_topic(&name).await.is_ok();
            if replication_factor == Some(0) {
                return Err(CliError::Usage("--replication-factor must be at least 1".to_string()));
            }
            let d = admin
                .create_replicated_topic(
                    &name,
                    partitions,
                    replication_factor,
                    if_not_exists,
                    &configs,
                )
                .await
                .map_err(config_error)?;
            let n = d.partitions.len();
            let with_configs = if d.configs.is_empty() {
                String::new()
            } else {
                format!(" and configs {}", config_list(&sorted(&d.configs)))
            };
            if existed {
                writeln!(
                    out,
                    "topic {name} already exists with {n} partition{}{with_configs}",
                    plural(n)
                )
            } else {
                writeln!(out, "created topic {name} with {n} partition{}{with_configs}", plural(n))
            }
            .map_err(CliError::stdout)?;
        }
        TopicCommand::Alter { name, configs, delete } => {
            if let Some((both, _)) = configs.iter().find(|(k, _)| delete.contains(k)) {
                return Err(CliError::Usage(format!(
                    "config {both} is both set (--config) and deleted (--delete-config)"
                )));
            }
            admin.alter_topic_configs(&name, &configs, &delete).await.map_err(config_error)?;
            let mut changes = Vec::new();
            if !configs.is_empty() {
                changes.push(format!("set {}", config_list(&configs)));
            }
            if !delete.is_empty() {
                changes.push(format!("deleted {}", delete.join(",")));
            }
            writeln!(out, "altered topic {name}: {}", changes.join("; "))
                .map_err(CliError::stdout)?;
        }
        TopicCommand::AddPartitions { name, partitions } => {
            // Kafka's refusal, in Kafka's words (the broker refuses too; this names the counts
            // before anything is sent).
            let current = admin.describe_topic(&name).await?.partitions.len() as u64;
            let wanted = u64::from(partitions);
            if wanted < current {
                return Err(CliError::Usage(format!(
                    "Topic currently has {current} partitions, which is higher than the \
                     requested {wanted}."
                )));
            }
            if wanted == current {
                return Err(CliError::Usage(format!("Topic already has {current} partitions.")));
            }
            let d = admin.add_partitions(&name, partitions).await?;
            let n = d.partitions.len();
            writeln!(out, "topic {name} now has {n} partition{} (was {current})", plural(n))
                .map_err(CliError::stdout)?;
        }
        TopicCommand::List => {
            for name in admin.list_topics().await? {
                writeln!(out, "{name}").map_err(CliError::stdout)?;
            }
        }
        TopicCommand::Describe { name, json } => {
            let topics = admin.describe(name.as_deref()).await?;
            let leadership = leadership(&admin, name.as_deref()).await?;
            let text = if json {
                let views: Vec<TopicJson> =
                    topics.iter().map(|t| TopicJson::new(t, &leadership)).collect();
                let value = match (&name, views.as_slice()) {
                    (Some(_), [one]) => serde_json::to_string(one),
                    _ => serde_json::to_string(&views),
                };
                // Serializing plain structs of strings and integers cannot fail.
                value.map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))? + "\n"
            } else {
                describe_table(&topics, &leadership)
            };
            out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
        }
        TopicCommand::Reassign(r) => {
            let text = super::reassign::reassign(&admin, r).await?;
            out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
        }
        TopicCommand::Reassignments { json } => {
            let text = super::reassign::reassignments(&admin, &args.connect, json).await?;
            out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            writeln!(out, "deleted topic {name}").map_err(CliError::stdout)?;
        }
        TopicCommand::Trim { name, before, partition } => {
            // One partition: exactly as asked (past its end is the broker's out-of-range error).
            // Every partition: one whose log ends below OFFSET loses all its records.
            let targets: Vec<(u32, u64)> = match partition {
                Some(p) => vec![(p, before)],
                None => admin
                    .describe_topic(&name)
                    .await?
                    .partitions
                    .iter()
                    .map(|p| (p.partition, before.min(p.next_offset)))
                    .collect(),
            };
            for (p, before) in targets {
                let start = admin.trim(&name, p, before).await?;
                writeln!(out, "trimmed {name} partition {p}: log start offset is now {start}")
                    .map_err(CliError::stdout)?;
            }
        }
    }
    out.flush().map_err(CliError::stdout)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `--config NAME=VALUE`: split at the first `=` (a value may hold `=` and `,`).
fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// `a=1,b=2`, as Kafka's tools print configs.
fn config_list(configs: &[(String, String)]) -> String {
    configs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Configs by name, so outputs do not depend on the order they were set in.
fn sorted(configs: &[(String, String)]) -> Vec<(String, String)> {
    let mut v = configs.to_vec();
    v.sort();
    v
}

/// An invalid config is the user's input, reported as the broker words it (which config and
/// why), without the error code's name.
fn config_error(e: ClientError) -> CliError {
    match e {
        ClientError::Broker { code: ErrorCode::InvalidConfig, message } => CliError::Usage(message),
        other => CliError::Client(other),
    }
}

/// The id as Kafka prints it; `None` for an offline topic whose id could not be read.
fn topic_id(d: &TopicDescription) -> Option<String> {
    (d.topic_id != [0; 16]).then(|| topic_id_text(&d.topic_id))
}

/// `topic describe --json`: the description with the topic id as text and the configs as an
/// object.
#[derive(Serialize)]
struct TopicJson<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_id: Option<String>,
    partitions: Vec<PartitionJson<'a>>,
    /// The configs set on the topic (the others follow the broker's flags).
    configs: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offline: Option<&'a str>,
}

/// A partition in `topic describe --json`: its description, then its leader (null when it has
/// none), leader epoch, replicas and ISR (all absent from a broker from before clusters).
#[derive(Serialize)]
struct PartitionJson<'a> {
    #[serde(flatten)]
    description: &'a PartitionDescription,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader: Option<Option<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leader_epoch: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicas: Option<&'a [i32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    isr: Option<&'a [i32]>,
}

impl<'a> TopicJson<'a> {
    fn new(d: &'a TopicDescription, leadership: &'a Leadership) -> Self {
        let partitions = d
            .partitions
            .iter()
            .map(|p| {
                let l = leadership.get(&(d.name.clone(), p.partition));
                PartitionJson {
                    description: p,
                    leader: l.map(|l| l.leader),
                    leader_epoch: l.map(|l| l.leader_epoch),
                    replicas: l.map(|l| l.replicas.as_slice()),
                    isr: l.map(|l| l.isr.as_slice()),
                }
            })
            .collect();
        TopicJson {
            name: &d.name,
            topic_id: topic_id(d),
            partitions,
            configs: d.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            offline: d.offline.as_deref(),
        }
    }
}

/// Rows as lines, columns padded to their widest cell (the last one not padded).
fn render_rows<const N: usize>(rows: &[[String; N]]) -> String {
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

/// Two tables: one row per topic (its id, partition count and the configs set on it), then
/// one row per partition; then a line for each offline part.
fn describe_table(topics: &[TopicDescription], leadership: &Leadership) -> String {
    let mut summary: Vec<[String; 4]> =
        vec![["TOPIC".into(), "TOPIC-ID".into(), "PARTITIONS".into(), "CONFIGS".into()]];
    for t in topics {
        let configs =
            if t.configs.is_empty() { "-".to_string() } else { config_list(&sorted(&t.configs)) };
        summary.push([
            t.name.clone(),
            topic_id(t).unwrap_or_else(|| "-".to_string()),
            t.partitions.len().to_string(),
            configs,
        ]);
    }
    let mut rows: Vec<[String; 9]> = vec![[
        "TOPIC".into(),
        "PARTITION".into(),
        "LOG-START".into(),
        "NEXT-OFFSET".into(),
        "SEGMENTS".into(),
        "BYTES".into(),
        "LEADER".into(),
        "REPLICAS".into(),
        "ISR".into(),
    ]];
    // Damaged data the broker does not serve: a line each under the table, naming the file.
    let mut offline = Vec::new();
    for t in topics {
        if let Some(reason) = &t.offline {
            offline.push(format!("topic {} offline: {reason}", t.name));
        }
        for p in &t.partitions {
            let unknown = || "-".to_string();
            let [leader, replicas, isr] = match leadership.get(&(t.name.clone(), p.partition)) {
                Some(l) => [
                    l.leader.map_or_else(|| "none".to_string(), |id| id.to_string()),
                    id_list(&l.replicas),
                    id_list(&l.isr),
                ],
                None => [unknown(), unknown(), unknown()],
            };
            if let Some(reason) = &p.offline {
                offline
                    .push(format!("topic {} partition {} offline: {reason}", t.name, p.partition));
                let (name, partition) = (t.name.clone(), p.partition.to_string());
                rows.push([
                    name,
                    partition,
                    unknown(),
                    unknown(),
                    unknown(),
                    unknown(),
                    leader,
                    replicas,
                    isr,
                ]);
                continue;
            }
            rows.push([
                t.name.clone(),
                p.partition.to_string(),
                p.log_start_offset.to_string(),
                p.next_offset.to_string(),
                p.segments.to_string(),
                p.size_bytes.to_string(),
                leader,
                replicas,
                isr,
            ]);
        }
    }
    let mut s = render_rows(&summary);
    s.push('\n');
    s.push_str(&render_rows(&rows));
    for line in offline {
        s.push_str(&line);
        s.push('\n');
    }
    s
}
