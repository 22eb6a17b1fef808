//! `minikafka topic create|list|describe|delete|trim`.

use std::io::Write;

use clap::{Args, Subcommand};

use super::{CliError, ConnectArgs};
use crate::broker::TopicDescription;
use crate::client::Admin;

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
        /// Succeed (changing nothing) when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names, one per line.
    List,
    /// Show each partition's log start offset, next offset, segments and bytes, and a line for
    /// each partition or topic that is offline (damaged data the broker does not serve).
    Describe {
        /// The topic to describe (all topics when omitted).
        name: Option<String>,
        /// Print JSON (one object for NAME, an array for all topics) instead of a table.
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
        TopicCommand::Create { name, partitions, if_not_exists } => {
            if partitions == 0 {
                return Err(CliError::Usage("--partitions must be at least 1".to_string()));
            }
            // Told apart only to report honestly whether anything was created.
            let existed = if_not_exists && admin.describe_topic(&name).await.is_ok();
            let d = admin.create_topic(&name, partitions, if_not_exists).await?;
            let n = d.partitions.len();
            if existed {
                writeln!(out, "topic {name} already exists with {n} partition{}", plural(n))
            } else {
                writeln!(out, "created topic {name} with {n} partition{}", plural(n))
            }
            .map_err(CliError::stdout)?;
        }
        TopicCommand::List => {
            for name in admin.list_topics().await? {
                writeln!(out, "{name}").map_err(CliError::stdout)?;
            }
        }
        TopicCommand::Describe { name, json } => {
            let topics = admin.describe(name.as_deref()).await?;
            let text = if json {
                let value = match (&name, topics.as_slice()) {
                    (Some(_), [one]) => serde_json::to_string(one),
                    _ => serde_json::to_string(&topics),
                };
                // Serializing plain structs of strings and integers cannot fail.
                value.map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))? + "\n"
            } else {
                describe_table(&topics)
            };
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

/// A table with one row per partition, columns padded to their widest cell.
fn describe_table(topics: &[TopicDescription]) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "TOPIC".into(),
        "PARTITION".into(),
        "LOG-START".into(),
        "NEXT-OFFSET".into(),
        "SEGMENTS".into(),
        "BYTES".into(),
    ]];
    // Damaged data the broker does not serve: a line each under the table, naming the file.
    let mut offline = Vec::new();
    for t in topics {
        if let Some(reason) = &t.offline {
            offline.push(format!("topic {} offline: {reason}", t.name));
        }
        for p in &t.partitions {
            if let Some(reason) = &p.offline {
                offline
                    .push(format!("topic {} partition {} offline: {reason}", t.name, p.partition));
                let unknown = || "-".to_string();
                let (name, partition) = (t.name.clone(), p.partition.to_string());
                rows.push([name, partition, unknown(), unknown(), unknown(), unknown()]);
                continue;
            }
            rows.push([
                t.name.clone(),
                p.partition.to_string(),
                p.log_start_offset.to_string(),
                p.next_offset.to_string(),
                p.segments.to_string(),
                p.size_bytes.to_string(),
            ]);
        }
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut s = String::new();
    for row in &rows {
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
    for line in offline {
        s.push_str(&line);
        s.push('\n');
    }
    s
}
