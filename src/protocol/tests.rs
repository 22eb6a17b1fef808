//! Codec tests: every message round-trips; hostile bytes give errors, never panics.

use super::*;

fn desc(name: &str, n: u32) -> TopicDescription {
    TopicDescription {
        name: name.to_owned(),
        partitions: (0..n)
            .map(|p| PartitionDescription {
                partition: p,
                log_start_offset: u64::from(p) * 10,
                next_offset: u64::from(p) * 10 + 5,
                segments: 1 + u64::from(p),
                size_bytes: 4096 * u64::from(p),
                offline: (p == 1).then(|| "corrupt log data in /d/1/0.log".to_owned()),
            })
            .collect(),
        offline: None,
        topic_id: [n as u8 + 1; 16],
        configs: if n.is_multiple_of(2) {
            vec![
                ("cleanup.policy".into(), "compact,delete".into()),
                ("retention.ms".into(), "1000".into()),
            ]
        } else {
            Vec::new()
        },
    }
}

/// A topic whose topic.json is damaged: no partitions, a reason.
fn offline_desc(name: &str) -> TopicDescription {
    TopicDescription {
        name: name.to_owned(),
        partitions: Vec::new(),
        offline: Some("corrupt broker state in /d/t/topic.json: EOF".to_owned()),
        topic_id: [0; 16],
        configs: Vec::new(),
    }
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::Authenticate { token: "sécret".into() },
        Request::CreateTopic {
            name: "orders".into(),
            partitions: 3,
            if_not_exists: true,
            configs: vec![],
        },
        Request::CreateTopic {
            name: "o".into(),
            partitions: 0,
            if_not_exists: false,
            configs: vec![("retention.ms".into(), "abc".into()), ("".into(), "".into())],
        },
        Request::DeleteTopic { name: "orders".into() },
        Request::Trim { topic: "orders".into(), partition: 2, before: u64::MAX },
        Request::Append {
            topic: "orders".into(),
            partition: Some(1),
            key_hint: Some(Bytes::from_static(b"user-1")),
            records: Bytes::from_static(b"\x01\x02\x03"),
        },
        Request::Append {
            topic: "orders".into(),
            partition: None,
            key_hint: None,
            records: Bytes::new(),
        },
        Request::Fetch {
            topic: "orders".into(),
            partition: 0,
            offset: 12345,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
        },
        Request::Describe { topic: Some("orders".into()) },
        Request::Describe { topic: None },
        Request::ListTopics,
        Request::CommitOffset {
            group: "g1".into(),
            topic: "orders".into(),
            partition: 4,
            offset: 99,
        },
        Request::FetchOffset { group: "g1".into(), topic: "orders".into(), partition: 4 },
        Request::ListGroups,
        Request::GroupOffsets { group: "g1".into() },
        Request::AlterTopicConfigs {
            topic: "orders".into(),
            set: vec![
                ("cleanup.policy".into(), "compact".into()),
                ("segment.ms".into(), "60000".into()),
            ],
            delete: vec!["retention.ms".into()],
        },
        Request::AlterTopicConfigs { topic: "o".into(), set: vec![], delete: vec![] },
        Request::DescribeTopicConfigs { topic: "orders".into() },
        Request::AddPartitions { topic: "orders".into(), total: 12 },
        Request::DeleteGroup { group: "g1".into() },
        Request::DescribeGroup { group: "g1".into() },
        Request::ResetOffsets {
            group: "g1".into(),
            offsets: vec![
                GroupOffset { topic: "a".into(), partition: 0, offset: 0 },
                GroupOffset { topic: "b".into(), partition: 3, offset: u64::MAX },
            ],
        },
        Request::ResetOffsets { group: "g1".into(), offsets: vec![] },
        Request::OffsetForTimestamp {
            topic: "orders".into(),
            partition: 1,
            timestamp_ms: 1_796_040_000_000,
        },
        Request::ClusterStatus,
        Request::DescribePartitions { topic: Some("orders".into()) },
        Request::DescribePartitions { topic: None },
        Request::ElectLeaders { topic: Some("orders".into()) },
        Request::ElectLeaders { topic: None },
        Request::ReassignPartitions {
            moves: vec![
                PartitionMove { topic: "orders".into(), partition: 0, replicas: vec![2, 3, 4] },
                PartitionMove { topic: "orders".into(), partition: 1, replicas: vec![] },
            ],
            throttle_bytes_per_s: None,
        },
        Request::ReassignPartitions { moves: vec![], throttle_bytes_per_s: None },
        Request::ReassignPartitions {
            moves: vec![PartitionMove {
                topic: "orders".into(),
                partition: 0,
                replicas: vec![2, 3, 4],
            }],
            throttle_bytes_per_s: Some(50_000_000),
        },
        Request::ReassignPartitions { moves: vec![], throttle_bytes_per_s: Some(1) },
        Request::ListReassignments { with_bytes: false },
        Request::ListReassignments { with_bytes: true },
        Request::DecommissionBroker { broker: 4, cancel: false },
        Request::DecommissionBroker { broker: 4, cancel: true },
        Request::ChangeVoter { broker: 4, add: true },
        Request::ChangeVoter { broker: 1, add: false },
        Request::DescribeMembership,
        Request::CreateReplicatedTopic {
            name: "orders".into(),
            partitions: 6,
            replication_factor: 3,
            if_not_exists: true,
            configs: vec![("min.insync.replicas".into(), "2".into())],
        },
    ]
}

fn broker_infos() -> Vec<BrokerInfo> {
    vec![
        BrokerInfo {
            id: 1,
            native_addr: Some("127.0.0.1:7070".into()),
            kafka_addr: Some("127.0.0.1:9092".into()),
            fenced: false,
        },
        BrokerInfo { id: 2, native_addr: None, kafka_addr: None, fenced: true },
    ]
}

fn partition_states() -> Vec<PartitionState> {
    vec![
        PartitionState {
            topic: "orders".into(),
            partition: 0,
            leader: Some(1),
            leader_epoch: 7,
            replicas: vec![1, 2, 3],
            isr: vec![1, 3],
        },
        PartitionState {
            topic: "orders".into(),
            partition: 1,
            leader: None,
            leader_epoch: 2,
            replicas: vec![2],
            isr: vec![2],
        },
    ]
}

fn all_responses() -> Vec<Response> {
    vec![
        Response::Ok,
        Response::TopicCreated { description: desc("orders", 3) },
        Response::Appended { partition: 2, first_offset: 10, next_offset: 20 },
        Response::Fetched {
            partition: 1,
            log_start_offset: 0,
            high_watermark: 7,
            records: Bytes::from_static(b"stored bytes"),
        },
        Response::Fetched {
            partition: 0,
            log_start_offset: 3,
            high_watermark: 3,
            records: Bytes::new(),
        },
        Response::Described {
            topics: vec![desc("a", 1), desc("b", 0), desc("c", 4), offline_desc("d")],
        },
        Response::Described { topics: vec![] },
        Response::Topics { names: vec!["a".into(), "b.c".into(), "d_e-f".into()] },
        Response::Topics { names: vec![] },
        Response::Trimmed { log_start_offset: 42 },
        Response::Offset { offset: Some(7) },
        Response::Offset { offset: None },
        Response::Groups { names: vec!["billing".into(), "g1".into()] },
        Response::Groups { names: vec![] },
        Response::GroupOffsets {
            offsets: vec![
                GroupOffset { topic: "a".into(), partition: 0, offset: 5 },
                GroupOffset { topic: "b".into(), partition: 3, offset: u64::MAX },
            ],
        },
        Response::GroupOffsets { offsets: vec![] },
        Response::TopicConfigs {
            entries: vec![
                ConfigEntry {
                    name: "retention.ms".into(),
                    value: Some("1000".into()),
                    source: ConfigSource::Topic,
                    read_only: false,
                    sensitive: false,
                },
                ConfigEntry {
                    name: "segment.bytes".into(),
                    value: Some("1048576".into()),
                    source: ConfigSource::Broker,
                    read_only: false,
                    sensitive: false,
                },
                ConfigEntry {
                    name: "min.insync.replicas".into(),
                    value: Some("1".into()),
                    source: ConfigSource::Default,
                    read_only: true,
                    sensitive: false,
                },
                ConfigEntry {
                    name: "secret".into(),
                    value: None,
                    source: ConfigSource::Default,
                    read_only: false,
                    sensitive: true,
                },
            ],
        },
        Response::TopicConfigs { entries: vec![] },
        Response::PartitionsAdded { description: desc("orders", 5) },
        Response::PartitionsAdded { description: desc("orders", 2) },
        Response::Error {
            code: ErrorCode::InvalidConfig,
            message: "invalid config retention.ms=abc: not a number".into(),
        },
        Response::GroupDescribed {
            status: GroupStatus {
                state: "Stable".into(),
                members: vec![
                    GroupMember {
                        member_id: "rdkafka-1".into(),
                        client_id: "rdkafka".into(),
                        client_host: "/127.0.0.1".into(),
                        assigned: vec![("orders".into(), vec![0, 2]), ("x".into(), vec![])],
                    },
                    GroupMember {
                        member_id: "m2".into(),
                        client_id: String::new(),
                        client_host: "/::1".into(),
                        assigned: vec![],
                    },
                ],
            },
        },
        Response::GroupDescribed { status: GroupStatus { state: "Dead".into(), members: vec![] } },
        Response::ClusterStatus {
            status: ClusterInfo {
                node_id: 1,
                clustered: true,
                controller: Some(2),
                brokers: broker_infos(),
                under_replicated: partition_states()[..1].to_vec(),
                offline: partition_states()[1..].to_vec(),
            },
        },
        Response::ClusterStatus {
            status: ClusterInfo {
                node_id: 0,
                clustered: false,
                controller: None,
                brokers: vec![],
                under_replicated: vec![],
                offline: vec![],
            },
        },
        Response::LeadersElected {
            elections: vec![
                LeaderElection {
                    topic: "orders".into(),
                    partition: 0,
                    preferred: 1,
                    leader: Some(1),
                    elected: true,
                },
                LeaderElection {
                    topic: "orders".into(),
                    partition: 2,
                    preferred: 3,
                    leader: None,
                    elected: false,
                },
            ],
        },
        Response::LeadersElected { elections: vec![] },
        Response::Reassignments {
            reassignments: vec![orders_move(
                &[4],
                vec![ReplicaCopy { replica: 4, records: 1_234, bytes: None, log_bytes: None }],
            )],
            throttle_bytes_per_s: None,
            with_bytes: false,
        },
        Response::Reassignments {
            reassignments: vec![],
            throttle_bytes_per_s: None,
            with_bytes: false,
        },
        Response::Reassignments {
            reassignments: vec![orders_move(&[4], vec![])],
            throttle_bytes_per_s: Some(50_000_000),
            with_bytes: false,
        },
        Response::Reassignments {
            reassignments: vec![orders_move(
                &[4, 5],
                vec![
                    ReplicaCopy {
                        replica: 4,
                        records: 1_234,
                        bytes: Some(5_000_000),
                        log_bytes: Some(80_000_000),
                    },
                    ReplicaCopy { replica: 5, records: 7, bytes: None, log_bytes: None },
                ],
            )],
            throttle_bytes_per_s: Some(50_000_000),
            with_bytes: true,
        },
        Response::Reassignments {
            reassignments: vec![],
            throttle_bytes_per_s: None,
            with_bytes: true,
        },
        Response::Membership {
            membership: Membership { voters: vec![1, 2, 4], decommissioned: vec![3] },
        },
        Response::Membership { membership: Membership::default() },
        Response::Partitions { brokers: broker_infos(), partitions: partition_states() },
        Response::Partitions { brokers: vec![], partitions: vec![] },
        Response::Error { code: ErrorCode::NotLeader, message: "leader is broker 2".into() },
        Response::Error {
            code: ErrorCode::OffsetOutOfRange,
            message: "offset 9 is out of range 0..5".into(),
        },
    ]
}

/// Splits one encoded frame into its body, checking the prefix.
/// orders-0 moving from brokers 1-3 onto 2, 3 and `adding`, with the copy progress given.
fn orders_move(adding: &[i32], behind: Vec<ReplicaCopy>) -> Reassignment {
    Reassignment {
        topic: "orders".into(),
        partition: 0,
        target: [2, 3].iter().chain(adding).copied().collect(),
        adding: adding.to_vec(),
        removing: vec![1],
        isr: vec![1, 2, 3],
        leader: Some(1),
        behind,
    }
}

fn body_of(frame: &[u8]) -> &[u8] {
    let len = frame_len(frame[..4].try_into().unwrap(), MAX_FRAME_BYTES).unwrap();
    assert_eq!(len, frame.len() - 4, "prefix must count exactly the body");
    &frame[4..]
}

#[test]
fn every_request_round_trips() {
    for (i, req) in all_requests().into_iter().enumerate() {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, i as u32 + 1000, &req);
        let body = body_of(&buf);
        assert_eq!(decode_request(body).unwrap(), (i as u32 + 1000, req.clone()));
        let shared = Bytes::copy_from_slice(body);
        assert_eq!(decode_request_bytes(&shared).unwrap(), (i as u32 + 1000, req));
    }
}

#[test]
fn every_response_round_trips() {
    for (i, resp) in all_responses().into_iter().enumerate() {
        let mut buf = BytesMut::new();
        encode_response(&mut buf, i as u32, &resp);
        let body = body_of(&buf);
        assert_eq!(decode_response(body).unwrap(), (i as u32, resp.clone()));
        let shared = Bytes::copy_from_slice(body);
        assert_eq!(decode_response_bytes(&shared).unwrap(), (i as u32, resp));
    }
}

#[test]
fn every_error_code_round_trips() {
    for v in 1..=24u8 {
        let code = ErrorCode::from_u8(v).unwrap();
        assert_eq!(code as u8, v);
        let mut buf = BytesMut::new();
        encode_response(&mut buf, 1, &Response::Error { code, message: code.to_string() });
        let (_, resp) = decode_response(body_of(&buf)).unwrap();
        assert_eq!(resp, Response::Error { code, message: code.name().into() });
    }
    assert_eq!(ErrorCode::from_u8(0), None);
    assert_eq!(ErrorCode::from_u8(25), None);
}

#[test]
fn fetched_head_plus_records_equals_the_whole_response() {
    let records = b"0123456789abcdef";
    let mut whole = BytesMut::new();
    encode_response(
        &mut whole,
        77,
        &Response::Fetched {
            partition: 3,
            log_start_offset: 1,
            high_watermark: 2,
            records: Bytes::from_static(records),
        },
    );
    let mut head = BytesMut::new();
    encode_fetched_head(&mut head, 77, 3, 1, 2, records.len() as u32);
    let mut joined = head.to_vec();
    joined.extend_from_slice(records);
    assert_eq!(joined, whole.to_vec());
}

#[test]
fn pipelined_frames_in_one_buffer_decode_in_order() {
    let mut buf = BytesMut::new();
    let reqs = all_requests();
    for (i, r) in reqs.iter().enumerate() {
        encode_request(&mut buf, i as u32, r);
    }
    let mut rest = &buf[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let len = frame_len(rest[..4].try_into().unwrap(), MAX_FRAME_BYTES).unwrap();
        got.push(decode_request(&rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    let want: Vec<_> = reqs.into_iter().enumerate().map(|(i, r)| (i as u32, r)).collect();
    assert_eq!(got, want);
}

#[test]
fn frame_len_refuses_oversized_and_undersized_prefixes() {
    assert_eq!(
        frame_len(u32::MAX.to_le_bytes(), MAX_FRAME_BYTES),
        Err(ProtocolError::FrameTooLarge { len: u64::from(u32::MAX), max: MAX_FRAME_BYTES })
    );
    assert!(matches!(
        frame_len(1025u32.to_le_bytes(), 1024),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    assert_eq!(frame_len(1024u32.to_le_bytes(), 1024), Ok(1024));
    assert!(matches!(frame_len([0; 4], 1024), Err(ProtocolError::FrameTooSmall { .. })));
    assert!(matches!(
        frame_len(4u32.to_le_bytes(), 1024),
        Err(ProtocolError::FrameTooSmall { .. })
    ));
    assert_eq!(ProtocolError::FrameTooLarge { len: 1, max: 0 }.code(), ErrorCode::FrameTooLarge);
}

#[test]
fn every_truncation_of_every_message_is_an_error() {
    for req in all_requests() {
        let mut buf = BytesMut::new();
        encode_request(&mut buf, 5, &req);
        let body = &buf[4..];
        for cut in 0..body.len() {
            assert!(decode_request(&body[..cut]).is_err(), "{req:?} cut at {cut}");
        }
    }
    for resp in all_responses() {
        let mut buf = BytesMut::new();
        encode_response(&mut buf, 5, &resp);
        let body = &buf[4..];
        for cut in 0..body.len() {
            assert!(decode_response(&body[..cut]).is_err(), "{resp:?} cut at {cut}");
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 1, &Request::ListTopics);
    let mut body = buf[4..].to_vec();
    body.push(0);
    assert_eq!(decode_request(&body), Err(ProtocolError::TrailingBytes { count: 1 }));
}

#[test]
fn unknown_api_key_and_response_kind_are_errors() {
    let mut body = 9u32.to_le_bytes().to_vec();
    body.push(200);
    assert_eq!(decode_request(&body), Err(ProtocolError::UnknownApiKey(200)));
    assert_eq!(peek_correlation_id(&body), Some(9));
    assert_eq!(peek_correlation_id(&body[..3]), None);

    let mut resp = 9u32.to_le_bytes().to_vec();
    resp.extend_from_slice(&[0, 99]);
    assert_eq!(decode_response(&resp), Err(ProtocolError::UnknownResponseKind(99)));
    let mut resp = 9u32.to_le_bytes().to_vec();
    resp.extend_from_slice(&[77, 0, 0]);
    assert_eq!(decode_response(&resp), Err(ProtocolError::UnknownErrorCode(77)));
}

#[test]
fn bad_utf8_in_a_string_is_an_error() {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(ApiKey::DeleteTopic as u8);
    body.extend_from_slice(&2u16.to_le_bytes());
    body.extend_from_slice(&[0xff, 0xfe]);
    assert!(matches!(decode_request(&body), Err(ProtocolError::InvalidUtf8 { .. })));
}

#[test]
fn lengths_past_the_end_are_errors_not_allocations() {
    // An append whose records claim 4 GiB in a 30-byte body.
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(ApiKey::Append as u8);
    body.extend_from_slice(&1u16.to_le_bytes());
    body.push(b't');
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_request(&body),
        Err(ProtocolError::Truncated { field: "records", needed, .. }) if needed == u64::from(u32::MAX)
    ));

    // A string claiming 65535 bytes.
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(ApiKey::Authenticate as u8);
    body.extend_from_slice(&u16::MAX.to_le_bytes());
    assert!(matches!(decode_request(&body), Err(ProtocolError::Truncated { .. })));

    // A list of 4 billion topic names in a 10-byte body: refused before any Vec is reserved.
    let mut resp = 1u32.to_le_bytes().to_vec();
    resp.extend_from_slice(&[0, ResponseKind::Topics as u8]);
    resp.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_response(&resp),
        Err(ProtocolError::Truncated { field: "name count", .. })
    ));
    let mut resp = 1u32.to_le_bytes().to_vec();
    resp.extend_from_slice(&[0, ResponseKind::Described as u8]);
    resp.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_response(&resp), Err(ProtocolError::Truncated { .. })));
}

#[test]
fn invalid_option_tag_is_an_error() {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(ApiKey::Describe as u8);
    body.push(2);
    assert!(matches!(decode_request(&body), Err(ProtocolError::InvalidOptionTag { tag: 2, .. })));
}

#[test]
fn over_long_strings_are_cut_at_a_char_boundary() {
    let long = "é".repeat(40_000); // 80,000 bytes
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 1, &Request::DeleteTopic { name: long });
    let (_, req) = decode_request(&buf[4..]).unwrap();
    let Request::DeleteTopic { name } = req else { panic!("wrong variant {req:?}") };
    assert_eq!(name.len(), 65534);
}

#[test]
fn decoded_append_records_can_be_reclaimed_without_a_copy() {
    let mut buf = BytesMut::new();
    let records = Bytes::from(vec![7u8; 1000]);
    encode_request(
        &mut buf,
        1,
        &Request::Append { topic: "t".into(), partition: Some(0), key_hint: None, records },
    );
    let body = buf.split_off(4).freeze();
    drop(buf); // the prefix shares the allocation
    let (_, req) = decode_request_bytes(&body).unwrap();
    let Request::Append { records, .. } = req else { panic!("wrong variant") };
    let ptr = records.as_ptr();
    drop(body);
    let reclaimed = records.try_into_mut().expect("sole owner after the body is dropped");
    assert_eq!(reclaimed.as_ptr(), ptr);
    assert_eq!(&reclaimed[..], &[7u8; 1000][..]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&body);
            let _ = decode_response(&body);
        }

        #[test]
        fn mutated_requests_never_panic(idx in any::<usize>(), pos in any::<usize>(), byte in any::<u8>()) {
            let reqs = all_requests();
            let mut buf = BytesMut::new();
            encode_request(&mut buf, 1, &reqs[idx % reqs.len()]);
            let mut body = buf[4..].to_vec();
            let p = pos % body.len();
            body[p] = byte;
            let _ = decode_request(&body);
        }

        #[test]
        fn mutated_responses_never_panic(idx in any::<usize>(), pos in any::<usize>(), byte in any::<u8>()) {
            let resps = all_responses();
            let mut buf = BytesMut::new();
            encode_response(&mut buf, 1, &resps[idx % resps.len()]);
            let mut body = buf[4..].to_vec();
            let p = pos % body.len();
            body[p] = byte;
            let _ = decode_response(&body);
        }
    }
}

/// A request body: correlation id 1, the api key, then `fields`.
fn request_body(key: ApiKey, fields: &[u8]) -> Vec<u8> {
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(key as u8);
    body.extend_from_slice(fields);
    body
}

#[test]
fn hostile_config_lists_are_refused_before_any_allocation() {
    // A topic "t", then a claim of 4 billion configs in a few bytes.
    let mut fields = vec![1, 0, b't'];
    fields.extend_from_slice(&u32::MAX.to_le_bytes());
    let body = request_body(ApiKey::AlterTopicConfigs, &fields);
    assert!(matches!(
        decode_request(&body),
        Err(ProtocolError::Truncated { field: "config to set", .. })
    ));

    // No configs to set, 4 billion names to delete.
    let mut fields = vec![1, 0, b't', 0, 0, 0, 0];
    fields.extend_from_slice(&u32::MAX.to_le_bytes());
    let body = request_body(ApiKey::AlterTopicConfigs, &fields);
    assert!(matches!(
        decode_request(&body),
        Err(ProtocolError::Truncated { field: "config to delete", .. })
    ));

    // CreateTopic: name, partitions, if_not_exists, then 4 billion configs.
    let mut fields = vec![1, 0, b't', 1, 0, 0, 0, 0];
    fields.extend_from_slice(&u32::MAX.to_le_bytes());
    let body = request_body(ApiKey::CreateTopic, &fields);
    assert!(matches!(
        decode_request(&body),
        Err(ProtocolError::Truncated { field: "topic config", .. })
    ));

    // A TopicConfigs response claiming 4 billion entries.
    let mut resp = 1u32.to_le_bytes().to_vec();
    resp.extend_from_slice(&[0, ResponseKind::TopicConfigs as u8]);
    resp.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_response(&resp),
        Err(ProtocolError::Truncated { field: "config count", .. })
    ));
}

#[test]
fn a_config_entry_with_an_unknown_source_is_an_error() {
    let entry = ConfigEntry {
        name: "retention.ms".into(),
        value: Some("1".into()),
        source: ConfigSource::Topic,
        read_only: false,
        sensitive: false,
    };
    let mut buf = BytesMut::new();
    encode_response(&mut buf, 1, &Response::TopicConfigs { entries: vec![entry] });
    let mut body = buf[4..].to_vec();
    // The source byte follows the name and the value: 3 flag bytes from the end.
    let at = body.len() - 3;
    assert_eq!(body[at], 2, "the source of a topic-set config");
    body[at] = 9;
    assert!(matches!(
        decode_response(&body),
        Err(ProtocolError::InvalidOptionTag { field: "config source", tag: 9, .. })
    ));
    body[at] = 2;
    body[at + 1] = 7; // read_only must be 0 or 1
    assert!(matches!(decode_response(&body), Err(ProtocolError::InvalidOptionTag { tag: 7, .. })));
}

#[test]
fn a_description_carries_its_topic_id_and_configs() {
    let d = desc("orders", 2);
    let mut buf = BytesMut::new();
    encode_response(&mut buf, 3, &Response::Described { topics: vec![d.clone()] });
    let (_, resp) = decode_response(&buf[4..]).unwrap();
    let Response::Described { topics } = resp else { panic!("wrong variant {resp:?}") };
    assert_eq!(topics[0].topic_id, [3; 16]);
    assert_eq!(
        topics[0].configs,
        vec![
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("retention.ms".to_string(), "1000".to_string())
        ]
    );
}

#[test]
fn new_api_keys_and_names() {
    for (v, key, name) in [
        (12, ApiKey::AlterTopicConfigs, "alter_topic_configs"),
        (13, ApiKey::DescribeTopicConfigs, "describe_topic_configs"),
        (14, ApiKey::AddPartitions, "add_partitions"),
    ] {
        assert_eq!(ApiKey::from_u8(v), Some(key));
        assert_eq!(key as u8, v);
        assert_eq!(key.name(), name);
    }
    assert_eq!(ErrorCode::InvalidConfig as u8, 15);
    assert_eq!(ErrorCode::InvalidConfig.name(), "invalid_config");
    assert_eq!(ErrorCode::InvalidPartitions as u8, 16);
    assert_eq!(ErrorCode::InvalidPartitions.name(), "invalid_partitions");
}

#[test]
fn a_split_append_frame_is_the_whole_frame_in_two_parts() {
    let req = Request::Append {
        topic: "orders".to_string(),
        partition: Some(2),
        key_hint: Some(Bytes::from_static(b"k")),
        records: Bytes::from_static(b"records bytes"),
    };
    let mut whole = BytesMut::new();
    encode_request(&mut whole, 9, &req);
    let mut head = BytesMut::new();
    let body = encode_request_split(&mut head, 9, &req).expect("an Append is split");
    head.extend_from_slice(&body);
    assert_eq!(head, whole);
    let mut other = BytesMut::new();
    assert!(encode_request_split(&mut other, 9, &Request::ListTopics).is_none());
    let mut list = BytesMut::new();
    encode_request(&mut list, 9, &Request::ListTopics);
    assert_eq!(other, list);
}

#[test]
fn topic_ids_print_as_kafka_prints_them() {
    // Kafka's Uuid.toString(): URL-safe base64, no padding.
    assert_eq!(topic_id_text(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(topic_id_text(&[0xff; 16]), "_____________________w");
    let id: [u8; 16] = [
        0xdc, 0x2b, 0x06, 0xbc, 0xbb, 0x39, 0x41, 0xf4, 0x83, 0x13, 0x59, 0xbe, 0x0d, 0x01, 0x39,
        0x91,
    ];
    assert_eq!(topic_id_text(&id), "3CsGvLs5QfSDE1m-DQE5kQ");
}

#[test]
fn cluster_api_keys_codes_and_kinds_come_after_the_old_ones() {
    for (v, key, name) in [
        (19, ApiKey::ClusterStatus, "cluster_status"),
        (20, ApiKey::DescribePartitions, "describe_partitions"),
        (21, ApiKey::CreateReplicatedTopic, "create_replicated_topic"),
        (22, ApiKey::ElectLeaders, "elect_leaders"),
        (23, ApiKey::ReassignPartitions, "reassign_partitions"),
        (24, ApiKey::ListReassignments, "list_reassignments"),
        (25, ApiKey::ThrottledReassignPartitions, "throttled_reassign_partitions"),
        (26, ApiKey::DecommissionBroker, "decommission_broker"),
        (27, ApiKey::ChangeVoter, "change_voter"),
        (28, ApiKey::DescribeMembership, "describe_membership"),
        (29, ApiKey::ListReassignmentProgress, "list_reassignment_progress"),
    ] {
        assert_eq!(ApiKey::from_u8(v), Some(key));
        assert_eq!(key as u8, v);
        assert_eq!(key.name(), name);
    }
    assert_eq!(ResponseKind::ClusterStatus as u8, 13);
    assert_eq!(ResponseKind::Partitions as u8, 14);
    assert_eq!(ResponseKind::LeadersElected as u8, 15);
    assert_eq!(ResponseKind::Reassignments as u8, 16);
    assert_eq!(ResponseKind::ThrottledReassignments as u8, 17);
    assert_eq!(ResponseKind::Membership as u8, 18);
    assert_eq!(ResponseKind::ReassignmentProgress as u8, 19);
    for (v, code, retriable) in [
        (19, ErrorCode::NotLeader, true),
        (20, ErrorCode::LeaderNotAvailable, true),
        (21, ErrorCode::NotEnoughReplicas, true),
        (22, ErrorCode::NotEnoughReplicasAfterAppend, true),
        (23, ErrorCode::RequestTimedOut, true),
        (24, ErrorCode::InvalidReplicationFactor, false),
    ] {
        assert_eq!(code as u8, v);
        assert_eq!(code.is_retriable(), retriable, "{code}");
    }
    for v in 1..=18u8 {
        assert!(!ErrorCode::from_u8(v).unwrap().is_retriable(), "old code {v}");
    }
}

/// Frames an older client or broker sends, byte for byte: they still decode to the same
/// messages, and encoding those messages gives the same bytes (the cluster changed no old
/// layout).
#[test]
fn old_frames_keep_their_bytes() {
    // CreateTopic "t", 2 partitions, if_not_exists, no configs (as issue 13 wrote it).
    let old_create: &[u8] = &[
        7, 0, 0, 0, 1, // correlation id, api key
        1, 0, b't', 2, 0, 0, 0, 1, 0, 0, 0, 0,
    ];
    let (id, req) = decode_request(old_create).unwrap();
    let want = Request::CreateTopic {
        name: "t".into(),
        partitions: 2,
        if_not_exists: true,
        configs: vec![],
    };
    assert_eq!((id, &req), (7, &want));
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 7, &want);
    assert_eq!(body_of(&buf), old_create);

    // Appended { partition 1, offsets 5..9 }.
    let old_appended: &[u8] = &[
        9, 0, 0, 0, 0, 2, // correlation id, ok, kind
        1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,
    ];
    let want = Response::Appended { partition: 1, first_offset: 5, next_offset: 9 };
    assert_eq!(decode_response(old_appended).unwrap(), (9, want.clone()));
    let mut buf = BytesMut::new();
    encode_response(&mut buf, 9, &want);
    assert_eq!(body_of(&buf), old_appended);

    // An old error code keeps its byte.
    let old_error: &[u8] = &[3, 0, 0, 0, 3, 1, 0, b'x'];
    assert_eq!(
        decode_response(old_error).unwrap(),
        (3, Response::Error { code: ErrorCode::UnknownTopic, message: "x".into() })
    );
}

/// A throttled move is the old move's bytes under a new key, plus the throttle: an older broker
/// refuses it instead of moving unthrottled, and an unthrottled move keeps the old bytes (as does
/// a list of moves with no throttle in force).
#[test]
fn a_throttled_reassignment_is_the_old_request_plus_its_throttle() {
    let moves = vec![PartitionMove { topic: "t".into(), partition: 1, replicas: vec![2, 3] }];
    let old: &[u8] = &[
        4, 0, 0, 0, 23, // correlation id, api key ReassignPartitions
        1, 0, 0, 0, 1, 0, b't', 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0,
    ];
    let plain = Request::ReassignPartitions { moves: moves.clone(), throttle_bytes_per_s: None };
    assert_eq!(decode_request(old).unwrap(), (4, plain.clone()));
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 4, &plain);
    assert_eq!(body_of(&buf), old);

    let throttled = Request::ReassignPartitions { moves, throttle_bytes_per_s: Some(50_000_000) };
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 4, &throttled);
    let mut want = old.to_vec();
    want[4] = 25;
    want.extend_from_slice(&50_000_000u64.to_le_bytes());
    assert_eq!(body_of(&buf), &want[..]);

    let old_list: &[u8] = &[4, 0, 0, 0, 0, 16, 0, 0, 0, 0];
    let none = Response::Reassignments {
        reassignments: vec![],
        throttle_bytes_per_s: None,
        with_bytes: false,
    };
    assert_eq!(decode_response(old_list).unwrap(), (4, none));
}

/// A CLI of the previous release asks with key 24: the answer keeps the bytes it decodes, the
/// copy progress in records only, even when this broker knows the bytes.
#[test]
fn the_old_reassignments_answer_keeps_its_bytes_when_the_bytes_to_copy_are_known() {
    let move_with = |bytes: Option<u64>| Reassignment {
        topic: "t".into(),
        partition: 0,
        target: vec![2],
        adding: vec![2],
        removing: vec![1],
        isr: vec![1],
        leader: Some(1),
        behind: vec![ReplicaCopy {
            replica: 2,
            records: 9,
            bytes,
            log_bytes: bytes.map(|b| b * 2),
        }],
    };
    let encode = |bytes: Option<u64>, with_bytes: bool| {
        let mut buf = BytesMut::new();
        let r = Response::Reassignments {
            reassignments: vec![move_with(bytes)],
            throttle_bytes_per_s: None,
            with_bytes,
        };
        encode_response(&mut buf, 7, &r);
        buf
    };
    let (old, known) = (encode(None, false), encode(Some(100), false));
    assert_eq!(known, old, "the bytes to copy do not travel in kind 16");
    assert_eq!(old[9], ResponseKind::Reassignments as u8);
    let new = encode(Some(100), true);
    assert_eq!(new[9], ResponseKind::ReassignmentProgress as u8);
    // The request keys: 24 as before, 29 for the bytes.
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 1, &Request::ListReassignments { with_bytes: false });
    assert_eq!(buf[8], 24);
    let mut buf = BytesMut::new();
    encode_request(&mut buf, 1, &Request::ListReassignments { with_bytes: true });
    assert_eq!(buf[8], 29);
}

/// A replicated create is the old create's bytes plus the factor: an old broker refuses the new
/// key instead of creating a topic without replicas.
#[test]
fn a_replicated_create_is_a_create_plus_its_factor() {
    let configs = vec![("retention.ms".to_string(), "1000".to_string())];
    let mut old = BytesMut::new();
    encode_request(
        &mut old,
        1,
        &Request::CreateTopic {
            name: "t".into(),
            partitions: 6,
            if_not_exists: false,
            configs: configs.clone(),
        },
    );
    let mut new = BytesMut::new();
    encode_request(
        &mut new,
        1,
        &Request::CreateReplicatedTopic {
            name: "t".into(),
            partitions: 6,
            replication_factor: 3,
            if_not_exists: false,
            configs,
        },
    );
    let (old, new) = (body_of(&old), body_of(&new));
    assert_eq!(new[4], ApiKey::CreateReplicatedTopic as u8);
    assert_eq!(&new[5..new.len() - 2], &old[5..]);
    assert_eq!(&new[new.len() - 2..], &3u16.to_le_bytes());
}

#[test]
fn hostile_broker_and_replica_lists_are_refused_before_any_allocation() {
    // Partitions: no brokers, then 4 billion partitions in a few bytes.
    let mut body = vec![1, 0, 0, 0, 0, ResponseKind::Partitions as u8];
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_response(&body), Err(ProtocolError::Truncated { .. })));
    // One partition claiming 4 billion replicas.
    let mut body = vec![1, 0, 0, 0, 0, ResponseKind::Partitions as u8];
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[1, 0, b't', 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    body.extend_from_slice(&[0; 8]);
    assert!(matches!(decode_response(&body), Err(ProtocolError::Truncated { .. })));
}
