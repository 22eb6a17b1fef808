//! The stable-toolchain fuzz harness: drives the same targets as the cargo-fuzz targets in
//! `fuzz/` (`minikafka::fuzzing`) with proptest byte soup and with seeded mutations of valid
//! inputs (bit flips, byte sets, truncation, insertion, splicing), so every `cargo test` fuzzes a
//! little. A panic in a target is a bug; each one found becomes a regression test at the bottom.

use std::path::Path;

use bytes::Bytes;
use minikafka::fuzzing;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SOUP_CASES: u32 = 400;
const MUTATIONS: u64 = 1500;

/// One seeded mutation of `base`.
fn mutate(base: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..v.len());
        match rng.random_range(0..7) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = rng.random(),
            2 => v[at] = [0, 0xff, 0x7f, 0x80][rng.random_range(0..4)],
            3 => v.truncate(at),
            4 => {
                let n = rng.random_range(1..16);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, junk);
            }
            5 => {
                // Overwrite four bytes with a big or negative length.
                let len: u32 =
                    [u32::MAX, 0x7fff_ffff, 0x8000_0000, 1 << 20][rng.random_range(0..4)];
                for (k, b) in len.to_le_bytes().iter().enumerate() {
                    if let Some(x) = v.get_mut(at + k) {
                        *x = *b;
                    }
                }
            }
            _ => {
                // Duplicate a slice elsewhere (splice).
                let end = rng.random_range(at..=v.len());
                let chunk = v[at..end].to_vec();
                let to = rng.random_range(0..=v.len());
                v.splice(to..to, chunk);
            }
        }
    }
    v
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: SOUP_CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn native_stream_survives_byte_soup(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::native_stream(&data);
    }

    #[test]
    fn records_survive_byte_soup(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::records(&data);
    }

    #[test]
    fn kafka_request_survives_byte_soup(
        key in 0i16..70,
        version in -1i16..14,
        data in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // A valid-looking prefix (key, version, correlation id) so bodies get decoded at all.
        let mut frame = key.to_be_bytes().to_vec();
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&7i32.to_be_bytes());
        frame.extend_from_slice(&data);
        fuzzing::kafka_request(&frame);
        fuzzing::kafka_request(&data);
    }

    #[test]
    fn kafka_batches_survive_byte_soup(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::kafka_batches(&Bytes::from(data));
    }

    #[test]
    fn stored_batches_survive_byte_soup(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        fuzzing::batch_validate(&data);
    }
}

#[test]
fn native_stream_survives_mutations_of_valid_frames() {
    let base = fuzzing::sample_native_stream();
    let whole = fuzzing::native_stream(&base);
    assert_eq!(whole.refused, 0, "the sample is valid");
    assert!(whole.decoded >= 10);
    let mut rng = StdRng::seed_from_u64(1);
    let mut refused = 0;
    for _ in 0..MUTATIONS {
        refused += fuzzing::native_stream(&mutate(&base, &mut rng)).refused;
    }
    assert!(refused > 0, "mutations should hit refusals");
    println!("native stream: {MUTATIONS} mutations, {refused} refusals, no panic");
}

#[test]
fn kafka_request_survives_mutations_of_a_valid_produce() {
    let base = fuzzing::sample_kafka_produce(5);
    let whole = fuzzing::kafka_request(&base);
    assert_eq!(whole.refused, 0, "the sample is valid");
    assert_eq!(whole.decoded, 2 + 5, "header, body and five records");
    let mut rng = StdRng::seed_from_u64(2);
    let (mut decoded, mut refused) = (0, 0);
    for _ in 0..MUTATIONS {
        let o = fuzzing::kafka_request(&mutate(&base, &mut rng));
        decoded += o.decoded;
        refused += o.refused;
    }
    println!("kafka produce: {MUTATIONS} mutations, {decoded} units decoded, {refused} refused");
}

#[test]
fn stored_batches_survive_mutations_of_valid_batches() {
    let base = fuzzing::sample_batches();
    let whole = fuzzing::batch_validate(&base);
    assert_eq!((whole.decoded, whole.refused), (5 * 4, 0), "the sample is valid");
    let mut rng = StdRng::seed_from_u64(4);
    let (mut decoded, mut refused) = (0, 0);
    for _ in 0..MUTATIONS {
        let o = fuzzing::batch_validate(&mutate(&base, &mut rng));
        decoded += o.decoded;
        refused += o.refused;
    }
    assert!(refused > 0, "mutations should hit refusals");
    println!("stored batches: {MUTATIONS} mutations, {decoded} records read, {refused} refused");
}

#[test]
fn recovery_survives_mutations_of_a_valid_segment() {
    let dir = scratch();
    let base = fuzzing::sample_segment(dir.path(), 20);
    let whole = fuzzing::recover_segment(dir.path(), &base);
    assert_eq!(whole.decoded, 20, "a valid segment recovers whole");
    let mut rng = StdRng::seed_from_u64(3);
    let cases = MUTATIONS / 3;
    let (mut recovered, mut refused) = (0, 0);
    for _ in 0..cases {
        let d = scratch();
        let o = fuzzing::recover_segment(d.path(), &mutate(&base, &mut rng));
        recovered += o.decoded;
        refused += o.refused;
    }
    println!(
        "segment recovery: {cases} mutated segments, {recovered} records kept, {refused} refused"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn recovery_survives_byte_soup_after_a_valid_header(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let d = scratch();
        let base = fuzzing::sample_segment(d.path(), 0);
        let mut data = base.clone();
        data.extend_from_slice(&tail);
        fuzzing::recover_segment(d.path(), &data);
    }
}

// ---- Regressions: inputs that crashed a target once. ----

/// Found by `kafka_request_survives_mutations_of_a_valid_produce`: kafka-protocol 0.18 reserved
/// `count * size_of::<T>()` for an array before decoding an element, so a 16-byte Metadata v0
/// request claiming 2^31-1 topics made the broker try to allocate ~100 GB and abort. Fixed by the
/// patched vendor/kafka-protocol (count checked against the bytes left, capacity capped).
#[test]
fn regression_kafka_array_count_cannot_force_a_huge_allocation() {
    let mut frame = Vec::new();
    frame.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    frame.extend_from_slice(&0i16.to_be_bytes()); // v0 (request header v1)
    frame.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // client id: null
    frame.extend_from_slice(&i32::MAX.to_be_bytes()); // topics: 2^31-1 of them, none present
    let o = fuzzing::kafka_request(&frame);
    assert_eq!((o.decoded, o.refused), (1, 1), "header decodes, body is refused");
}

/// The same through a compact (flexible-version) array: Metadata v9 with a varint count of 2^32-2.
#[test]
fn regression_kafka_compact_array_count_cannot_force_a_huge_allocation() {
    let mut frame = Vec::new();
    frame.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    frame.extend_from_slice(&9i16.to_be_bytes()); // v9 (request header v2)
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // client id: null
    frame.push(0); // no tagged fields
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // topics: varint 2^32-1 => n = 2^32-2
    let o = fuzzing::kafka_request(&frame);
    assert_eq!((o.decoded, o.refused), (1, 1), "header decodes, body is refused");
}

/// A few KiB of zstd that expand past the decompression cap must be refused, not expanded until
/// the process is killed for memory.
#[test]
fn regression_a_zstd_bomb_is_refused_at_the_decompression_cap() {
    use kafka_protocol::compression::{Decompressor, MAX_DECOMPRESSED_BYTES, Zstd};
    let zeros = std::io::Read::take(std::io::repeat(0), MAX_DECOMPRESSED_BYTES as u64 + 1);
    let bomb = zstd::stream::encode_all(zeros, 19).unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {} bytes", bomb.len());
    let mut input = bytes::Bytes::from(bomb);
    let res = Zstd::decompress(&mut input, |b: &mut bytes::Bytes| Ok(b.len()));
    let err = res.expect_err("a bomb past the cap must be refused");
    println!("zstd bomb of {} expanded bytes refused: {err:#}", MAX_DECOMPRESSED_BYTES + 1);
}

/// Raw snappy states its decompressed length up front: a claim past the cap is refused before
/// anything is allocated for it.
#[test]
fn regression_a_snappy_length_claim_past_the_cap_is_refused() {
    use kafka_protocol::compression::{Decompressor, Snappy};
    // varint 1 GiB, then a few bytes that are not the stream it promises.
    let mut input = bytes::Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x04, 0, 1, 2]);
    let res = Snappy::decompress(&mut input, |b: &mut bytes::Bytes| Ok(b.len()));
    let err = res.expect_err("a 1 GiB claim must be refused");
    assert!(format!("{err:#}").contains("exceed"), "{err:#}");
}
