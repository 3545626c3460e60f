//! A datagram from the network, fed to the protocol core both as a client datagram (STUN or
//! ChannelData on a listener) and as a peer datagram (on a relay socket).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    turnpike::proto::fuzzing::datagram(data);
});
