//! Kafka's consumer protocol: what a consumer puts in its JoinGroup metadata (its subscription)
//! and what the leader hands each member in SyncGroup (its partitions). The bytes are opaque to
//! the coordinator; this reads them for the admin APIs, the native DescribeGroup and the
//! console. Never fails: bytes of another protocol (or garbage) read as nothing.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::Decodable;

/// The newest consumer-protocol version the crate reads; newer members still start with the
/// same fields, but we do not guess.
const MAX_VERSION: i16 = 3;

/// Splits the leading version (an i16) from the body; `None` for bytes too short or a version
/// the crate cannot read.
fn versioned(bytes: &[u8]) -> Option<(i16, Bytes)> {
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    (0..=MAX_VERSION).contains(&version).then_some((version, buf))
}

/// The topics a consumer's JoinGroup metadata subscribes to (empty if it is not the consumer
/// protocol).
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Vec<String> {
    let Some((version, mut buf)) = versioned(metadata) else {
        return Vec::new();
    };
    match ConsumerProtocolSubscription::decode(&mut buf, version) {
        Ok(s) => s.topics.iter().map(|t| t.to_string()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The `(topic, partitions)` a SyncGroup assignment gives a consumer (empty if it is not the
/// consumer protocol or nothing is assigned yet).
pub(crate) fn assigned_partitions(assignment: &[u8]) -> Vec<(String, Vec<u32>)> {
    let Some((version, mut buf)) = versioned(assignment) else {
        return Vec::new();
    };
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .iter()
            .map(|tp| {
                let parts = tp.partitions.iter().filter_map(|p| u32::try_from(*p).ok()).collect();
                (tp.topic.to_string(), parts)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn reads_a_subscription_and_an_assignment_and_ignores_garbage() {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")]);
        let mut b = BytesMut::new();
        b.put_i16(1);
        sub.encode(&mut b, 1).unwrap();
        assert_eq!(subscribed_topics(&b), vec!["orders".to_string()]);

        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut b = BytesMut::new();
        b.put_i16(0);
        a.encode(&mut b, 0).unwrap();
        assert_eq!(assigned_partitions(&b), vec![("orders".to_string(), vec![0, 2])]);

        assert!(subscribed_topics(b"x").is_empty());
        assert!(assigned_partitions(&[0, 9, 1, 2, 3]).is_empty());
    }
}
