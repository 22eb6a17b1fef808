//! Access control as a stranger and as a client see it: a broker run with --auth-token-file
//! answers nothing but Unauthorized (then closes the connection) to a peer that has not presented
//! the token, logs the refusal with the peer's address, and serves the client library and CLI
//! that present it (--auth-token-file or MINIKAFKA_TOKEN). The Kafka listener requires SASL/PLAIN
//! with the same secret (SaslHandshake v0 with its bare PLAIN frame too, for old librdkafka).
//! Until a connection has authenticated, both listeners close it on a large frame instead of
//! buffering it. A Kafka request of an unsupported API or version is logged once at warn with
//! the client's id and software. Without a token, a non-loopback --listen is refused at start-up.

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
use minikafka::broker::topic_config::TopicConfigs;
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
        Request::CreateTopic {
            name: "sneaky".into(),
            partitions: 1,
            if_not_exists: false,
            configs: vec![],
        },
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
        c.request(&Request::CreateTopic {
            name: "t".into(),
            partitions: 1,
            if_not_exists: false,
            configs: vec![],
        })
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
    kafka_frame_from(None, key, version, body)
}

/// A Kafka request frame with a client id in its header.
fn kafka_frame_from<T: Encodable>(
    client_id: Option<&'static str>,
    key: ApiKey,
    version: i16,
    body: &T,
) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(client_id.map(StrBytes::from_static_str))
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
        broker.create_topic("secret-topic", 1, TopicConfigs::default(), false).unwrap();
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

/// A free loopback port (bind port 0, read it back, release it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real broker binary with both its native and Kafka listeners (and an optional token
/// file); its stderr goes to a file the test reads. Killed on drop.
struct TwoListenerBroker {
    child: std::process::Child,
    native: String,
    kafka: String,
    log: std::path::PathBuf,
}

impl TwoListenerBroker {
    fn start(dir: &std::path::Path, token_file: Option<&std::path::Path>) -> TwoListenerBroker {
        let log = dir.join("broker.log");
        for _ in 0..5 {
            let native = format!("127.0.0.1:{}", free_port());
            let kafka = format!("127.0.0.1:{}", free_port());
            let mut cmd = Command::new(BIN);
            cmd.args(["broker", "--data-dir"])
                .arg(dir.join("data"))
                .args(["--listen", &native, "--kafka-listen", &kafka, "--http-listen", "off"])
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap());
            if let Some(f) = token_file {
                cmd.arg("--auth-token-file").arg(f);
            }
            let mut child = cmd.spawn().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                if TcpStream::connect(&native).is_ok() && TcpStream::connect(&kafka).is_ok() {
                    return TwoListenerBroker { child, native, kafka, log };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // a port was taken meanwhile: try others
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the broker did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The broker's resident memory in bytes (VmRSS of /proc/PID/status).
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for TwoListenerBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the broker closed `s`: EOF (after any bytes it sent) or a reset, within 30 s.
fn closed_by_broker(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                );
            }
        }
    }
}

#[test]
fn unauthenticated_peers_cannot_make_either_listener_buffer_a_large_frame() {
    const CONNECTIONS: usize = 12;
    const ANNOUNCED: u32 = 64 << 20;
    const SENT: usize = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let b = TwoListenerBroker::start(dir.path(), Some(&token_file));
    let before = b.rss();

    // 12 strangers per listener announce a 64 MiB frame and send 8 MiB of it. Unfixed, the
    // broker buffers what arrives: 2 x 12 x 8 MiB = 192 MiB more resident memory.
    let chunk = vec![0x5au8; 64 * 1024];
    let mut conns = Vec::new();
    for (addr, prefix) in
        [(&b.native, ANNOUNCED.to_le_bytes()), (&b.kafka, (ANNOUNCED as i32).to_be_bytes())]
    {
        for _ in 0..CONNECTIONS {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut sent = 0;
            if s.write_all(&prefix).is_ok() {
                while sent < SENT && s.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
            }
            conns.push((addr.clone(), s, sent));
        }
    }
    let after = b.rss();
    let grown = after.saturating_sub(before);
    println!(
        "RSS {} MiB -> {} MiB with {} connections announcing 64 MiB; sent per connection: {:?}",
        before >> 20,
        after >> 20,
        conns.len(),
        conns.iter().map(|c| c.2).collect::<Vec<_>>()
    );
    assert!(grown < 64 << 20, "the broker grew by {} MiB", grown >> 20);
    for (addr, s, _) in &mut conns {
        assert!(closed_by_broker(s), "a connection to {addr} announcing 64 MiB was not closed");
    }
    let log = b.log();
    assert!(log.contains("before authenticating"), "the cut-off is logged: {log}");

    // Once authenticated, large frames are served: a 200 KiB record on each listener.
    let big = vec![b'x'; 200 * 1024];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = Connection::connect_with_token(&b.native, Some(TOKEN)).await.unwrap();
        c.request(&Request::CreateTopic {
            name: "big".into(),
            partitions: 1,
            if_not_exists: false,
            configs: vec![],
        })
        .await
        .unwrap();
        let client = ClientBuilder::new(vec![b.kafka.clone()])
            .sasl_config(SaslConfig::Plain(Credentials::new("u".into(), TOKEN.into())))
            .build()
            .await
            .unwrap();
        let pc = client
            .partition_client("big", 0, rskafka::client::partition::UnknownTopicHandling::Error)
            .await
            .unwrap();
        let record = rskafka::record::Record {
            key: None,
            value: Some(big.clone()),
            headers: Default::default(),
            timestamp: rskafka::chrono::TimeZone::timestamp_millis_opt(&rskafka::chrono::Utc, 1)
                .unwrap(),
        };
        let offsets = pc
            .produce(vec![record], rskafka::client::partition::Compression::NoCompression)
            .await
            .unwrap();
        assert_eq!(offsets, vec![0]);
    });
}

/// Reads one Kafka response frame (the bytes after the size prefix).
fn read_kafka_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(prefix) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

#[test]
fn sasl_handshake_v0_takes_the_plain_message_as_a_bare_frame() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let b = TwoListenerBroker::start(dir.path(), Some(&token_file));
    let limit = Duration::from_secs(30);
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let bare = |password: &str| {
        let msg = format!("\0alice\0{password}");
        let mut f = (msg.len() as i32).to_be_bytes().to_vec();
        f.extend_from_slice(msg.as_bytes());
        f
    };
    let metadata = kafka_frame(ApiKey::Metadata, 4, &MetadataRequest::default().with_topics(None));

    // The right password: an empty server token, then requests are served.
    let mut s = TcpStream::connect(&b.kafka).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(&kafka_frame(ApiKey::SaslHandshake, 0, &handshake)).unwrap();
    let mut r = Bytes::from(read_kafka_frame(&mut s));
    let _ = ResponseHeader::decode(&mut r, 0).unwrap();
    let hs = kafka_protocol::messages::SaslHandshakeResponse::decode(&mut r, 0).unwrap();
    assert_eq!(hs.error_code, 0);
    assert_eq!(hs.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
    s.write_all(&bare(TOKEN)).unwrap();
    assert!(read_kafka_frame(&mut s).is_empty(), "PLAIN's empty server token");
    s.write_all(&metadata).unwrap();
    let mut r = Bytes::from(read_kafka_frame(&mut s));
    let _ = ResponseHeader::decode(&mut r, 0).unwrap();
    let md = kafka_protocol::messages::MetadataResponse::decode(&mut r, 4).unwrap();
    assert_eq!(md.brokers.len(), 1, "metadata served after a v0 authentication");

    // A wrong password: nothing more is answered, the connection is closed.
    let mut s = TcpStream::connect(&b.kafka).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(&kafka_frame(ApiKey::SaslHandshake, 0, &handshake)).unwrap();
    let _ = read_kafka_frame(&mut s);
    s.write_all(&bare("wrong")).unwrap();
    let _ = s.write_all(&metadata);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer after a wrong password: {rest:?}");
    assert!(b.log().contains("not authenticated"), "{}", b.log());
}

#[test]
fn an_unsupported_kafka_request_is_logged_once_at_warn_with_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let b = TwoListenerBroker::start(dir.path(), None);
    let limit = Duration::from_secs(30);
    let client = Some("probe-client");

    // ApiVersions newer than ours: UNSUPPORTED_VERSION with our versions, the connection stays.
    let mut s = TcpStream::connect(&b.kafka).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let av = kafka_protocol::messages::ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("probe-software"))
        .with_client_software_version(StrBytes::from_static_str("9.8.7"));
    s.write_all(&kafka_frame_from(client, ApiKey::ApiVersions, 4, &av)).unwrap();
    let mut r = Bytes::from(read_kafka_frame(&mut s));
    let _ = ResponseHeader::decode(&mut r, 0).unwrap();
    let resp = kafka_protocol::messages::ApiVersionsResponse::decode(&mut r, 0).unwrap();
    assert_eq!(resp.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(resp.api_keys.iter().any(|k| k.api_key == 18 && k.max_version == 3), "{resp:?}");
    // The client retries at v3, stating its software; then asks for an API we lack, and a
    // version we lack: no answer, one warning, the connection closed.
    s.write_all(&kafka_frame_from(client, ApiKey::ApiVersions, 3, &av)).unwrap();
    let _ = read_kafka_frame(&mut s);
    let describe = kafka_protocol::messages::DescribeAclsRequest::default();
    s.write_all(&kafka_frame_from(client, ApiKey::DescribeAcls, 1, &describe)).unwrap();
    let md = MetadataRequest::default().with_topics(None);
    let _ = s.write_all(&kafka_frame_from(client, ApiKey::Metadata, 13, &md));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer to an unsupported request");

    // Another connection: a version out of range, no ApiVersions first.
    let mut s = TcpStream::connect(&b.kafka).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(&kafka_frame_from(Some("second"), ApiKey::Metadata, 13, &md)).unwrap();
    assert!(closed_by_broker(&mut s));

    let log = b.log();
    let warns: Vec<&str> =
        log.lines().filter(|l| l.contains("unsupported API or version")).collect();
    assert_eq!(warns.len(), 2, "one warning per connection: {log}");
    let first = warns[0];
    for field in [
        "WARN",
        "probe-client",
        "probe-software/9.8.7",
        "api=DescribeAcls",
        "api_key=29",
        "version=1",
        "supported=none",
    ] {
        assert!(first.contains(field), "{field} missing in {first}");
    }
    let second = warns[1];
    for field in ["WARN", "second", "api=Metadata", "version=13", "supported=v0-v12"] {
        assert!(second.contains(field), "{field} missing in {second}");
    }
}
