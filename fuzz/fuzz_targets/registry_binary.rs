//! Binary relay frames from two connections, before and after join, into the registry core and
//! the relay frame parser and box opener (turnpike::registry::fuzzing::registry_binary).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::registry::fuzzing::registry_binary(data);
});
