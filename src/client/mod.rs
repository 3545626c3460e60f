//! Clients of turnpike's services.
//!
//! - [`registry`]: the registry client (signaling, relay, reconnect).
//! - [`Session`] and [`Link`]: the link session (docs/link-protocol.md §7): links to peers
//!   over the relay (and p2p through a [`p2p::P2pConnector`]), in order and exactly once.
//! - [`p2p`]: the seam where a WebRTC implementation plugs into a session.
//! - [`seal`]: the relay's end-to-end encryption (`crypto_box::SalsaBox` with a replay counter).
//! - [`verify_attestation`]: checks a peer's key attestation with trusted issuer keys (pure:
//!   keys, JWT, what it must say and the time are passed in).
//! - [`turn`]: a TURN client (sans-IO core, tokio driver over UDP, TCP and TLS).
//! - [`webrtc`]: the link's direct path, a WebRTC DataChannel on str0m (feature `webrtc`).

mod connect;
pub mod events;
mod link_handle;
pub mod p2p;
pub mod registry;
pub mod seal;
mod session;
mod session_task;
pub mod turn;
#[cfg(feature = "webrtc")]
pub mod webrtc;

pub use crate::proto::credentials::IceServer;
pub use crate::registry::attest::{
    AttestationClaims, AttestationError, Expected, verify_attestation,
};
pub use link_handle::{FlushError, Incoming, Link, MAX_UNREAD_BYTES};
pub use registry::{ClientConfig, ClientError, Event, RegistryClient};
pub use seal::{KeyPair, SealError, Sealer};
pub use session::{
    CLOSE_TIMEOUT, EVENT_QUEUE, Session, SessionConfig, SessionError, SessionEvent,
    TOKEN_CALLBACK_TIMEOUT, TokenCallback, TokenSource,
};
