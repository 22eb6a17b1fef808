//! OffsetForLeaderEpoch (API 23, KIP-101/320): where a leader epoch's records end on this
//! partition's leader, from the log's leader-epoch cache. A consumer asks it after a leader
//! change to check that its position was not truncated away. Answered by the leader only, with
//! the client's current leader epoch checked as Fetch checks it. Never reads records.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{Ctx, MAX_PARTITIONS_PER_REQUEST, broker_error_code, code};

/// Kafka's "no epoch" (UNDEFINED_EPOCH) and "no offset" (UNDEFINED_EPOCH_OFFSET).
const UNDEFINED: i32 = -1;

pub(super) fn offset_for_leader_epoch(
    ctx: &Ctx,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut seen = 0usize;
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    seen += 1;
                    let res = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED)
                        .with_end_offset(UNDEFINED.into());
                    if seen > MAX_PARTITIONS_PER_REQUEST {
                        return res.with_error_code(code(ResponseError::PolicyViolation));
                    }
                    let current = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
                    match end_offset(ctx, &t.topic, p.partition, current, p.leader_epoch) {
                        Ok((epoch, end)) => res.with_leader_epoch(epoch).with_end_offset(end),
                        Err(c) => res.with_error_code(c),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

/// (the largest epoch at or below `requested` this partition knows, the offset where its records
/// end), as Kafka's leader answers: its own current epoch ends at the log end; an epoch newer
/// than every one known is (-1, -1).
fn end_offset(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    current_leader_epoch: Option<i32>,
    requested: i32,
) -> Result<(i32, i64), i16> {
    let partition =
        u32::try_from(partition).map_err(|_| code(ResponseError::UnknownTopicOrPartition))?;
    let log = ctx.broker.partition_log(topic, partition).map_err(|e| broker_error_code(&e))?;
    let view = super::topics::check_leader(ctx, topic, partition, current_leader_epoch)?;
    // A Kafka leader's epoch cache always holds its own epoch from the moment it leads (it is
    // recorded before its first append), so that epoch ends at the log end even while this log
    // has not yet written a record in it.
    if requested == view.leader_epoch {
        return Ok((requested, log.next_offset() as i64));
    }
    Ok(match log.epoch_end_offset(requested) {
        (epoch, Some(end)) => (epoch, end as i64),
        (_, None) => (UNDEFINED, UNDEFINED.into()),
    })
}
