//! Entry point for the `link_frames` fuzz target in `fuzz/`: bytes decoded as one frame, then
//! cut into frames fed to a link end on both paths (with the epochs of the stream's first
//! frame, so the deep paths are reachable), with timers fired and every output polled.
//! Besides "no panic": decoding is exact (a decoded frame encodes back to the same bytes) and
//! every frame the link sends decodes and fits the frame size limit.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use super::frame::MAX_FRAME_BYTES;
use super::{Frame, Link, LinkConfig, P2pEvent, Path};

/// Feeds `data` to the frame parser and to a link end; must never panic.
pub fn link_frames(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(frame.encode(), data, "a decoded frame encodes back");
    }
    let start = Instant::now();
    let epoch = NonZeroU32::new(0x0a0b_0c0d).expect("non-zero");
    let mut link = Link::new(LinkConfig::default(), start, epoch, 1);
    link.handle_p2p_event(start, P2pEvent::ChannelOpen);
    let _ = link.send(start, b"hello".to_vec(), false);
    // Each chunk: [2 bytes: length L, big-endian][1 byte: path, time step, send][L bytes: frame].
    let mut rest = data;
    let mut now = start;
    let mut steps = 0;
    while rest.len() >= 3 && steps < 4096 {
        steps += 1;
        let length = usize::from(u16::from_be_bytes([rest[0], rest[1]]) & 0x7fff);
        let control = rest[2];
        rest = &rest[3..];
        let take = length.min(rest.len());
        let (frame, tail) = rest.split_at(take);
        rest = tail;
        let path = if control & 1 == 0 {
            Path::P2p
        } else {
            Path::Relay
        };
        now += Duration::from_millis(u64::from((control >> 1) & 0x1f) * 37);
        link.handle_frame(now, path, frame);
        if control & 0x80 != 0 {
            let _ = link.send(now, frame.to_vec(), control & 0x40 != 0);
        }
        if let Some(at) = link.poll_timeout() {
            if at <= now {
                link.handle_timeout(now);
            }
        }
        while let Some(transmit) = link.poll_transmit(now) {
            assert!(transmit.bytes.len() <= MAX_FRAME_BYTES);
            if let Err(e) = Frame::decode(&transmit.bytes) {
                panic!("the link sent a bad frame ({e}): {:02x?}", transmit.bytes);
            }
        }
        while link.poll_event().is_some() {}
        let _ = link.stats();
    }
}
