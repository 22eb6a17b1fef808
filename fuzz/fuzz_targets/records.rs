//! Stored records as a consumer reads fetched bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    minikafka::fuzzing::records(data);
});
