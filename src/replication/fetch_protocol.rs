//! The REPLICA_FETCH request and response (peer frame kind 6): a follower asks the partition
//! leader for the batches from its log end, the leader answers with them as stored, its high
//! watermark and log start, or with where the follower's log diverges from its own. Encoding and
//! bounds-checked decoding only: never panics and never allocates on what a peer claims (the
//! records are a slice of the received frame). Knows no logs and no sockets.

use bytes::{BufMut, Bytes, BytesMut};

/// The only version; a frame of another version is refused, not guessed at.
pub const VERSION: u8 = 0;
/// Longest topic name a frame may carry (Kafka's limit is 249).
pub const MAX_TOPIC_LEN: usize = 255;
/// "No epoch", "no offset" on the wire.
pub const NONE_I32: i32 = -1;

/// Error codes of a response, Kafka's numbers (so logs and clients read them alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchErrorCode {
    None,
    /// The fetch offset is below the leader's log start.
    OffsetOutOfRange,
    /// The leader has no such partition.
    UnknownTopicOrPartition,
    /// This broker does not lead the partition (or no longer).
    NotLeaderOrFollower,
    /// The fetching broker is not a replica of the partition, or not who it says it is.
    ReplicaNotAvailable,
    /// The leader's log could not be read.
    KafkaStorageError,
    /// The follower believes in an older leader epoch than the leader's.
    FencedLeaderEpoch,
    /// The follower believes in a newer leader epoch than the leader has applied yet.
    UnknownLeaderEpoch,
    /// The follower's broker incarnation is older than one the leader has seen (a zombie).
    StaleBrokerEpoch,
    /// A code this version does not know, kept as it came.
    Other(i16),
}

impl FetchErrorCode {
    pub fn code(self) -> i16 {
        match self {
            FetchErrorCode::None => 0,
            FetchErrorCode::OffsetOutOfRange => 1,
            FetchErrorCode::UnknownTopicOrPartition => 3,
            FetchErrorCode::NotLeaderOrFollower => 6,
            FetchErrorCode::ReplicaNotAvailable => 9,
            FetchErrorCode::KafkaStorageError => 56,
            FetchErrorCode::FencedLeaderEpoch => 74,
            FetchErrorCode::UnknownLeaderEpoch => 75,
            FetchErrorCode::StaleBrokerEpoch => 77,
            FetchErrorCode::Other(c) => c,
        }
    }

    pub fn from_code(c: i16) -> FetchErrorCode {
        match c {
            0 => FetchErrorCode::None,
            1 => FetchErrorCode::OffsetOutOfRange,
            3 => FetchErrorCode::UnknownTopicOrPartition,
            6 => FetchErrorCode::NotLeaderOrFollower,
            9 => FetchErrorCode::ReplicaNotAvailable,
            56 => FetchErrorCode::KafkaStorageError,
            74 => FetchErrorCode::FencedLeaderEpoch,
            75 => FetchErrorCode::UnknownLeaderEpoch,
            77 => FetchErrorCode::StaleBrokerEpoch,
            c => FetchErrorCode::Other(c),
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchDecodeError {
    #[error("replica fetch frame truncated: {field} needs {need} bytes, {have} left")]
    Truncated { field: &'static str, need: usize, have: usize },
    #[error("replica fetch frame of version {0}; this broker speaks version {VERSION}")]
    Version(u8),
    #[error("replica fetch frame: {field} is {value}, out of range")]
    OutOfRange { field: &'static str, value: i64 },
    #[error("replica fetch frame: the topic name is not UTF-8")]
    TopicNotUtf8,
    #[error("replica fetch frame has {0} bytes after its end")]
    Trailing(usize),
}

/// A follower's fetch.
///
/// | offset | size | field                | notes                                          |
/// |-------:|-----:|----------------------|------------------------------------------------|
/// | 0      | 1    | version              | [`VERSION`]                                    |
/// | 1      | 8    | replica_id           | u64, the fetching broker's node id             |
/// | 9      | 8    | broker_incarnation   | u64, its registration (broker epoch)           |
/// | 17     | 4    | leader_epoch         | i32, the epoch the follower believes in        |
/// | 21     | 4    | last_fetched_epoch   | i32, its log's newest epoch, -1 if none        |
/// | 25     | 8    | fetch_offset         | u64, its log end (durable per fsync policy)    |
/// | 33     | 4    | max_bytes            | u32                                            |
/// | 37     | 4    | max_wait_ms          | u32, long-poll bound when nothing is new       |
/// | 41     | 4    | partition            | u32                                            |
/// | 45     | 2    | topic_len            | u16, at most [`MAX_TOPIC_LEN`]                 |
/// | 47     | n    | topic                | UTF-8; the frame ends here                     |
///
/// All integers big-endian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica_id: u64,
    pub broker_incarnation: u64,
    pub leader_epoch: i32,
    pub last_fetched_epoch: i32,
    pub fetch_offset: u64,
    pub max_bytes: u32,
    pub max_wait_ms: u32,
    pub partition: u32,
    pub topic: String,
}

/// The leader's answer.
///
/// | offset | size | field                | notes                                          |
/// |-------:|-----:|----------------------|------------------------------------------------|
/// | 0      | 1    | version              | [`VERSION`]                                    |
/// | 1      | 2    | error_code           | i16, [`FetchErrorCode`]                        |
/// | 3      | 4    | leader_epoch         | i32, the leader's epoch (-1 if not leading)    |
/// | 7      | 8    | high_watermark       | u64                                            |
/// | 15     | 8    | log_start_offset     | u64                                            |
/// | 23     | 4    | diverging_epoch      | i32, -1: not diverging                         |
/// | 27     | 8    | diverging_end_offset | i64, -1: not diverging; else where that epoch ends on the leader |
/// | 35     | 4    | records_len          | u32, equal to the bytes left                   |
/// | 39     | n    | records              | RecordBatch v2s exactly as the leader stored them |
///
/// All integers big-endian. Records are present only with error_code 0 and no divergence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub error: FetchErrorCode,
    pub leader_epoch: i32,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// `(epoch, end offset)`: the follower's log diverges; it truncates and fetches again.
    pub diverging: Option<(i32, u64)>,
    pub records: Bytes,
}

impl FetchResponse {
    /// An error answer with no records.
    pub fn error(error: FetchErrorCode, leader_epoch: i32) -> FetchResponse {
        FetchResponse {
            error,
            leader_epoch,
            high_watermark: 0,
            log_start_offset: 0,
            diverging: None,
            records: Bytes::new(),
        }
    }
}

const REQUEST_FIXED: usize = 47;
const RESPONSE_FIXED: usize = 39;

impl FetchRequest {
    /// The frame payload. A topic name longer than [`MAX_TOPIC_LEN`] is cut there (topic names
    /// are validated long before; the leader then answers UNKNOWN_TOPIC_OR_PARTITION).
    pub fn encode(&self) -> Bytes {
        let topic = truncate_utf8(&self.topic, MAX_TOPIC_LEN);
        let mut b = BytesMut::with_capacity(REQUEST_FIXED + topic.len());
        b.put_u8(VERSION);
        b.put_u64(self.replica_id);
        b.put_u64(self.broker_incarnation);
        b.put_i32(self.leader_epoch);
        b.put_i32(self.last_fetched_epoch);
        b.put_u64(self.fetch_offset);
        b.put_u32(self.max_bytes);
        b.put_u32(self.max_wait_ms);
        b.put_u32(self.partition);
        // Fits: at most MAX_TOPIC_LEN (255) bytes.
        b.put_u16(topic.len() as u16);
        b.put_slice(topic.as_bytes());
        b.freeze()
    }

    pub fn decode(frame: &[u8]) -> Result<FetchRequest, FetchDecodeError> {
        let mut r = Reader { buf: frame };
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(FetchDecodeError::Version(version));
        }
        let replica_id = r.u64("replica_id")?;
        let broker_incarnation = r.u64("broker_incarnation")?;
        let leader_epoch = r.i32("leader_epoch")?;
        let last_fetched_epoch = r.i32("last_fetched_epoch")?;
        if last_fetched_epoch < NONE_I32 {
            return Err(FetchDecodeError::OutOfRange {
                field: "last_fetched_epoch",
                value: last_fetched_epoch.into(),
            });
        }
        let fetch_offset = r.u64("fetch_offset")?;
        if fetch_offset > i64::MAX as u64 {
            return Err(FetchDecodeError::OutOfRange {
                field: "fetch_offset",
                value: fetch_offset as i64,
            });
        }
        let max_bytes = r.u32("max_bytes")?;
        let max_wait_ms = r.u32("max_wait_ms")?;
        let partition = r.u32("partition")?;
        let topic_len = usize::from(r.u16("topic_len")?);
        if topic_len > MAX_TOPIC_LEN {
            return Err(FetchDecodeError::OutOfRange {
                field: "topic_len",
                value: topic_len as i64,
            });
        }
        let topic = std::str::from_utf8(r.take("topic", topic_len)?)
            .map_err(|_| FetchDecodeError::TopicNotUtf8)?
            .to_owned();
        r.finish()?;
        Ok(FetchRequest {
            replica_id,
            broker_incarnation,
            leader_epoch,
            last_fetched_epoch,
            fetch_offset,
            max_bytes,
            max_wait_ms,
            partition,
            topic,
        })
    }
}

impl FetchResponse {
    /// The frame payload (the records are copied once, behind the fixed header).
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(RESPONSE_FIXED + self.records.len());
        b.put_u8(VERSION);
        b.put_i16(self.error.code());
        b.put_i32(self.leader_epoch);
        b.put_u64(self.high_watermark);
        b.put_u64(self.log_start_offset);
        match self.diverging {
            Some((epoch, end)) => {
                b.put_i32(epoch);
                b.put_i64(i64::try_from(end).unwrap_or(i64::MAX));
            }
            None => {
                b.put_i32(NONE_I32);
                b.put_i64(-1);
            }
        }
        // A read is bounded by a segment, far below 4 GiB; a larger one is cut to nothing rather
        // than framed wrongly (the follower fetches again).
        let records: &[u8] =
            if u32::try_from(self.records.len()).is_ok() { &self.records } else { &[] };
        b.put_u32(records.len() as u32);
        b.put_slice(records);
        b.freeze()
    }

    /// Decodes `frame`; the records are a slice of it, not a copy.
    pub fn decode(frame: &Bytes) -> Result<FetchResponse, FetchDecodeError> {
        let mut r = Reader { buf: frame };
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(FetchDecodeError::Version(version));
        }
        let error = FetchErrorCode::from_code(r.i16("error_code")?);
        let leader_epoch = r.i32("leader_epoch")?;
        let high_watermark = r.u64("high_watermark")?;
        let log_start_offset = r.u64("log_start_offset")?;
        let div_epoch = r.i32("diverging_epoch")?;
        let div_end = r.i64("diverging_end_offset")?;
        let diverging = match (div_epoch, div_end) {
            (NONE_I32, -1) => None,
            (e, o) if e >= NONE_I32 && o >= 0 => Some((e, o as u64)),
            (_, o) => {
                return Err(FetchDecodeError::OutOfRange { field: "diverging", value: o });
            }
        };
        let records_len = r.u32("records_len")? as usize;
        let start = frame.len() - r.buf.len();
        r.take("records", records_len)?;
        r.finish()?;
        Ok(FetchResponse {
            error,
            leader_epoch,
            high_watermark,
            log_start_offset,
            diverging,
            records: frame.slice(start..start + records_len),
        })
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A cursor that checks every length against what is left.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], FetchDecodeError> {
        if self.buf.len() < n {
            return Err(FetchDecodeError::Truncated { field, need: n, have: self.buf.len() });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FetchDecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(field, N)?);
        Ok(a)
    }
    fn u8(&mut self, f: &'static str) -> Result<u8, FetchDecodeError> {
        Ok(self.array::<1>(f)?[0])
    }
    fn u16(&mut self, f: &'static str) -> Result<u16, FetchDecodeError> {
        Ok(u16::from_be_bytes(self.array(f)?))
    }
    fn i16(&mut self, f: &'static str) -> Result<i16, FetchDecodeError> {
        Ok(i16::from_be_bytes(self.array(f)?))
    }
    fn u32(&mut self, f: &'static str) -> Result<u32, FetchDecodeError> {
        Ok(u32::from_be_bytes(self.array(f)?))
    }
    fn i32(&mut self, f: &'static str) -> Result<i32, FetchDecodeError> {
        Ok(i32::from_be_bytes(self.array(f)?))
    }
    fn u64(&mut self, f: &'static str) -> Result<u64, FetchDecodeError> {
        Ok(u64::from_be_bytes(self.array(f)?))
    }
    fn i64(&mut self, f: &'static str) -> Result<i64, FetchDecodeError> {
        Ok(i64::from_be_bytes(self.array(f)?))
    }
    fn finish(self) -> Result<(), FetchDecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(FetchDecodeError::Trailing(self.buf.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request() -> FetchRequest {
        FetchRequest {
            replica_id: 2,
            broker_incarnation: 17,
            leader_epoch: 4,
            last_fetched_epoch: 3,
            fetch_offset: 1234,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
            partition: 7,
            topic: "orders-é".into(),
        }
    }

    fn response(diverging: Option<(i32, u64)>, records: &[u8]) -> FetchResponse {
        FetchResponse {
            error: FetchErrorCode::None,
            leader_epoch: 4,
            high_watermark: 99,
            log_start_offset: 10,
            diverging,
            records: Bytes::copy_from_slice(records),
        }
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let req = request();
        let frame = req.encode();
        assert_eq!(frame.len(), REQUEST_FIXED + req.topic.len());
        assert_eq!(FetchRequest::decode(&frame).unwrap(), req);
        for resp in [response(None, b"batch bytes"), response(Some((2, 40)), b""), {
            let mut r = FetchResponse::error(FetchErrorCode::FencedLeaderEpoch, 9);
            r.high_watermark = 5;
            r
        }] {
            let frame = resp.encode();
            assert_eq!(FetchResponse::decode(&frame).unwrap(), resp);
        }
        assert_eq!(FetchErrorCode::from_code(1234), FetchErrorCode::Other(1234));
        assert_eq!(FetchErrorCode::from_code(74), FetchErrorCode::FencedLeaderEpoch);
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_an_error() {
        let req = request().encode();
        for n in 0..req.len() {
            assert!(FetchRequest::decode(&req[..n]).is_err(), "request cut at {n}");
        }
        let mut long = req.to_vec();
        long.push(0);
        assert_eq!(FetchRequest::decode(&long), Err(FetchDecodeError::Trailing(1)));

        let resp = response(Some((1, 2)), b"0123456789").encode();
        for n in 0..resp.len() {
            assert!(FetchResponse::decode(&resp.slice(..n)).is_err(), "response cut at {n}");
        }
        let mut long = resp.to_vec();
        long.push(0);
        assert!(FetchResponse::decode(&Bytes::from(long)).is_err());
    }

    #[test]
    fn a_huge_claimed_records_length_is_refused_without_allocating() {
        let mut frame = response(None, b"").encode().to_vec();
        let at = RESPONSE_FIXED - 4;
        frame[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            FetchResponse::decode(&Bytes::from(frame)),
            Err(FetchDecodeError::Truncated { field: "records", .. })
        ));
        let mut frame = request().encode().to_vec();
        frame[0] = 9;
        assert_eq!(FetchRequest::decode(&frame), Err(FetchDecodeError::Version(9)));
    }

    #[test]
    fn a_long_topic_name_is_cut_on_a_char_boundary() {
        let mut req = request();
        req.topic = "é".repeat(200);
        let got = FetchRequest::decode(&req.encode()).unwrap();
        assert!(got.topic.len() <= MAX_TOPIC_LEN && req.topic.starts_with(&got.topic));
    }

    proptest! {
        /// Any bytes at all: decoding returns, never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = FetchRequest::decode(&bytes);
            let _ = FetchResponse::decode(&Bytes::from(bytes));
        }

        /// Any valid frame with one byte flipped: decoding returns (an error or some frame).
        #[test]
        fn corrupted_frames_never_panic(
            hw in any::<u64>(), records in proptest::collection::vec(any::<u8>(), 0..40),
            at in any::<usize>(), bit in 0u8..8,
        ) {
            let mut r = response(None, &records);
            r.high_watermark = hw;
            let mut frame = r.encode().to_vec();
            let i = at % frame.len();
            frame[i] ^= 1 << bit;
            let _ = FetchResponse::decode(&Bytes::from(frame));
            let mut frame = request().encode().to_vec();
            let i = at % frame.len();
            frame[i] ^= 1 << bit;
            let _ = FetchRequest::decode(&frame);
        }
    }
}
