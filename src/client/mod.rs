//! Clients of turnpike's services.
//!
//! - [`registry`]: the registry client (signaling, relay, reconnect).
//! - [`seal`]: the relay's end-to-end encryption (`crypto_box::SalsaBox` with a replay counter).
//! - [`turn`]: a TURN client (sans-IO core, tokio driver over UDP, TCP and TLS).
//! - [`webrtc`]: the link's direct path, a WebRTC DataChannel on str0m (feature `webrtc`).

pub mod events;
pub mod registry;
pub mod seal;

pub use registry::{ClientConfig, ClientError, Event, RegistryClient};
pub use seal::{KeyPair, SealError, Sealer};
pub mod turn;
#[cfg(feature = "webrtc")]
pub mod webrtc;
