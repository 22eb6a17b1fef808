//! The broker's part in a cluster: the Raft node that replicates the metadata (`raft`, the only
//! place openraft types appear). Never serves partition data itself.

pub mod raft;
