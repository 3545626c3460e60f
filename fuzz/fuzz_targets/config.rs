//! Bytes as a configuration file, through the loader and validation
//! (turnpike::config::fuzzing::config).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::config::fuzzing::config(data);
});
