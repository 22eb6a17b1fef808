//! Committed consumer-group offsets: one JSON file per group under `<data-dir>/@groups/`, rewritten
//! through a temp file + fsync + rename + fsync of the directory before a commit returns. Group
//! names are validated like topic names, so a name can never escape the directory. Never reads or
//! writes partition logs.
//!
//! A group file that cannot be read or parsed at start-up makes that group offline (not the
//! broker): its reads and commits fail with the error naming the file, and the file is never
//! overwritten, so the operator can repair it or restore it from a backup.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::{BrokerError, fsutil, topic};

/// Directory (under the data dir) holding the group files; `@` is not a topic character.
pub const GROUPS_DIR: &str = "@groups";
const GROUP_SUFFIX: &str = ".json";

/// A commit as the consumer sent it: the offset and the metadata string committed with it.
///
/// The offset is Kafka's i64, kept as sent: usually the next offset to read, but a Kafka client
/// may commit a negative sentinel (kafkajs's `resetOffsets` commits -2 for "earliest" and -1 for
/// "latest"). Readers that need a position resolve it with [`resolve_committed`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Committed {
    pub offset: i64,
    pub metadata: String,
}

/// The committed offset a Kafka consumer reads as "from the log start".
pub const EARLIEST_SENTINEL: i64 = -2;
/// The committed offset a Kafka consumer reads as "from the log end".
pub const LATEST_SENTINEL: i64 = -1;

/// What a committed offset means as a read position, given the partition's log start and end
/// offsets: a non-negative one is itself, [`EARLIEST_SENTINEL`] the log start, [`LATEST_SENTINEL`]
/// the log end, and any other negative one no position at all (as if nothing were committed),
/// the way Kafka consumers read them.
pub(crate) fn resolve_committed(offset: i64, log_start: u64, log_end: u64) -> Option<u64> {
    match offset {
        EARLIEST_SENTINEL => Some(log_start),
        LATEST_SENTINEL => Some(log_end),
        // Negative: the conversion fails, and that is "no committed offset".
        o => u64::try_from(o).ok(),
    }
}

/// A position as the i64 Kafka stores. Offsets past `i64::MAX` (only the native protocol's u64
/// can carry one, and no log reaches it) are kept as `i64::MAX`: still past every log end.
pub(crate) fn position_to_committed(position: u64) -> i64 {
    i64::try_from(position).unwrap_or(i64::MAX)
}

type Offsets = BTreeMap<(String, u32), Committed>;

/// One group file:
///
/// ```text
/// { "offsets": [ { "topic": "orders", "partition": 0, "offset": 42, "metadata": "..." }, ... ] }
/// ```
///
/// | field       | since       | meaning                                               |
/// |-------------|-------------|-------------------------------------------------------|
/// | `topic`     | first       | topic name                                            |
/// | `partition` | first       | partition index                                       |
/// | `offset`    | first       | the offset as committed, a JSON integer (i64 range):  |
/// |             |             | the next offset the group will read, or (since issue  |
/// |             |             | 13) a negative Kafka sentinel kept as sent: -2 reads  |
/// |             |             | as the log start, -1 as the log end, any other        |
/// |             |             | negative as no committed offset                       |
/// | `metadata`  | issue 13    | the commit's metadata string; absent (old files) = "" |
///
/// Files written before `metadata` existed open unchanged, with empty metadata, and are written
/// back in the new form at the group's next commit. Their offsets are non-negative integers and
/// read as the same i64 (one past `i64::MAX`, which only a native u64 commit could have written,
/// reads as `i64::MAX`: still past every log end).
#[derive(Serialize, Deserialize)]
struct GroupFile {
    offsets: Vec<CommittedOffset>,
}

#[derive(Serialize, Deserialize)]
struct CommittedOffset {
    topic: String,
    partition: u32,
    #[serde(deserialize_with = "offset_from_json")]
    offset: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    metadata: String,
}

/// An `offset` field: any JSON integer of i64's range, or a larger one an older release wrote as
/// a u64 (saturated, see [`position_to_committed`]).
fn offset_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Offset {
        Signed(i64),
        Unsigned(u64),
    }
    Ok(match Offset::deserialize(d)? {
        Offset::Signed(o) => o,
        Offset::Unsigned(o) => position_to_committed(o),
    })
}

pub(crate) struct Groups {
    dir: PathBuf,
    /// Per-group lock: commits to one group are written one at a time, different groups in
    /// parallel.
    groups: Mutex<HashMap<String, Arc<Mutex<Offsets>>>>,
    /// Groups whose file did not load, with the error naming it. Fixed at open.
    offline: HashMap<String, String>,
}

/// Locks a mutex, recovering the data if a thread panicked while holding it: the maps are only
/// replaced after a successful write, so they are never half-updated.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn validate_group_name(name: &str) -> Result<(), BrokerError> {
    match topic::name_problem(name) {
        Some(reason) => Err(BrokerError::InvalidGroupName { name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

impl Groups {
    /// Loads every group file, sweeping temp files a crash left behind.
    pub(crate) fn open(data_dir: &Path) -> Result<Groups, BrokerError> {
        let dir = data_dir.join(GROUPS_DIR);
        fsutil::create_dir_durably(&dir)?;
        let mut groups = HashMap::new();
        let mut offline = HashMap::new();
        let entries = fs::read_dir(&dir).map_err(|source| BrokerError::Io {
            path: dir.clone(),
            op: "list",
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| BrokerError::Io {
                path: dir.clone(),
                op: "list",
                source,
            })?;
            let path = entry.path();
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                tracing::warn!(path = %path.display(), "ignoring a file with a non-UTF-8 name");
                continue;
            };
            if file_name.ends_with(fsutil::TMP_SUFFIX) {
                fs::remove_file(&path).map_err(|source| BrokerError::Io {
                    path: path.clone(),
                    op: "remove",
                    source,
                })?;
                continue;
            }
            let Some(group) = file_name.strip_suffix(GROUP_SUFFIX) else {
                tracing::warn!(path = %path.display(), "ignoring an unexpected file");
                continue;
            };
            if validate_group_name(group).is_err() {
                tracing::warn!(path = %path.display(), "ignoring a group file with an invalid name");
                continue;
            }
            let loaded = fs::read(&path)
                .map_err(|source| BrokerError::Io { path: path.clone(), op: "read", source })
                .and_then(|bytes| {
                    serde_json::from_slice::<GroupFile>(&bytes).map_err(|e| {
                        BrokerError::CorruptState { path: path.clone(), reason: e.to_string() }
                    })
                });
            let file = match loaded {
                Ok(file) => file,
                Err(e) => {
                    tracing::error!(group, "consumer group offline: {e}");
                    offline.insert(group.to_owned(), e.to_string());
                    continue;
                }
            };
            let offsets: Offsets = file
                .offsets
                .into_iter()
                .map(|c| {
                    ((c.topic, c.partition), Committed { offset: c.offset, metadata: c.metadata })
                })
                .collect();
            groups.insert(group.to_owned(), Arc::new(Mutex::new(offsets)));
        }
        Ok(Groups { dir, groups: Mutex::new(groups), offline })
    }

    /// Fails for a group whose file did not load.
    fn ensure_online(&self, group: &str) -> Result<(), BrokerError> {
        match self.offline.get(group) {
            Some(reason) => {
                Err(BrokerError::GroupOffline { group: group.to_owned(), reason: reason.clone() })
            }
            None => Ok(()),
        }
    }

    /// Groups whose file did not load, with the error, sorted.
    pub(crate) fn offline(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> =
            self.offline.iter().map(|(g, r)| (g.clone(), r.clone())).collect();
        v.sort();
        v
    }

    fn path(&self, group: &str) -> PathBuf {
        self.dir.join(format!("{group}{GROUP_SUFFIX}"))
    }

    fn write(&self, group: &str, offsets: &Offsets) -> Result<(), BrokerError> {
        // Never overwrite a damaged file: it may be all that is left of the group's positions.
        self.ensure_online(group)?;
        let file = GroupFile {
            offsets: offsets
                .iter()
                .map(|((topic, partition), c)| CommittedOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: c.offset,
                    metadata: c.metadata.clone(),
                })
                .collect(),
        };
        // Plain strings and integers always serialize.
        let json = serde_json::to_vec_pretty(&file).expect("group file serializes");
        fsutil::write_atomically(&self.path(group), &json)
    }

    fn entry(&self, group: &str) -> Arc<Mutex<Offsets>> {
        lock(&self.groups).entry(group.to_owned()).or_default().clone()
    }

    /// Records `offset` as `group`'s position in a partition; durable when it returns.
    pub(crate) fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), BrokerError> {
        let c = Committed { offset, metadata: String::new() };
        self.commit_many(group, [(topic.to_owned(), partition, c)])
    }

    /// Records many positions of `group` with one write of its file; durable when it returns.
    pub(crate) fn commit_many(
        &self,
        group: &str,
        offsets: impl IntoIterator<Item = (String, u32, Committed)>,
    ) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        let entry = self.entry(group);
        let mut current = lock(&entry);
        let mut next = current.clone();
        let mut changed = false;
        for (topic, partition, c) in offsets {
            changed |= next.insert((topic, partition), c.clone()).as_ref() != Some(&c);
        }
        if !changed {
            // Nothing new to make durable (an empty or repeated commit): skip the fsyncs.
            return Ok(());
        }
        self.write(group, &next)?;
        *current = next;
        Ok(())
    }

    pub(crate) fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<Committed>, BrokerError> {
        validate_group_name(group)?;
        self.ensure_online(group)?;
        let entry = lock(&self.groups).get(group).cloned();
        Ok(entry.and_then(|e| lock(&e).get(&(topic.to_owned(), partition)).cloned()))
    }

    /// Every `(topic, partition, offset as committed)` of the group, sorted.
    pub(crate) fn offsets(&self, group: &str) -> Result<Vec<(String, u32, i64)>, BrokerError> {
        validate_group_name(group)?;
        self.ensure_online(group)?;
        let entry = lock(&self.groups).get(group).cloned();
        Ok(entry
            .map(|e| lock(&e).iter().map(|((t, p), c)| (t.clone(), *p, c.offset)).collect())
            .unwrap_or_default())
    }

    /// Whether the group has a committed offset (or a file that did not load).
    pub(crate) fn exists(&self, group: &str) -> bool {
        self.offline.contains_key(group)
            || lock(&self.groups).get(group).is_some_and(|e| !lock(e).is_empty())
    }

    /// Deletes every committed offset of a group and its file; durable when it returns.
    pub(crate) fn delete(&self, group: &str) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        self.ensure_online(group)?;
        let Some(entry) = lock(&self.groups).get(group).cloned() else {
            return Ok(());
        };
        let mut offsets = lock(&entry);
        let path = self.path(group);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BrokerError::Io { path, op: "remove", source }),
        }
        fsutil::sync_dir(&self.dir)?;
        // The entry stays (empty, so unlisted): a commit racing with the delete then lands in the
        // map the next reader sees, never in a detached copy.
        offsets.clear();
        Ok(())
    }

    /// Deletes the group's committed offsets of the named partitions (OffsetDelete); one durable
    /// write. Partitions without a commit are no error.
    pub(crate) fn delete_offsets(
        &self,
        group: &str,
        partitions: &[(String, u32)],
    ) -> Result<(), BrokerError> {
        validate_group_name(group)?;
        self.ensure_online(group)?;
        let Some(entry) = lock(&self.groups).get(group).cloned() else {
            return Ok(());
        };
        let mut current = lock(&entry);
        let mut next = current.clone();
        for key in partitions {
            next.remove(key);
        }
        if next.len() == current.len() {
            return Ok(());
        }
        self.write(group, &next)?;
        *current = next;
        Ok(())
    }

    /// Names of the groups that have committed at least once, sorted.
    pub(crate) fn list(&self) -> Vec<String> {
        let groups = lock(&self.groups);
        let mut names: Vec<String> =
            groups.iter().filter(|(_, o)| !lock(o).is_empty()).map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    /// Drops every committed offset of a deleted topic, so a topic re-created under the same name
    /// does not inherit positions past its end.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<(), BrokerError> {
        let entries: Vec<(String, Arc<Mutex<Offsets>>)> =
            lock(&self.groups).iter().map(|(n, e)| (n.clone(), e.clone())).collect();
        for (group, entry) in entries {
            let mut offsets = lock(&entry);
            if !offsets.keys().any(|(t, _)| t == topic) {
                continue;
            }
            let mut next = offsets.clone();
            next.retain(|(t, _), _| t != topic);
            self.write(&group, &next)?;
            *offsets = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(offset: i64, metadata: &str) -> Committed {
        Committed { offset, metadata: metadata.to_string() }
    }

    #[test]
    fn a_group_file_from_before_metadata_opens_with_empty_metadata_and_upgrades_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let groups_dir = dir.path().join(GROUPS_DIR);
        fs::create_dir_all(&groups_dir).unwrap();
        // Exactly what the broker wrote before commit metadata was kept.
        let old = r#"{
  "offsets": [
    { "topic": "orders", "partition": 0, "offset": 42 },
    { "topic": "orders", "partition": 1, "offset": 7 }
  ]
}"#;
        fs::write(groups_dir.join("billing.json"), old).unwrap();

        let g = Groups::open(dir.path()).unwrap();
        assert!(g.offline().is_empty(), "the old file is not damage");
        assert_eq!(g.committed("billing", "orders", 0).unwrap(), Some(meta(42, "")));
        assert_eq!(
            g.offsets("billing").unwrap(),
            vec![("orders".into(), 0, 42), ("orders".into(), 1, 7)]
        );

        g.commit_many("billing", [("orders".to_string(), 1, meta(8, "host-a"))]).unwrap();
        drop(g);
        let g = Groups::open(dir.path()).unwrap();
        assert_eq!(g.committed("billing", "orders", 0).unwrap(), Some(meta(42, "")));
        assert_eq!(g.committed("billing", "orders", 1).unwrap(), Some(meta(8, "host-a")));
    }

    #[test]
    fn negative_sentinels_are_kept_as_committed_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let g = Groups::open(dir.path()).unwrap();
        // kafkajs's resetOffsets commits -2 (earliest) and -1 (latest); any i64 is kept.
        let sent = [
            ("orders".to_string(), 0, meta(EARLIEST_SENTINEL, "")),
            ("orders".to_string(), 1, meta(LATEST_SENTINEL, "")),
            ("orders".to_string(), 2, meta(i64::MIN, "odd")),
        ];
        g.commit_many("reset", sent).unwrap();
        drop(g);
        let file = fs::read_to_string(dir.path().join(GROUPS_DIR).join("reset.json")).unwrap();
        assert!(file.contains(r#""offset": -2"#), "{file}");
        let g = Groups::open(dir.path()).unwrap();
        assert!(g.offline().is_empty());
        assert_eq!(
            g.offsets("reset").unwrap(),
            vec![
                ("orders".into(), 0, -2),
                ("orders".into(), 1, -1),
                ("orders".into(), 2, i64::MIN)
            ]
        );
        assert_eq!(g.committed("reset", "orders", 2).unwrap(), Some(meta(i64::MIN, "odd")));
    }

    #[test]
    fn an_old_file_with_a_position_past_i64_max_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let groups_dir = dir.path().join(GROUPS_DIR);
        fs::create_dir_all(&groups_dir).unwrap();
        // A native u64 commit could have written this before offsets were i64.
        let old = r#"{ "offsets": [ { "topic": "t", "partition": 0, "offset": 18446744073709551615 } ] }"#;
        fs::write(groups_dir.join("far.json"), old).unwrap();
        let g = Groups::open(dir.path()).unwrap();
        assert!(g.offline().is_empty(), "{:?}", g.offline());
        assert_eq!(g.offsets("far").unwrap(), vec![("t".into(), 0, i64::MAX)]);
    }

    #[test]
    fn a_committed_offset_resolves_as_a_kafka_consumer_reads_it() {
        // (committed, log start 3, log end 10) -> position.
        assert_eq!(resolve_committed(7, 3, 10), Some(7));
        assert_eq!(resolve_committed(0, 3, 10), Some(0), "a trimmed-away position is kept");
        assert_eq!(resolve_committed(EARLIEST_SENTINEL, 3, 10), Some(3));
        assert_eq!(resolve_committed(LATEST_SENTINEL, 3, 10), Some(10));
        assert_eq!(resolve_committed(-3, 3, 10), None);
        assert_eq!(resolve_committed(i64::MIN, 3, 10), None);
        assert_eq!(position_to_committed(u64::MAX), i64::MAX);
        assert_eq!(position_to_committed(42), 42);
    }

    #[test]
    fn deleting_a_group_or_some_offsets_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let g = Groups::open(dir.path()).unwrap();
        let entries = [
            ("a".to_string(), 0, meta(1, "")),
            ("a".to_string(), 1, meta(2, "")),
            ("b".to_string(), 0, meta(3, "x")),
        ];
        g.commit_many("g1", entries.clone()).unwrap();
        g.commit_many("g2", entries).unwrap();
        g.delete_offsets("g1", &[("a".to_string(), 1), ("zz".to_string(), 0)]).unwrap();
        g.delete("g2").unwrap();
        assert!(!g.exists("g2"));
        assert_eq!(g.list(), vec!["g1".to_string()]);
        drop(g);
        let g = Groups::open(dir.path()).unwrap();
        assert_eq!(g.offsets("g1").unwrap(), vec![("a".into(), 0, 1), ("b".into(), 0, 3)]);
        assert!(!g.exists("g2"));
        assert!(!dir.path().join(GROUPS_DIR).join("g2.json").exists());
    }
}
