//! Access control as a stranger and as a client see it: a broker run with --auth-token-file
//! answers nothing but Unauthorized (then closes the connection) to a peer that has not presented
//! the token, logs the refusal with the peer's address, and serves the client library and CLI
//! that present it (--auth-token-file or MINIKAFKA_TOKEN). The Kafka listener requires SASL/PLAIN
//! with the same secret. Without a token, a non-loopback --listen is refused at start-up.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use bytes::BytesMut;
use common::{BIN, BrokerProcess, fails, ok, wait_with_deadline};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use minikafka::broker::{Broker, BrokerConfig};
use minikafka::client::Connection;
use minikafka::kafka::{KafkaConfig, KafkaServer};
use minikafka::protocol::{self, ErrorCode, Request, Response};
use rskafka::client::{ClientBuilder, Credentials, SaslConfig};

const TOKEN: &str = "s3cret-token-for-tests";

/// Sends one request on a raw socket and returns the decoded response, and whether the broker
/// then closed the connection.
fn raw_exchange(addr: &str, reqs: &[Request]) -> (Vec<Response>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = BytesMut::new();
    for (i, r) in reqs.iter().enumerate() {
        protocol::encode_request(&mut buf, i as u32 + 1, r);
    }
    s.write_all(&buf).unwrap();
    // EOF after the requests: a broker that serves them answers and then closes too.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all); // until the broker closes it (or the timeout)
    let mut out = Vec::new();
    let mut rest = &all[..];
    while rest.len() >= 4 {
        let len = protocol::frame_len([rest[0], rest[1], rest[2], rest[3]], 1 << 20).unwrap();
        out.push(protocol::decode_response(&rest[4..4 + len]).unwrap().1);
        rest = &rest[4 + len..];
    }
    let closed = s.read(&mut [0u8; 1]).map(|n| n == 0).unwrap_or(false);
    (out, closed)
}

fn is_unauthorized(r: &Response) -> bool {
    matches!(r, Response::Error { code: ErrorCode::Unauthorized, .. })
}

#[test]
fn native_listener_refuses_every_request_until_the_token_is_presented() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let data = dir.path().join("data");
    let b = BrokerProcess::start(&data, &["--auth-token-file", token_file.to_str().unwrap()]);
    let mut cases = 0;

    // Anything first (a describe, a fetch) -> Unauthorized, no data, connection closed.
    for first in [
        Request::ListTopics,
        Request::Fetch {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1024,
            max_wait_ms: 0,
        },
        Request::CreateTopic { name: "sneaky".into(), partitions: 1, if_not_exists: false },
    ] {
        let (resps, closed) = raw_exchange(&b.addr, &[first, Request::ListTopics]);
        assert_eq!(resps.len(), 1, "one refusal, then nothing: {resps:?}");
        assert!(is_unauthorized(&resps[0]), "{resps:?}");
        assert!(closed, "the connection is closed after the refusal");
        cases += 1;
    }
    // A wrong token, a token prefix, an empty token -> refused and closed.
    for wrong in ["wrong", &TOKEN[..TOKEN.len() - 1], "", &format!("{TOKEN}x")] {
        let (resps, closed) = raw_exchange(
            &b.addr,
            &[Request::Authenticate { token: wrong.to_string() }, Request::ListTopics],
        );
        assert_eq!(resps.len(), 1, "{resps:?}");
        assert!(is_unauthorized(&resps[0]));
        assert!(closed);
        cases += 1;
    }
    assert!(!data.join("sneaky").exists(), "nothing was created by an unauthenticated peer");
    // The right token, then requests are served.
    let (resps, _) = raw_exchange(
        &b.addr,
        &[Request::Authenticate { token: TOKEN.into() }, Request::ListTopics],
    );
    assert_eq!(resps[0], Response::Ok);
    assert!(matches!(resps[1], Response::Topics { .. }), "{resps:?}");

    // Refusals are logged with the peer's address.
    let log = b.log();
    assert!(
        log.contains("authentication failed") && log.contains("127.0.0.1:"),
        "refusals are logged with the peer: {log}"
    );

    // The client library.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = Connection::connect_with_token(&b.addr, Some(TOKEN)).await.unwrap();
        c.request(&Request::CreateTopic { name: "t".into(), partitions: 1, if_not_exists: false })
            .await
            .unwrap();
        let bad = Connection::connect_with_token(&b.addr, Some("nope")).await;
        assert!(bad.is_err(), "a wrong token fails the connect");
    });

    // The CLI: no token -> error; --auth-token-file or MINIKAFKA_TOKEN -> works.
    let err = fails(b.cli(&["topic", "list"]));
    assert!(err.to_lowercase().contains("auth"), "{err}");
    let listed = ok(b.cli(&["topic", "list", "--auth-token-file", token_file.to_str().unwrap()]));
    assert!(listed.contains('t'), "{listed}");
    let child = Command::new(BIN)
        .args(["topic", "list"])
        .env("MINIKAFKA_BROKER", &b.addr)
        .env("MINIKAFKA_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ok(wait_with_deadline(child, Duration::from_secs(60), &["topic", "list"]));
    println!("native auth: {cases} refused openings checked, client and CLI authenticated");
}

#[test]
fn an_empty_or_missing_token_file_stops_the_broker_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    for (file, expect) in [(empty, "empty"), (dir.path().join("missing"), "cannot read")] {
        let child = Command::new(BIN)
            .args(["broker", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--kafka-listen", "off", "--auth-token-file"])
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = fails(wait_with_deadline(child, Duration::from_secs(60), &["broker"]));
        assert!(err.contains("--auth-token-file") && err.contains(expect), "{err}");
    }
}

#[test]
fn without_a_token_a_non_loopback_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Never binds: the check runs before any listener is opened.
    let child = Command::new(BIN)
        .args(["broker", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "0.0.0.0:0", "--kafka-listen", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = fails(wait_with_deadline(child, Duration::from_secs(60), &["broker"]));
    assert!(err.contains("--allow-unauthenticated-remote"), "{err}");
    let child = Command::new(BIN)
        .args(["broker", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = fails(wait_with_deadline(child, Duration::from_secs(60), &["broker"]));
    assert!(err.contains("--kafka-listen"), "{err}");
}

/// A Kafka request frame (size prefix, header, body).
fn kafka_frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    frame
}

fn split_frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        out.push(b[4..4 + len].to_vec());
        b = &b[4 + len..];
    }
    out
}

#[test]
fn kafka_listener_requires_sasl_plain_with_the_token() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    rt.unwrap().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::open(BrokerConfig { data_dir: dir.path().to_path_buf(), ..Default::default() })
                .unwrap();
        broker.create_topic("secret-topic", 1).unwrap();
        let mut config = KafkaConfig::new("127.0.0.1:0".parse().unwrap());
        config.auth_token = Some(TOKEN.to_string());
        let server = KafkaServer::bind(config, broker.clone()).await.unwrap();
        let addr = server.local_addr().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let limit = Duration::from_secs(30);

        // No SASL: a metadata request gets no answer and the connection is closed.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(limit)).unwrap();
        s.write_all(&kafka_frame(
            ApiKey::Metadata,
            4,
            &MetadataRequest::default().with_topics(None),
        ))
        .unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(got.is_empty(), "no metadata without SASL");
        // Handshake PLAIN, then a wrong password: SASL_AUTHENTICATION_FAILED, then closed.
        for wrong in ["nope", &TOKEN[1..], ""] {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(limit)).unwrap();
            let hs =
                SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
            s.write_all(&kafka_frame(ApiKey::SaslHandshake, 1, &hs)).unwrap();
            let auth = SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from(format!("\0alice\0{wrong}")));
            s.write_all(&kafka_frame(ApiKey::SaslAuthenticate, 1, &auth)).unwrap();
            s.write_all(&kafka_frame(
                ApiKey::Metadata,
                4,
                &MetadataRequest::default().with_topics(None),
            ))
            .unwrap();
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let frames = split_frames(&got);
            assert_eq!(frames.len(), 2, "handshake and refusal, no metadata");
            let mut b = Bytes::from(frames[1].clone());
            let _ =
                ResponseHeader::decode(&mut b, ApiKey::SaslAuthenticate.response_header_version(1))
                    .unwrap();
            let r = SaslAuthenticateResponse::decode(&mut b, 1).unwrap();
            assert_eq!(r.error_code, 58, "SASL_AUTHENTICATION_FAILED");
        }
        // Right password (any user name): served.
        let client = tokio::time::timeout(
            limit,
            ClientBuilder::new(vec![addr.clone()])
                .sasl_config(SaslConfig::Plain(Credentials::new("alice".into(), TOKEN.into())))
                .build(),
        )
        .await
        .expect("bounded")
        .expect("SASL/PLAIN with the token connects");
        let topics = client.list_topics().await.unwrap();
        assert!(topics.iter().any(|t| t.name == "secret-topic"));
        let _ = tx.send(());
        let _ = tokio::time::timeout(limit, task).await;
    });
}
