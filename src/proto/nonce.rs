//! Stateless nonces: no per-client state exists before a client authenticates.
//!
//! A nonce is `base64url(timestamp_be32 || HMAC-SHA256(key, timestamp || client IP)[..8])`,
//! 16 characters. It is bound to the client's IP, not its port, so a client host that opens
//! several allocations (a browser's ICE agent, a load generator) can reuse one nonce instead of
//! paying a 401 round trip per socket; integrity, not the nonce, is what authenticates. The server recognises its own nonces by recomputing the MAC, and calls one
//! stale when its timestamp is older than the configured lifetime. The key is random per
//! process, so a restart makes old nonces stale, which clients handle (438, then retry), unless
//! `auth.nonce_key` is configured: then the key is derived from that secret
//! ([`derive_nonce_key`]), so every node of a fleet configured with it accepts the nonces any of
//! them issued, and a restart keeps them valid.

use std::net::{IpAddr, SocketAddr};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Length of an encoded nonce.
pub const NONCE_LEN: usize = 16;

/// The label mixed into [`derive_nonce_key`], so the nonce key differs from any other key an
/// operator derives from the same secret.
const DERIVE_LABEL: &[u8] = b"turnpike nonce key v1";

/// The nonce key of a fleet: `HMAC-SHA256(secret, "turnpike nonce key v1")`. Every node given
/// the same `auth.nonce_key` secret derives the same key, so a nonce from one node is valid on
/// the others; the secret itself never reaches a STUN message.
pub fn derive_nonce_key(secret: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(DERIVE_LABEL);
    mac.finalize().into_bytes().into()
}

/// What a nonce check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, for this client, and fresh.
    Valid,
    /// Ours but too old (or from the future): answer 438 with a new nonce.
    Stale,
    /// Not a nonce this server issued to this client: also 438.
    Invalid,
}

/// The secret that makes nonces unforgeable.
#[derive(Clone)]
pub struct NonceKey {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceKey")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl NonceKey {
    /// A key from 32 random bytes (the caller supplies randomness: the core reads no entropy).
    pub fn new(key: [u8; 32], lifetime_secs: u64) -> Self {
        NonceKey {
            key,
            lifetime_secs: lifetime_secs.max(1),
        }
    }

    fn mac(&self, ts: u32, client: SocketAddr) -> [u8; 8] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&ts.to_be_bytes());
        match client.ip() {
            IpAddr::V4(ip) => mac.update(&ip.octets()),
            IpAddr::V6(ip) => mac.update(&ip.octets()),
        }
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }

    /// Issues a nonce for `client` at UNIX time `now_unix`.
    pub fn issue(&self, now_unix: u64, client: SocketAddr) -> [u8; NONCE_LEN] {
        let ts = now_unix as u32;
        let mut raw = [0u8; 12];
        raw[..4].copy_from_slice(&ts.to_be_bytes());
        raw[4..].copy_from_slice(&self.mac(ts, client));
        let mut out = [0u8; NONCE_LEN];
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(raw, &mut out)
            .expect("12 bytes encode to 16");
        out
    }

    /// Checks a nonce presented by `client`.
    pub fn check(&self, nonce: &[u8], now_unix: u64, client: SocketAddr) -> NonceCheck {
        if nonce.len() != NONCE_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; 12];
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(12) => {}
            _ => return NonceCheck::Invalid,
        }
        let ts = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        if !bool::from(self.mac(ts, client).ct_eq(&raw[4..])) {
            return NonceCheck::Invalid;
        }
        let now = now_unix as u32;
        let age = now.wrapping_sub(ts);
        // A nonce from the future (clock stepped back) is treated as stale, not valid forever.
        if age as u64 >= self.lifetime_secs || age > u32::MAX / 2 {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> NonceKey {
        NonceKey::new([9; 32], 600)
    }

    #[test]
    fn fresh_nonces_are_valid_for_their_client_ip_only() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let same_host: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:5000".parse().unwrap();
        let n = key().issue(1_000_000, a);
        assert!(
            n.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        );
        assert_eq!(key().check(&n, 1_000_000, a), NonceCheck::Valid);
        assert_eq!(key().check(&n, 1_000_599, a), NonceCheck::Valid);
        assert_eq!(key().check(&n, 1_000_000, same_host), NonceCheck::Valid);
        assert_eq!(key().check(&n, 1_000_000, b), NonceCheck::Invalid);
        assert_eq!(
            NonceKey::new([8; 32], 600).check(&n, 1_000_000, a),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn a_derived_key_is_shared_by_nodes_with_the_same_secret_only() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let node_a = NonceKey::new(derive_nonce_key(b"fleet secret 0123456789"), 600);
        let node_b = NonceKey::new(derive_nonce_key(b"fleet secret 0123456789"), 600);
        let other = NonceKey::new(derive_nonce_key(b"fleet secret 0123456780"), 600);
        let n = node_a.issue(1_000_000, a);
        assert_eq!(node_b.check(&n, 1_000_010, a), NonceCheck::Valid);
        assert_eq!(other.check(&n, 1_000_010, a), NonceCheck::Invalid);
        // The key is not the secret, and depends on the label.
        let key = derive_nonce_key(b"fleet secret 0123456789");
        assert_ne!(&key[..], &b"fleet secret 0123456789"[..23]);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"fleet secret 0123456789").unwrap();
        mac.update(b"another label");
        assert_ne!(key, <[u8; 32]>::from(mac.finalize().into_bytes()));
    }

    #[test]
    fn nonces_go_stale() {
        let a: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let n = key().issue(1_000_000, a);
        assert_eq!(key().check(&n, 1_000_600, a), NonceCheck::Stale);
        assert_eq!(
            key().check(&n, 999_000, a),
            NonceCheck::Stale,
            "from the future"
        );
    }

    #[test]
    fn garbage_is_invalid() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        for g in [
            &b""[..],
            b"short",
            b"################",
            b"AAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(key().check(g, 1, a), NonceCheck::Invalid);
        }
    }
}
