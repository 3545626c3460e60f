//! Bytes fed to the link frame parser and to a link end on both paths, with timers and every
//! output polled (turnpike::link::fuzzing::link_frames).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::link::fuzzing::link_frames(data);
});
