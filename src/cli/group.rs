//! `minikafka group list|describe|delete|reset-offsets`: consumer groups, their committed
//! offsets and their lag (the records between a committed offset and the log end), their state
//! and live members (Kafka consumers; native consumers only commit under a group name), and the
//! administration of their positions, as kafka-consumer-groups.sh does it.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{CliError, ConnectArgs};
use crate::broker::{GroupLag, GroupStatus, PartitionLag};
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
    /// Delete a group and its committed offsets (refused while it has live members).
    Delete {
        /// The consumer group.
        group: String,
    },
    /// Plan, or with --execute set, new committed offsets for a group's partitions of a topic.
    /// Refused while the group has live members. New offsets are clamped to the log's range.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
struct ResetArgs {
    /// The consumer group.
    group: String,
    /// The topic whose partitions are reset (all of them).
    #[arg(long)]
    topic: String,
    #[command(flatten)]
    to: ResetTo,
    /// Commit the new offsets; without it, only print the plan.
    #[arg(long)]
    execute: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ResetTo {
    /// To the first offset still in the log.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end (skip everything there is).
    #[arg(long)]
    to_latest: bool,
    /// To this offset.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<u64>,
    /// To the first record stamped at or after this time (RFC 3339, e.g. 2026-11-30T12:00:00Z).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// By this many records from the committed offset (negative: back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
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
        GroupCommand::Delete { group } => {
            admin.delete_group(&group).await.map_err(|e| refused(&group, e))?;
            format!("deleted consumer group {group}\n")
        }
        GroupCommand::ResetOffsets(args) => reset_offsets(&admin, args).await?,
        GroupCommand::Describe { group, json } => {
            let v = group_view(&admin, &mut LogEnds::default(), &group).await?;
            // "Dead" is the broker's "no such group"; a group whose only commits resolve to no
            // position (a negative offset other than Kafka's -2/-1) still exists, with none.
            if v.offsets.is_empty() && v.members.is_empty() && v.state == "Dead" {
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
                let members = if v.members.is_empty() {
                    "members: none (offsets only)".to_string()
                } else {
                    format!(
                        "state {}, {} live member{}",
                        v.state,
                        v.members.len(),
                        plural(v.members.len())
                    )
                };
                let mut s = format!(
                    "group {}: {} partition{}, total lag {}, {members}\n",
                    v.group,
                    v.offsets.len(),
                    plural(v.offsets.len()),
                    v.total_lag
                );
                s.push_str(&table(&rows, |row, col| color && row > 0 && col == 4 && lagging(row)));
                if !v.member_details.is_empty() {
                    let mut rows = vec![[
                        "MEMBER".to_string(),
                        "CLIENT-ID".into(),
                        "HOST".into(),
                        "ASSIGNED".into(),
                    ]];
                    for m in &v.member_details {
                        rows.push([
                            m.member_id.clone(),
                            m.client_id.clone(),
                            m.client_host.clone(),
                            assigned_text(&m.assigned),
                        ]);
                    }
                    s.push('\n');
                    s.push_str(&table(&rows, |_, _| false));
                }
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
    let status = admin.describe_group(group).await?;
    Ok(GroupLag::new(group.to_string(), Vec::new(), offsets).with_status(status))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `orders: 0,1; audit: 2`, or `-` before an assignment.
fn assigned_text(assigned: &[(String, Vec<u32>)]) -> String {
    if assigned.is_empty() {
        return "-".to_string();
    }
    assigned
        .iter()
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(u32::to_string).collect();
            format!("{t}: {}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A group's live members as a refusal names them.
fn members_text(status: &GroupStatus) -> String {
    status
        .members
        .iter()
        .map(|m| format!("{} (client {}, {})", m.member_id, m.client_id, m.client_host))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The broker's refusals of a group operation, said for a person.
fn refused(group: &str, e: crate::client::ClientError) -> CliError {
    use crate::protocol::ErrorCode;
    match e.code() {
        Some(ErrorCode::UnknownGroup) => CliError::Usage(format!("no consumer group {group}")),
        Some(ErrorCode::GroupNotEmpty) => CliError::Broker(format!(
            "consumer group {group} has live members; stop its consumers first ({e})"
        )),
        _ => CliError::Client(e),
    }
}

/// One partition's line of a reset plan.
#[derive(Debug, Serialize)]
struct PlannedReset {
    partition: u32,
    current: Option<u64>,
    new: u64,
}

async fn reset_offsets(admin: &Admin, args: ResetArgs) -> Result<String, CliError> {
    let ResetArgs { group, topic, to, execute } = args;
    // Kafka resets only inactive groups: live members would commit over the new positions.
    let status = admin.describe_group(&group).await?;
    if !status.members.is_empty() {
        return Err(CliError::Broker(format!(
            "consumer group {group} has {} live member{} ({}): stop its consumers before \
             resetting offsets (state {})",
            status.members.len(),
            plural(status.members.len()),
            members_text(&status),
            status.state
        )));
    }
    let target_ms = match &to.to_datetime {
        Some(t) => Some(parse_rfc3339_ms(t).ok_or_else(|| {
            CliError::Usage(format!("--to-datetime {t:?} is not a time like 2026-11-30T12:00:00Z"))
        })?),
        None => None,
    };
    let described = admin.describe_topic(&topic).await?;
    let committed: HashMap<u32, u64> = admin
        .group_offsets(&group)
        .await?
        .into_iter()
        .filter(|o| o.topic == topic)
        .map(|o| (o.partition, o.offset))
        .collect();
    let mut plan = Vec::new();
    for p in &described.partitions {
        let (start, end) = (p.log_start_offset, p.next_offset);
        let current = committed.get(&p.partition).copied();
        let wanted = if to.to_earliest {
            start
        } else if to.to_latest {
            end
        } else if let Some(o) = to.to_offset {
            o
        } else if let Some(ms) = target_ms {
            // No record that recent: the log end, as Kafka does.
            admin.offset_for_timestamp(&topic, p.partition, ms).await?.unwrap_or(end)
        } else if let Some(n) = to.shift_by {
            let Some(c) = current else {
                return Err(CliError::Usage(format!(
                    "cannot shift partition {topic}/{}: group {group} has no committed offset \
                     there",
                    p.partition
                )));
            };
            c.saturating_add_signed(n)
        } else {
            // clap requires exactly one of the modes.
            return Err(CliError::Usage("choose where to reset to (--to-earliest, ...)".into()));
        };
        // Clamped to the log's range, as Kafka does.
        plan.push(PlannedReset { partition: p.partition, current, new: wanted.clamp(start, end) });
    }
    let mut rows = vec![[
        "TOPIC".to_string(),
        "PARTITION".into(),
        "CURRENT-OFFSET".into(),
        "NEW-OFFSET".into(),
    ]];
    for r in &plan {
        rows.push([
            topic.clone(),
            r.partition.to_string(),
            r.current.map_or_else(|| "-".to_string(), |c| c.to_string()),
            r.new.to_string(),
        ]);
    }
    let mut out = table(&rows, |_, _| false);
    if execute {
        let offsets = plan
            .iter()
            .map(|r| GroupOffset { topic: topic.clone(), partition: r.partition, offset: r.new })
            .collect();
        admin.reset_offsets(&group, offsets).await.map_err(|e| refused(&group, e))?;
        out.push_str(&format!(
            "reset {} partition{} of {topic} for group {group}\n",
            plan.len(),
            plural(plan.len())
        ));
    } else {
        out.push_str("dry run: nothing changed (add --execute to commit these offsets)\n");
    }
    Ok(out)
}

/// Milliseconds since the epoch of an RFC 3339 time: `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let num = |t: &str| -> Option<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (y, mo, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    // The zone: Z, or +HH:MM / -HH:MM after the time.
    let (time, offset_s) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (t, zone) = rest.split_at(at);
        let (zh, zm) = zone[1..].split_once(':')?;
        let secs = num(zh)? * 3600 + num(zm)? * 60;
        (t, if zone.starts_with('-') { -secs } else { secs })
    };
    let (hms, frac) = match time.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (time, ""),
    };
    let mut t = hms.splitn(3, ':');
    let (h, mi, sec) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    let millis = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().chain("000".chars()).take(3).collect();
        num(&f)?
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
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

#[cfg(test)]
mod tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn rfc3339_times_parse_to_epoch_millis() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-30T12:00:00Z"), Some(1_796_040_000_000));
        assert_eq!(parse_rfc3339_ms("2026-11-30T13:30:00.250+01:30"), Some(1_796_040_000_250));
        assert_eq!(parse_rfc3339_ms("2000-02-29T00:00:00-00:00"), Some(951_782_400_000));
        for bad in ["", "2026-11-30", "2026-13-01T00:00:00Z", "2026-11-30T12:00:00", "yesterday"] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
