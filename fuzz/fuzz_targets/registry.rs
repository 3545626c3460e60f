//! Bytes fed to the registry: its text and relay-frame parsers, the client's event parser and
//! box opener, and a core with two joined peers (turnpike::registry::fuzzing::registry).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::registry::fuzzing::registry(data);
});
