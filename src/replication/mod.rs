//! Kafka's in-sync-replica rules for partition data (see shared CLUSTER.md, "The rules"): the
//! high watermark over the ISR and the leader-epoch cache that finds where a follower's log
//! diverges from its leader's. Pure functions and small state machines over offsets and epochs,
//! so that every rule is proven by model tests before any network carries it. Owns no files, no
//! sockets and no consensus: the cluster module decides leaders and ISRs (through openraft), the
//! storage layer keeps the bytes; this room only computes from what they report.

/// The leader-epoch cache lives in storage, which persists it (layers never reach up).
pub use crate::storage::EpochCache;
pub use crate::storage::epoch_cache;
pub mod high_watermark;
