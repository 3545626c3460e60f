//! Clients of turnpike's services.
//!
//! - [`registry`]: the registry client (signaling, relay, reconnect).
//! - [`seal`]: the relay's end-to-end encryption (`crypto_box::SalsaBox` with a replay counter).
//! - [`verify_attestation`]: checks a peer's key attestation with trusted issuer keys (pure:
//!   keys, JWT, what it must say and the time are passed in).

pub mod events;
pub mod registry;
pub mod seal;

pub use crate::proto::credentials::IceServer;
pub use crate::registry::attest::{
    AttestationClaims, AttestationError, Expected, verify_attestation,
};
pub use registry::{ClientConfig, ClientError, Event, RegistryClient};
pub use seal::{KeyPair, SealError, Sealer};
