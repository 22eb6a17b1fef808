//! The `minikafka` command line (the clap tree lives on the `cli` branch); here only the broker
//! command, so this branch builds on its own.

pub mod broker;
