//! The message browser's view of stored records: key, value and headers as text (when they are
//! UTF-8) and as hex, bounded so one huge record cannot blow up a page. Pure conversion; never
//! reads the log itself.

use serde::Serialize;

use crate::batch::RecordView;

/// Bytes of a key, value or header shown per record; the rest is cut and `truncated` is set.
pub(crate) const PREVIEW_BYTES: usize = 4096;
/// Most records one browser request returns.
pub(crate) const MAX_LIMIT: usize = 500;
/// Default records per browser request.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Headers shown per record; the rest are counted in `headers_total` (a record may carry 65,535).
pub(crate) const MAX_HEADERS_SHOWN: usize = 64;
/// About how many bytes of text one page may build; the page ends early past it (after at least
/// one record, so browsing always moves on).
pub(crate) const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Pages built at once; more requests wait their turn (bounded: see `PAGE_WAIT`).
pub(crate) const MAX_CONCURRENT_PAGES: usize = 4;
/// How long a page request waits for its turn before answering 503.
pub(crate) const PAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Some bytes, shown both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BytesView {
    /// Total length of the bytes.
    pub len: usize,
    /// The (previewed) bytes as UTF-8, `None` if they are not valid UTF-8.
    pub text: Option<String>,
    /// The (previewed) bytes as lowercase hex.
    pub hex: String,
    /// True when only the first [`PREVIEW_BYTES`] are shown.
    pub truncated: bool,
}

impl BytesView {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        let shown = &bytes[..bytes.len().min(PREVIEW_BYTES)];
        let text = match std::str::from_utf8(shown) {
            Ok(s) => Some(s.to_owned()),
            // A preview cut inside a multi-byte character is still text: keep the valid prefix.
            Err(e) if shown.len() < bytes.len() && e.error_len().is_none() => {
                Some(String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned())
            }
            Err(_) => None,
        };
        BytesView { len: bytes.len(), text, hex: hex(shown), truncated: shown.len() < bytes.len() }
    }

    /// About the bytes this takes in memory and in the JSON page.
    fn weight(&self) -> usize {
        64 + self.hex.len() + self.text.as_ref().map_or(0, |t| t.len() * 2)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct HeaderView {
    pub key: BytesView,
    pub value: Option<BytesView>,
}

/// One record as the browser shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RecordJson {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub size_bytes: usize,
    pub key: Option<BytesView>,
    /// `None` for a null value (a tombstone).
    pub value: Option<BytesView>,
    /// The first [`MAX_HEADERS_SHOWN`] headers.
    pub headers: Vec<HeaderView>,
    /// How many headers the record has.
    pub headers_total: usize,
}

impl RecordJson {
    pub(crate) fn from_view(r: &RecordView<'_>) -> Self {
        RecordJson {
            offset: r.offset as u64,
            timestamp_ms: r.timestamp,
            size_bytes: r.encoded_len,
            key: r.key.map(BytesView::new),
            value: r.value.map(BytesView::new),
            headers: r
                .headers()
                .take(MAX_HEADERS_SHOWN)
                .map(|h| HeaderView {
                    key: BytesView::new(h.key),
                    value: h.value.map(BytesView::new),
                })
                .collect(),
            headers_total: r.headers().count(),
        }
    }

    /// About the bytes this record takes in memory and in the JSON page.
    pub(crate) fn weight(&self) -> usize {
        128 + self.key.as_ref().map_or(0, BytesView::weight)
            + self.value.as_ref().map_or(0, BytesView::weight)
            + self
                .headers
                .iter()
                .map(|h| h.key.weight() + h.value.as_ref().map_or(0, BytesView::weight))
                .sum::<usize>()
    }
}

/// The `/api/topics/{t}/partitions/{p}/records` document.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecordsPage {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// Where the next page starts (the offset after the last record returned).
    pub next_offset: u64,
    pub records: Vec<RecordJson>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, BatchView, Compression};
    use crate::record::{self, Header, NewRecord};

    /// `rec` alone in a batch at `offset`.
    fn one(rec: &NewRecord<'_>, offset: i64) -> Vec<u8> {
        let mut b = record::build_batch(std::slice::from_ref(rec), Compression::None).unwrap();
        batch::set_base_offset(&mut b, offset).unwrap();
        b
    }

    #[test]
    fn a_record_shows_text_and_hex_of_every_part() {
        let headers = vec![
            Header { key: b"trace".to_vec(), value: Some(vec![0xff, 0x00]) },
            Header { key: b"nil".to_vec(), value: None },
        ];
        let rec = NewRecord {
            timestamp_ms: 1234,
            key: Some(b"k1"),
            value: Some(b"hello"),
            headers: &headers,
        };
        let buf = one(&rec, 7);
        let batch = BatchView::new(&buf).unwrap();
        let view = batch.records().unwrap().next().unwrap().unwrap();
        let j = RecordJson::from_view(&view);
        assert_eq!(j.offset, 7);
        assert_eq!(j.timestamp_ms, 1234);
        assert_eq!(j.size_bytes, buf.len() - batch::HEADER_LEN);
        assert_eq!(j.key.as_ref().unwrap().text.as_deref(), Some("k1"));
        let value = j.value.as_ref().unwrap();
        assert_eq!(value.text.as_deref(), Some("hello"));
        assert_eq!(value.hex, "68656c6c6f");
        assert_eq!(j.headers[0].key.text.as_deref(), Some("trace"));
        let hv = j.headers[0].value.as_ref().unwrap();
        assert_eq!((hv.text.as_deref(), hv.hex.as_str()), (None, "ff00"));
        assert!(j.headers[1].value.is_none());
        assert_eq!(j.headers_total, 2);
    }

    #[test]
    fn a_record_with_many_headers_shows_only_the_first_ones() {
        let headers: Vec<Header> = (0..5000)
            .map(|i| Header { key: format!("h{i}").into_bytes(), value: Some(vec![b'v'; 100]) })
            .collect();
        let rec = NewRecord { timestamp_ms: 1, key: None, value: Some(b"x"), headers: &headers };
        let buf = one(&rec, 0);
        let batch = BatchView::new(&buf).unwrap();
        let view = batch.records().unwrap().next().unwrap().unwrap();
        let j = RecordJson::from_view(&view);
        assert_eq!(j.headers.len(), MAX_HEADERS_SHOWN);
        assert_eq!(j.headers_total, 5000);
        assert_eq!(j.headers[MAX_HEADERS_SHOWN - 1].key.text.as_deref(), Some("h63"));
        // The weight covers what was built, and even a record at every limit fits a page.
        let json = serde_json::to_string(&j).unwrap();
        assert!(j.weight() >= json.len(), "{} < {}", j.weight(), json.len());
        let worst = (2 + 2 * MAX_HEADERS_SHOWN) * (64 + PREVIEW_BYTES * 4) + 128;
        assert!(worst < MAX_PAGE_BYTES);
    }

    #[test]
    fn long_values_are_cut_to_the_preview_and_say_so() {
        let big = "é".repeat(PREVIEW_BYTES); // 2 bytes each: the cut falls on a char boundary
        let v = BytesView::new(big.as_bytes());
        assert!(v.truncated);
        assert_eq!(v.len, PREVIEW_BYTES * 2);
        assert_eq!(v.hex.len(), PREVIEW_BYTES * 2);
        assert_eq!(v.text.as_deref().map(str::len), Some(PREVIEW_BYTES));

        let odd = format!("a{big}"); // now the cut splits a character
        let v = BytesView::new(odd.as_bytes());
        assert_eq!(v.text.as_deref().map(str::len), Some(PREVIEW_BYTES - 1));
    }
}
