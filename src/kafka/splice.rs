//! Encoding a Kafka response whose large byte fields (a Fetch's stored record batches) are
//! referenced, not copied: the response is encoded by `kafka-protocol` as usual into a buffer
//! that, when asked to copy one of the given fields, cuts the buffer there and keeps the field's
//! stored slice as the next part instead. The parts are written to the socket one after the
//! other, the stored slices with `sendfile`, so fetched batches go from the page cache to the
//! socket without a user-space copy. Never decides what a response holds.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::storage::ReadSlice;

/// One part of a response frame.
#[derive(Debug, Clone)]
pub(crate) enum Part {
    Bytes(Bytes),
    /// Stored batches, sent from the segment file.
    Stored(ReadSlice),
}

/// A field to splice in: the `Bytes` the response holds (a view of the slice) and the slice.
pub(crate) type Field = (Bytes, ReadSlice);

/// Fields smaller than this are copied: a part of their own would cost more than the copy.
pub(crate) const SPLICE_MIN_BYTES: usize = 4096;

/// A response being encoded: the parts cut so far, the part being filled, and the fields to
/// splice in, in the order the encoder reaches them.
pub(crate) struct SplicingBuf {
    parts: Vec<Part>,
    cur: BytesMut,
    splice: Vec<Field>,
    next: usize,
    /// Bytes in `parts`.
    done: usize,
}

impl SplicingBuf {
    /// A buffer that splices in `fields` (each at least [`SPLICE_MIN_BYTES`]; smaller ones are
    /// dropped from the list and copied) when the encoder copies exactly their bytes.
    pub(crate) fn new(capacity: usize, fields: Vec<Field>) -> Self {
        let splice = fields.into_iter().filter(|(b, _)| b.len() >= SPLICE_MIN_BYTES).collect();
        SplicingBuf {
            parts: Vec::new(),
            cur: BytesMut::with_capacity(capacity),
            splice,
            next: 0,
            done: 0,
        }
    }

    /// The encoded response, in parts to write back to back.
    pub(crate) fn into_parts(mut self) -> Vec<Part> {
        if !self.cur.is_empty() {
            self.parts.push(Part::Bytes(self.cur.freeze()));
        }
        self.parts
    }
}

// SAFETY: every method delegates to `cur`, a `BytesMut`, whose own `BufMut` implementation
// upholds the contract; `put_slice` only adds whole parts besides it.
unsafe impl BufMut for SplicingBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialized `cnt` bytes of `chunk_mut`, which is `cur`'s.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some((field, slice)) = self.splice.get(self.next)
            && src.as_ptr() == field.as_ptr()
            && src.len() == field.len()
        {
            let slice = slice.clone();
            self.next += 1;
            if !self.cur.is_empty() {
                let head = self.cur.split().freeze();
                self.done += head.len();
                self.parts.push(Part::Bytes(head));
            }
            self.done += slice.len();
            self.parts.push(Part::Stored(slice));
            return;
        }
        self.cur.extend_from_slice(src);
    }
}

// Response messages never seek back (no gaps: those are for record batches, which the broker
// never encodes), so offsets only grow; they are counted across the parts.
impl ByteBufMut for SplicingBuf {
    fn offset(&self) -> usize {
        self.done + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        let rel = offset.saturating_sub(self.done);
        self.cur.resize(rel.max(self.cur.len()), 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.done).min(self.cur.len());
        let end = r.end.saturating_sub(self.done).clamp(start, self.cur.len());
        &mut self.cur[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Compression;
    use crate::kafka::codec;
    use crate::record::{self, NewRecord};
    use crate::storage::{FsyncPolicy, Log, LogConfig};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    /// A Fetch response of one topic, named as version `v` names it: by ID from v13.
    fn response(records: &[Option<Bytes>], v: i16) -> FetchResponse {
        let parts = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(100 + i as i64)
                    .with_records(r.clone())
            })
            .collect();
        let topic = FetchableTopicResponse::default().with_partitions(parts);
        let topic = if v >= 13 {
            topic.with_topic_id(uuid::Uuid::from_bytes([7; 16]))
        } else {
            topic.with_topic(TopicName(StrBytes::from_static_str("orders")))
        };
        FetchResponse::default().with_responses(vec![topic])
    }

    #[test]
    fn spliced_parts_are_the_same_bytes_with_large_batches_sent_from_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig { fsync: FsyncPolicy::Never, ..LogConfig::default() };
        let log = Log::open(dir.path(), config).unwrap();
        for size in [10_000, 20, 5_000] {
            let v = vec![7u8; size];
            let mut b = record::build_batch(&[NewRecord::value(&v)], Compression::None).unwrap();
            log.append_batches(&mut b).unwrap();
        }
        let slices: Vec<_> = (0..3).map(|o| log.read(o, 1).unwrap()).collect();
        let fields: Vec<Field> =
            slices.iter().map(|s| (Bytes::from_owner(s.clone()), s.clone())).collect();
        let records: Vec<_> = vec![
            Some(fields[0].0.clone()),
            None,
            Some(fields[1].0.clone()),
            Some(fields[2].0.clone()),
        ];
        // Every Fetch version we serve (its encoding changes at v12 and v13).
        let (min, max) = codec::supported_range(ApiKey::Fetch).expect("Fetch is served");
        for v in min..=max {
            let body = response(&records, v);
            let whole = codec::encode_response(ApiKey::Fetch, v, 42, &body).unwrap();
            let parts = codec::encode_response_spliced(ApiKey::Fetch, v, 42, &body, fields.clone())
                .unwrap();
            let bytes: Vec<u8> = parts
                .iter()
                .flat_map(|p| match p {
                    Part::Bytes(b) => b.to_vec(),
                    Part::Stored(r) => r.bytes().to_vec(),
                })
                .collect();
            assert_eq!(bytes, whole.to_vec(), "v{v}");
            // The two large batches are parts of their own, sent from the segment; the small one
            // is copied with the fields around it.
            let stored: Vec<usize> = parts
                .iter()
                .filter_map(|p| match p {
                    Part::Stored(r) => Some(r.len()),
                    Part::Bytes(_) => None,
                })
                .collect();
            assert_eq!(stored, [slices[0].len(), slices[2].len()], "v{v}");
        }
    }
}
