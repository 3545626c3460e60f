//! End-to-end encryption of relay blobs (docs/registry-protocol.md §5): NaCl's `crypto_box`
//! (`SalsaBox`: X25519, XSalsa20-Poly1305; byte-compatible with libsodium, PyNaCl and
//! tweetnacl), a random 24-byte nonce, and a per-sender counter inside the box so that a
//! replayed blob is rejected even though it opens.
//!
//! Pure: no I/O; the counter's start (the sender's clock) is passed in.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};

use crate::registry::messages::NONCE_BYTES;

/// Size of the counter at the start of every plaintext.
pub const COUNTER_BYTES: usize = 8;

/// How many senders' counters a receiver remembers; the oldest is forgotten beyond.
pub const REPLAY_TABLE: usize = 4096;

/// An X25519 key pair. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct KeyPair {
    secret: SecretKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public_base64())
            .finish_non_exhaustive()
    }
}

/// Why a key or a blob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not base64 of 32 bytes.
    #[error("a key must be base64 of 32 bytes")]
    BadKey,
    /// Shorter than a nonce, a tag and a counter.
    #[error("the blob is too short")]
    TooShort,
    /// The box did not open: forged, corrupted, or sealed for another key.
    #[error("the blob does not open (forged, corrupted, or for another key)")]
    Forged,
    /// The counter is not above the last one accepted from this sender.
    #[error("replayed blob (counter {counter} not above {last})")]
    Replay {
        /// The blob's counter.
        counter: u64,
        /// The highest counter accepted before from this sender.
        last: u64,
    },
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> KeyPair {
        KeyPair {
            secret: SecretKey::generate(&mut OsRng),
        }
    }

    /// The key pair of a base64 secret key.
    pub fn from_secret_base64(secret: &str) -> Result<KeyPair, SealError> {
        let bytes = BASE64
            .decode(secret.trim())
            .map_err(|_| SealError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(KeyPair {
            secret: SecretKey::from_bytes(bytes),
        })
    }

    /// The secret key, base64 (handle with care).
    pub fn secret_base64(&self) -> String {
        BASE64.encode(self.secret.to_bytes())
    }

    /// The public key, base64: what `join` announces.
    pub fn public_base64(&self) -> String {
        BASE64.encode(self.secret.public_key().as_bytes())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }
}

/// Decodes a base64 public key.
pub fn public_key_from_base64(text: &str) -> Result<PublicKey, SealError> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| SealError::BadKey)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
    Ok(PublicKey::from_bytes(bytes))
}

/// Boxes `plaintext` (counter included) from `keys` to `to` with a given nonce; returns
/// `[nonce][box]`. [`Sealer::seal`] draws the nonce at random; this is for test vectors.
pub fn seal_with_nonce(
    keys: &KeyPair,
    to: &PublicKey,
    nonce: &[u8; NONCE_BYTES],
    plaintext: &[u8],
) -> Vec<u8> {
    let salsa = SalsaBox::new(to, &keys.secret);
    // Encryption with a valid key and nonce cannot fail for in-memory buffers.
    let ciphertext = salsa.encrypt(nonce.into(), plaintext).unwrap_or_default();
    let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
    sealed.extend_from_slice(nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Seals blobs for peers and opens theirs, rejecting replays.
pub struct Sealer {
    keys: KeyPair,
    counter: u64,
    last_seen: HashMap<[u8; 32], u64>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.keys)
            .field("counter", &self.counter)
            .field("senders", &self.last_seen.len())
            .finish()
    }
}

impl Sealer {
    /// A sealer whose counter starts above `start` (the sender's clock in microseconds since
    /// 1970, so a restarted sender keeps counting up).
    pub fn new(keys: KeyPair, start: u64) -> Sealer {
        Sealer {
            keys,
            counter: start,
            last_seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: REPLAY_TABLE,
        }
    }

    /// The key pair.
    pub fn keys(&self) -> &KeyPair {
        &self.keys
    }

    /// Seals `message` for `to`: returns `[24-byte nonce][box of counter || message]`.
    pub fn seal(&mut self, to: &PublicKey, message: &[u8]) -> Vec<u8> {
        self.counter += 1;
        let mut plaintext = Vec::with_capacity(COUNTER_BYTES + message.len());
        plaintext.extend_from_slice(&self.counter.to_be_bytes());
        plaintext.extend_from_slice(message);
        let nonce: [u8; NONCE_BYTES] = SalsaBox::generate_nonce(&mut OsRng).into();
        seal_with_nonce(&self.keys, to, &nonce, &plaintext)
    }

    /// Opens `[nonce][box]` from `from`; returns the message. A blob whose counter is not above
    /// the last one accepted from `from` is refused as a replay.
    pub fn open(&mut self, from: &PublicKey, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_BYTES + 16 + COUNTER_BYTES {
            return Err(SealError::TooShort);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let salsa = SalsaBox::new(from, &self.keys.secret);
        let mut plaintext = salsa
            .decrypt(nonce.into(), ciphertext)
            .map_err(|_| SealError::Forged)?;
        let mut counter = [0u8; COUNTER_BYTES];
        counter.copy_from_slice(&plaintext[..COUNTER_BYTES]);
        let counter = u64::from_be_bytes(counter);
        let sender = *from.as_bytes();
        if let Some(&last) = self.last_seen.get(&sender) {
            if counter <= last {
                return Err(SealError::Replay { counter, last });
            }
        } else {
            if self.order.len() >= self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.last_seen.remove(&oldest);
                }
            }
            self.order.push_back(sender);
        }
        self.last_seen.insert(sender, counter);
        plaintext.drain(..COUNTER_BYTES);
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_blob_opens_once() {
        let alice = KeyPair::generate();
        let bob = KeyPair::generate();
        let mut a = Sealer::new(alice.clone(), 1000);
        let mut b = Sealer::new(bob.clone(), 0);
        let sealed = a.seal(&bob.public_key(), b"hello bob");
        assert!(!sealed.windows(9).any(|w| w == b"hello bob"));
        assert_eq!(b.open(&alice.public_key(), &sealed).unwrap(), b"hello bob");
        assert_eq!(
            b.open(&alice.public_key(), &sealed),
            Err(SealError::Replay {
                counter: 1001,
                last: 1001
            })
        );
        let next = a.seal(&bob.public_key(), b"again");
        assert_eq!(b.open(&alice.public_key(), &next).unwrap(), b"again");
    }

    #[test]
    fn forged_short_and_misaddressed_blobs_are_refused() {
        let alice = KeyPair::generate();
        let bob = KeyPair::generate();
        let eve = KeyPair::generate();
        let mut a = Sealer::new(alice.clone(), 0);
        let mut b = Sealer::new(bob.clone(), 0);
        let mut sealed = a.seal(&bob.public_key(), b"x");
        assert_eq!(
            b.open(&eve.public_key(), &sealed),
            Err(SealError::Forged),
            "wrong sender key"
        );
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(b.open(&alice.public_key(), &sealed), Err(SealError::Forged));
        assert_eq!(
            b.open(&alice.public_key(), &[0u8; 60]),
            Err(SealError::Forged)
        );
        assert_eq!(
            b.open(&alice.public_key(), &[0u8; 10]),
            Err(SealError::TooShort)
        );
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let keys = KeyPair::generate();
        let again = KeyPair::from_secret_base64(&keys.secret_base64()).unwrap();
        assert_eq!(again.public_base64(), keys.public_base64());
        assert_eq!(
            public_key_from_base64(&keys.public_base64()).unwrap(),
            keys.public_key()
        );
        assert_eq!(
            KeyPair::from_secret_base64("c2hvcnQ=").unwrap_err(),
            SealError::BadKey
        );
        assert!(!format!("{keys:?}").contains(&keys.secret_base64()));
    }

    #[test]
    fn the_replay_table_is_bounded() {
        let bob = KeyPair::generate();
        let mut b = Sealer::new(bob.clone(), 0);
        b.capacity = 8;
        for _ in 0..18 {
            let sender = KeyPair::generate();
            let mut s = Sealer::new(sender.clone(), 0);
            let sealed = s.seal(&bob.public_key(), b"m");
            b.open(&sender.public_key(), &sealed).unwrap();
        }
        assert_eq!(b.last_seen.len(), 8);
        assert_eq!(b.order.len(), 8);
    }
}
