//! The link core's public types: settings, transmits, events, errors, close reasons, stats.

use std::time::Duration;

use super::Path;
use super::modes::Mode;
use super::receive::Message;

/// Settings of one link end. [`LinkConfig::default`] is the protocol's defaults.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Fall back to the relay when p2p is not up within this delay (`fallbackAfterMs`).
    pub fallback_after: Duration,
    /// The unacked buffer's size (`maxBufferedBytes`).
    pub max_buffered_bytes: usize,
    /// `limits.relay_bytes_per_sec` from the registry's `welcome`; blobs are paced to 90 %.
    pub relay_bytes_per_sec: u64,
    /// Bytes a relay blob adds to a frame (counter, nonce, tag, peer id), for pacing.
    pub relay_overhead: usize,
    /// Frame bytes unacknowledged in flight on the relay, at most.
    pub relay_max_in_flight_bytes: u64,
    /// Frames unacknowledged in flight on the relay, at most (24: the registry queues 32 blobs
    /// per peer and drops beyond).
    pub relay_max_in_flight_frames: u64,
    /// Stop writing to the DataChannel while its `bufferedAmount` is above this.
    pub p2p_high_water: u64,
    /// This end opened the link (it offers, and restarts ICE while in relay).
    pub offerer: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            fallback_after: Duration::from_secs(10),
            max_buffered_bytes: 1 << 20,
            relay_bytes_per_sec: 1 << 20,
            relay_overhead: 1 + 24 + 16 + 8 + 64,
            relay_max_in_flight_bytes: 256 * 1024,
            relay_max_in_flight_frames: 24,
            p2p_high_water: 1 << 20,
            offerer: true,
        }
    }
}

/// A frame to send on a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The path.
    pub path: Path,
    /// The encoded frame (sealed by the I/O layer on the relay).
    pub bytes: Vec<u8>,
}

/// The error codes of §7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A malformed frame or message from the peer.
    ProtocolError,
    /// The relay path is refused: the peer's key is not attested.
    NotAttested,
    /// The registry does not know the peer.
    UnknownPeer,
    /// The registry could not deliver a signaling message.
    Undelivered,
    /// The token expired and no fresh one came.
    TokenExpired,
    /// `send` of a message above 1 MiB.
    MessageTooLarge,
    /// `send` waited `sendTimeoutMs` for room.
    SendTimeout,
    /// `send` on a closed link.
    LinkClosed,
}

impl ErrorCode {
    /// The code's name in §7.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProtocolError => "protocol_error",
            ErrorCode::NotAttested => "not_attested",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::Undelivered => "undelivered",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::SendTimeout => "send_timeout",
            ErrorCode::LinkClosed => "link_closed",
        }
    }
}

/// A link `error` event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct LinkError {
    /// The code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

/// Why a link closed (§8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// `close()` on this end.
    Local,
    /// A `CLOSE` frame from the peer.
    RemoteClosed,
    /// The session closed or gave up.
    SessionClosed,
    /// The peer broke the protocol.
    ProtocolError,
}

impl CloseReason {
    /// The reason's name in §8.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Local => "local",
            CloseReason::RemoteClosed => "remote_closed",
            CloseReason::SessionClosed => "session_closed",
            CloseReason::ProtocolError => "protocol_error",
        }
    }
}

/// What a link end reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first path is up (`open`).
    Open(Path),
    /// A message, in order, exactly once.
    Message(Message),
    /// The sending path changed.
    Mode(Mode),
    /// Something went wrong; the link carries on unless `Closed` follows.
    Error(LinkError),
    /// The WebRTC path should call `restartIce()`.
    RestartIce,
    /// The link closed; nothing follows.
    Closed(CloseReason),
}

/// Counters of one link end (§7 `stats()`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted by `send`.
    pub sent: u64,
    /// Messages delivered.
    pub received: u64,
    /// Frame bytes sent on the DataChannel.
    pub p2p_bytes: u64,
    /// Frame bytes sent through the relay.
    pub relay_bytes: u64,
    /// The relay's smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Frames sent again (timeouts and switches).
    pub retransmitted_frames: u64,
    /// Malformed frames dropped.
    pub malformed_frames: u64,
    /// Frames carrying our own epoch as their source (our own frames sent back), dropped.
    pub reflected_frames: u64,
    /// Well-formed frames from the peer's current incarnation, duplicates and resends
    /// included: a peer that is still resending is still heard (`turnpike link --linger`).
    pub received_frames: u64,
    /// Messages not yet acknowledged.
    pub unacked_messages: usize,
    /// Bytes held by the unacked buffer.
    pub buffered_bytes: usize,
    /// The type of our candidate in the p2p path's selected pair (`host`, `srflx`, `prflx`,
    /// `relay`; as `localCandidateType`), once a pair carried the DataChannel. The pure core
    /// knows no candidates: the session fills it from its p2p path.
    pub local_candidate_type: Option<String>,
    /// The type of the peer's candidate in that pair (`remoteCandidateType`).
    pub remote_candidate_type: Option<String>,
}
