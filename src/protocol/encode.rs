//! Writing frames: requests and responses into a caller's buffer, the length prefix filled in
//! last. Never allocates per field; never reads.

use super::*;

/// Reserves the frame prefix and returns its position; [`finish_frame`] fills it in.
fn start_frame(buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_u32_le(0);
    at
}

/// Writes the body length into the prefix reserved by [`start_frame`], counting `extra` bytes the
/// caller will write separately (the stored records of a fetch).
fn finish_frame(buf: &mut BytesMut, at: usize, extra: usize) {
    let body = buf.len() - at - FRAME_PREFIX_LEN + extra;
    let body = u32::try_from(body).unwrap_or(u32::MAX);
    buf[at..at + FRAME_PREFIX_LEN].copy_from_slice(&body.to_le_bytes());
}

/// Strings longer than a `u16` length can say are cut at a character boundary. No valid name is
/// that long (topic and group names are at most 249 bytes), so a cut name is still refused.
fn put_str(buf: &mut BytesMut, s: &str) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_u16_le(end as u16);
    buf.put_slice(&s.as_bytes()[..end]);
}

/// Byte fields are bounded by the frame limit (a `u32`), which the peer enforces.
fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32_le(u32::try_from(b.len()).unwrap_or(u32::MAX));
    buf.put_slice(b);
}

fn put_opt_u64(buf: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            buf.put_u64_le(v);
        }
        None => buf.put_u8(0),
    }
}

fn put_opt_u32(buf: &mut BytesMut, v: Option<u32>) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            buf.put_u32_le(v);
        }
        None => buf.put_u8(0),
    }
}

fn put_description(buf: &mut BytesMut, d: &TopicDescription) {
    put_str(buf, &d.name);
    buf.put_u32_le(d.partitions.len() as u32);
    for p in &d.partitions {
        buf.put_u32_le(p.partition);
        buf.put_u64_le(p.log_start_offset);
        buf.put_u64_le(p.next_offset);
        buf.put_u64_le(p.segments);
        buf.put_u64_le(p.size_bytes);
        put_opt_str(buf, p.offline.as_deref());
    }
    put_opt_str(buf, d.offline.as_deref());
    buf.put_slice(&d.topic_id);
    put_pairs(buf, &d.configs);
}

/// A list of (name, value) string pairs: configs.
fn put_pairs(buf: &mut BytesMut, pairs: &[(String, String)]) {
    buf.put_u32_le(pairs.len() as u32);
    for (name, value) in pairs {
        put_str(buf, name);
        put_str(buf, value);
    }
}

fn put_strs(buf: &mut BytesMut, items: &[String]) {
    buf.put_u32_le(items.len() as u32);
    for s in items {
        put_str(buf, s);
    }
}

/// The source byte of a config entry.
fn source_byte(s: ConfigSource) -> u8 {
    match s {
        ConfigSource::Default => 0,
        ConfigSource::Broker => 1,
        ConfigSource::Topic => 2,
    }
}

fn put_config_entry(buf: &mut BytesMut, e: &ConfigEntry) {
    put_str(buf, &e.name);
    put_opt_str(buf, e.value.as_deref());
    buf.put_u8(source_byte(e.source));
    buf.put_u8(u8::from(e.read_only));
    buf.put_u8(u8::from(e.sensitive));
}

fn put_opt_i32(buf: &mut BytesMut, v: Option<i32>) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            buf.put_i32_le(v);
        }
        None => buf.put_u8(0),
    }
}

fn put_i32s(buf: &mut BytesMut, items: &[i32]) {
    buf.put_u32_le(items.len() as u32);
    for v in items {
        buf.put_i32_le(*v);
    }
}

fn put_brokers(buf: &mut BytesMut, brokers: &[BrokerInfo]) {
    buf.put_u32_le(brokers.len() as u32);
    for b in brokers {
        buf.put_i32_le(b.id);
        put_opt_str(buf, b.native_addr.as_deref());
        put_opt_str(buf, b.kafka_addr.as_deref());
        buf.put_u8(u8::from(b.fenced));
    }
}

fn put_partition_states(buf: &mut BytesMut, partitions: &[PartitionState]) {
    buf.put_u32_le(partitions.len() as u32);
    for p in partitions {
        put_str(buf, &p.topic);
        buf.put_u32_le(p.partition);
        put_opt_i32(buf, p.leader);
        buf.put_i32_le(p.leader_epoch);
        put_i32s(buf, &p.replicas);
        put_i32s(buf, &p.isr);
    }
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s);
        }
        None => buf.put_u8(0),
    }
}

/// Appends one request frame (length prefix included) to `buf`.
pub fn encode_request(buf: &mut BytesMut, correlation_id: u32, req: &Request) {
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    buf.put_u8(req.api_key() as u8);
    match req {
        Request::Authenticate { token } => put_str(buf, token),
        Request::CreateTopic { name, partitions, if_not_exists, configs } => {
            put_str(buf, name);
            buf.put_u32_le(*partitions);
            buf.put_u8(u8::from(*if_not_exists));
            put_pairs(buf, configs);
        }
        Request::DeleteTopic { name } => put_str(buf, name),
        Request::Trim { topic, partition, before } => {
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*before);
        }
        Request::Append { topic, partition, key_hint, records } => {
            put_append_head(buf, topic, *partition, key_hint.as_deref(), records.len());
            buf.put_slice(records);
        }
        Request::Fetch { topic, partition, offset, max_bytes, max_wait_ms } => {
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*offset);
            buf.put_u32_le(*max_bytes);
            buf.put_u32_le(*max_wait_ms);
        }
        Request::Describe { topic } => match topic {
            Some(t) => {
                buf.put_u8(1);
                put_str(buf, t);
            }
            None => buf.put_u8(0),
        },
        Request::ListTopics => {}
        Request::CommitOffset { group, topic, partition, offset } => {
            put_str(buf, group);
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*offset);
        }
        Request::FetchOffset { group, topic, partition } => {
            put_str(buf, group);
            put_str(buf, topic);
            buf.put_u32_le(*partition);
        }
        Request::ListGroups => {}
        Request::GroupOffsets { group } => put_str(buf, group),
        Request::AlterTopicConfigs { topic, set, delete } => {
            put_str(buf, topic);
            put_pairs(buf, set);
            put_strs(buf, delete);
        }
        Request::DescribeTopicConfigs { topic } => put_str(buf, topic),
        Request::AddPartitions { topic, total } => {
            put_str(buf, topic);
            buf.put_u32_le(*total);
        }
        Request::DeleteGroup { group } | Request::DescribeGroup { group } => put_str(buf, group),
        Request::ResetOffsets { group, offsets } => {
            put_str(buf, group);
            buf.put_u32_le(offsets.len() as u32);
            for o in offsets {
                put_str(buf, &o.topic);
                buf.put_u32_le(o.partition);
                buf.put_u64_le(o.offset);
            }
        }
        Request::OffsetForTimestamp { topic, partition, timestamp_ms } => {
            put_str(buf, topic);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*timestamp_ms);
        }
        Request::ClusterStatus
        | Request::ListReassignments { .. }
        | Request::DescribeMembership => {}
        Request::DecommissionBroker { broker, cancel: flag }
        | Request::ChangeVoter { broker, add: flag } => {
            buf.put_i32_le(*broker);
            buf.put_u8(u8::from(*flag));
        }
        Request::ReassignPartitions { moves, throttle_bytes_per_s } => {
            buf.put_u32_le(moves.len() as u32);
            for m in moves {
                put_str(buf, &m.topic);
                buf.put_u32_le(m.partition);
                put_i32s(buf, &m.replicas);
            }
            // Its presence is the api key (ThrottledReassignPartitions).
            if let Some(t) = throttle_bytes_per_s {
                buf.put_u64_le(*t);
            }
        }
        Request::DescribePartitions { topic } | Request::ElectLeaders { topic } => {
            put_opt_str(buf, topic.as_deref())
        }
        Request::CreateReplicatedTopic {
            name,
            partitions,
            replication_factor,
            if_not_exists,
            configs,
        } => {
            put_str(buf, name);
            buf.put_u32_le(*partitions);
            buf.put_u8(u8::from(*if_not_exists));
            put_pairs(buf, configs);
            buf.put_u16_le(*replication_factor);
        }
    }
    finish_frame(buf, at, 0);
}

/// Everything of an Append request after the api key, up to and including the records' length.
fn put_append_head(
    buf: &mut BytesMut,
    topic: &str,
    partition: Option<u32>,
    key_hint: Option<&[u8]>,
    records_len: usize,
) {
    put_str(buf, topic);
    put_opt_u32(buf, partition);
    match key_hint {
        Some(k) => {
            buf.put_u8(1);
            put_bytes(buf, k);
        }
        None => buf.put_u8(0),
    }
    buf.put_u32_le(u32::try_from(records_len).unwrap_or(u32::MAX));
}

/// Like [`encode_request`], but an Append's records are not copied into `buf`: the frame head
/// (whose length prefix counts them) goes into `buf` and the records are returned, to be written
/// right after it (a producer's batch goes to the socket without an intermediate copy). Other
/// requests are encoded whole and `None` is returned.
pub fn encode_request_split(
    buf: &mut BytesMut,
    correlation_id: u32,
    req: &Request,
) -> Option<Bytes> {
    let Request::Append { topic, partition, key_hint, records } = req else {
        encode_request(buf, correlation_id, req);
        return None;
    };
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    buf.put_u8(req.api_key() as u8);
    put_append_head(buf, topic, *partition, key_hint.as_deref(), records.len());
    finish_frame(buf, at, records.len());
    Some(records.clone())
}

/// Appends one response frame (length prefix included) to `buf`.
pub fn encode_response(buf: &mut BytesMut, correlation_id: u32, resp: &Response) {
    if let Response::Fetched { partition, log_start_offset, high_watermark, records } = resp {
        encode_fetched_head(
            buf,
            correlation_id,
            *partition,
            *log_start_offset,
            *high_watermark,
            u32::try_from(records.len()).unwrap_or(u32::MAX),
        );
        buf.put_slice(records);
        return;
    }
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    match resp {
        Response::Error { code, message } => {
            buf.put_u8(*code as u8);
            put_str(buf, message);
        }
        Response::Ok => ok_kind(buf, ResponseKind::Ok),
        Response::TopicCreated { description } => {
            ok_kind(buf, ResponseKind::TopicCreated);
            put_description(buf, description);
        }
        Response::Appended { partition, first_offset, next_offset } => {
            ok_kind(buf, ResponseKind::Appended);
            buf.put_u32_le(*partition);
            buf.put_u64_le(*first_offset);
            buf.put_u64_le(*next_offset);
        }
        Response::Described { topics } => {
            ok_kind(buf, ResponseKind::Described);
            buf.put_u32_le(topics.len() as u32);
            for t in topics {
                put_description(buf, t);
            }
        }
        Response::Topics { names } => {
            ok_kind(buf, ResponseKind::Topics);
            buf.put_u32_le(names.len() as u32);
            for n in names {
                put_str(buf, n);
            }
        }
        Response::Trimmed { log_start_offset } => {
            ok_kind(buf, ResponseKind::Trimmed);
            buf.put_u64_le(*log_start_offset);
        }
        Response::Offset { offset } => {
            ok_kind(buf, ResponseKind::Offset);
            match offset {
                Some(o) => {
                    buf.put_u8(1);
                    buf.put_u64_le(*o);
                }
                None => buf.put_u8(0),
            }
        }
        Response::Groups { names } => {
            ok_kind(buf, ResponseKind::Groups);
            buf.put_u32_le(names.len() as u32);
            for n in names {
                put_str(buf, n);
            }
        }
        Response::GroupOffsets { offsets } => {
            ok_kind(buf, ResponseKind::GroupOffsets);
            buf.put_u32_le(offsets.len() as u32);
            for o in offsets {
                put_str(buf, &o.topic);
                buf.put_u32_le(o.partition);
                buf.put_u64_le(o.offset);
            }
        }
        Response::TopicConfigs { entries } => {
            ok_kind(buf, ResponseKind::TopicConfigs);
            buf.put_u32_le(entries.len() as u32);
            for e in entries {
                put_config_entry(buf, e);
            }
        }
        Response::PartitionsAdded { description } => {
            ok_kind(buf, ResponseKind::PartitionsAdded);
            put_description(buf, description);
        }
        Response::GroupDescribed { status } => {
            ok_kind(buf, ResponseKind::GroupDescribed);
            put_str(buf, &status.state);
            buf.put_u32_le(status.members.len() as u32);
            for m in &status.members {
                put_str(buf, &m.member_id);
                put_str(buf, &m.client_id);
                put_str(buf, &m.client_host);
                buf.put_u32_le(m.assigned.len() as u32);
                for (topic, partitions) in &m.assigned {
                    put_str(buf, topic);
                    buf.put_u32_le(partitions.len() as u32);
                    for p in partitions {
                        buf.put_u32_le(*p);
                    }
                }
            }
        }
        Response::ClusterStatus { status } => {
            ok_kind(buf, ResponseKind::ClusterStatus);
            buf.put_i32_le(status.node_id);
            buf.put_u8(u8::from(status.clustered));
            put_opt_i32(buf, status.controller);
            put_brokers(buf, &status.brokers);
            put_partition_states(buf, &status.under_replicated);
            put_partition_states(buf, &status.offline);
        }
        Response::Membership { membership } => {
            ok_kind(buf, ResponseKind::Membership);
            put_i32s(buf, &membership.voters);
            put_i32s(buf, &membership.decommissioned);
        }
        Response::Partitions { brokers, partitions } => {
            ok_kind(buf, ResponseKind::Partitions);
            put_brokers(buf, brokers);
            put_partition_states(buf, partitions);
        }
        Response::Reassignments { reassignments, throttle_bytes_per_s, with_bytes } => {
            ok_kind(
                buf,
                match (with_bytes, throttle_bytes_per_s) {
                    (true, _) => ResponseKind::ReassignmentProgress,
                    (false, None) => ResponseKind::Reassignments,
                    (false, Some(_)) => ResponseKind::ThrottledReassignments,
                },
            );
            buf.put_u32_le(reassignments.len() as u32);
            for r in reassignments {
                put_str(buf, &r.topic);
                buf.put_u32_le(r.partition);
                put_i32s(buf, &r.target);
                put_i32s(buf, &r.adding);
                put_i32s(buf, &r.removing);
                put_i32s(buf, &r.isr);
                put_opt_i32(buf, r.leader);
                buf.put_u32_le(r.behind.len() as u32);
                for c in &r.behind {
                    buf.put_i32_le(c.replica);
                    buf.put_u64_le(c.records);
                    if *with_bytes {
                        match c.bytes.zip(c.log_bytes) {
                            Some((bytes, log_bytes)) => {
                                buf.put_u8(1);
                                buf.put_u64_le(bytes);
                                buf.put_u64_le(log_bytes);
                            }
                            None => buf.put_u8(0),
                        }
                    }
                }
            }
            if *with_bytes {
                put_opt_u64(buf, *throttle_bytes_per_s);
            } else if let Some(t) = throttle_bytes_per_s {
                // Its presence is the kind (ThrottledReassignments).
                buf.put_u64_le(*t);
            }
        }
        Response::LeadersElected { elections } => {
            ok_kind(buf, ResponseKind::LeadersElected);
            buf.put_u32_le(elections.len() as u32);
            for e in elections {
                put_str(buf, &e.topic);
                buf.put_u32_le(e.partition);
                buf.put_i32_le(e.preferred);
                put_opt_i32(buf, e.leader);
                buf.put_u8(u8::from(e.elected));
            }
        }
        Response::Fetched { .. } => unreachable!("handled above"),
    }
    finish_frame(buf, at, 0);
}

fn ok_kind(buf: &mut BytesMut, kind: ResponseKind) {
    buf.put_u8(0);
    buf.put_u8(kind as u8);
}

/// Appends the head of a Fetched response frame: everything up to and including the records'
/// `u32` length. The frame's length prefix counts `records_len` more bytes, which the caller
/// writes right after (a vectored write of the stored bytes, no copy).
pub fn encode_fetched_head(
    buf: &mut BytesMut,
    correlation_id: u32,
    partition: u32,
    log_start_offset: u64,
    high_watermark: u64,
    records_len: u32,
) {
    let at = start_frame(buf);
    buf.put_u32_le(correlation_id);
    ok_kind(buf, ResponseKind::Fetched);
    buf.put_u32_le(partition);
    buf.put_u64_le(log_start_offset);
    buf.put_u64_le(high_watermark);
    buf.put_u32_le(records_len);
    finish_frame(buf, at, records_len as usize);
}
