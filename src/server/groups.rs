//! Native consumer-group requests (`minikafka group ...`, the client's commits): on a single
//! node the broker's own group files; in a cluster the replicated metadata (committed offsets,
//! each group's recorded membership) and, for a group this broker coordinates and holds, its live
//! coordinator. One function per request, the same for both. Never runs the rebalance protocol
//! (the Kafka listener's coordinator does) and never reads sockets.

use std::sync::Arc;

use crate::broker::{
    BrokerError, GroupMember, GroupStatus, position_to_committed, validate_group_name,
    validate_topic_name,
};
use crate::cluster::Cluster;
use crate::kafka::consumer_protocol::assigned_partitions;
use crate::protocol::{GroupOffset, Response};

use super::dispatch::{blocking, broker_error, cluster_error};

type Answer = Result<Response, Response>;

pub(super) async fn commit_offset(
    cluster: &Arc<Cluster>,
    group: String,
    topic: String,
    partition: u32,
    offset: u64,
) -> Answer {
    if !cluster.is_clustered() {
        let b = cluster.broker().clone();
        blocking(move || b.commit_offset(&group, &topic, partition, offset)).await?;
        return Ok(Response::Ok);
    }
    commit_clustered(cluster, &group, &[(topic, partition, offset)]).await?;
    Ok(Response::Ok)
}

pub(super) fn fetch_offset(cluster: &Cluster, group: &str, topic: &str, partition: u32) -> Answer {
    let b = cluster.broker();
    let offset = if cluster.is_clustered() {
        validate_group_name(group).map_err(|e| broker_error(&e))?;
        validate_topic_name(topic).map_err(|e| broker_error(&e))?;
        cluster
            .group_offset(group, topic, partition)
            .map_err(|e| cluster_error(&e))?
            .and_then(|(committed, _)| b.resolve_committed(topic, partition, committed))
    } else {
        b.committed_offset(group, topic, partition).map_err(|e| broker_error(&e))?
    };
    Ok(Response::Offset { offset })
}

/// Every group: with committed offsets, with a recorded membership, or live here.
pub(super) fn list_groups(cluster: &Cluster) -> Answer {
    let mut names: Vec<String> =
        cluster.broker().list_group_states().into_iter().map(|(g, _, _)| g).collect();
    names.extend(cluster.known_groups());
    names.sort();
    names.dedup();
    Ok(Response::Groups { names })
}

pub(super) fn group_offsets(cluster: &Cluster, group: &str) -> Answer {
    let b = cluster.broker();
    let mut offsets: Vec<GroupOffset> = if cluster.is_clustered() {
        validate_group_name(group).map_err(|e| broker_error(&e))?;
        cluster
            .group_offsets(group)
            .map_err(|e| cluster_error(&e))?
            .into_iter()
            .filter_map(|(topic, partition, committed)| {
                let offset = b.resolve_committed(&topic, partition, committed)?;
                Some(GroupOffset { topic, partition, offset })
            })
            .collect()
    } else {
        b.group_offsets(group)
            .map_err(|e| broker_error(&e))?
            .into_iter()
            .map(|(topic, partition, offset)| GroupOffset { topic, partition, offset })
            .collect()
    };
    offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(Response::GroupOffsets { offsets })
}

pub(super) fn describe_group(cluster: &Cluster, group: &str) -> Answer {
    validate_group_name(group).map_err(|e| broker_error(&e))?;
    let b = cluster.broker();
    if !cluster.is_clustered() || holds(cluster, group) {
        return Ok(Response::GroupDescribed { status: b.group_status(group, assigned_partitions) });
    }
    // Its coordinator is another broker: the group as that one last recorded it.
    let status = match cluster.recorded_group(group, None) {
        Some(g) if !g.members.is_empty() => GroupStatus {
            state: "Stable".into(),
            members: g
                .members
                .into_iter()
                .map(|m| GroupMember {
                    assigned: assigned_partitions(&m.assignment),
                    member_id: m.member_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                })
                .collect(),
        },
        Some(_) => GroupStatus { state: "Empty".into(), members: Vec::new() },
        None if cluster.known_groups().iter().any(|g| g == group) => {
            GroupStatus { state: "Empty".into(), members: Vec::new() }
        }
        None => GroupStatus { state: "Dead".into(), members: Vec::new() },
    };
    Ok(Response::GroupDescribed { status })
}

pub(super) async fn delete_group(cluster: &Arc<Cluster>, group: String) -> Answer {
    if !cluster.is_clustered() {
        let b = cluster.broker().clone();
        blocking(move || b.delete_group(&group)).await?;
        return Ok(Response::Ok);
    }
    validate_group_name(&group).map_err(|e| broker_error(&e))?;
    refuse_if_members(cluster, &group)?;
    let held = holds(cluster, &group);
    let deleted = cluster.delete_group(&group).await.map_err(|e| cluster_error(&e))?;
    if !deleted && !held {
        return Err(broker_error(&BrokerError::UnknownGroup { group }));
    }
    cluster.broker().coordinator().forget(&group);
    tracing::info!(group, "consumer group deleted");
    Ok(Response::Ok)
}

pub(super) async fn reset_offsets(
    cluster: &Arc<Cluster>,
    group: String,
    offsets: Vec<(String, u32, u64)>,
) -> Answer {
    if !cluster.is_clustered() {
        let b = cluster.broker().clone();
        blocking(move || b.reset_offsets(&group, &offsets)).await?;
        return Ok(Response::Ok);
    }
    validate_group_name(&group).map_err(|e| broker_error(&e))?;
    refuse_if_members(cluster, &group)?;
    commit_clustered(cluster, &group, &offsets).await?;
    Ok(Response::Ok)
}

/// Whether this broker coordinates `group` and holds it live (it knows its generation).
fn holds(cluster: &Cluster, group: &str) -> bool {
    cluster.coordinator_for(group) == cluster.node_id()
        && cluster.broker().coordinator().generation(group).is_some()
}

/// Offsets of a group with members are its members' to move: GROUP_NOT_EMPTY, naming them (as
/// its live coordinator here knows them, else as last recorded).
fn refuse_if_members(cluster: &Cluster, group: &str) -> Result<(), Response> {
    let members = if holds(cluster, group) {
        cluster.broker().coordinator().members(group)
    } else {
        cluster
            .recorded_group(group, None)
            .map(|g| g.members.into_iter().map(|m| m.member_id).collect())
            .unwrap_or_default()
    };
    if members.is_empty() {
        return Ok(());
    }
    Err(broker_error(&BrokerError::GroupNotEmpty { group: group.to_owned(), members }))
}

/// Commits positions through the metadata, all or nothing: every partition is checked first.
async fn commit_clustered(
    cluster: &Cluster,
    group: &str,
    positions: &[(String, u32, u64)],
) -> Result<(), Response> {
    validate_group_name(group).map_err(|e| broker_error(&e))?;
    for (topic, partition, _) in positions {
        validate_topic_name(topic).map_err(|e| broker_error(&e))?;
        if cluster.partition_view(topic, *partition).is_none() {
            return Err(broker_error(&unknown_partition(cluster, topic, *partition)));
        }
    }
    let offsets: Vec<(String, u32, i64, String)> = positions
        .iter()
        .map(|(t, p, o)| (t.clone(), *p, position_to_committed(*o), String::new()))
        .collect();
    let known =
        cluster.commit_group_offsets(group, &offsets).await.map_err(|e| cluster_error(&e))?;
    // A topic deleted between the check and the commit.
    if let Some(i) = known.iter().position(|k| !k) {
        let (topic, partition, _) = &positions[i];
        return Err(broker_error(&unknown_partition(cluster, topic, *partition)));
    }
    Ok(())
}

fn unknown_partition(cluster: &Cluster, topic: &str, partition: u32) -> BrokerError {
    match cluster.topic_view(topic).len() {
        0 => BrokerError::UnknownTopic { name: topic.to_owned() },
        n => BrokerError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
            partitions: n as u32,
        },
    }
}
