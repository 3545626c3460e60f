//! Long-term credential authentication (RFC 8489 §9.2) with REST ephemeral usernames and
//! static users, against stateless nonces.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};

use crate::proto::credentials::{parse_rest_username, rest_password};
use crate::proto::nonce::{NonceCheck, NonceKey};
use crate::proto::stun::{Integrity, Message, attr};

/// Longest USERNAME accepted (RFC 8489 §14.3).
const MAX_USERNAME: usize = 513;

/// Why a request did not authenticate; each maps to an error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No integrity attribute: the first leg of the handshake (401, not an error for metrics).
    Missing,
    /// Integrity present but USERNAME, REALM or NONCE missing (400).
    Incomplete,
    /// NONCE stale or not ours (438).
    StaleNonce,
    /// REALM is not ours (401).
    WrongRealm,
    /// USERNAME neither a static user nor a REST username (401).
    UnknownUser,
    /// REST username past its expiry (401).
    Expired,
    /// MESSAGE-INTEGRITY does not verify (401).
    BadIntegrity,
    /// The credentials verify but their user or username is revoked (403, on Allocate and
    /// Refresh; see `revoked.rs`).
    Revoked,
}

impl AuthFailure {
    /// The STUN error code for this failure.
    pub fn code(self) -> u16 {
        match self {
            AuthFailure::Incomplete => 400,
            AuthFailure::StaleNonce => 438,
            AuthFailure::Revoked => 403,
            _ => 401,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Incomplete => "incomplete",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::WrongRealm => "wrong_realm",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::Expired => "expired",
            AuthFailure::BadIntegrity => "bad_integrity",
            AuthFailure::Revoked => "revoked",
        }
    }
}

/// A request that authenticated.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The USERNAME.
    pub username: String,
    /// The quota key: the REST user part, or the whole username when there is none.
    pub quota_user: String,
    /// The long-term key MD5(username:realm:password).
    pub key: [u8; 16],
    /// The integrity algorithm the request used.
    pub integrity: Integrity,
}

/// The credential store: realm, REST secrets and static users.
pub struct Authenticator {
    realm: String,
    secrets: Vec<Vec<u8>>,
    static_keys: HashMap<String, [u8; 16]>,
    nonces: NonceKey,
    /// Requests whose credentials were checked with cryptography (see
    /// [`Authenticator::crypto_checks`]).
    crypto_checks: AtomicU64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("secrets", &self.secrets.len())
            .field("static_users", &self.static_keys.len())
            .finish()
    }
}

/// The long-term key MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

impl Authenticator {
    /// A store for `realm` with REST `secrets` and static `users` (name → password).
    pub fn new(
        realm: String,
        secrets: Vec<Vec<u8>>,
        users: &HashMap<String, String>,
        nonces: NonceKey,
    ) -> Self {
        let static_keys = users
            .iter()
            .map(|(u, p)| (u.clone(), long_term_key(u, &realm, p)))
            .collect();
        Authenticator {
            realm,
            secrets,
            static_keys,
            nonces,
            crypto_checks: AtomicU64::new(0),
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// A fresh nonce for `client`.
    pub fn nonce(&self, now_unix: u64, client: SocketAddr) -> [u8; crate::proto::nonce::NONCE_LEN] {
        self.nonces.issue(now_unix, client)
    }

    /// How many requests this store has checked with cryptography: each cost a nonce HMAC
    /// and, past it, an MD5 and two HMACs per REST secret. Requests the per-source limit turns
    /// away before their check are not counted: that is how tests see that guessers are
    /// throttled before the work.
    pub fn crypto_checks(&self) -> u64 {
        self.crypto_checks.load(Ordering::Relaxed)
    }

    /// Authenticates a request from `client`.
    pub fn check(
        &self,
        msg: &Message<'_>,
        client: SocketAddr,
        now_unix: u64,
    ) -> Result<Authenticated, AuthFailure> {
        if !msg.has_integrity() {
            return Err(AuthFailure::Missing);
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            msg.get(attr::USERNAME),
            msg.get(attr::REALM),
            msg.get(attr::NONCE),
        ) else {
            return Err(AuthFailure::Incomplete);
        };
        self.crypto_checks.fetch_add(1, Ordering::Relaxed);
        if self.nonces.check(nonce, now_unix, client) != NonceCheck::Valid {
            return Err(AuthFailure::StaleNonce);
        }
        if realm != self.realm.as_bytes() {
            return Err(AuthFailure::WrongRealm);
        }
        let username = match std::str::from_utf8(username) {
            Ok(u) if !u.is_empty() && u.len() <= MAX_USERNAME => u,
            _ => return Err(AuthFailure::UnknownUser),
        };
        if let Some(key) = self.static_keys.get(username) {
            let integrity = msg.verify_integrity(key).ok_or(AuthFailure::BadIntegrity)?;
            return Ok(Authenticated {
                username: username.to_owned(),
                quota_user: username.to_owned(),
                key: *key,
                integrity,
            });
        }
        let rest = parse_rest_username(username).ok_or(AuthFailure::UnknownUser)?;
        if self.secrets.is_empty() {
            return Err(AuthFailure::UnknownUser);
        }
        if rest.expiry <= now_unix {
            return Err(AuthFailure::Expired);
        }
        for secret in &self.secrets {
            let password = rest_password(secret, username);
            let key = long_term_key(username, &self.realm, &password);
            if let Some(integrity) = msg.verify_integrity(&key) {
                let quota_user = if rest.user.is_empty() {
                    username
                } else {
                    rest.user
                };
                return Ok(Authenticated {
                    username: username.to_owned(),
                    quota_user: quota_user.to_owned(),
                    key,
                    integrity,
                });
            }
        }
        Err(AuthFailure::BadIntegrity)
    }
}
