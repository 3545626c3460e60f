//! The TURN client's settings: credentials, timers and bounds.

use std::time::Duration;

/// What a [`TurnClient`](super::TurnClient) needs to know: credentials, timers and bounds.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// The long-term username (a REST username is `expiry:user`).
    pub username: String,
    /// The password (for REST credentials: base64 of HMAC-SHA1(secret, username)).
    pub password: String,
    /// The allocation lifetime to ask for (`None`: the server's default).
    pub lifetime: Option<Duration>,
    /// True over TCP or TLS: no retransmissions (the stream is reliable), one overall
    /// transaction timeout instead, and ChannelData padded to a multiple of 4 bytes.
    pub stream: bool,
    /// The first retransmission timeout over UDP (RFC 8489: 500 ms), doubled each time.
    pub rto: Duration,
    /// Transmissions of a request over UDP before giving up (RFC 8489 `Rc`: 7).
    pub max_transmits: u32,
    /// After the last transmission, wait this many initial RTOs (RFC 8489 `Rm`: 16).
    pub last_wait_factor: u32,
    /// The transaction timeout over a stream (RFC 8489 `Ti`: 39.5 s).
    pub stream_timeout: Duration,
    /// Most permissions (peer IP addresses) at once.
    pub max_permissions: usize,
    /// Most bytes waiting in each queue: outgoing transmits, and received data not yet polled.
    pub max_queued_bytes: usize,
}

impl TurnConfig {
    /// A configuration with the RFC's timers for `username`/`password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>, stream: bool) -> Self {
        TurnConfig {
            username: username.into(),
            password: password.into(),
            lifetime: None,
            stream,
            rto: Duration::from_millis(500),
            max_transmits: 7,
            last_wait_factor: 16,
            stream_timeout: Duration::from_millis(39_500),
            max_permissions: 256,
            max_queued_bytes: 1 << 20,
        }
    }

    /// A configuration with a REST credential for `user` minted from a shared `secret`, valid
    /// `ttl_secs` from `now_unix` (the username is `expiry:user`).
    pub fn rest(secret: &[u8], user: &str, now_unix: u64, ttl_secs: u64, stream: bool) -> Self {
        let c = crate::proto::credentials::mint(secret, user, now_unix, ttl_secs);
        TurnConfig::new(c.username, c.password, stream)
    }
}
