//! turnpike driven by Rust STUN/TURN code that is not ours, over real UDP sockets on loopback:
//! exact answers (error codes, attributes, sizes) that `turnutils_uclient` cannot show.
//!
//! Requests are built and answers parsed with the `stun-types` codec (plus the TURN attributes
//! of `turn-types`); one test runs the complete `turn-client-proto` client. We sign with
//! MESSAGE-INTEGRITY (HMAC-SHA1, long-term key MD5(username:realm:password)) only: stun-types
//! derives its MESSAGE-INTEGRITY-SHA256 key with SHA-256, which RFC 8489 §9.2.2 does not do
//! without PASSWORD-ALGORITHM.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod errors;
mod reflection;
mod relaying;
mod security;
