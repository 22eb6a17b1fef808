//! Native protocol: a connection's bytes as frames, each decoded as a request (and a response).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    minikafka::fuzzing::native_stream(data);
});
