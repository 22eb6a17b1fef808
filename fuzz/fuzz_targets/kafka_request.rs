//! Kafka listener: request header + body of the API it names, Produce record batches included;
//! and the bytes as a raw record set for the batch decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    minikafka::fuzzing::kafka_request(data);
    minikafka::fuzzing::kafka_batches(&bytes::Bytes::copy_from_slice(data));
});
