//! turnpike: a self-hosted STUN/TURN relay.
//!
//! The crate has two kinds of modules (see `DESIGN.md`):
//! - the pure, sans-IO core in [`proto`]: the STUN codec, authentication, peer policy and the
//!   TURN state machine. It never touches a socket or reads a clock; time is passed in.
//! - the I/O layers (`net`, `http`, `service`) that own sockets, threads and signals and
//!   feed the core; `metrics` reads the core's counters at scrape time; `reload` applies
//!   a new configuration file on SIGHUP.
//!
//! # Cargo features
//!
//! All three are on by default. An agent that only needs the Rust SDK turns the defaults off
//! and picks `webrtc` (or `client`): none of the server is compiled then (README.md, "Using the
//! Rust SDK").
//!
//! - `server` (implies `client`): the relay and its tools: the `turnpike` and `turnpike-bench`
//!   binaries, `proto::server`, `net`, `http`, `service`, `metrics`, `reload`, `tls`, `config`,
//!   `logging`, `audit` and the registry server (everything in [`registry`] beyond its
//!   messages and attestations). Without `webrtc`, the `turnpike link` command is left out.
//! - `client`: the Rust SDK, [`client`]: the registry client, the link session, the relay's
//!   end-to-end encryption and the TURN client.
//! - `webrtc` (implies `client`): the link's direct path, `client::webrtc` (str0m). The
//!   `turnpike link` command needs it.
//!
//! Always built, whatever the features: the pure cores the client shares with the server,
//! [`proto`]'s codec and credentials, [`link`], [`registry::messages`] and
//! [`registry::attest`].
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "server")]
pub mod cluster;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod fleet;
#[cfg(all(test, feature = "server"))]
mod fuzz_seeds;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod import;
pub mod link;
#[cfg(feature = "server")]
pub mod logging;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod net;
#[cfg(feature = "server")]
pub mod probe;
pub mod proto;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod reload;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod tls;

/// Without `server`, only the registry's wire format and key attestations, which the client
/// shares with the server: the same files as `src/registry/messages.rs` and `attest.rs`.
#[cfg(not(feature = "server"))]
pub mod registry {
    pub mod attest;
    pub mod messages;
}
