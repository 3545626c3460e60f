//! Helpers for the link tests (tests/link_*.rs): Chromium pages running the browser SDK
//! ([`pages`]), turnpike inside a network namespace ([`ns_server`]), and what every link test
//! sets up: a registry configuration, tokens, TURN credentials.
#![allow(dead_code)] // each test binary uses a different part

pub mod calls;
pub mod ns_server;
pub mod pages;
pub mod raw_peer;
pub mod sniff;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use turnpike::proto::credentials;

use crate::common::{Conf, SECRET_ONE, unix_now};
use crate::registry_support::{JWT_SECRET, claims, token};

/// The project every link test uses.
pub const PROJECT: &str = "links";

/// A server configuration with the registry on (HS256 tokens signed with `JWT_SECRET`);
/// `extra` adds `[registry]` keys.
pub fn registry_conf(extra: &str) -> Conf {
    Conf {
        extra_toml: format!(
            "[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n{extra}\n"
        ),
        ..Conf::default()
    }
}

/// A registry token for `peer` in [`PROJECT`], valid for an hour.
pub fn peer_token(peer: &str) -> String {
    token(&claims(peer, PROJECT))
}

/// An `iceServers` array with one `turn:` URL and fresh REST credentials for it.
pub fn ice_servers(turn_url: &str) -> Value {
    let credential = credentials::mint(SECRET_ONE.as_bytes(), "link", unix_now(), 3600);
    json!([{
        "urls": turn_url,
        "username": credential.username,
        "credential": credential.password,
    }])
}

/// Milliseconds since 1970 (the pages time their events with `Date.now()`, the same clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Common call limits.
pub const SHORT: Duration = Duration::from_secs(10);
pub const LONG: Duration = Duration::from_secs(60);
