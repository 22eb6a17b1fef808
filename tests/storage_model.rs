//! Model test: random sequences of append / read / reopen (clean or after a crash) / trim on a
//! log with tiny segments (so it rolls constantly) must agree with a plain in-memory `Vec` of
//! values and of the batches they were appended in (reads return whole batches).

use minikafka::batch::{self, Compression};
use minikafka::record::{self, NewRecord};
use minikafka::storage::{FsyncPolicy, Log, LogConfig, StorageError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append one batch with these value lengths (`None`: a null value), compressed with
    /// `Compression::ALL[codec]` (0, none, through `Log::append`; the others through
    /// `Log::append_batches`, as a producer sends them).
    Append { lens: Vec<Option<usize>>, codec: usize },
    /// Read at a position between the log start and the end (a fraction of the range, in
    /// per-mille, may overshoot to test out-of-range reads) with this `max_bytes`.
    Read { at_permille: u16, max_bytes: usize },
    /// Reopen; `clean` closes first, otherwise the log is dropped as in a crash.
    Reopen { clean: bool },
    /// Trim before a position in the range (per-mille).
    Trim { at_permille: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::collection::vec(prop::option::weighted(0.9, 0usize..120), 1..8), 0usize..5)
            .prop_map(|(lens, codec)| Op::Append { lens, codec }),
        4 => (0u16..1100, 1usize..400).prop_map(|(at_permille, max_bytes)| Op::Read { at_permille, max_bytes }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0u16..1000).prop_map(|at_permille| Op::Trim { at_permille }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 50,
        // A whole batch: 8 values of up to 120 bytes and the batch header fit.
        max_record_bytes: 2048,
        fsync: FsyncPolicy::Never,
        retention_bytes: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn value(offset: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (offset as usize * 31 + i) as u8).collect()
}

/// The model: every value ever appended, the offset range of every batch, and the log start.
struct Model {
    values: Vec<Option<Vec<u8>>>,
    batches: Vec<(u64, u64)>,
    start: u64,
}

impl Model {
    /// The batch holding `offset`.
    fn batch_holding(&self, offset: u64) -> (u64, u64) {
        let i = self.batches.partition_point(|&(_, next)| next <= offset);
        self.batches[i]
    }
}

fn check_read(log: &Log, model: &Model, offset: u64, max_bytes: usize) {
    let next = model.values.len() as u64;
    match log.read(offset, max_bytes) {
        Ok(slice) => {
            assert!(offset >= model.start && offset <= next, "read {offset} should fail");
            let recs: Vec<_> = slice.records().map(|r| r.unwrap()).collect();
            if offset == next {
                assert!(recs.is_empty());
                return;
            }
            assert!(!recs.is_empty(), "at least one record at {offset}");
            // Whole batches as appended, from the one holding `offset`.
            let stored: Vec<(u64, u64)> = batch::batches(slice.bytes())
                .map(|b| {
                    let b = b.unwrap();
                    (b.base_offset() as u64, b.last_offset() as u64 + 1)
                })
                .collect();
            let first = model.batch_holding(offset);
            let i = model.batches.iter().position(|&b| b == first).unwrap();
            assert_eq!(stored, model.batches[i..i + stored.len()], "batches read at {offset}");
            assert!(stored.len() == 1 || slice.len() <= max_bytes, "max_bytes respected");
            for (i, r) in recs.iter().enumerate() {
                let o = offset + i as u64;
                assert_eq!(r.offset, o);
                assert_eq!(r.value, model.values[o as usize], "value of {o}");
            }
            assert_eq!(slice.next_offset(), offset + recs.len() as u64);
            assert_eq!(slice.next_offset(), stored.last().unwrap().1);
        }
        Err(StorageError::OffsetOutOfRange { log_start_offset, next_offset, .. }) => {
            assert!(offset < model.start || offset > next, "read {offset} should succeed");
            assert_eq!((log_start_offset, next_offset), (model.start, next));
        }
        Err(e) => panic!("read {offset}: {e}"),
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config()).unwrap();
    let mut model = Model { values: Vec::new(), batches: Vec::new(), start: 0 };
    for op in ops {
        let next = model.values.len() as u64;
        let span = next - model.start;
        match op {
            Op::Append { lens, codec } => {
                let values: Vec<_> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, l)| l.map(|l| value(next + i as u64, l)))
                    .collect();
                let recs: Vec<_> = values
                    .iter()
                    .map(|v| NewRecord { value: v.as_deref(), ..NewRecord::value(b"") })
                    .collect();
                let r = match Compression::ALL[codec] {
                    Compression::None => log.append(&recs).unwrap(),
                    c => log.append_batches(&mut record::build_batch(&recs, c).unwrap()).unwrap(),
                };
                assert_eq!((r.first, r.next), (next, next + values.len() as u64));
                model.values.extend(values);
                model.batches.push((r.first, r.next));
            }
            Op::Read { at_permille, max_bytes } => {
                let offset = model.start + span * u64::from(at_permille) / 1000;
                check_read(&log, &model, offset, max_bytes);
                if model.start > 0 {
                    check_read(&log, &model, model.start - 1, max_bytes);
                }
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().unwrap();
                }
                drop(log);
                log = Log::open(dir.path(), config()).unwrap();
            }
            Op::Trim { at_permille } => {
                let to = model.start + span * u64::from(at_permille) / 1000;
                assert_eq!(log.trim_before(to).unwrap(), to.max(model.start));
                model.start = to.max(model.start);
            }
        }
        assert_eq!(log.next_offset(), model.values.len() as u64);
        assert_eq!(log.log_start_offset(), model.start);
    }
    // Full replay at the end.
    let mut at = model.start;
    while at < model.values.len() as u64 {
        let s = log.read(at, 1000).unwrap();
        for r in s.records() {
            assert_eq!(r.unwrap().value, model.values[at as usize]);
            at += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn log_agrees_with_an_in_memory_vec(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
