//! The link's direct path: a WebRTC peer on str0m (sans-IO) with one negotiated DataChannel
//! (`docs/link-protocol.md` §1) and the signaling payloads of §6.
//!
//! - [`srflx`]: server-reflexive candidates (a STUN Binding request to each `stun:` server
//!   through the host socket).
//! - [`signal`]: the JSON payloads (`webrtc_offer`, `webrtc_answer`, `webrtc_ice_candidate`).
//! - [`RtcPeer`]: the sans-IO peer (str0m's `Rtc`, the channel, candidate queues, ICE restart,
//!   the relay-only policy).
//! - [`WebRtcConnector`]: the session's p2p seam on [`WebRtcPeer`] (ICE servers from the
//!   registry's welcome, `turn:`/`turns:` over UDP, TCP and TLS, `iceTransportPolicy`).
//! - [`WebRtcPeer`]: a tokio task that owns a UDP socket for the host candidate and a
//!   [`TurnRelay`](super::turn::TurnRelay) for the relay candidate (str0m has no TURN client:
//!   relayed traffic is fed to str0m as if it arrived on the relayed address, and what str0m
//!   sends from that address goes out through the relay).

mod connector;
mod driver;
mod peer;
pub mod signal;
pub mod srflx;

pub use connector::{HostCandidate, WebRtcConnector};
pub use driver::{TurnOption, WebRtcOptions, WebRtcPeer};
pub use peer::{IceState, PeerEvent, PeerOutput, RtcPeer, RtcPeerConfig, SCTP_MAX_BUFFERED};
pub use signal::{CandidateInit, LinkSignal, SessionDescription};

/// The DataChannel's label and protocol (link protocol v1).
pub const CHANNEL_LABEL: &str = "turnpike.link.v1";
/// The negotiated DataChannel's stream id.
pub const CHANNEL_ID: u16 = 0;

/// Why a WebRTC operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// str0m refused an input (bad SDP, bad candidate, state error).
    #[error("rtc: {0}")]
    Rtc(String),
    /// A signaling payload could not be parsed.
    #[error("bad signaling payload: {0}")]
    Signal(String),
    /// The DataChannel is not open.
    #[error("the DataChannel is not open")]
    NotOpen,
    /// The channel's send buffer is full (the driver holds the message and tries again).
    #[error("the DataChannel's buffer is full")]
    Full,
    /// A message above the link's frame limit.
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// The peer's task ended.
    #[error("closed")]
    Closed,
    /// No candidate could be gathered (no host address allowed, no TURN allocation).
    #[error("no candidates: {0}")]
    NoCandidates(String),
    /// I/O in the driver.
    #[error("I/O: {0}")]
    Io(String),
}
