//! A TURN client (RFC 8656): a sans-IO core ([`TurnClient`]), stream framing for TCP and TLS
//! ([`StreamDecoder`]) and a thin tokio driver ([`TurnRelay`]) over UDP, TCP and TLS.
//!
//! Why our own: the Rust SDK's WebRTC stack (str0m) has no TURN client, and relay candidates
//! are what make a link work behind symmetric NATs and firewalls that only open 443. The core
//! reuses the project's STUN codec (`proto::stun`), ChannelData helpers (`proto::channel`) and
//! stream framing (`proto::framing`), so client and server agree on every byte.
//!
//! The core follows the project's sans-IO rule: time comes in as an [`Instant`] argument,
//! transaction ids come from a seed the caller draws, and the output is bytes for the server
//! ([`TurnClient::poll_transmit`]), events ([`TurnClient::poll_event`]) and the next deadline
//! ([`TurnClient::poll_timeout`]).
//!
//! [`Instant`]: std::time::Instant

mod config;
mod core;
mod driver;
mod stream;
#[cfg(test)]
mod tests;

pub use self::core::{TurnClient, TurnConfig, TurnEvent};
pub use driver::{MAX_REDIRECTS, TurnRelay, TurnServer, TurnTransport, tls_client_config};
pub use stream::StreamDecoder;

/// The STUN methods a client transaction can be for (named in errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Allocate.
    Allocate,
    /// Refresh.
    Refresh,
    /// CreatePermission.
    CreatePermission,
    /// ChannelBind.
    ChannelBind,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Allocate => "Allocate",
            Method::Refresh => "Refresh",
            Method::CreatePermission => "CreatePermission",
            Method::ChannelBind => "ChannelBind",
        })
    }
}

/// Why a TURN operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// The server never answered a request (all retransmissions spent, or the stream timeout).
    #[error("{0}: no answer from the TURN server")]
    Timeout(Method),
    /// The server refused a request with an error code.
    #[error("{method}: error {code} {reason}")]
    Rejected {
        /// The request.
        method: Method,
        /// The STUN error code (300-699).
        code: u16,
        /// The reason phrase (truncated, lossy UTF-8).
        reason: String,
    },
    /// The server (draining) sent us to another server: 300 Try Alternate with an
    /// ALTERNATE-SERVER, signed with our credentials. [`TurnRelay::allocate`] follows it (a
    /// bounded number of hops); the sans-IO core reports it.
    #[error("{method}: try alternate server {alternate}")]
    TryAlternate {
        /// The request.
        method: Method,
        /// Where to allocate instead (same transport).
        alternate: std::net::SocketAddr,
    },
    /// The server answered 401 to a request that carried our credentials.
    #[error("{0}: the TURN server refused our credentials")]
    Unauthorized(Method),
    /// The server kept answering 401/438 with new nonces.
    #[error("{0}: too many authentication rounds")]
    AuthLoop(Method),
    /// A success response lacked what RFC 8656 requires (such as XOR-RELAYED-ADDRESS).
    #[error("{0}: malformed success response")]
    MalformedResponse(Method),
    /// There is no allocation (not yet made, failed, or expired).
    #[error("no allocation")]
    NotAllocated,
    /// An allocation exists or is being made.
    #[error("an allocation exists or is in progress")]
    AlreadyAllocated,
    /// No permission for the peer: call `create_permission` first.
    #[error("no permission for peer {0}")]
    NoPermission(std::net::IpAddr),
    /// Application data larger than a TURN message can carry.
    #[error("payload of {0} bytes is too large")]
    PayloadTooLarge(usize),
    /// A bound is reached (permissions, channels, transactions, queued bytes).
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The peer's address family differs from the relayed address's.
    #[error("peer address family differs from the relayed address")]
    AddressFamily,
    /// The stream from the server cannot be framed (neither STUN nor ChannelData).
    #[error("the TURN stream cannot be framed")]
    Framing,
    /// An I/O error in the driver (connect, TLS handshake, read, write).
    #[error("I/O: {0}")]
    Io(String),
    /// The client was closed.
    #[error("closed")]
    Closed,
}
