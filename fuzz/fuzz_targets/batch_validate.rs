//! A record set through the stored-batch layer: split, validate, decompress, iterate, and
//! compare with kafka-protocol's decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    minikafka::fuzzing::batch_validate(data);
});
