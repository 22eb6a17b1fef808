//! `minikafka log dump` and `minikafka log verify`, run as the real binary on segment files
//! (format version 2) built by hand: the 24-byte segment header, then batches from
//! `minikafka::batch::BatchBuilder`. Not written through the broker, whose storage engine is
//! being rewritten to this format.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use minikafka::batch::{BatchBuilder, Compression, Header, NewRecord, set_base_offset};

const T0: i64 = 1_700_000_000_000;

/// A segment header: `MKLG`, version, reserved, base offset, CRC-32 of bytes 0..16, reserved.
fn segment_header(base: u64, version: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(b"MKLG");
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

struct Rec<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [Header<'a>],
}

/// One batch at `base`, as the broker stores it (base offset set, leader epoch 0).
fn batch(
    base: i64,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
    recs: &[Rec<'_>],
) -> Vec<u8> {
    let mut b = BatchBuilder::new(compression).partition_leader_epoch(0);
    if let Some((id, epoch, seq)) = producer {
        b = b.producer(id, epoch, seq);
    }
    for (i, r) in recs.iter().enumerate() {
        b.push(&NewRecord {
            timestamp: T0 + i as i64,
            key: r.key,
            value: r.value,
            headers: r.headers,
        })
        .expect("record fits a batch");
    }
    let mut bytes = b.build().expect("batch builds");
    set_base_offset(&mut bytes, base).expect("a whole batch");
    bytes
}

fn seg_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// Writes a segment file: header then the batches; `zero_tail` bytes of (sparse) zeros after.
fn write_segment(dir: &Path, base: u64, batches: &[Vec<u8>], zero_tail: u64) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(seg_name(base));
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(&segment_header(base, 2)).unwrap();
    for b in batches {
        f.write_all(b).unwrap();
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len + zero_tail).unwrap();
    path
}

fn batch0() -> Vec<u8> {
    let hs = [Header { key: b"h", value: Some(b"1") }, Header { key: b"h", value: Some(b"2") }];
    batch(
        0,
        Compression::None,
        None,
        &[
            Rec { key: Some(b"k1"), value: Some(b"hello"), headers: &hs },
            Rec { key: Some(b"k2"), value: None, headers: &[] },
            Rec { key: None, value: Some(&[0, 1, 2, 255]), headers: &[] },
        ],
    )
}

fn batch3_gzip() -> Vec<u8> {
    batch(
        3,
        Compression::Gzip,
        None,
        &[
            Rec { key: Some(b"g1"), value: Some(b"gzipped one"), headers: &[] },
            Rec { key: Some(b"g2"), value: Some(b"gzipped two"), headers: &[] },
        ],
    )
}

fn batch5_zstd() -> Vec<u8> {
    let long = vec![b'x'; 1000];
    let hs = [Header { key: b"trace", value: None }];
    batch(
        5,
        Compression::Zstd,
        Some((7, 1, 0)),
        &[
            Rec { key: Some(b"z1"), value: Some(&long), headers: &[] },
            Rec { key: Some(b"z2"), value: Some(b""), headers: &hs },
            Rec { key: Some(b"z3"), value: Some(b"last"), headers: &[] },
        ],
    )
}

/// A data dir: topic `orders` with 2 partitions. Partition 0: a sealed segment at 0 (an
/// uncompressed batch of 3 records at 0, a gzip batch of 2 at 3) and an active one at 5 (a zstd
/// batch of 3, then 64 KiB of zero tail). Partition 1: one segment with one record.
struct Fixture {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    sealed: PathBuf,
    active: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let topic = data.join("orders");
    fs::create_dir_all(data.join("@groups")).unwrap();
    fs::create_dir_all(&topic).unwrap();
    fs::write(topic.join("topic.json"), br#"{"partitions":2}"#).unwrap();
    let p0 = topic.join("0");
    let sealed = write_segment(&p0, 0, &[batch0(), batch3_gzip()], 0);
    let active = write_segment(&p0, 5, &[batch5_zstd()], 64 << 10);
    let one =
        batch(0, Compression::None, None, &[Rec { key: None, value: Some(b"p1"), headers: &[] }]);
    write_segment(&topic.join("1"), 0, &[one], 0);
    Fixture { _tmp: tmp, data, sealed, active }
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_minikafka"))
        .args(args)
        .output()
        .expect("the minikafka binary runs");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn verify(data: &Path) -> Run {
    run(&["log", "verify", s(data)])
}

fn assert_has(r: &Run, needle: &str) {
    assert!(
        r.stdout.contains(needle),
        "expected {needle:?} in stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
}

#[test]
fn dump_prints_the_header_every_batch_and_every_record() {
    let f = fixture();
    let b0 = batch0().len();
    let r = run(&["log", "dump", s(&f.sealed), "--records"]);
    assert!(r.ok, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_has(&r, "header: magic MKLG, format version 2, base offset 0, header CRC ok");
    assert_has(
        &r,
        &format!(
            "batch at position 24: base offset 0, last offset 2, 3 records, {b0} bytes, \
             compression none, CreateTime, base timestamp {T0}, max timestamp {}, producer id -1, \
             producer epoch -1, base sequence -1, partition leader epoch 0, transactional false, \
             control false, CRC ",
            T0 + 2
        ),
    );
    assert_has(
        &r,
        &format!(
            "  offset 0: timestamp {T0}, key \"k1\", value \"hello\", headers [\"h\"=\"1\", \"h\"=\"2\"]"
        ),
    );
    assert_has(
        &r,
        &format!("  offset 1: timestamp {}, key \"k2\", value null, headers []", T0 + 1),
    );
    assert_has(
        &r,
        &format!("  offset 2: timestamp {}, key null, value 0x000102ff, headers []", T0 + 2),
    );
    assert_has(
        &r,
        &format!("batch at position {}: base offset 3, last offset 4, 2 records", 24 + b0),
    );
    assert_has(&r, "compression gzip");
    assert_has(&r, "  offset 4: timestamp");
    assert_has(&r, "key \"g2\", value \"gzipped two\"");
    let end = 24 + b0 + batch3_gzip().len();
    assert_has(&r, &format!("end of file at position {end}"));
    let batch_lines: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("batch at")).collect();
    assert_eq!(batch_lines.len(), 2);
    assert!(batch_lines.iter().all(|l| l.ends_with(" ok")), "both batch CRCs ok:\n{}", r.stdout);

    // Without --records: batches only.
    let r = run(&["log", "dump", s(&f.sealed)]);
    assert!(r.ok);
    assert_eq!(r.stdout.matches("batch at position").count(), 2);
    assert!(!r.stdout.contains("offset 0:"), "{}", r.stdout);
}

#[test]
fn dump_of_the_active_segment_stops_at_the_zero_tail_and_cuts_long_values() {
    let f = fixture();
    let r = run(&["log", "dump", s(&f.active), "--records", "--max-value-bytes", "10"]);
    assert!(r.ok, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_has(&r, "base offset 5, last offset 7, 3 records");
    assert_has(&r, "compression zstd");
    assert_has(&r, "producer id 7, producer epoch 1, base sequence 0");
    assert_has(&r, "key \"z1\", value \"xxxxxxxxxx\"... (cut, 1000 bytes in all)");
    assert_has(&r, "key \"z2\", value \"\", headers [\"trace\"=null]");
    assert_has(&r, &format!("end of data at position {}", 24 + batch5_zstd().len()));
}

#[test]
fn dump_json_gives_one_object_per_batch_with_its_records() {
    let f = fixture();
    let r = run(&["log", "dump", s(&f.sealed), "--records", "--json"]);
    assert!(r.ok, "{}", r.stderr);
    let lines: Vec<serde_json::Value> =
        r.stdout.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert_eq!(lines[0]["type"], "segment");
    assert_eq!(lines[0]["version"], 2);
    assert_eq!(lines[0]["header_crc_ok"], true);
    let b = &lines[1];
    assert_eq!(b["type"], "batch");
    assert_eq!(b["position"], 24);
    assert_eq!(b["base_offset"], 0);
    assert_eq!(b["last_offset"], 2);
    assert_eq!(b["record_count"], 3);
    assert_eq!(b["crc_ok"], true);
    assert_eq!(b["error"], serde_json::Value::Null);
    let recs = b["records"].as_array().unwrap();
    assert_eq!(recs[0]["key"], "k1");
    assert_eq!(recs[0]["headers"], serde_json::json!([["h", "1"], ["h", "2"]]));
    assert_eq!(recs[1]["value"], serde_json::Value::Null);
    assert_eq!(recs[1]["value_size"], serde_json::Value::Null);
    assert_eq!(recs[2]["key"], serde_json::Value::Null);
    assert_eq!(recs[2]["value"], serde_json::json!({"hex": "000102ff"}));
    assert_eq!(lines[2]["compression"], "gzip");
    assert_eq!(lines[2]["records"][1]["value"], "gzipped two");
    assert_eq!(lines[3]["type"], "end");
}

#[test]
fn dump_reports_a_flipped_byte_with_its_position_and_fails() {
    let f = fixture();
    let file = OpenOptions::new().write(true).open(&f.sealed).unwrap();
    // Inside the first batch's records: covered by its CRC.
    file.write_all_at(b"J", 24 + 70).unwrap();
    let r = run(&["log", "dump", s(&f.sealed)]);
    assert_eq!(r.code, Some(1));
    assert_has(&r, "batch at position 24: base offset 0");
    assert_has(&r, " bad\n");
    assert_has(&r, "damage at position 24: batch CRC-32C mismatch");
    // The framing held: the next batch is still shown.
    assert_has(&r, "base offset 3, last offset 4");
    assert!(r.stderr.contains("error:"), "{}", r.stderr);
}

#[test]
fn a_version_1_segment_is_named_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(seg_name(0));
    let mut bytes = segment_header(0, 1);
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    fs::write(&path, bytes).unwrap();
    let r = run(&["log", "dump", s(&path)]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains(
            "format version 1: open the data directory with the broker once to upgrade it"
        ),
        "{}",
        r.stderr
    );
    // verify says the same of it, with the file.
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("t/0")).unwrap();
    fs::write(data.join("t/topic.json"), br#"{"partitions":1}"#).unwrap();
    fs::copy(&path, data.join("t/0").join(seg_name(0))).unwrap();
    let r = verify(&data);
    assert_eq!(r.code, Some(1));
    assert_has(&r, &format!("{} at position 0: format version 1", seg_name(0)));
}

#[test]
fn verify_passes_a_good_data_dir_with_the_right_counts() {
    let f = fixture();
    let r = verify(&f.data);
    assert!(r.ok, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let bytes = batch0().len()
        + batch3_gzip().len()
        + batch5_zstd().len()
        + batch(0, Compression::None, None, &[Rec { key: None, value: Some(b"p1"), headers: &[] }])
            .len();
    assert_has(
        &r,
        &format!(
            "checked: topics 1, partitions 2, segments 3, batches 4, records 9, batch bytes {bytes}; no damage"
        ),
    );
    // --topic narrows; an unknown one is an error.
    let r = run(&["log", "verify", s(&f.data), "--topic", "orders"]);
    assert!(r.ok);
    let r = run(&["log", "verify", s(&f.data), "--topic", "nope"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("no topic \"nope\""), "{}", r.stderr);
}

#[test]
fn verify_notes_an_interrupted_add_partitions_but_finds_no_damage() {
    // An add-partitions that crashed before topic.json named the new partition leaves its
    // directory empty; the broker removes it at start-up, so it is not damage.
    let f = fixture();
    fs::create_dir(f.data.join("orders").join("2")).unwrap();
    let r = verify(&f.data);
    assert!(r.ok, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_has(&r, "an interrupted add-partitions");
    assert_has(&r, "no damage");
    // The same directory holding a segment is a partition topic.json does not know: damage.
    let stray =
        batch(0, Compression::None, None, &[Rec { key: None, value: Some(b"x"), headers: &[] }]);
    write_segment(&f.data.join("orders").join("2"), 0, &[stray], 0);
    let r = verify(&f.data);
    assert!(!r.ok, "stdout:\n{}", r.stdout);
    assert_has(&r, "topic orders has 2 partitions but this directory is partition 2");
}

#[test]
fn verify_leaves_the_files_untouched() {
    let f = fixture();
    let before: Vec<(PathBuf, Vec<u8>)> =
        [&f.sealed, &f.active].iter().map(|p| (p.to_path_buf(), fs::read(p).unwrap())).collect();
    assert!(verify(&f.data).ok);
    for (p, bytes) in before {
        assert_eq!(fs::read(&p).unwrap(), bytes, "{} changed", p.display());
    }
}

#[test]
fn verify_catches_a_flipped_byte() {
    let f = fixture();
    let pos = 24 + batch0().len() as u64;
    let file = OpenOptions::new().write(true).open(&f.sealed).unwrap();
    // The gzip batch's compressed records.
    file.write_all_at(&[0xAA], pos + 65).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(&r, &format!("{} at position {pos}, offset 3: batch CRC-32C mismatch", seg_name(0)));
    assert_has(&r, "; problems 1\n");
    assert!(r.stderr.contains("damage found in"), "{}", r.stderr);
}

#[test]
fn verify_catches_a_flipped_byte_in_the_active_segment_too() {
    let f = fixture();
    let file = OpenOptions::new().read(true).write(true).open(&f.active).unwrap();
    // The last byte of the zstd batch: a change, not a write in progress.
    let last = 24 + batch5_zstd().len() as u64 - 1;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, last).unwrap();
    file.write_all_at(&[b[0] ^ 0x10], last).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(&r, &format!("{} at position 24, offset 5: batch CRC-32C mismatch", seg_name(5)));
    assert!(!r.stdout.contains("incomplete tail"), "{}", r.stdout);

    // An uncompressed batch ends in a zero byte (its last record's header count) and is followed
    // by the zero tail, as a write in progress would be; a changed value byte is still damage.
    let f = fixture();
    let p1 = f.data.join("orders/1").join(seg_name(0));
    let file = OpenOptions::new().read(true).write(true).open(&p1).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + 4096).unwrap();
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1).unwrap();
    assert_eq!(last, [0], "the batch ends in a zero byte");
    // "p1" is the value: the byte before the header count.
    file.write_all_at(b"q", len - 2).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(
        &r,
        &format!("orders/1/{} at position 24, offset 0: batch CRC-32C mismatch", seg_name(0)),
    );
    assert!(!r.stdout.contains("incomplete tail"), "{}", r.stdout);
}

#[test]
fn verify_catches_a_truncated_batch_in_a_sealed_segment() {
    let f = fixture();
    let len = fs::metadata(&f.sealed).unwrap().len();
    OpenOptions::new().write(true).open(&f.sealed).unwrap().set_len(len - 10).unwrap();
    let pos = 24 + batch0().len();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(&r, &format!("{} at position {pos}, offset 3: batch truncated", seg_name(0)));
    assert!(!r.stdout.contains("incomplete tail"), "{}", r.stdout);
    // dump says the same of the file alone.
    let r = run(&["log", "dump", s(&f.sealed)]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(&r, "batch at position 24: base offset 0");
    assert_has(&r, &format!("damage at position {pos}: batch truncated"));
}

#[test]
fn a_torn_batch_at_the_end_of_the_active_segment_is_an_incomplete_tail_not_damage() {
    // Cut by the end of the file.
    let f = fixture();
    let next = batch(
        8,
        Compression::None,
        None,
        &[Rec { key: Some(b"n"), value: Some(b"new"), headers: &[] }],
    );
    let end = 24 + batch5_zstd().len() as u64;
    let file = OpenOptions::new().write(true).open(&f.active).unwrap();
    file.set_len(end).unwrap();
    file.write_all_at(&next[..next.len() - 5], end).unwrap();
    let r = verify(&f.data);
    assert!(r.ok, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &format!("{} at position {end}: incomplete tail (a broker may be writing)", seg_name(5)),
    );
    assert_has(&r, ", incomplete tails 1; no damage");

    // Written half-way into the zero tail of the grown file.
    let f = fixture();
    let file = OpenOptions::new().write(true).open(&f.active).unwrap();
    file.write_all_at(&next[..next.len() / 2], end).unwrap();
    let r = verify(&f.data);
    assert!(r.ok, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_has(
        &r,
        &format!("{} at position {end}: incomplete tail (a broker may be writing)", seg_name(5)),
    );

    // The same torn batch in a sealed segment is damage.
    let f = fixture();
    let sealed_end = fs::metadata(&f.sealed).unwrap().len();
    let torn =
        batch(5, Compression::None, None, &[Rec { key: None, value: Some(b"t"), headers: &[] }]);
    OpenOptions::new().append(true).open(&f.sealed).unwrap().write_all(&torn[..30]).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(&r, &format!("{} at position {sealed_end}, offset 5: batch truncated", seg_name(0)));
}

#[test]
fn verify_catches_garbage_after_the_data() {
    // After the last batch of a sealed segment.
    let f = fixture();
    let end = fs::metadata(&f.sealed).unwrap().len();
    OpenOptions::new()
        .append(true)
        .open(&f.sealed)
        .unwrap()
        .write_all(b"this is not a record batch, only bytes that should not be here at all")
        .unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(&r, &format!("{} at position {end}", seg_name(0)));

    // Zeros after the data of a sealed segment: sealing cuts the file to its data.
    let f = fixture();
    let end = fs::metadata(&f.sealed).unwrap().len();
    OpenOptions::new().write(true).open(&f.sealed).unwrap().set_len(end + 4096).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(
        &r,
        &format!(
            "{} at position {end}: 4096 zero bytes after the data of a sealed segment",
            seg_name(0)
        ),
    );

    // In the zero tail of the active segment.
    let f = fixture();
    let len = fs::metadata(&f.active).unwrap().len();
    let at = len - 100;
    OpenOptions::new().write(true).open(&f.active).unwrap().write_all_at(b"junk", at).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    let data_end = 24 + batch5_zstd().len();
    assert_has(
        &r,
        &format!(
            "{} at position {at}: garbage after the data: non-zero bytes at position {at}, after the end of data at position {data_end}",
            seg_name(5)
        ),
    );
}

#[test]
fn verify_catches_a_gap_and_an_overlap_between_segments() {
    for (base, word, reach) in [
        (6u64, "offset gap", "ends at offset 4"),
        (4u64, "offsets overlap", "already reaches offset 4"),
    ] {
        let f = fixture();
        fs::remove_file(&f.active).unwrap();
        let mut b = batch5_zstd();
        set_base_offset(&mut b, base as i64).unwrap();
        let dir = f.active.parent().unwrap();
        write_segment(dir, base, &[b], 4096);
        let r = verify(&f.data);
        assert_eq!(r.code, Some(1), "{}", r.stdout);
        assert_has(
            &r,
            &format!(
                "{} at position 0, offset {base}: segment {word}: base offset {base}, but the previous segment {} ",
                seg_name(base),
                seg_name(0)
            ),
        );
        assert_has(&r, reach);
    }
}

#[test]
fn verify_catches_a_gap_between_batches_of_a_segment() {
    let f = fixture();
    let mut late = batch3_gzip();
    set_base_offset(&mut late, 10).unwrap();
    let path = write_segment(&f.data.join("orders/0"), 0, &[batch0(), late], 0);
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(
        &r,
        &format!(
            "{} at position {}, offset 10: offset gap: base offset 10, but the previous batch ends at offset 2",
            seg_name(0),
            24 + batch0().len()
        ),
    );
    assert!(path.exists());
}

#[test]
fn verify_reports_a_header_that_disagrees_with_its_file_name() {
    let f = fixture();
    let file = OpenOptions::new().write(true).open(&f.active).unwrap();
    // A header for base 9 in the file named for base 5.
    file.write_all_at(&segment_header(9, 2), 0).unwrap();
    let r = verify(&f.data);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert_has(
        &r,
        &format!(
            "{} at position 0: segment header says base offset 9 but the file name says 5",
            seg_name(5)
        ),
    );
}

/// Not a test: writes a data directory of about `MINIKAFKA_LOG_BIG_MB` MiB (default 1024) of
/// 100 KiB batches into `MINIKAFKA_LOG_BIG_DIR`, in 256 MiB segments, the last one followed by a
/// 256 MiB sparse zero tail, for measuring `log verify` by hand:
/// `MINIKAFKA_LOG_BIG_DIR=/tmp/big cargo test --test cli_log -- --ignored make_large_data_dir`
/// then `/usr/bin/time -v target/debug/minikafka log verify /tmp/big`.
#[test]
#[ignore]
fn make_large_data_dir() {
    let Some(dir) = std::env::var_os("MINIKAFKA_LOG_BIG_DIR") else { return };
    let mb: u64 =
        std::env::var("MINIKAFKA_LOG_BIG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let data = PathBuf::from(dir);
    let topic = data.join("big");
    fs::create_dir_all(topic.join("0")).unwrap();
    fs::write(topic.join("topic.json"), br#"{"partitions":1}"#).unwrap();
    let values: Vec<Vec<u8>> =
        (0..100u32).map(|i| (0..1024u32).map(|j| (i * 31 + j * 7) as u8).collect()).collect();
    let recs: Vec<Rec<'_>> =
        values.iter().map(|v| Rec { key: Some(b"key"), value: Some(v), headers: &[] }).collect();
    let mut template = batch(0, Compression::None, None, &recs);
    let per_segment = (256u64 << 20) / template.len() as u64;
    let total = (mb << 20) / template.len() as u64;
    let mut offset = 0u64;
    let mut written = 0u64;
    while written < total {
        let n = per_segment.min(total - written);
        let path = topic.join("0").join(seg_name(offset));
        let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        f.write_all(&segment_header(offset, 2)).unwrap();
        for _ in 0..n {
            set_base_offset(&mut template, offset as i64).unwrap();
            f.write_all(&template).unwrap();
            offset += 100;
        }
        let f = f.into_inner().unwrap();
        written += n;
        if written == total {
            let len = f.metadata().unwrap().len();
            f.set_len(len + (256 << 20)).unwrap();
        }
    }
    println!("{written} batches, {offset} records in {}", data.display());
}
