//! Bytes as a TCP/TLS client sends them, read in chunks of arbitrary sizes, framed as the
//! stream listeners frame them into a stream core (turnpike::proto::fuzzing::stream).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::proto::fuzzing::stream(data);
});
