//! Registry tokens: finding the JWT in an upgrade request, verifying it with the configured
//! keys, and minting test tokens (`turnpike token`).
//!
//! Time is passed in: `exp` and `nbf` are checked here against the `now` the caller gives,
//! not by `jsonwebtoken`'s own clock. Tokens are never logged.

use std::collections::HashSet;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::attest::is_attestation;
use super::config::RegistryConfig;
use super::core::Identity;
use super::issuer::ed25519_public_key_from_pem;
use super::messages::{BEARER_PROTOCOL_PREFIX, valid_id};
use super::metrics::AuthFailure;

/// Seconds of clock skew tolerated on `exp` and `nbf`; defined with the wire format, which the
/// client shares (key attestations use it too).
pub use super::messages::LEEWAY_SECS;

/// The claims of a registry token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The peer id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Expiry, UNIX seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not before, UNIX seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The pinned X25519 public key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pk: Option<String>,
}

/// Why the configured keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A PEM file could not be read.
    #[error("cannot read registry.jwt_public_keys file {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// A PEM file holds neither an Ed25519 nor an RSA public key.
    #[error("{}: not an Ed25519 or RSA public key in PEM form", path.display())]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
}

/// The keys that verify tokens, by algorithm, and the raw Ed25519 keys that verify key
/// attestations (the same keys as `eddsa`).
#[derive(Clone)]
pub struct Keys {
    hs256: Vec<DecodingKey>,
    eddsa: Vec<DecodingKey>,
    rs256: Vec<DecodingKey>,
    attestation: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("hs256", &self.hs256.len())
            .field("eddsa", &self.eddsa.len())
            .field("rs256", &self.rs256.len())
            .field("attestation", &self.attestation.len())
            .finish()
    }
}

impl Keys {
    /// Loads `jwt_secrets` and reads the `jwt_public_keys` files.
    pub fn from_config(config: &RegistryConfig) -> Result<Keys, KeyError> {
        let mut keys = Keys {
            hs256: config
                .jwt_secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .collect(),
            eddsa: Vec::new(),
            rs256: Vec::new(),
            attestation: Vec::new(),
        };
        for path in &config.jwt_public_keys {
            let pem = std::fs::read(path).map_err(|reason| KeyError::Read {
                path: path.clone(),
                reason,
            })?;
            if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
                keys.eddsa.push(key);
                if let Some(raw) = ed25519_public_key_from_pem(&String::from_utf8_lossy(&pem)) {
                    keys.attestation.push(raw);
                }
            } else if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                keys.rs256.push(key);
            } else {
                return Err(KeyError::NotAKey { path: path.clone() });
            }
        }
        Ok(keys)
    }

    /// Also accepts HS256 tokens signed with `secret` (the demo's secret generated at start).
    pub fn add_hs256_secret(&mut self, secret: &[u8]) {
        self.hs256.push(DecodingKey::from_secret(secret));
    }

    /// The raw Ed25519 public keys that verify key attestations: those of `jwt_public_keys`.
    pub fn attestation_keys(&self) -> &[[u8; 32]] {
        &self.attestation
    }

    /// Verifies `token` at UNIX time `now` and returns who it names. A key attestation is
    /// never a login token, even when its signature verifies.
    pub fn verify(&self, token: &str, now: u64) -> Result<Identity, AuthFailure> {
        if is_attestation(token) {
            return Err(AuthFailure::WrongTokenType);
        }
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            // A well-formed header with an algorithm jsonwebtoken does not know (`none`).
            return Err(if has_alg(token) {
                AuthFailure::BadAlgorithm
            } else {
                AuthFailure::MalformedToken
            });
        };
        let keys = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::EdDSA => &self.eddsa,
            Algorithm::RS256 => &self.rs256,
            _ => return Err(AuthFailure::BadAlgorithm),
        };
        if keys.is_empty() {
            return Err(AuthFailure::BadAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let mut failure = AuthFailure::BadSignature;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return identity(data.claims, now),
                Err(error) => match error.kind() {
                    ErrorKind::InvalidSignature => {}
                    ErrorKind::Json(_)
                    | ErrorKind::InvalidClaimFormat(_)
                    | ErrorKind::MissingRequiredClaim(_) => {
                        failure = AuthFailure::InvalidClaims;
                        break;
                    }
                    _ => {
                        failure = AuthFailure::MalformedToken;
                        break;
                    }
                },
            }
        }
        Err(failure)
    }
}

/// True when the token's header is JSON with a string `alg`.
fn has_alg(token: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
    }
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<AlgOnly>(&json).ok())
        .is_some_and(|h| !h.alg.is_empty())
}

/// Checks the claims of a verified token.
fn identity(claims: Claims, now: u64) -> Result<Identity, AuthFailure> {
    let (Some(peer_id), Some(project), Some(exp)) = (claims.sub, claims.project, claims.exp) else {
        return Err(AuthFailure::InvalidClaims);
    };
    if !valid_id(&peer_id) || !valid_id(&project) {
        return Err(AuthFailure::InvalidClaims);
    }
    let pinned_key = match claims.pk {
        None => None,
        Some(pk) => match BASE64.decode(pk.as_bytes()) {
            Ok(bytes) => Some(
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| AuthFailure::InvalidClaims)?,
            ),
            Err(_) => return Err(AuthFailure::InvalidClaims),
        },
    };
    if exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(AuthFailure::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
    {
        return Err(AuthFailure::NotYetValid);
    }
    Ok(Identity {
        peer_id,
        project,
        pinned_key,
        expires_at: exp,
    })
}

/// Mints an HS256 token with `claims` (for `turnpike token` and tests).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

/// Where a request carried its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Header,
    /// A `turnpike.bearer.` entry in `Sec-WebSocket-Protocol`.
    Subprotocol,
    /// The `access_token` query parameter.
    Query,
}

/// Finds the token: the `Authorization` header, then the subprotocol list, then the query.
pub fn find_token<'a>(
    authorization: Option<&'a str>,
    protocols: &[&'a str],
    query: Option<&'a str>,
) -> Option<(String, TokenSource)> {
    if let Some(value) = authorization {
        let value = value.trim();
        if let Some((scheme, token)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some((token.trim().to_owned(), TokenSource::Header));
            }
        }
    }
    for protocol in protocols {
        if let Some(token) = protocol.trim().strip_prefix(BEARER_PROTOCOL_PREFIX) {
            if !token.is_empty() {
                return Some((token.to_owned(), TokenSource::Subprotocol));
            }
        }
    }
    let query = query?;
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("access_token=") {
            // JWTs use the URL-safe alphabet; decode %XX anyway for clients that escape.
            let token = percent_decode(value)?;
            if !token.is_empty() {
                return Some((token, TokenSource::Query));
            }
        }
    }
    None
}

/// Decodes `%XX` escapes (and `+` as a space); `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            sub: Some("alice".into()),
            project: Some("p1".into()),
            exp: Some(NOW + 60),
            nbf: None,
            pk: None,
        }
    }

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            BASE64.encode(der)
        )
    }

    /// An Ed25519 key pair: (PKCS#8 private key DER, SPKI public key PEM).
    fn ed25519(seed: u8) -> (Vec<u8>, String) {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let mut private = hex("302e020100300506032b657004220420");
        private.extend_from_slice(&[seed; 32]);
        let mut public = hex("302a300506032b6570032100");
        public.extend_from_slice(signing.verifying_key().as_bytes());
        (private, pem("PUBLIC KEY", &public))
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn keys(secrets: &[&str], pems: &[String]) -> (Keys, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RegistryConfig {
            jwt_secrets: secrets.iter().map(|s| s.to_string()).collect(),
            ..RegistryConfig::default()
        };
        for (i, pem) in pems.iter().enumerate() {
            let path = dir.path().join(format!("key{i}.pem"));
            std::fs::write(&path, pem).unwrap();
            config.jwt_public_keys.push(path);
        }
        (Keys::from_config(&config).unwrap(), dir)
    }

    #[test]
    fn hs256_tokens_verify_with_any_configured_secret() {
        let (keys, _dir) = keys(&["new", "old"], &[]);
        let identity = keys.verify(&mint_hs256(b"old", &claims()), NOW).unwrap();
        assert_eq!(
            (identity.peer_id.as_str(), identity.project.as_str()),
            ("alice", "p1")
        );
        assert_eq!(
            keys.verify(&mint_hs256(b"other", &claims()), NOW),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            keys.verify(&mint_hs256(b"new", &claims()), NOW + 60 + LEEWAY_SECS),
            Err(AuthFailure::Expired)
        );
        let mut future = claims();
        future.nbf = Some(NOW + 3600);
        assert_eq!(
            keys.verify(&mint_hs256(b"new", &future), NOW),
            Err(AuthFailure::NotYetValid)
        );
        let mut long_id = claims();
        long_id.sub = Some("x".repeat(65));
        assert_eq!(
            keys.verify(&mint_hs256(b"new", &long_id), NOW),
            Err(AuthFailure::InvalidClaims)
        );
        let mut pinned = claims();
        pinned.pk = Some(BASE64.encode([5u8; 32]));
        let identity = keys.verify(&mint_hs256(b"new", &pinned), NOW).unwrap();
        assert_eq!(identity.pinned_key, Some([5; 32]));
    }

    #[test]
    fn eddsa_tokens_verify_with_a_pem_public_key() {
        let (private, public) = ed25519(1);
        let (_, other_public) = ed25519(2);
        let (keys, _dir) = keys(&[], &[other_public, public]);
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims(),
            &EncodingKey::from_ed_der(&private),
        )
        .unwrap();
        assert_eq!(keys.verify(&token, NOW).unwrap().peer_id, "alice");
        // HS256 is not accepted when no secret is configured.
        assert_eq!(
            keys.verify(&mint_hs256(b"x", &claims()), NOW),
            Err(AuthFailure::BadAlgorithm)
        );
        let (forger, _) = ed25519(3);
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims(),
            &EncodingKey::from_ed_der(&forger),
        )
        .unwrap();
        assert_eq!(keys.verify(&forged, NOW), Err(AuthFailure::BadSignature));
    }

    /// An RSA key pair made once for every RS256 test (2048 bits, the least RFC 7518 §3.3
    /// allows): the PKCS#1 private key DER, the public key as SPKI PEM ("PUBLIC KEY") and as
    /// PKCS#1 PEM ("RSA PUBLIC KEY").
    struct RsaPair {
        private_der: Vec<u8>,
        spki_pem: String,
        pkcs1_pem: String,
    }

    fn rsa_pair(which: usize) -> &'static RsaPair {
        use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        static PAIRS: std::sync::OnceLock<Vec<RsaPair>> = std::sync::OnceLock::new();
        &PAIRS.get_or_init(|| {
            (0..2)
                .map(|_| {
                    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
                    let public = private.to_public_key();
                    RsaPair {
                        private_der: private.to_pkcs1_der().unwrap().as_bytes().to_vec(),
                        spki_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
                        pkcs1_pem: public.to_pkcs1_pem(LineEnding::LF).unwrap(),
                    }
                })
                .collect()
        })[which]
    }

    fn rs256(pair: &RsaPair, claims: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_der(&pair.private_der),
        )
        .unwrap()
    }

    #[test]
    fn rs256_tokens_verify_with_an_rsa_public_key_in_either_pem_form() {
        let signer = rsa_pair(0);
        assert!(signer.spki_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(
            signer
                .pkcs1_pem
                .starts_with("-----BEGIN RSA PUBLIC KEY-----")
        );
        for public in [&signer.spki_pem, &signer.pkcs1_pem] {
            let (keys, _dir) = keys(&[], std::slice::from_ref(public));
            assert_eq!(keys.rs256.len(), 1, "loaded as an RS256 key");
            let identity = keys.verify(&rs256(signer, &claims()), NOW).unwrap();
            assert_eq!(
                (identity.peer_id.as_str(), identity.project.as_str()),
                ("alice", "p1")
            );
        }
    }

    #[test]
    fn rs256_tokens_signed_with_another_key_or_altered_are_refused() {
        let (signer, stranger) = (rsa_pair(0), rsa_pair(1));
        let (ed_private, ed_public) = ed25519(1);
        let (keys, _dir) = keys(&["hs-secret"], &[ed_public, signer.spki_pem.clone()]);
        assert_eq!(
            keys.verify(&rs256(signer, &claims()), NOW).unwrap().peer_id,
            "alice"
        );
        // Signed with a key the server does not have.
        assert_eq!(
            keys.verify(&rs256(stranger, &claims()), NOW),
            Err(AuthFailure::BadSignature)
        );
        // A valid signature over other claims: the payload swapped under it.
        let good = rs256(signer, &claims());
        let mut bob = claims();
        bob.sub = Some("bob".into());
        let other = rs256(signer, &bob);
        let (head, rest) = good.split_once('.').unwrap();
        let signature = rest.split_once('.').unwrap().1;
        let payload = other.split('.').nth(1).unwrap();
        assert_eq!(
            keys.verify(&format!("{head}.{payload}.{signature}"), NOW),
            Err(AuthFailure::BadSignature)
        );
        // The claims are checked as for any algorithm.
        assert_eq!(
            keys.verify(&rs256(signer, &claims()), NOW + 60 + LEEWAY_SECS),
            Err(AuthFailure::Expired)
        );
        // Algorithm confusion: the RSA public key used as an HS256 secret does not verify.
        assert_eq!(
            keys.verify(&mint_hs256(signer.spki_pem.as_bytes(), &claims()), NOW),
            Err(AuthFailure::BadSignature)
        );
        // An RS256 header on an EdDSA signature, and the other way round.
        let eddsa = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims(),
            &EncodingKey::from_ed_der(&ed_private),
        )
        .unwrap();
        let rs_head = good.split('.').next().unwrap();
        let ed_rest = eddsa.split_once('.').unwrap().1;
        assert_eq!(
            keys.verify(&format!("{rs_head}.{ed_rest}"), NOW),
            Err(AuthFailure::BadSignature)
        );
        // RS384 and PS256 are not accepted, even with an RSA key configured.
        for alg in [Algorithm::RS384, Algorithm::PS256] {
            let token = jsonwebtoken::encode(
                &Header::new(alg),
                &claims(),
                &EncodingKey::from_rsa_der(&signer.private_der),
            )
            .unwrap();
            assert_eq!(keys.verify(&token, NOW), Err(AuthFailure::BadAlgorithm));
        }
        // Without an RSA key, RS256 is not accepted at all.
        let (hs_only, _dir) = self::keys(&["hs-secret"], &[]);
        assert_eq!(
            hs_only.verify(&rs256(signer, &claims()), NOW),
            Err(AuthFailure::BadAlgorithm)
        );
    }

    #[test]
    fn a_file_that_is_not_a_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.pem");
        std::fs::write(&path, "not a key").unwrap();
        let config = RegistryConfig {
            jwt_public_keys: vec![path.clone(), dir.path().join("missing.pem")],
            ..RegistryConfig::default()
        };
        assert!(matches!(
            Keys::from_config(&config),
            Err(KeyError::NotAKey { .. })
        ));
        let config = RegistryConfig {
            jwt_public_keys: vec![dir.path().join("missing.pem")],
            ..RegistryConfig::default()
        };
        assert!(matches!(
            Keys::from_config(&config),
            Err(KeyError::Read { .. })
        ));
    }

    #[test]
    fn tokens_are_found_in_header_subprotocol_and_query() {
        assert_eq!(
            find_token(
                Some("Bearer abc"),
                &["turnpike.bearer.def"],
                Some("access_token=ghi")
            ),
            Some(("abc".into(), TokenSource::Header))
        );
        assert_eq!(
            find_token(
                Some("Basic x"),
                &["turnpike.registry.v1", "turnpike.bearer.def"],
                None
            ),
            Some(("def".into(), TokenSource::Subprotocol))
        );
        assert_eq!(
            find_token(None, &[], Some("a=1&access_token=g%2Ehi")),
            Some(("g.hi".into(), TokenSource::Query))
        );
        assert_eq!(find_token(None, &[], Some("access_token=%zz")), None);
        assert_eq!(
            find_token(None, &[], Some("access_token=%4")),
            Some(("%4".into(), TokenSource::Query))
        );
        assert_eq!(find_token(Some("Bearer "), &[], None), None);
    }
}
