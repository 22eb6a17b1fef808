//! Reading frames: every length checked against what remains before anything is taken, so a
//! hostile body gets an error, never a panic or an allocation it claimed.

use super::*;

/// Reads fields from a body, checking every length against what remains.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, field: &'static str) -> Result<Range<usize>, ProtocolError> {
        let available = self.buf.len() - self.pos;
        if n > available as u64 {
            return Err(ProtocolError::Truncated {
                field,
                position: self.pos,
                needed: n,
                available,
            });
        }
        let r = self.pos..self.pos + n as usize;
        self.pos = r.end;
        Ok(r)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ProtocolError> {
        let r = self.take(N as u64, field)?;
        let mut a = [0; N];
        a.copy_from_slice(&self.buf[r]);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, ProtocolError> {
        let position = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(ProtocolError::InvalidOptionTag { field, position, tag }),
        }
    }
    fn string(&mut self, field: &'static str) -> Result<String, ProtocolError> {
        let len = self.u16(field)?;
        let position = self.pos;
        let r = self.take(u64::from(len), field)?;
        std::str::from_utf8(&self.buf[r])
            .map(str::to_owned)
            .map_err(|_| ProtocolError::InvalidUtf8 { field, position })
    }
    fn i32(&mut self, field: &'static str) -> Result<i32, ProtocolError> {
        Ok(i32::from_le_bytes(self.array(field)?))
    }
    fn opt_i32(&mut self, field: &'static str) -> Result<Option<i32>, ProtocolError> {
        if self.bool(field)? { self.i32(field).map(Some) } else { Ok(None) }
    }
    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, ProtocolError> {
        if self.bool(field)? { self.u64(field).map(Some) } else { Ok(None) }
    }
    fn i32s(&mut self, field: &'static str) -> Result<Vec<i32>, ProtocolError> {
        let n = self.count(field, 4)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.i32(field)?);
        }
        Ok(items)
    }
    fn brokers(&mut self) -> Result<Vec<BrokerInfo>, ProtocolError> {
        let n = self.count("broker count", BROKER_INFO_MIN_LEN)?;
        let mut brokers = Vec::with_capacity(n);
        for _ in 0..n {
            brokers.push(BrokerInfo {
                id: self.i32("broker id")?,
                native_addr: self.opt_string("broker native address")?,
                kafka_addr: self.opt_string("broker kafka address")?,
                fenced: self.bool("broker fenced")?,
            });
        }
        Ok(brokers)
    }
    fn partition_states(&mut self) -> Result<Vec<PartitionState>, ProtocolError> {
        let n = self.count("partition count", PARTITION_STATE_MIN_LEN)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(PartitionState {
                topic: self.string("topic name")?,
                partition: self.u32("partition")?,
                leader: self.opt_i32("leader")?,
                leader_epoch: self.i32("leader epoch")?,
                replicas: self.i32s("replicas")?,
                isr: self.i32s("in-sync replicas")?,
            });
        }
        Ok(partitions)
    }
    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, ProtocolError> {
        if self.bool(field)? { self.string(field).map(Some) } else { Ok(None) }
    }
    /// A `u32`-length byte field, as a range of the body.
    fn bytes(&mut self, field: &'static str) -> Result<Range<usize>, ProtocolError> {
        let len = self.u32(field)?;
        self.take(u64::from(len), field)
    }
    /// A list count, checked against the remaining bytes given each item's smallest encoding, so
    /// a hostile count cannot make the caller reserve memory the body does not back.
    fn count(&mut self, field: &'static str, min_item: usize) -> Result<usize, ProtocolError> {
        let position = self.pos;
        let n = self.u32(field)?;
        let needed = u64::from(n) * min_item as u64;
        let available = self.buf.len() - self.pos;
        if needed > available as u64 {
            return Err(ProtocolError::Truncated { field, position, needed, available });
        }
        Ok(n as usize)
    }
    fn finish(&self) -> Result<(), ProtocolError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            count => Err(ProtocolError::TrailingBytes { count }),
        }
    }
    /// A list of (topic, partition, offset).
    fn group_offsets(&mut self) -> Result<Vec<GroupOffset>, ProtocolError> {
        // The smallest entry is an empty topic name, a partition and an offset.
        let n = self.count("offset count", 2 + 4 + 8)?;
        let mut offsets = Vec::with_capacity(n);
        for _ in 0..n {
            offsets.push(GroupOffset {
                topic: self.string("topic name")?,
                partition: self.u32("partition")?,
                offset: self.u64("offset")?,
            });
        }
        Ok(offsets)
    }
    fn description(&mut self) -> Result<TopicDescription, ProtocolError> {
        let name = self.string("topic name")?;
        let n = self.count("partition count", PARTITION_DESCRIPTION_LEN)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(PartitionDescription {
                partition: self.u32("partition")?,
                log_start_offset: self.u64("log start offset")?,
                next_offset: self.u64("next offset")?,
                segments: self.u64("segments")?,
                size_bytes: self.u64("size bytes")?,
                offline: self.opt_string("partition offline reason")?,
            });
        }
        let offline = self.opt_string("topic offline reason")?;
        let topic_id = self.array::<16>("topic id")?;
        let configs = self.pairs("topic config")?;
        Ok(TopicDescription { name, partitions, offline, topic_id, configs })
    }
    /// A list of (name, value) string pairs.
    fn pairs(&mut self, field: &'static str) -> Result<Vec<(String, String)>, ProtocolError> {
        let n = self.count(field, CONFIG_PAIR_MIN_LEN)?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((self.string(field)?, self.string(field)?));
        }
        Ok(pairs)
    }
    fn strings(&mut self, field: &'static str) -> Result<Vec<String>, ProtocolError> {
        let n = self.count(field, 2)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.string(field)?);
        }
        Ok(items)
    }
    fn config_entry(&mut self) -> Result<ConfigEntry, ProtocolError> {
        let name = self.string("config name")?;
        let value = self.opt_string("config value")?;
        let position = self.pos;
        let source = match self.u8("config source")? {
            0 => ConfigSource::Default,
            1 => ConfigSource::Broker,
            2 => ConfigSource::Topic,
            tag => {
                return Err(ProtocolError::InvalidOptionTag {
                    field: "config source",
                    position,
                    tag,
                });
            }
        };
        let read_only = self.bool("config read_only")?;
        let sensitive = self.bool("config sensitive")?;
        Ok(ConfigEntry { name, value, source, read_only, sensitive })
    }
}

/// Decodes a request body (the bytes after the frame prefix), copying byte fields out of it.
pub fn decode_request(body: &[u8]) -> Result<(u32, Request), ProtocolError> {
    decode_request_with(body, |r| Bytes::copy_from_slice(&body[r]))
}

/// Decodes a request body held in `Bytes`; byte fields (the records of an append) are slices of
/// it, not copies. Once the body and the request's other fields are dropped, the records can be
/// turned back into a `BytesMut` without a copy (`Bytes::try_into_mut`) and appended in place.
pub fn decode_request_bytes(body: &Bytes) -> Result<(u32, Request), ProtocolError> {
    decode_request_with(body, |r| body.slice(r))
}

fn decode_request_with(
    body: &[u8],
    to_bytes: impl Fn(Range<usize>) -> Bytes,
) -> Result<(u32, Request), ProtocolError> {
    let mut r = Reader { buf: body, pos: 0 };
    let correlation_id = r.u32("correlation id")?;
    let key = r.u8("api key")?;
    let key = ApiKey::from_u8(key).ok_or(ProtocolError::UnknownApiKey(key))?;
    let req = match key {
        ApiKey::Authenticate => Request::Authenticate { token: r.string("token")? },
        ApiKey::CreateTopic => Request::CreateTopic {
            name: r.string("topic name")?,
            partitions: r.u32("partitions")?,
            if_not_exists: r.bool("if_not_exists")?,
            configs: r.pairs("topic config")?,
        },
        ApiKey::DeleteTopic => Request::DeleteTopic { name: r.string("topic name")? },
        ApiKey::Trim => Request::Trim {
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            before: r.u64("before")?,
        },
        ApiKey::Append => {
            let topic = r.string("topic name")?;
            let partition = if r.bool("partition")? { Some(r.u32("partition")?) } else { None };
            let key_hint =
                if r.bool("key hint")? { Some(to_bytes(r.bytes("key hint")?)) } else { None };
            let records = to_bytes(r.bytes("records")?);
            Request::Append { topic, partition, key_hint, records }
        }
        ApiKey::Fetch => Request::Fetch {
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
            max_bytes: r.u32("max bytes")?,
            max_wait_ms: r.u32("max wait ms")?,
        },
        ApiKey::Describe => {
            let topic = if r.bool("topic")? { Some(r.string("topic name")?) } else { None };
            Request::Describe { topic }
        }
        ApiKey::ListTopics => Request::ListTopics,
        ApiKey::CommitOffset => Request::CommitOffset {
            group: r.string("group name")?,
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            offset: r.u64("offset")?,
        },
        ApiKey::FetchOffset => Request::FetchOffset {
            group: r.string("group name")?,
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
        },
        ApiKey::ListGroups => Request::ListGroups,
        ApiKey::GroupOffsets => Request::GroupOffsets { group: r.string("group name")? },
        ApiKey::AlterTopicConfigs => Request::AlterTopicConfigs {
            topic: r.string("topic name")?,
            set: r.pairs("config to set")?,
            delete: r.strings("config to delete")?,
        },
        ApiKey::DescribeTopicConfigs => {
            Request::DescribeTopicConfigs { topic: r.string("topic name")? }
        }
        ApiKey::AddPartitions => Request::AddPartitions {
            topic: r.string("topic name")?,
            total: r.u32("partition total")?,
        },
        ApiKey::DeleteGroup => Request::DeleteGroup { group: r.string("group name")? },
        ApiKey::DescribeGroup => Request::DescribeGroup { group: r.string("group name")? },
        ApiKey::ResetOffsets => {
            let group = r.string("group name")?;
            let offsets = r.group_offsets()?;
            Request::ResetOffsets { group, offsets }
        }
        ApiKey::OffsetForTimestamp => Request::OffsetForTimestamp {
            topic: r.string("topic name")?,
            partition: r.u32("partition")?,
            timestamp_ms: r.u64("timestamp")?,
        },
        ApiKey::ClusterStatus => Request::ClusterStatus,
        ApiKey::DescribePartitions => {
            Request::DescribePartitions { topic: r.opt_string("topic name")? }
        }
        ApiKey::ElectLeaders => Request::ElectLeaders { topic: r.opt_string("topic name")? },
        ApiKey::ReassignPartitions | ApiKey::ThrottledReassignPartitions => {
            let n = r.count("move count", PARTITION_MOVE_MIN_LEN)?;
            let mut moves = Vec::with_capacity(n);
            for _ in 0..n {
                moves.push(PartitionMove {
                    topic: r.string("topic name")?,
                    partition: r.u32("partition")?,
                    replicas: r.i32s("target replicas")?,
                });
            }
            let throttle_bytes_per_s = match key {
                ApiKey::ThrottledReassignPartitions => Some(r.u64("throttle bytes/s")?),
                _ => None,
            };
            Request::ReassignPartitions { moves, throttle_bytes_per_s }
        }
        ApiKey::ListReassignments => Request::ListReassignments { with_bytes: false },
        ApiKey::ListReassignmentProgress => Request::ListReassignments { with_bytes: true },
        ApiKey::DescribeMembership => Request::DescribeMembership,
        ApiKey::DecommissionBroker => {
            Request::DecommissionBroker { broker: r.i32("broker id")?, cancel: r.bool("cancel")? }
        }
        ApiKey::ChangeVoter => {
            Request::ChangeVoter { broker: r.i32("broker id")?, add: r.bool("add")? }
        }
        ApiKey::CreateReplicatedTopic => {
            let name = r.string("topic name")?;
            let partitions = r.u32("partitions")?;
            let if_not_exists = r.bool("if_not_exists")?;
            let configs = r.pairs("topic config")?;
            let replication_factor = r.u16("replication factor")?;
            Request::CreateReplicatedTopic {
                name,
                partitions,
                replication_factor,
                if_not_exists,
                configs,
            }
        }
    };
    r.finish()?;
    Ok((correlation_id, req))
}

/// Decodes a response body (the bytes after the frame prefix), copying the records out of it.
pub fn decode_response(body: &[u8]) -> Result<(u32, Response), ProtocolError> {
    decode_response_with(body, |r| Bytes::copy_from_slice(&body[r]))
}

/// Decodes a response body held in `Bytes`; fetched records are a slice of it, not a copy.
pub fn decode_response_bytes(body: &Bytes) -> Result<(u32, Response), ProtocolError> {
    decode_response_with(body, |r| body.slice(r))
}

fn decode_response_with(
    body: &[u8],
    to_bytes: impl Fn(Range<usize>) -> Bytes,
) -> Result<(u32, Response), ProtocolError> {
    let mut r = Reader { buf: body, pos: 0 };
    let correlation_id = r.u32("correlation id")?;
    let status = r.u8("status")?;
    if status != 0 {
        let code = ErrorCode::from_u8(status).ok_or(ProtocolError::UnknownErrorCode(status))?;
        let message = r.string("error message")?;
        r.finish()?;
        return Ok((correlation_id, Response::Error { code, message }));
    }
    let kind = r.u8("response kind")?;
    let resp = match kind {
        k if k == ResponseKind::Ok as u8 => Response::Ok,
        k if k == ResponseKind::TopicCreated as u8 => {
            Response::TopicCreated { description: r.description()? }
        }
        k if k == ResponseKind::Appended as u8 => Response::Appended {
            partition: r.u32("partition")?,
            first_offset: r.u64("first offset")?,
            next_offset: r.u64("next offset")?,
        },
        k if k == ResponseKind::Fetched as u8 => Response::Fetched {
            partition: r.u32("partition")?,
            log_start_offset: r.u64("log start offset")?,
            high_watermark: r.u64("high watermark")?,
            records: to_bytes(r.bytes("records")?),
        },
        k if k == ResponseKind::Described as u8 => {
            // The smallest description is an empty name and no partitions.
            let n = r.count("topic count", TOPIC_DESCRIPTION_MIN_LEN)?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                topics.push(r.description()?);
            }
            Response::Described { topics }
        }
        k if k == ResponseKind::Topics as u8 => {
            let n = r.count("name count", 2)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string("topic name")?);
            }
            Response::Topics { names }
        }
        k if k == ResponseKind::Trimmed as u8 => {
            Response::Trimmed { log_start_offset: r.u64("log start offset")? }
        }
        k if k == ResponseKind::Offset as u8 => {
            let offset = if r.bool("offset")? { Some(r.u64("offset")?) } else { None };
            Response::Offset { offset }
        }
        k if k == ResponseKind::Groups as u8 => {
            let n = r.count("group count", 2)?;
            let mut names = Vec::with_capacity(n);
            for _ in 0..n {
                names.push(r.string("group name")?);
            }
            Response::Groups { names }
        }
        k if k == ResponseKind::GroupOffsets as u8 => {
            Response::GroupOffsets { offsets: r.group_offsets()? }
        }
        k if k == ResponseKind::GroupDescribed as u8 => {
            let state = r.string("group state")?;
            // The smallest member: three empty strings and no topics.
            let n = r.count("member count", 2 + 2 + 2 + 4)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                let member_id = r.string("member id")?;
                let client_id = r.string("client id")?;
                let client_host = r.string("client host")?;
                let topics = r.count("assigned topic count", 2 + 4)?;
                let mut assigned = Vec::with_capacity(topics);
                for _ in 0..topics {
                    let topic = r.string("topic name")?;
                    let np = r.count("partition count", 4)?;
                    let mut partitions = Vec::with_capacity(np);
                    for _ in 0..np {
                        partitions.push(r.u32("partition")?);
                    }
                    assigned.push((topic, partitions));
                }
                members.push(GroupMember { member_id, client_id, client_host, assigned });
            }
            Response::GroupDescribed { status: GroupStatus { state, members } }
        }
        k if k == ResponseKind::TopicConfigs as u8 => {
            let n = r.count("config count", CONFIG_ENTRY_MIN_LEN)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(r.config_entry()?);
            }
            Response::TopicConfigs { entries }
        }
        k if k == ResponseKind::PartitionsAdded as u8 => {
            Response::PartitionsAdded { description: r.description()? }
        }
        k if k == ResponseKind::ClusterStatus as u8 => Response::ClusterStatus {
            status: ClusterInfo {
                node_id: r.i32("node id")?,
                clustered: r.bool("clustered")?,
                controller: r.opt_i32("controller")?,
                brokers: r.brokers()?,
                under_replicated: r.partition_states()?,
                offline: r.partition_states()?,
            },
        },
        k if k == ResponseKind::Partitions as u8 => {
            Response::Partitions { brokers: r.brokers()?, partitions: r.partition_states()? }
        }
        k if k == ResponseKind::Membership as u8 => Response::Membership {
            membership: Membership {
                voters: r.i32s("voters")?,
                decommissioned: r.i32s("decommissioned")?,
            },
        },
        k if k == ResponseKind::Reassignments as u8
            || k == ResponseKind::ThrottledReassignments as u8
            || k == ResponseKind::ReassignmentProgress as u8 =>
        {
            let with_bytes = k == ResponseKind::ReassignmentProgress as u8;
            let n = r.count("reassignment count", REASSIGNMENT_MIN_LEN)?;
            let mut reassignments = Vec::with_capacity(n);
            for _ in 0..n {
                let topic = r.string("topic name")?;
                let partition = r.u32("partition")?;
                let target = r.i32s("target replicas")?;
                let adding = r.i32s("adding replicas")?;
                let removing = r.i32s("removing replicas")?;
                let isr = r.i32s("in-sync replicas")?;
                let leader = r.opt_i32("leader")?;
                let m = r.count("behind count", if with_bytes { 13 } else { 12 })?;
                let mut behind = Vec::with_capacity(m);
                for _ in 0..m {
                    let replica = r.i32("replica")?;
                    let records = r.u64("records behind")?;
                    let (bytes, log_bytes) = if with_bytes && r.bool("bytes known")? {
                        (Some(r.u64("bytes behind")?), Some(r.u64("leader log bytes")?))
                    } else {
                        (None, None)
                    };
                    behind.push(ReplicaCopy { replica, records, bytes, log_bytes });
                }
                reassignments.push(Reassignment {
                    topic,
                    partition,
                    target,
                    adding,
                    removing,
                    isr,
                    leader,
                    behind,
                });
            }
            let throttle_bytes_per_s = if with_bytes {
                r.opt_u64("throttle bytes/s")?
            } else if k == ResponseKind::ThrottledReassignments as u8 {
                Some(r.u64("throttle bytes/s")?)
            } else {
                None
            };
            Response::Reassignments { reassignments, throttle_bytes_per_s, with_bytes }
        }
        k if k == ResponseKind::LeadersElected as u8 => {
            let n = r.count("election count", LEADER_ELECTION_MIN_LEN)?;
            let mut elections = Vec::with_capacity(n);
            for _ in 0..n {
                elections.push(LeaderElection {
                    topic: r.string("topic name")?,
                    partition: r.u32("partition")?,
                    preferred: r.i32("preferred replica")?,
                    leader: r.opt_i32("leader")?,
                    elected: r.bool("elected")?,
                });
            }
            Response::LeadersElected { elections }
        }
        other => return Err(ProtocolError::UnknownResponseKind(other)),
    };
    r.finish()?;
    Ok((correlation_id, resp))
}
