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
        topic_id: [0; 16],
        configs: Vec::new(),
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
        Request::CreateTopic { name: "orders".into(), partitions: 3, if_not_exists: true },
        Request::CreateTopic { name: "o".into(), partitions: 0, if_not_exists: false },
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
        Response::Error {
            code: ErrorCode::OffsetOutOfRange,
            message: "offset 9 is out of range 0..5".into(),
        },
    ]
}

/// Splits one encoded frame into its body, checking the prefix.
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
    for v in 1..=14u8 {
        let code = ErrorCode::from_u8(v).unwrap();
        assert_eq!(code as u8, v);
        let mut buf = BytesMut::new();
        encode_response(&mut buf, 1, &Response::Error { code, message: code.to_string() });
        let (_, resp) = decode_response(body_of(&buf)).unwrap();
        assert_eq!(resp, Response::Error { code, message: code.name().into() });
    }
    assert_eq!(ErrorCode::from_u8(0), None);
    assert_eq!(ErrorCode::from_u8(15), None);
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
        fn mutated_requests_never_panic(idx in 0usize..13, pos in any::<usize>(), byte in any::<u8>()) {
            let reqs = all_requests();
            let mut buf = BytesMut::new();
            encode_request(&mut buf, 1, &reqs[idx % reqs.len()]);
            let mut body = buf[4..].to_vec();
            let p = pos % body.len();
            body[p] = byte;
            let _ = decode_request(&body);
        }
    }
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
