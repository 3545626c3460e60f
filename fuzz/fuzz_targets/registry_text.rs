//! Lines of text frames (join included) from two connections into the registry core, with the
//! client's event parser on every frame (turnpike::registry::fuzzing::registry_text).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::registry::fuzzing::registry_text(data);
});
