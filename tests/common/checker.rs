//! The history of a cluster test and the checker that judges it, after the checks Jepsen uses on
//! logs (CLUSTER.md, "What Jepsen found"): per partition, one value per offset ever; every
//! acknowledged record is in the final log exactly once, at its acknowledged offset, in its
//! producer's order; nothing a consumer read is later missing; no duplicates (producers are
//! idempotent); offsets consecutive (no compaction, no retention here). Producers, consumers and
//! the nemesis append events; `check` judges them against the partitions as read at the end.
//! It never talks to a broker: synthetic histories test it (tests/cluster_faults.rs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// One thing that happened, at `at_ms` since the history began.
#[derive(Clone, Debug)]
pub struct Event {
    pub at_ms: u64,
    pub op: Op,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// A producer's batch was acknowledged (`base_offset` None: DUPLICATE_SEQUENCE_NUMBER).
    Ack { writer: u32, partition: i32, base_offset: Option<i64>, values: Vec<String> },
    /// An attempt at a batch failed (it may or may not be stored); the batch is retried as is.
    SendFailed { writer: u32, partition: i32, first: String, error: String },
    /// A producer gave up on a batch it never saw acknowledged (the end of the run).
    Abandoned { writer: u32, partition: i32, values: Vec<String> },
    /// An error an idempotent producer never expects from a correct cluster.
    Unexpected { who: String, partition: i32, error: String },
    /// A consumer read `value` at `offset`.
    Read { reader: u32, partition: i32, offset: i64, value: String },
    /// A fault the nemesis started or healed.
    Nemesis(String),
}

/// Every event of one test run, appended from any thread.
pub struct History {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Default for History {
    fn default() -> Self {
        History { start: Instant::now(), events: Mutex::new(Vec::new()) }
    }
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn push(&self, op: Op) {
        let e = Event { at_ms: self.now_ms(), op };
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Acknowledged batches per partition at or after `since_ms` (liveness after a fault heals).
    pub fn acks_since(&self, since_ms: u64) -> BTreeMap<i32, usize> {
        let mut out = BTreeMap::new();
        for e in self.events.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Op::Ack { partition, .. } = &e.op
                && e.at_ms >= since_ms
            {
                *out.entry(*partition).or_insert(0) += 1;
            }
        }
        out
    }

    /// Every acknowledged record so far.
    pub fn acked_records(&self) -> usize {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events
            .iter()
            .map(|e| match &e.op {
                Op::Ack { values, .. } => values.len(),
                _ => 0,
            })
            .sum()
    }
}

/// The value a producer writes: unique per (writer, partition, sequence), and parseable back.
pub fn value(writer: u32, partition: i32, seq: u64) -> String {
    format!("w{writer}-p{partition}-{seq:07}")
}

/// (writer, partition, sequence) of a value made by `value`.
pub fn parse_value(v: &str) -> Option<(u32, i32, u64)> {
    let mut it = v.split('-');
    let w = it.next()?.strip_prefix('w')?.parse().ok()?;
    let p = it.next()?.strip_prefix('p')?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    Some((w, p, seq))
}

/// What a passing run came to.
#[derive(Debug, Default)]
pub struct Summary {
    pub acked: usize,
    pub reads: usize,
    pub final_records: usize,
    pub unacked_but_stored: usize,
}

/// Judges `events` against `finals`: each partition's whole log, read from offset 0 after every
/// fault healed. Ok with counts, or Err with a report naming every violation and the history
/// that bears on it.
pub fn check(
    events: &[Event],
    finals: &BTreeMap<i32, Vec<(i64, String)>>,
) -> Result<Summary, String> {
    let mut problems: Vec<String> = Vec::new();
    // Offsets and values worth showing in the report: (partition, offset) and values.
    let mut suspect_offsets: HashSet<(i32, i64)> = HashSet::new();
    let mut suspect_values: HashSet<String> = HashSet::new();
    let mut summary = Summary::default();

    // The final logs: consecutive offsets from 0, no value twice, nothing nobody sent.
    let mut final_at: HashMap<(i32, i64), &str> = HashMap::new();
    let mut final_where: HashMap<&str, (i32, i64)> = HashMap::new();
    let mut sent: HashSet<&str> = HashSet::new();
    for e in events {
        match &e.op {
            Op::Ack { values, .. } | Op::Abandoned { values, .. } => {
                sent.extend(values.iter().map(|v| v.as_str()))
            }
            Op::SendFailed { first, .. } => {
                sent.insert(first.as_str());
            }
            _ => {}
        }
    }
    for (&p, log) in finals {
        for (i, (offset, v)) in log.iter().enumerate() {
            summary.final_records += 1;
            if *offset != i as i64 {
                problems.push(format!(
                    "p{p}: offsets not consecutive: index {i} holds offset {offset}"
                ));
                suspect_offsets.insert((p, *offset));
            }
            final_at.insert((p, *offset), v);
            if let Some(&(p0, o0)) = final_where.get(v.as_str()) {
                problems
                    .push(format!("duplicated: {v:?} at p{p0}@{o0} and again at p{p}@{offset}"));
                suspect_values.insert(v.clone());
            } else {
                final_where.insert(v, (p, *offset));
            }
            match parse_value(v) {
                Some((_, vp, _)) if vp == p => {}
                _ => {
                    problems
                        .push(format!("p{p}@{offset}: {v:?} was never written to this partition"));
                    suspect_values.insert(v.clone());
                }
            }
        }
    }

    // Everything that ever named a value for an offset: acks and reads. One value per offset.
    let mut seen_at: HashMap<(i32, i64), (String, String)> = HashMap::new(); // value, by whom
    let mut two_values = Vec::new();
    let mut note = |p: i32, o: i64, v: &str, who: String, problems: &mut Vec<String>| match seen_at
        .get(&(p, o))
    {
        Some((v0, who0)) if v0 != v => {
            problems.push(format!("p{p}@{o} held two values: {v0:?} ({who0}) and {v:?} ({who})"));
            two_values.push((p, o));
        }
        Some(_) => {}
        None => {
            seen_at.insert((p, o), (v.to_string(), who));
        }
    };
    let mut acked_values: Vec<(u32, i32, &str, Option<i64>)> = Vec::new();
    for e in events {
        match &e.op {
            Op::Ack { writer, partition, base_offset, values } => {
                for (i, v) in values.iter().enumerate() {
                    let o = base_offset.map(|b| b + i as i64);
                    if let Some(o) = o {
                        note(
                            *partition,
                            o,
                            v,
                            format!("ack to w{writer} at {} ms", e.at_ms),
                            &mut problems,
                        );
                    }
                    acked_values.push((*writer, *partition, v, o));
                }
            }
            Op::Read { reader, partition, offset, value } => {
                summary.reads += 1;
                note(
                    *partition,
                    *offset,
                    value,
                    format!("read by r{reader} at {} ms", e.at_ms),
                    &mut problems,
                );
                // Nothing a consumer read may disappear or change later.
                match final_at.get(&(*partition, *offset)) {
                    Some(v) if *v == value => {}
                    other => {
                        problems.push(format!(
                            "read then lost: r{reader} read {value:?} at p{partition}@{offset} ({} ms); the final log holds {other:?} there",
                            e.at_ms
                        ));
                        suspect_offsets.insert((*partition, *offset));
                        suspect_values.insert(value.clone());
                    }
                }
            }
            Op::Unexpected { who, partition, error } => {
                problems.push(format!(
                    "{who} on p{partition}: unexpected error {error} ({} ms)",
                    e.at_ms
                ));
            }
            _ => {}
        }
    }
    suspect_offsets.extend(two_values);
    // Acknowledged: in the final log, at its offset.
    summary.acked = acked_values.len();
    for (writer, p, v, o) in &acked_values {
        match final_where.get(v) {
            None => {
                problems.push(format!(
                    "lost: {v:?} acknowledged to w{writer} at p{p}@{o:?} is not in the final log"
                ));
                suspect_values.insert(v.to_string());
                if let Some(o) = o {
                    suspect_offsets.insert((*p, *o));
                }
            }
            Some(&(fp, fo)) if o.is_some() && (fp, Some(fo)) != (*p, *o) => {
                problems.push(format!(
                    "moved: {v:?} acknowledged at p{p}@{o:?} is at p{fp}@{fo} in the final log"
                ));
                suspect_values.insert(v.to_string());
            }
            Some(_) => {}
        }
    }
    let acked_set: HashSet<&str> = acked_values.iter().map(|a| a.2).collect();
    summary.unacked_but_stored = final_where.keys().filter(|v| !acked_set.contains(*v)).count();
    for v in final_where.keys() {
        if !sent.contains(v) {
            problems.push(format!("phantom: {v:?} is in the final log but no producer sent it"));
            suspect_values.insert(v.to_string());
        }
    }
    // Each producer's records of a partition in the order it sent them.
    let mut last: HashMap<(u32, i32), (u64, i64, &str)> = HashMap::new();
    for (&p, log) in finals {
        for (offset, v) in log {
            let Some((w, _, seq)) = parse_value(v) else { continue };
            if let Some(&(seq0, o0, v0)) = last.get(&(w, p))
                && seq <= seq0
            {
                problems
                    .push(format!("reordered: {v:?} at p{p}@{offset} after {v0:?} at p{p}@{o0}"));
                suspect_values.insert(v.to_string());
            }
            last.insert((w, p), (seq, *offset, v));
        }
    }

    if problems.is_empty() {
        return Ok(summary);
    }
    let mut report = format!("{} violation(s):\n", problems.len());
    for p in problems.iter().take(40) {
        let _ = writeln!(report, "  - {p}");
    }
    if problems.len() > 40 {
        let _ = writeln!(report, "  ... and {} more", problems.len() - 40);
    }
    let _ = writeln!(report, "history bearing on them (and every fault):");
    let mut shown = 0;
    for e in events {
        let relevant = match &e.op {
            Op::Nemesis(_) | Op::Unexpected { .. } => true,
            Op::Read { partition, offset, value, .. } => {
                suspect_offsets.contains(&(*partition, *offset)) || suspect_values.contains(value)
            }
            Op::Ack { partition, base_offset, values, .. } => {
                values.iter().enumerate().any(|(i, v)| {
                    suspect_values.contains(v)
                        || base_offset
                            .is_some_and(|b| suspect_offsets.contains(&(*partition, b + i as i64)))
                })
            }
            Op::SendFailed { first, .. } => suspect_values.contains(first),
            Op::Abandoned { values, .. } => values.iter().any(|v| suspect_values.contains(v)),
        };
        if relevant && shown < 400 {
            shown += 1;
            let _ = writeln!(report, "  {:>7} ms  {:?}", e.at_ms, e.op);
        }
    }
    let mut offsets: Vec<_> = suspect_offsets.iter().collect();
    offsets.sort();
    for &&(p, o) in offsets.iter().take(40) {
        let _ = writeln!(report, "  final p{p}@{o}: {:?}", final_at.get(&(p, o)));
    }
    Err(report)
}
