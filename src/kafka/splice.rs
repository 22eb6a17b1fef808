//! Encoding a Kafka response whose large byte fields (a Fetch's stored record batches) are
//! referenced, not copied: the response is encoded by `kafka-protocol` as usual into a buffer
//! that, when asked to copy one of the given fields, cuts the buffer there and keeps the field's
//! own `Bytes` (a slice of the segment's memory map) as the next part instead. The parts are
//! written to the socket one after the other, so fetched batches go from the page cache to the
//! socket without passing through a user-space copy. Never decides what a response holds.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Fields smaller than this are copied: a part of their own would cost more than the copy.
pub(crate) const SPLICE_MIN_BYTES: usize = 4096;

/// A response being encoded: the parts cut so far, the part being filled, and the fields to
/// splice in, in the order the encoder reaches them.
pub(crate) struct SplicingBuf {
    parts: Vec<Bytes>,
    cur: BytesMut,
    splice: Vec<Bytes>,
    next: usize,
    /// Bytes in `parts`.
    done: usize,
}

impl SplicingBuf {
    /// A buffer that splices in `fields` (each at least [`SPLICE_MIN_BYTES`]; smaller ones are
    /// dropped from the list and copied) when the encoder copies exactly their bytes.
    pub(crate) fn new(capacity: usize, fields: Vec<Bytes>) -> Self {
        let splice = fields.into_iter().filter(|b| b.len() >= SPLICE_MIN_BYTES).collect();
        SplicingBuf {
            parts: Vec::new(),
            cur: BytesMut::with_capacity(capacity),
            splice,
            next: 0,
            done: 0,
        }
    }

    /// The encoded response, in parts to write back to back.
    pub(crate) fn into_parts(mut self) -> Vec<Bytes> {
        if !self.cur.is_empty() {
            self.parts.push(self.cur.freeze());
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
        if let Some(field) = self.splice.get(self.next)
            && src.as_ptr() == field.as_ptr()
            && src.len() == field.len()
        {
            let field = field.clone();
            self.next += 1;
            if !self.cur.is_empty() {
                let head = self.cur.split().freeze();
                self.done += head.len();
                self.parts.push(head);
            }
            self.done += field.len();
            self.parts.push(field);
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
    use crate::kafka::codec;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response(records: &[Option<Bytes>]) -> FetchResponse {
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
        FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(parts),
        ])
    }

    #[test]
    fn spliced_parts_are_the_same_bytes_with_large_batches_referenced_not_copied() {
        let big = Bytes::from(vec![7u8; 10_000]);
        let other = Bytes::from(vec![9u8; 5_000]);
        let small = Bytes::from_static(b"small batch");
        let records = [Some(big.clone()), None, Some(small.clone()), Some(other.clone())];
        let body = response(&records);
        for v in 4..=12 {
            let whole = codec::encode_response(ApiKey::Fetch, v, 42, &body).unwrap();
            let fields = records.iter().flatten().cloned().collect();
            let parts =
                codec::encode_response_spliced(ApiKey::Fetch, v, 42, &body, fields).unwrap();
            assert_eq!(parts.concat(), whole.to_vec(), "v{v}");
            // The two large batches are parts of their own, pointing at the caller's memory.
            let referenced: Vec<_> = parts.iter().map(|p| p.as_ptr()).collect();
            assert!(referenced.contains(&big.as_ptr()) && referenced.contains(&other.as_ptr()));
            assert!(!referenced.contains(&small.as_ptr()), "small ones are copied");
            // Head, big, the fields between, other; from v12 (flexible) tagged fields follow.
            assert_eq!(parts.len(), if v >= 12 { 5 } else { 4 }, "v{v}");
        }
    }
}
