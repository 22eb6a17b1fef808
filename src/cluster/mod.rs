//! The broker's part in a cluster: the replicated metadata (its commands and the image every node
//! applies them to) and the controller's decisions. The openraft node and the glue that serves
//! partitions with leadership join this module; nothing below it knows of a cluster.

pub mod controller;
pub mod metadata;
