//! `minikafka log dump|verify`: reads segment files of format version 2 (the 24-byte segment
//! header, then RecordBatch v2 bytes back to back) straight from disk, like Kafka's
//! `kafka-dump-log`, and reports what it finds with file and byte position.
//!
//! Never writes anything and never takes the data directory's lock, so it is safe beside a running
//! broker: files are opened read-only and read with positional reads in bounded chunks (never a
//! whole file; never a memory map either, because the broker cuts the active segment's file back
//! to its data when it seals or closes it, and touching a mapped page past the new end would kill
//! this process with SIGBUS).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::CliError;
use crate::batch::{
    self, BATCH_LENGTH_POS, BatchError, BatchView, CRC_POS, HEADER_LEN, LOG_OVERHEAD, Limits,
    MIN_BATCH_LENGTH, TimestampType,
};

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print a segment file's header and batches (with --records, every record), like Kafka's
    /// kafka-dump-log. Exit code 1 if the file is damaged.
    Dump {
        /// The segment file, `{base_offset:020}.log` in a partition directory.
        segment_file: PathBuf,
        /// Also print every record: offset, timestamp, key, value and headers.
        #[arg(long)]
        records: bool,
        /// Print one JSON object per line (segment, each batch, end) instead of text.
        #[arg(long)]
        json: bool,
        /// Keys, values and header values longer than this many bytes are cut (the full
        /// length is shown).
        #[arg(long, value_name = "BYTES", default_value_t = 256)]
        max_value_bytes: usize,
    },
    /// Check every segment of a data directory: headers, every batch (CRC-32C, records,
    /// decompression), offsets within and across segments, and nothing but zeros after the data.
    /// Read-only and safe while a broker runs. Exit code 1 if any damage is found.
    Verify {
        /// The broker's data directory.
        data_dir: PathBuf,
        /// Check only this topic.
        #[arg(long, value_name = "T")]
        topic: Option<String>,
    },
}

/// Runs `minikafka log ...`. The work is blocking file I/O, run off the async workers.
pub async fn run(args: LogArgs) -> Result<(), CliError> {
    tokio::task::spawn_blocking(move || match args.command {
        LogCommand::Dump { segment_file, records, json, max_value_bytes } => {
            let opts = DumpOptions { records, json, max_value_bytes };
            dump(&segment_file, &opts)
        }
        LogCommand::Verify { data_dir, topic } => verify(&data_dir, topic.as_deref()),
    })
    .await
    .map_err(|e| CliError::Usage(format!("log command failed: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Segment files
// ---------------------------------------------------------------------------------------------

/// Magic at the head of a segment file.
const SEGMENT_MAGIC: [u8; 4] = *b"MKLG";
/// The segment format this tool reads: RecordBatch v2 after the header.
const FORMAT_VERSION: u16 = 2;
/// The format before RecordBatch v2 (minikafka's own records), converted by the broker at open.
const OLD_FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header; the first batch starts here.
const SEGMENT_HEADER_LEN: usize = 24;
/// Suffix of segment files.
const LOG_SUFFIX: &str = ".log";
/// Bytes read from a file at a time (a batch larger than this is read whole).
const CHUNK: usize = 1 << 20;
/// What `minikafka log` says of a file in the format before RecordBatch v2.
const OLD_FORMAT_MESSAGE: &str =
    "format version 1: open the data directory with the broker once to upgrade it";

/// The header of a segment file, as decoded (checked by [`SegmentHeader::problems`]).
///
/// | position | size | field         | encoding                                              |
/// |----------|------|---------------|-------------------------------------------------------|
/// | 0        | 4    | `magic`       | the bytes `MKLG`                                      |
/// | 4        | 2    | `version`     | `u16` LE: 2 (RecordBatch v2); 1 is the old format     |
/// | 6        | 2    | reserved      | zero                                                  |
/// | 8        | 8    | `base_offset` | `u64` LE: offset of the first batch (also the name)   |
/// | 16       | 4    | `header_crc`  | `u32` LE: CRC-32 (IEEE, `crc32fast`) of bytes `0..16` |
/// | 20       | 4    | reserved      | zero                                                  |
/// | 24       | ...  | batches       | RecordBatch v2, back to back (see `crate::batch`)     |
#[derive(Debug, Clone, Copy)]
struct SegmentHeader {
    magic: [u8; 4],
    version: u16,
    reserved1: u16,
    base_offset: u64,
    header_crc: u32,
    reserved2: u32,
    /// The CRC-32 of bytes `0..16` matches `header_crc`.
    crc_ok: bool,
}

impl SegmentHeader {
    fn parse(b: &[u8; SEGMENT_HEADER_LEN]) -> SegmentHeader {
        let u16_at = |p: usize| u16::from_le_bytes([b[p], b[p + 1]]);
        let u32_at = |p: usize| u32::from_le_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
        let mut base = [0u8; 8];
        base.copy_from_slice(&b[8..16]);
        let header_crc = u32_at(16);
        SegmentHeader {
            magic: [b[0], b[1], b[2], b[3]],
            version: u16_at(4),
            reserved1: u16_at(6),
            base_offset: u64::from_le_bytes(base),
            header_crc,
            reserved2: u32_at(20),
            crc_ok: crc32fast::hash(&b[..16]) == header_crc,
        }
    }

    fn magic_text(&self) -> String {
        if self.magic.iter().all(|b| b.is_ascii_graphic()) {
            String::from_utf8_lossy(&self.magic).into_owned()
        } else {
            format!("0x{}", hex(&self.magic))
        }
    }

    /// Why batches cannot be read after this header at all (wrong magic or version).
    fn unreadable(&self) -> Option<String> {
        if self.magic != SEGMENT_MAGIC {
            Some(format!("bad segment magic {} (expected MKLG)", self.magic_text()))
        } else if self.version == OLD_FORMAT_VERSION {
            Some(OLD_FORMAT_MESSAGE.to_string())
        } else if self.version != FORMAT_VERSION {
            Some(format!("unknown segment format version {}", self.version))
        } else {
            None
        }
    }

    /// Damage in a readable header: CRC, reserved bytes, base offset against the file name.
    fn problems(&self, name_base: Option<u64>) -> Vec<String> {
        let mut p = Vec::new();
        if !self.crc_ok {
            p.push(format!(
                "segment header CRC mismatch: stored {:#010x}, computed over bytes 0..16 differs",
                self.header_crc
            ));
        }
        if self.reserved1 != 0 || self.reserved2 != 0 {
            p.push("segment header reserved bytes are not zero".to_string());
        }
        if let Some(n) = name_base
            && n != self.base_offset
        {
            p.push(format!(
                "segment header says base offset {} but the file name says {n}",
                self.base_offset
            ));
        }
        p
    }
}

/// The base offset a file name `{base_offset:020}.log` stands for.
fn base_from_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(LOG_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A read-only file read through one reusable buffer of at least [`CHUNK`] bytes.
struct ChunkReader {
    file: File,
    /// The file's length when opened (a running broker may change it; reads past the real end
    /// come back short and are handled as such).
    len: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
}

impl ChunkReader {
    fn open(path: &Path) -> io::Result<ChunkReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(ChunkReader { file, len, buf: Vec::new(), buf_start: 0 })
    }

    /// Up to `n` bytes at `pos`: fewer only where the file ends.
    fn bytes(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let cached =
            pos >= self.buf_start && pos + n as u64 <= self.buf_start + self.buf.len() as u64;
        if !cached {
            // At least `n` (the file may have grown since it was opened), up to a chunk ahead.
            let ahead = self.len.saturating_sub(pos).min(CHUNK as u64) as usize;
            self.buf.resize(n.max(ahead), 0);
            let mut got = 0;
            while got < self.buf.len() {
                match self.file.read_at(&mut self.buf[got..], pos + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(got);
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        let to = (from + n).min(self.buf.len());
        Ok(&self.buf[from.min(to)..to])
    }

    /// Forgets the buffered bytes and the length: a broker may have written since.
    fn refresh(&mut self) -> io::Result<()> {
        self.buf.clear();
        self.len = self.file.metadata()?.len();
        Ok(())
    }

    /// The first byte at or after `pos` (below the file's length) that is not zero, if any.
    /// Skips holes with SEEK_DATA/SEEK_HOLE: the active segment is a sparse file grown far
    /// past its data.
    fn first_nonzero(&self, pos: u64) -> io::Result<Option<u64>> {
        let mut at = pos;
        let mut chunk = vec![0u8; CHUNK];
        while at < self.len {
            let (data, hole) = match data_extent(&self.file, at) {
                Ok(Some(extent)) => extent,
                Ok(None) => return Ok(None),
                // No SEEK_DATA on this file system: read everything.
                Err(_) => (at, self.len),
            };
            let end = hole.min(self.len);
            let mut p = data.max(at);
            while p < end {
                let n = ((end - p) as usize).min(CHUNK);
                let got = read_full_at(&self.file, &mut chunk[..n], p)?;
                if let Some(i) = chunk[..got].iter().position(|&b| b != 0) {
                    return Ok(Some(p + i as u64));
                }
                if got < n {
                    return Ok(None); // the file was cut while read
                }
                p += n as u64;
            }
            at = end;
        }
        Ok(None)
    }
}

fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The next extent of data at or after `pos` as (start, end), `None` if only holes follow.
fn data_extent(file: &File, pos: u64) -> io::Result<Option<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let data = match seek(file, SeekFrom::Data(pos)) {
        Ok(d) => d,
        Err(rustix::io::Errno::NXIO) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let hole = seek(file, SeekFrom::Hole(data))?;
    Ok(Some((data, hole)))
}

/// What is at a batch start.
enum Step {
    /// `len` bytes whose `batchLength` fits the file, now buffered in the reader. Nothing else
    /// is checked yet (not even the magic).
    Batch { len: usize },
    /// A zero `batchLength`, or only zero bytes left: the end of the data.
    EndOfData,
    /// The file ends exactly here.
    EndOfFile,
    /// Bytes that cannot start a batch, or a batch that the file ends inside.
    Broken { reason: String, cut_short: bool },
}

/// Looks at the batch start `pos` (after the header).
fn step(reader: &mut ChunkReader, pos: u64) -> io::Result<Step> {
    if pos >= reader.len {
        return Ok(Step::EndOfFile);
    }
    let head = reader.bytes(pos, LOG_OVERHEAD)?;
    if head.len() < LOG_OVERHEAD {
        if head.iter().all(|&b| b == 0) {
            return Ok(Step::EndOfData);
        }
        return Ok(Step::Broken {
            reason: format!(
                "batch truncated: {} bytes left, a batch needs at least {}",
                head.len(),
                LOG_OVERHEAD + MIN_BATCH_LENGTH
            ),
            cut_short: true,
        });
    }
    let mut l = [0u8; 4];
    l.copy_from_slice(&head[BATCH_LENGTH_POS..BATCH_LENGTH_POS + 4]);
    let batch_length = i32::from_be_bytes(l);
    if batch_length == 0 {
        return Ok(Step::EndOfData);
    }
    if batch_length < MIN_BATCH_LENGTH as i32 {
        return Ok(Step::Broken {
            reason: format!(
                "batchLength {batch_length} is below the {MIN_BATCH_LENGTH} bytes of a batch header"
            ),
            cut_short: false,
        });
    }
    let len = LOG_OVERHEAD + batch_length as usize;
    let available = reader.len - pos;
    if len as u64 > available {
        return Ok(Step::Broken {
            reason: format!(
                "batch truncated: batchLength says {len} bytes, the file holds {available}"
            ),
            cut_short: true,
        });
    }
    let got = reader.bytes(pos, len)?.len();
    if got < len {
        return Ok(Step::Broken {
            reason: format!("batch truncated: batchLength says {len} bytes, read {got}"),
            cut_short: true,
        });
    }
    Ok(Step::Batch { len })
}

/// Whether a batch that failed to validate looks like a write still in progress (or torn by a
/// crash): its bytes end in zeros that run on to the end of the file, and with its CRC-32C put
/// right it still does not decode (so it is missing bytes, not holding a changed one).
fn looks_unfinished(bytes: &[u8], zeros_follow: bool, scratch: &mut Vec<u8>) -> bool {
    if !zeros_follow || bytes.last() != Some(&0) || bytes.len() < HEADER_LEN {
        return false;
    }
    let mut fixed = bytes.to_vec();
    let crc = crc32c::crc32c(&fixed[batch::ATTRIBUTES_POS..]);
    fixed[CRC_POS..batch::ATTRIBUTES_POS].copy_from_slice(&crc.to_be_bytes());
    batch::validate_with(&fixed, &Limits::default(), scratch).is_err()
}

// ---------------------------------------------------------------------------------------------
// dump
// ---------------------------------------------------------------------------------------------

struct DumpOptions {
    records: bool,
    json: bool,
    max_value_bytes: usize,
}

/// Bytes as lowercase hex.
fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        // Writing to a String cannot fail.
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Bytes for people: printable UTF-8 quoted, anything else as 0x-hex; cut past `max`.
fn show_bytes(b: Option<&[u8]>, max: usize) -> String {
    let Some(b) = b else { return "null".to_string() };
    let shown = &b[..b.len().min(max)];
    let mut s = match std::str::from_utf8(shown) {
        Ok(t) if !t.chars().any(char::is_control) => format!("{t:?}"),
        // A cut may split a character: show the valid prefix when the rest is whole text.
        Err(e)
            if shown.len() < b.len()
                && e.error_len().is_none()
                && std::str::from_utf8(&b[..e.valid_up_to()])
                    .is_ok_and(|t| !t.chars().any(char::is_control))
                && std::str::from_utf8(b).is_ok_and(|t| !t.chars().any(char::is_control)) =>
        {
            // Invariant: valid_up_to() marks a valid UTF-8 prefix.
            let t = std::str::from_utf8(&shown[..e.valid_up_to()]).unwrap_or("");
            format!("{t:?}")
        }
        _ => format!("0x{}", hex(shown)),
    };
    if shown.len() < b.len() {
        let _ = write!(s, "... (cut, {} bytes in all)", b.len());
    }
    s
}

/// Bytes for JSON: a string for UTF-8, else `{"hex": ...}`; cut past `max`.
fn json_bytes(b: Option<&[u8]>, max: usize) -> Value {
    let Some(b) = b else { return Value::Null };
    let shown = &b[..b.len().min(max)];
    match std::str::from_utf8(b) {
        Ok(_) => match std::str::from_utf8(shown) {
            Ok(t) => Value::String(t.to_string()),
            Err(e) => Value::String(String::from_utf8_lossy(&shown[..e.valid_up_to()]).into()),
        },
        Err(_) => json!({ "hex": hex(shown) }),
    }
}

fn timestamp_type_name(t: TimestampType) -> &'static str {
    match t {
        TimestampType::CreateTime => "CreateTime",
        TimestampType::LogAppendTime => "LogAppendTime",
    }
}

/// Prints a segment file; `Err` (exit code 1) if it is damaged or in the old format.
fn dump(path: &Path, opts: &DumpOptions) -> Result<(), CliError> {
    let io_err =
        |what: &str, source| CliError::Io { what: format!("{what} {}", path.display()), source };
    let mut reader = ChunkReader::open(path).map_err(|e| io_err("opening", e))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let damaged = dump_into(path, &mut reader, opts, &mut out)?;
    out.flush().map_err(CliError::stdout)?;
    match damaged {
        None => Ok(()),
        Some(reason) => Err(CliError::Damaged(format!("{}: {reason}", path.display()))),
    }
}

/// Writes the dump; returns the first damage found, if any.
fn dump_into(
    path: &Path,
    reader: &mut ChunkReader,
    opts: &DumpOptions,
    out: &mut impl Write,
) -> Result<Option<String>, CliError> {
    let io_err = |source| CliError::Io { what: format!("reading {}", path.display()), source };
    let w = CliError::stdout;
    let head = reader.bytes(0, SEGMENT_HEADER_LEN).map_err(io_err)?;
    let Ok(head) = <[u8; SEGMENT_HEADER_LEN]>::try_from(head) else {
        let reason = format!(
            "{} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header",
            head.len()
        );
        return Err(CliError::Damaged(format!("{}: {reason}", path.display())));
    };
    let header = SegmentHeader::parse(&head);
    if opts.json {
        let v = json!({
            "type": "segment",
            "path": path.display().to_string(),
            "magic": header.magic_text(),
            "version": header.version,
            "base_offset": header.base_offset,
            "header_crc_ok": header.crc_ok,
            "file_bytes": reader.len,
        });
        writeln!(out, "{v}").map_err(w)?;
    } else {
        writeln!(out, "segment {}: {} bytes", path.display(), reader.len).map_err(w)?;
        writeln!(
            out,
            "header: magic {}, format version {}, base offset {}, header CRC {}",
            header.magic_text(),
            header.version,
            header.base_offset,
            if header.crc_ok { "ok" } else { "bad" }
        )
        .map_err(w)?;
    }
    if let Some(reason) = header.unreadable() {
        return Err(CliError::Damaged(format!("{}: {reason}", path.display())));
    }
    let mut damage: Option<String> = None;
    for d in header.problems(base_from_name(path)) {
        dump_note(out, opts.json, "damage", 0, &d)?;
        damage.get_or_insert(d);
    }

    let mut pos = SEGMENT_HEADER_LEN as u64;
    let mut scratch = Vec::new();
    let mut expected: Option<i64> = None;
    loop {
        match step(reader, pos).map_err(io_err)? {
            Step::EndOfFile => {
                dump_note(out, opts.json, "end", pos, "end of file")?;
                break;
            }
            Step::EndOfData => {
                dump_note(out, opts.json, "end", pos, "end of data")?;
                if let Some(q) = reader.first_nonzero(pos).map_err(io_err)? {
                    let reason = format!("non-zero bytes after the end of data at position {q}");
                    dump_note(out, opts.json, "damage", q, &reason)?;
                    damage.get_or_insert(reason);
                }
                break;
            }
            Step::Broken { reason, .. } => {
                dump_note(out, opts.json, "damage", pos, &reason)?;
                damage.get_or_insert(format!("at position {pos}: {reason}"));
                break;
            }
            Step::Batch { len } => {
                let bytes = reader.bytes(pos, len).map_err(io_err)?;
                let problem = dump_batch(bytes, pos, expected, opts, &mut scratch, out)?;
                if let Some(p) = problem {
                    damage.get_or_insert(format!("at position {pos}: {p}"));
                }
                match BatchView::new(bytes) {
                    Ok(v) => expected = Some(v.last_offset().wrapping_add(1)),
                    // Not a batch header (bad magic): its length cannot be trusted to find
                    // the next one.
                    Err(_) => break,
                }
                pos += len as u64;
            }
        }
    }
    Ok(damage)
}

fn dump_note(
    out: &mut impl Write,
    json: bool,
    kind: &str,
    position: u64,
    text: &str,
) -> Result<(), CliError> {
    let r = if json {
        writeln!(out, "{}", json!({ "type": kind, "position": position, "reason": text }))
    } else if kind == "end" {
        writeln!(out, "{text} at position {position}")
    } else {
        writeln!(out, "{kind} at position {position}: {text}")
    };
    r.map_err(CliError::stdout)
}

/// Prints one batch (and its records); returns what is wrong with it, if anything.
fn dump_batch(
    bytes: &[u8],
    pos: u64,
    expected: Option<i64>,
    opts: &DumpOptions,
    scratch: &mut Vec<u8>,
    out: &mut impl Write,
) -> Result<Option<String>, CliError> {
    let w = CliError::stdout;
    let view = match BatchView::new(bytes) {
        Ok(v) => v,
        Err(e) => {
            dump_note(out, opts.json, "damage", pos, &e.to_string())?;
            return Ok(Some(e.to_string()));
        }
    };
    let crc_ok = view.verify_crc().is_ok();
    let mut problem =
        batch::validate_with(bytes, &Limits::default(), scratch).err().map(|e| e.to_string());
    if problem.is_none()
        && let Some(x) = expected
        && x != view.base_offset()
    {
        problem = Some(offset_break(view.base_offset(), x, "previous batch"));
    }
    let compression = view
        .compression()
        .map_or_else(|_| format!("unknown ({})", view.attributes() & 7), |c| c.to_string());
    let records = if opts.records { Some(records_of(&view, opts, scratch)) } else { None };
    if opts.json {
        let mut v = json!({
            "type": "batch",
            "position": pos,
            "base_offset": view.base_offset(),
            "last_offset": view.last_offset(),
            "record_count": view.records_count(),
            "batch_bytes": view.len(),
            "compression": compression,
            "timestamp_type": timestamp_type_name(view.timestamp_type()),
            "base_timestamp": view.base_timestamp(),
            "max_timestamp": view.max_timestamp(),
            "producer_id": view.producer_id(),
            "producer_epoch": view.producer_epoch(),
            "base_sequence": view.base_sequence(),
            "partition_leader_epoch": view.partition_leader_epoch(),
            "transactional": view.is_transactional(),
            "control": view.is_control(),
            "crc": format!("{:#010x}", view.crc()),
            "crc_ok": crc_ok,
            "error": problem,
        });
        if let Some((recs, _)) = &records {
            v["records"] = Value::Array(recs.iter().map(|r| r.json.clone()).collect());
        }
        writeln!(out, "{v}").map_err(w)?;
    } else {
        writeln!(
            out,
            "batch at position {pos}: base offset {}, last offset {}, {} records, {} bytes, \
             compression {compression}, {}, base timestamp {}, max timestamp {}, producer id {}, \
             producer epoch {}, base sequence {}, partition leader epoch {}, transactional {}, \
             control {}, CRC {:#010x} {}",
            view.base_offset(),
            view.last_offset(),
            view.records_count(),
            view.len(),
            timestamp_type_name(view.timestamp_type()),
            view.base_timestamp(),
            view.max_timestamp(),
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
            view.partition_leader_epoch(),
            view.is_transactional(),
            view.is_control(),
            view.crc(),
            if crc_ok { "ok" } else { "bad" },
        )
        .map_err(w)?;
        if let Some((recs, _)) = &records {
            for r in recs {
                writeln!(out, "  {}", r.text).map_err(w)?;
            }
        }
        if let Some(p) = &problem {
            writeln!(out, "damage at position {pos}: {p}").map_err(w)?;
        }
    }
    // A records error the validation missed cannot happen (it reads the same records), but it
    // is reported rather than trusted.
    if problem.is_none()
        && let Some((_, Some(e))) = records
    {
        problem = Some(e);
    }
    Ok(problem)
}

/// A printed record: text line and JSON object.
struct ShownRecord {
    text: String,
    json: Value,
}

/// The records of a batch as far as they decode, and the error that stopped them, if any.
fn records_of(
    view: &BatchView<'_>,
    opts: &DumpOptions,
    scratch: &mut Vec<u8>,
) -> (Vec<ShownRecord>, Option<String>) {
    let max = opts.max_value_bytes;
    let records = match view.decoded_records(scratch) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut shown = Vec::new();
    for r in records {
        let r = match r {
            Ok(r) => r,
            Err(e) => return (shown, Some(e.to_string())),
        };
        let headers: Vec<String> = r
            .headers()
            .map(|h| format!("{}={}", show_bytes(Some(h.key), max), show_bytes(h.value, max)))
            .collect();
        let text = format!(
            "offset {}: timestamp {}, key {}, value {}, headers [{}]",
            r.offset,
            r.timestamp,
            show_bytes(r.key, max),
            show_bytes(r.value, max),
            headers.join(", ")
        );
        let json = json!({
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": json_bytes(r.key, max),
            "key_size": r.key.map(<[u8]>::len),
            "value": json_bytes(r.value, max),
            "value_size": r.value.map(<[u8]>::len),
            "headers": r.headers().map(|h| json!([json_bytes(Some(h.key), max), json_bytes(h.value, max)])).collect::<Vec<_>>(),
        });
        shown.push(ShownRecord { text, json });
    }
    (shown, None)
}

/// Why a batch or segment starting at `found` does not follow one that ends before `expected`.
fn offset_break(found: i64, expected: i64, previous: &str) -> String {
    if found < expected {
        format!(
            "offsets overlap: base offset {found}, but the {previous} already reaches offset {}",
            expected.wrapping_sub(1)
        )
    } else {
        format!(
            "offset gap: base offset {found}, but the {previous} ends at offset {} \
             (offsets {expected}..{found} are missing)",
            expected.wrapping_sub(1),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------

/// What `verify` found in total.
#[derive(Debug, Default)]
struct Totals {
    topics: u64,
    partitions: u64,
    segments: u64,
    batches: u64,
    records: u64,
    /// Bytes of the batches checked.
    bytes: u64,
    problems: u64,
    incomplete_tails: u64,
}

/// One partition's segments, in offset order.
struct PartitionFiles {
    dir: PathBuf,
    segments: Vec<(u64, PathBuf)>,
}

/// Prints problems as they are found and the totals at the end.
struct Verifier<W: Write> {
    out: W,
    totals: Totals,
    bar: Option<ProgressBar>,
    /// File bytes of the segments already done (for the progress bar).
    done_bytes: u64,
    scratch: Vec<u8>,
    limits: Limits,
}

impl<W: Write> Verifier<W> {
    fn problem(
        &mut self,
        path: &Path,
        position: u64,
        offset: Option<i64>,
        reason: &str,
    ) -> Result<(), CliError> {
        self.totals.problems += 1;
        let at = match offset {
            Some(o) => format!("position {position}, offset {o}"),
            None => format!("position {position}"),
        };
        let line = format!("damage: {} at {at}: {reason}", path.display());
        self.say(&line)
    }

    fn say(&mut self, line: &str) -> Result<(), CliError> {
        let r = match &self.bar {
            // Printed above the bar, which is redrawn below it.
            Some(bar) => {
                bar.suspend(|| writeln!(self.out, "{line}").and_then(|()| self.out.flush()))
            }
            None => writeln!(self.out, "{line}"),
        };
        r.map_err(CliError::stdout)
    }

    fn progress(&self, segment_pos: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done_bytes + segment_pos);
        }
    }

    /// Checks one partition's segments: each alone, and that they chain.
    fn partition(&mut self, p: &PartitionFiles) -> Result<(), CliError> {
        self.totals.partitions += 1;
        // The offset the next segment must start at.
        let mut next: Option<(i64, PathBuf)> = None;
        let count = p.segments.len();
        for (i, (base, path)) in p.segments.iter().enumerate() {
            self.totals.segments += 1;
            let active = i + 1 == count;
            if let Some((expected, prev)) = &next
                && *expected != *base as i64
            {
                let reason = offset_break(
                    *base as i64,
                    *expected,
                    &format!("previous segment {}", file_name(prev)),
                );
                self.problem(path, 0, Some(*base as i64), &format!("segment {reason}"))?;
            }
            let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let end = self.segment(path, *base, active)?;
            self.done_bytes += file_len;
            self.progress(0);
            // A segment that cannot be read leaves the chain unknown: the next one is taken as is.
            next = end.map(|e| (e, path.clone()));
        }
        if count == 0 {
            tracing::debug!(dir = %p.dir.display(), "partition without segments");
        }
        Ok(())
    }

    /// Checks one segment; returns the offset after its last batch (its base when it has none),
    /// or `None` when its batches could not be read at all.
    fn segment(&mut self, path: &Path, base: u64, active: bool) -> Result<Option<i64>, CliError> {
        let mut reader = match ChunkReader::open(path) {
            Ok(r) => r,
            // Retention or trim removed it since the directory was listed: not damage.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.say(&format!(
                    "note: {} was deleted while verifying (retention or trim)",
                    path.display()
                ))?;
                return Ok(None);
            }
            Err(e) => {
                self.problem(path, 0, None, &format!("cannot open: {e}"))?;
                return Ok(None);
            }
        };
        let head = match reader.bytes(0, SEGMENT_HEADER_LEN) {
            Ok(h) => h.to_vec(),
            Err(e) => {
                self.problem(path, 0, None, &format!("cannot read: {e}"))?;
                return Ok(None);
            }
        };
        let Ok(head) = <[u8; SEGMENT_HEADER_LEN]>::try_from(head.as_slice()) else {
            let reason = format!(
                "{} bytes, shorter than the {SEGMENT_HEADER_LEN}-byte segment header",
                head.len()
            );
            self.problem(path, 0, None, &reason)?;
            return Ok(None);
        };
        let header = SegmentHeader::parse(&head);
        if let Some(reason) = header.unreadable() {
            self.problem(path, 0, None, &reason)?;
            return Ok(None);
        }
        for reason in header.problems(Some(base)) {
            self.problem(path, 0, None, &reason)?;
        }
        match self.batches(path, &mut reader, base as i64, active) {
            Ok(next) => Ok(Some(next)),
            Err(VerifyError::Io(position, e)) => {
                self.problem(path, position, None, &format!("read failed: {e}"))?;
                Ok(None)
            }
            Err(VerifyError::Cli(e)) => Err(e),
        }
    }

    /// Walks the batches of a segment whose header was read; returns the offset after the last.
    fn batches(
        &mut self,
        path: &Path,
        reader: &mut ChunkReader,
        base: i64,
        active: bool,
    ) -> Result<i64, VerifyError> {
        let mut pos = SEGMENT_HEADER_LEN as u64;
        let mut expected = base;
        let mut first = true;
        loop {
            self.progress(pos);
            let step = step(reader, pos).map_err(|e| VerifyError::Io(pos, e))?;
            match step {
                Step::EndOfFile => return Ok(expected),
                Step::EndOfData => {
                    match reader.first_nonzero(pos).map_err(|e| VerifyError::Io(pos, e))? {
                        None if active => return Ok(expected),
                        None => {
                            let zeros = reader.len - pos;
                            self.problem(path, pos, None, &format!(
                                "{zeros} zero bytes after the data of a sealed segment (a sealed segment ends at its last batch)"
                            ))?;
                            return Ok(expected);
                        }
                        Some(q) => {
                            if active {
                                // A broker may have appended since the end was read.
                                reader.refresh().map_err(|e| VerifyError::Io(pos, e))?;
                                if !matches!(step_peek(reader, pos)?, Step::EndOfData) {
                                    continue;
                                }
                            }
                            self.problem(path, q, None, &format!(
                                "garbage after the data: non-zero bytes at position {q}, after the end of data at position {pos}"
                            ))?;
                            return Ok(expected);
                        }
                    }
                }
                Step::Broken { reason, cut_short } => {
                    if active && cut_short && plausible_start(reader, pos, expected)? {
                        self.incomplete(path, pos, &reason)?;
                    } else {
                        self.problem(path, pos, Some(expected), &reason)?;
                    }
                    return Ok(expected);
                }
                Step::Batch { len } => {
                    let bytes = reader.bytes(pos, len).map_err(|e| VerifyError::Io(pos, e))?;
                    let mut scratch = std::mem::take(&mut self.scratch);
                    let result = batch::validate_with(bytes, &self.limits, &mut scratch);
                    let view_base =
                        BatchView::new(bytes).ok().map(|v| (v.base_offset(), v.last_offset()));
                    let mut unfinished = false;
                    if result.is_err() && active && plausible_start(reader, pos, expected)? {
                        let zeros_follow = reader
                            .first_nonzero(pos + len as u64)
                            .map_err(|e| VerifyError::Io(pos, e))?
                            .is_none();
                        // Re-borrow after the tail scan (it reads through its own buffer).
                        let bytes = reader.bytes(pos, len).map_err(|e| VerifyError::Io(pos, e))?;
                        unfinished = looks_unfinished(bytes, zeros_follow, &mut scratch);
                    }
                    self.scratch = scratch;
                    match result {
                        Ok(summary) => {
                            self.totals.batches += 1;
                            self.totals.records += summary.record_count as u64;
                            self.totals.bytes += len as u64;
                            let found = summary.base_offset;
                            if found != expected {
                                let reason = if first {
                                    format!(
                                        "first batch has base offset {found} but the segment's base offset is {expected}"
                                    )
                                } else {
                                    offset_break(found, expected, "previous batch")
                                };
                                self.problem(path, pos, Some(found), &reason)?;
                            }
                            expected = summary
                                .base_offset
                                .saturating_add(i64::from(summary.last_offset_delta))
                                .saturating_add(1);
                        }
                        Err(e) if unfinished => {
                            let reason = format!(
                                "{e}; the batch ends in zeros, as a write in progress does"
                            );
                            self.incomplete(path, pos, &reason)?;
                            return Ok(expected);
                        }
                        Err(e) => {
                            let offset = view_base.map(|(b, _)| b);
                            self.problem(path, pos, offset, &describe_batch_error(&e))?;
                            // A batch header whose contents are bad: its length still finds
                            // the next batch. Without one (bad magic) the length means nothing.
                            let Some((_, last)) = view_base else { return Ok(expected) };
                            expected = last.wrapping_add(1);
                        }
                    }
                    first = false;
                    pos += len as u64;
                }
            }
        }
    }

    fn incomplete(&mut self, path: &Path, pos: u64, reason: &str) -> Result<(), CliError> {
        self.totals.incomplete_tails += 1;
        self.say(&format!(
            "note: {} at position {pos}: incomplete tail (a broker may be writing): {reason}",
            path.display()
        ))
    }
}

/// Whether the bytes at `pos` can be the start of the batch the log expects next: its base
/// offset (when present) is `expected` and its magic (when present) is 2. A write in progress
/// looks like this; garbage does not.
fn plausible_start(reader: &mut ChunkReader, pos: u64, expected: i64) -> Result<bool, VerifyError> {
    let b = reader.bytes(pos, batch::MAGIC_POS + 1).map_err(|e| VerifyError::Io(pos, e))?;
    if b.len() >= 8 {
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[..8]);
        if i64::from_be_bytes(o) != expected {
            return Ok(false);
        }
    }
    Ok(b.get(batch::MAGIC_POS).is_none_or(|&m| m as i8 == batch::MAGIC))
}

/// Like [`step`], for the verifier's error type.
fn step_peek(reader: &mut ChunkReader, pos: u64) -> Result<Step, VerifyError> {
    step(reader, pos).map_err(|e| VerifyError::Io(pos, e))
}

fn describe_batch_error(e: &BatchError) -> String {
    match e {
        BatchError::Crc { .. } => format!("{e} (the batch's bytes changed after it was written)"),
        _ => e.to_string(),
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Why verifying a segment stopped.
enum VerifyError {
    /// Reading the segment failed at this position.
    Io(u64, io::Error),
    /// Writing the report failed.
    Cli(CliError),
}

impl From<CliError> for VerifyError {
    fn from(e: CliError) -> Self {
        VerifyError::Cli(e)
    }
}

/// Sorted entries of a directory: (name, path, is_dir).
fn list(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, CliError> {
    let err = |source| CliError::Io { what: format!("listing {}", dir.display()), source };
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let is_dir = entry.file_type().map_err(err)?.is_dir();
        v.push((name, entry.path(), is_dir));
    }
    v.sort();
    Ok(v)
}

fn verify(data_dir: &Path, topic: Option<&str>) -> Result<(), CliError> {
    if !data_dir.is_dir() {
        return Err(CliError::Usage(format!("{} is not a directory", data_dir.display())));
    }
    let mut topics: Vec<(String, PathBuf)> = list(data_dir)?
        .into_iter()
        // `@groups`, `@creating`, `@deleting`: broker-internal, not topics.
        .filter(|(name, _, is_dir)| *is_dir && !name.starts_with('@'))
        .map(|(name, path, _)| (name, path))
        .collect();
    if let Some(t) = topic {
        topics.retain(|(name, _)| name == t);
        if topics.is_empty() {
            return Err(CliError::Usage(format!("no topic {t:?} in {}", data_dir.display())));
        }
    }
    let stdout = io::stdout();
    let mut v = Verifier {
        out: io::BufWriter::new(stdout.lock()),
        totals: Totals::default(),
        bar: None,
        done_bytes: 0,
        scratch: Vec::new(),
        limits: Limits::default(),
    };
    // Gather every partition first: the progress bar needs the total.
    let mut work: Vec<PartitionFiles> = Vec::new();
    let mut total_bytes = 0u64;
    for (name, dir) in &topics {
        let entries = list(dir)?;
        // What the broker ignores at open is not a topic: a directory with neither topic.json
        // nor a partition 0.
        if !dir.join("topic.json").exists() && !dir.join("0").is_dir() {
            v.say(&format!("note: {} is not a topic (no topic.json), skipped", dir.display()))?;
            continue;
        }
        v.totals.topics += 1;
        let mut parts: Vec<(u32, PathBuf)> = entries
            .iter()
            .filter(|(_, _, is_dir)| *is_dir)
            .filter_map(|(n, p, _)| {
                n.parse::<u32>().ok().filter(|x| x.to_string() == *n).map(|x| (x, p.clone()))
            })
            .collect();
        parts.sort();
        check_topic_meta(&mut v, name, dir, &parts)?;
        for (_, pdir) in parts {
            let mut segments: Vec<(u64, PathBuf)> = list(&pdir)?
                .into_iter()
                .filter(|(_, _, is_dir)| !is_dir)
                .filter_map(|(_, p, _)| base_from_name(&p).map(|b| (b, p)))
                .collect();
            segments.sort();
            for (_, p) in &segments {
                total_bytes += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            }
            work.push(PartitionFiles { dir: pdir, segments });
        }
    }
    if io::stderr().is_terminal() {
        let bar = ProgressBar::new(total_bytes);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        {
            bar.set_style(style);
        }
        v.bar = Some(bar);
    }
    for p in &work {
        v.partition(p)?;
    }
    if let Some(bar) = v.bar.take() {
        bar.finish_and_clear();
    }
    let t = &v.totals;
    let mut summary = format!(
        "checked: topics {}, partitions {}, segments {}, batches {}, records {}, batch bytes {}",
        t.topics, t.partitions, t.segments, t.batches, t.records, t.bytes
    );
    if t.incomplete_tails > 0 {
        let _ = write!(summary, ", incomplete tails {}", t.incomplete_tails);
    }
    let problems = t.problems;
    if problems == 0 {
        summary.push_str("; no damage");
    } else {
        let _ = write!(summary, "; problems {problems}");
    }
    v.say(&summary)?;
    v.out.flush().map_err(CliError::stdout)?;
    if problems > 0 {
        return Err(CliError::Damaged(format!(
            "damage found in {} ({problems} problems)",
            data_dir.display()
        )));
    }
    Ok(())
}

/// What `topic.json` holds.
#[derive(serde::Deserialize)]
struct TopicMeta {
    partitions: u32,
}

/// Checks `topic.json` against the partition directories (a broker would take the topic offline).
fn check_topic_meta<W: Write>(
    v: &mut Verifier<W>,
    name: &str,
    dir: &Path,
    parts: &[(u32, PathBuf)],
) -> Result<(), CliError> {
    let path = dir.join("topic.json");
    let meta = match std::fs::read(&path) {
        // The broker's own limit (configs made topic.json grow past the old 4 KiB).
        Ok(b) if b.len() <= 256 * 1024 => {
            serde_json::from_slice::<TopicMeta>(&b).map_err(|e| e.to_string())
        }
        Ok(b) => Err(format!("{} bytes, more than a topic.json ever holds", b.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("missing".to_string()),
        Err(e) => Err(e.to_string()),
    };
    match meta {
        Err(reason) => {
            v.problem(&path, 0, None, &format!("topic {name}: topic.json unusable: {reason}"))
        }
        Ok(m) => {
            for p in 0..m.partitions {
                if !parts.iter().any(|(x, _)| *x == p) {
                    v.problem(&dir.join(p.to_string()), 0, None, &format!(
                        "topic {name} has {} partitions but the directory of partition {p} is missing",
                        m.partitions
                    ))?;
                }
            }
            for (x, pdir) in parts {
                let empty = std::fs::read_dir(pdir).is_ok_and(|mut d| d.next().is_none());
                if *x >= m.partitions && empty {
                    // What an add-partitions that crashed before writing topic.json leaves; the
                    // broker removes it at start-up and the topic keeps its old count.
                    v.say(&format!(
                        "note: {} is an empty partition directory past the count (an interrupted \
                         add-partitions), removed by the broker at start-up",
                        pdir.display()
                    ))?;
                } else if *x >= m.partitions {
                    v.problem(
                        pdir,
                        0,
                        None,
                        &format!(
                            "topic {name} has {} partitions but this directory is partition {x}",
                            m.partitions
                        ),
                    )?;
                }
            }
            Ok(())
        }
    }
}
