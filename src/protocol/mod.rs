//! The native wire format: frames, requests and responses, pure encode/decode on buffers (no I/O),
//! so it can be fuzzed and unit-tested without sockets.
//!
//! CONTRACT (fixed: the server and the client are written against exactly this surface):
//! - A frame is a `u32` little-endian length of the body, then the body. `MAX_FRAME_BYTES` default
//!   64 MiB, checked before anything is allocated. Request body: `u32` correlation id, `u8` api key,
//!   then the request's fields. Response body: `u32` correlation id, `u8` status (0 = ok, else an
//!   `ErrorCode`), then the response fields or an error message (`u16` length + UTF-8).
//!   Strings: `u16` length + UTF-8; bytes: `u32` length + bytes; options: `u8` 0/1 tag.
//! - Responses on one connection go out in request order (pipelining is allowed).
//! ```ignore
//! pub enum Request {
//!   Authenticate { token: String },                                     // issue 6; ok if no token configured
//!   CreateTopic { name: String, partitions: u32, if_not_exists: bool },
//!   DeleteTopic { name: String },
//!   Trim { topic: String, partition: u32, before: u64 },
//!   Append { topic: String, partition: Option<u32>, key_hint: Option<Bytes>, records: Bytes }, // records: crate::record format, offsets ignored
//!   Fetch { topic: String, partition: u32, offset: u64, max_bytes: u32, max_wait_ms: u32 },
//!   Describe { topic: Option<String> },
//!   ListTopics,
//!   CommitOffset { group: String, topic: String, partition: u32, offset: u64 },
//!   FetchOffset { group: String, topic: String, partition: u32 },
//! }
//! pub enum Response {
//!   Ok,
//!   TopicCreated { description: TopicDescription },
//!   Appended { partition: u32, first_offset: u64, next_offset: u64 },
//!   Fetched { partition: u32, log_start_offset: u64, high_watermark: u64, records: Bytes }, // records as stored
//!   Described { topics: Vec<TopicDescription> },
//!   Topics { names: Vec<String> },
//!   Trimmed { log_start_offset: u64 },
//!   Offset { offset: Option<u64> },
//!   Error { code: ErrorCode, message: String },
//! }
//! pub enum ErrorCode { InvalidRequest=1, FrameTooLarge=2, UnknownTopic=3, TopicAlreadyExists=4,
//!   InvalidTopicName=5, UnknownPartition=6, OffsetOutOfRange=7, RecordTooLarge=8, InvalidRecord=9,
//!   Storage=10, Unauthorized=11, LimitExceeded=12, InvalidGroupName=13, Internal=14 }
//! pub fn encode_request(buf: &mut BytesMut, correlation_id: u32, req: &Request);
//! pub fn decode_request(body: &[u8]) -> Result<(u32, Request), ProtocolError>;
//! pub fn encode_response(buf: &mut BytesMut, correlation_id: u32, resp: &Response);
//! /// The head of a Fetched response, written before the stored record bytes (vectored write, no copy).
//! pub fn encode_fetched_head(buf: &mut BytesMut, correlation_id: u32, partition: u32,
//!                            log_start_offset: u64, high_watermark: u64, records_len: u32);
//! pub fn decode_response(body: &[u8]) -> Result<(u32, Response), ProtocolError>;
//! pub fn frame_len(prefix: [u8; 4], max_frame_bytes: u32) -> Result<usize, ProtocolError>;
//! ```
//! `TopicDescription { name: String, partitions: Vec<PartitionDescription> }` and
//! `PartitionDescription { partition: u32, log_start_offset: u64, next_offset: u64, segments: u64, size_bytes: u64 }`
//! are defined in `crate::broker` (serde Serialize/Deserialize) and re-used here.
