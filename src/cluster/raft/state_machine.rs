//! The replicated state machine: applies committed proposals to the application's data
//! ([`StateMachineData`], the metadata image in a broker) in log order, publishes each applied
//! state on a watch, and keeps snapshots (the data as JSON) in `<dir>/snapshot.json`, written
//! atomically, so that a restart after the log was purged starts from the snapshot. Never
//! decides anything itself: `apply` is the application's.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::log_store::{read_json, write_atomically};
use super::types::{Applied, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use super::{RaftNodeError, StateMachineData};

const SNAPSHOT_FILE: &str = "snapshot.json";

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// `snapshot.json`: the snapshot's Raft position and the data as JSON text.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

pub(crate) struct StateMachine<S: StateMachineData> {
    inner: Arc<Mutex<Inner<S>>>,
}

impl<S: StateMachineData> Clone for StateMachine<S> {
    fn clone(&self) -> Self {
        StateMachine { inner: self.inner.clone() }
    }
}

struct Inner<S: StateMachineData> {
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    data: Arc<S>,
    snapshot: Option<SnapshotFile>,
    published: watch::Sender<Arc<S>>,
}

impl<S: StateMachineData> StateMachine<S> {
    /// Starts from `<dir>/snapshot.json` when there is one, else from empty data.
    pub(crate) fn open(
        dir: &Path,
    ) -> Result<(StateMachine<S>, watch::Receiver<Arc<S>>), RaftNodeError> {
        let path = dir.join(SNAPSHOT_FILE);
        let _ = std::fs::remove_file(dir.join(format!("{SNAPSHOT_FILE}.tmp")));
        let snapshot: Option<SnapshotFile> = read_json(&path)?;
        let (data, last_applied, membership) = match &snapshot {
            Some(s) => {
                let data: S = serde_json::from_slice(&s.data).map_err(|e| {
                    RaftNodeError::Corrupt { path: path.clone(), reason: e.to_string() }
                })?;
                (data, s.meta.last_log_id, s.meta.last_membership.clone())
            }
            None => (S::default(), None, StoredMembership::default()),
        };
        let data = Arc::new(data);
        let (published, rx) = watch::channel(data.clone());
        let inner =
            Inner { dir: dir.to_path_buf(), last_applied, membership, data, snapshot, published };
        Ok((StateMachine { inner: Arc::new(Mutex::new(inner)) }, rx))
    }
}

fn apply_one<S: StateMachineData>(
    data: &mut S,
    command: &serde_json::Value,
    index: u64,
) -> Applied {
    let command: S::Command = match serde_json::from_value(command.clone()) {
        Ok(c) => c,
        Err(e) => return Applied(Err(format!("undecodable command at index {index}: {e}"))),
    };
    let response = data.apply(&command, index);
    Applied(serde_json::to_value(&response).map_err(|e| format!("unencodable answer: {e}")))
}

impl<S: StateMachineData> RaftSnapshotBuilder<TypeConfig> for StateMachine<S> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let mut inner = self.inner.lock().await;
        let data = serde_json::to_vec(inner.data.as_ref())?;
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
        };
        let file = SnapshotFile { meta: meta.clone(), data: data.clone() };
        let dir = inner.dir.clone();
        let bytes = serde_json::to_vec(&file)?;
        tokio::task::spawn_blocking(move || write_atomically(&dir, SNAPSHOT_FILE, &bytes, true))
            .await
            .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))??;
        inner.snapshot = Some(file);
        Ok(Snapshot { meta, snapshot: data })
    }
}

impl<S: StateMachineData> RaftStateMachine<TypeConfig> for StateMachine<S> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.inner.lock().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut changed = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let index = entry.log_id.index();
            let answer = match &entry.payload {
                EntryPayload::Blank => Applied(Ok(serde_json::Value::Null)),
                EntryPayload::Normal(proposal) => {
                    changed = true;
                    apply_one(Arc::make_mut(&mut inner.data), &proposal.0, index)
                }
                EntryPayload::Membership(membership) => {
                    inner.membership =
                        StoredMembership::new(Some(entry.log_id), membership.clone());
                    Applied(Ok(serde_json::Value::Null))
                }
            };
            inner.last_applied = Some(entry.log_id);
            if let Some(responder) = responder {
                responder.send(answer);
            }
        }
        if changed {
            inner.published.send_replace(inner.data.clone());
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine<S> {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let data: S = serde_json::from_slice(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {e}")))?;
        let mut inner = self.inner.lock().await;
        let file = SnapshotFile { meta: meta.clone(), data: snapshot };
        let bytes = serde_json::to_vec(&file)?;
        let dir = inner.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, SNAPSHOT_FILE, &bytes, true))
            .await
            .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))??;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.data = Arc::new(data);
        inner.snapshot = Some(file);
        let data = inner.data.clone();
        inner.published.send_replace(data);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let inner = self.inner.lock().await;
        Ok(inner
            .snapshot
            .as_ref()
            .map(|s| Snapshot { meta: s.meta.clone(), snapshot: s.data.clone() }))
    }
}
