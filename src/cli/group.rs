//! `minikafka group list|describe`: consumer groups, their committed offsets and their lag (the
//! records between a committed offset and the log end). Native groups have no members (a
//! consumer commits offsets under a group name); a Kafka group's live members are the Kafka
//! listener's business and are not reported over the native protocol.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{CliError, ConnectArgs};
use crate::broker::{GroupLag, PartitionLag};
use crate::client::Admin;
use crate::protocol::GroupOffset;

#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List consumer groups with how many partitions they track and their total lag.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a group's committed offset, the log end and the lag of every partition it tracks.
    Describe {
        /// The consumer group.
        group: String,
        /// Print a JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct GroupSummary {
    group: String,
    partitions: usize,
    total_lag: u64,
}

pub(super) async fn run(args: GroupArgs) -> Result<(), CliError> {
    let admin = Admin::new(args.connect.connect().await?);
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = match args.command {
        GroupCommand::List { json } => {
            let mut ends = LogEnds::default();
            let mut groups = Vec::new();
            for group in admin.list_groups().await? {
                let v = group_view(&admin, &mut ends, &group).await?;
                groups.push(GroupSummary {
                    group: v.group,
                    partitions: v.offsets.len(),
                    total_lag: v.total_lag,
                });
            }
            if json {
                to_json(&groups)?
            } else {
                let mut rows = vec![["GROUP".to_string(), "PARTITIONS".into(), "LAG".into()]];
                for g in &groups {
                    rows.push([g.group.clone(), g.partitions.to_string(), g.total_lag.to_string()]);
                }
                table(&rows, |row, col| {
                    color && row > 0 && col == 2 && groups[row - 1].total_lag > 0
                })
            }
        }
        GroupCommand::Describe { group, json } => {
            let v = group_view(&admin, &mut LogEnds::default(), &group).await?;
            if v.offsets.is_empty() {
                return Err(CliError::Usage(format!(
                    "no consumer group {group} (no committed offsets under that name)"
                )));
            }
            if json {
                to_json(&v)?
            } else {
                let mut rows = vec![[
                    "TOPIC".to_string(),
                    "PARTITION".into(),
                    "COMMITTED".into(),
                    "LOG-END".into(),
                    "LAG".into(),
                ]];
                for o in &v.offsets {
                    let missing = || "-".to_string();
                    rows.push([
                        o.topic.clone(),
                        o.partition.to_string(),
                        o.committed_offset.to_string(),
                        o.log_end_offset.map_or_else(missing, |e| e.to_string()),
                        o.lag.map_or_else(missing, |l| l.to_string()),
                    ]);
                }
                let lagging = |row: usize| v.offsets[row - 1].lag.is_some_and(|l| l > 0);
                let mut s = format!(
                    "group {}: {} partition{}, total lag {}, members: none (offsets only)\n",
                    v.group,
                    v.offsets.len(),
                    if v.offsets.len() == 1 { "" } else { "s" },
                    v.total_lag
                );
                s.push_str(&table(&rows, |row, col| color && row > 0 && col == 4 && lagging(row)));
                s
            }
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(CliError::stdout)?;
    out.flush().map_err(CliError::stdout)
}

fn to_json(value: &impl Serialize) -> Result<String, CliError> {
    // Plain structs of strings and integers always serialize.
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))
}

/// Log end offsets, described once per topic however many of its partitions a group tracks.
#[derive(Default)]
struct LogEnds {
    by_topic: HashMap<String, Option<Vec<(u32, u64)>>>,
}

impl LogEnds {
    async fn end(&mut self, admin: &Admin, topic: &str, partition: u32) -> Option<u64> {
        if !self.by_topic.contains_key(topic) {
            // A topic deleted since the commit has no end: its lag is unknown, not an error.
            let ends = admin.describe_topic(topic).await.ok().map(|d| {
                d.partitions.iter().map(|p| (p.partition, p.next_offset)).collect::<Vec<_>>()
            });
            self.by_topic.insert(topic.to_string(), ends);
        }
        let ends = self.by_topic.get(topic)?.as_ref()?;
        ends.iter().find(|(p, _)| *p == partition).map(|(_, e)| *e)
    }
}

async fn group_view(admin: &Admin, ends: &mut LogEnds, group: &str) -> Result<GroupLag, CliError> {
    let mut offsets = Vec::new();
    for GroupOffset { topic, partition, offset } in admin.group_offsets(group).await? {
        let end = ends.end(admin, &topic, partition).await;
        offsets.push(PartitionLag::new(topic, partition, offset, end));
    }
    // Over the native protocol a group has no members: a consumer only commits under its name.
    Ok(GroupLag::new(group.to_string(), Vec::new(), offsets))
}

/// Columns padded to their widest cell; `highlight(row, col)` cells are printed in red.
fn table<const N: usize>(rows: &[[String; N]], highlight: impl Fn(usize, usize) -> bool) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for (r, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let padded =
                if c + 1 < N { format!("{cell:<w$}  ", w = widths[c]) } else { cell.clone() };
            if highlight(r, c) {
                line.push_str(&format!("\x1b[31m{}\x1b[0m{}", cell, &padded[cell.len()..]));
            } else {
                line.push_str(&padded);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
