//! The link protocol core (docs/link-protocol.md): one link end between two peers, carrying
//! messages in order and exactly once over a WebRTC DataChannel (p2p) or the registry's
//! encrypted relay, and switching between them.
//!
//! Sans-IO, like `proto/`: no sockets, no tasks, no clock and no randomness of its own. The
//! time comes in with every call, the epoch and a random seed come in when the link end is
//! created. The I/O layer (`turnpike::client::session`, the browser SDK) feeds it frames and
//! WebRTC events and carries out what it asks:
//!
//! ```text
//!   handle_frame(now, path, bytes)      poll_transmit(now) -> (path, frame)
//!   handle_p2p_event(now, event)   ──▶  poll_event() -> message, mode, error, closed, restart ICE
//!   send(now, bytes, binary)            poll_timeout() -> when to call handle_timeout(now)
//! ```
//!
//! - [`frame`]: the frame codec (§2);
//! - [`send`] and [`receive`]: the unacked buffer, acks, fragments, reordering, reassembly (§3);
//! - [`modes`]: modes, the switch table and its timers, the relay's RTO and pacing (§4);
//! - [`attest`]: key attestations (§5);
//! - [`Link`]: the façade that ties them together, with epochs (§2).

pub mod attest;
pub mod frame;
pub mod fuzzing;
mod end;
pub mod modes;
pub mod receive;
pub mod send;
#[cfg(test)]
mod tests;

pub use frame::{Frame, FrameError, FrameKind};
pub use end::{CloseReason, ErrorCode, Event, Link, LinkConfig, LinkError, Stats, Transmit};
pub use modes::{IceState, Mode, P2pEvent};
pub use receive::Message;
pub use send::SendError;

/// Which path a frame came in on or goes out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// The WebRTC DataChannel.
    P2p,
    /// The registry's encrypted relay.
    Relay,
}

impl Path {
    /// `p2p` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::P2p => "p2p",
            Path::Relay => "relay",
        }
    }
}

/// A small deterministic generator (SplitMix64) seeded by the caller: the core's probe nonces
/// come from it, so the core draws no randomness of its own and tests replay exactly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (the I/O layer passes a random one).
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A probe nonce: at most 2^53 - 1, as every `number`.
    pub fn nonce(&mut self) -> u64 {
        self.next_u64() & frame::MAX_NUMBER
    }
}
