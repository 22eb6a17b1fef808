//! minikafka: a durable, single-node, append-only log broker.
//! See DESIGN.md in ../shared for the layers; each module's first lines say what it owns.

pub mod batch;
pub mod broker;
pub mod cli;
pub mod client;
pub mod cluster;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod peer;
pub mod protocol;
pub mod record;
pub mod replication;
mod sendfile;
pub mod server;
pub mod storage;
