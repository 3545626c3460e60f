//! A token issuer's Ed25519 signing key: it signs EdDSA login tokens and key attestations
//! (`turnpike token --signing-key`, the demo's `/demo/token`, tests).
//!
//! The key is read from a PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`). Its public
//! half is given out in two forms: raw 32 bytes in base64 (what SDKs take as
//! `trustedIssuerKeys`) and SPKI PEM (what `registry.jwt_public_keys` files hold).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::Serialize;

use super::attest::{ATTESTATION_TYP, AttestationClaims};
use super::auth::Claims;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw key follows it.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IssuerKeyError {
    /// No `-----BEGIN PRIVATE KEY-----` block, or its base64 is broken.
    #[error("not a PEM private key (-----BEGIN PRIVATE KEY-----, PKCS#8)")]
    NotPem,
    /// The PKCS#8 key is not an Ed25519 key.
    #[error(
        "the PKCS#8 key is not an Ed25519 key (make one with `openssl genpkey -algorithm ed25519`)"
    )]
    NotEd25519,
}

/// An issuer's Ed25519 signing key. Its `Debug` output shows only the public key.
#[derive(Clone)]
pub struct Issuer {
    key: SigningKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

impl Issuer {
    /// The key of a PKCS#8 PEM file's text (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(text: &str) -> Result<Issuer, IssuerKeyError> {
        let der = pem_body(text, "PRIVATE KEY").ok_or(IssuerKeyError::NotPem)?;
        let key = SigningKey::from_pkcs8_der(&der).map_err(|_| IssuerKeyError::NotEd25519)?;
        Ok(Issuer { key })
    }

    /// The key whose 32-byte seed is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Issuer {
        Issuer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A new random key.
    pub fn generate() -> Issuer {
        Issuer::from_seed(rand::random())
    }

    /// The public key, raw.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key, raw, in base64 (standard alphabet, padded): SDKs' `trustedIssuerKeys`.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.public_key())
    }

    /// The public key as an SPKI PEM (`-----BEGIN PUBLIC KEY-----`), for
    /// `registry.jwt_public_keys`.
    pub fn public_key_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.public_key());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            BASE64.encode(der)
        )
    }

    /// An EdDSA login token with `claims`.
    pub fn mint_token(&self, claims: &Claims) -> String {
        self.sign("JWT", claims)
    }

    /// An attestation with `claims` (header `typ`: `turnpike-attest+jwt`).
    pub fn mint_attestation(&self, claims: &AttestationClaims) -> String {
        self.sign(ATTESTATION_TYP, claims)
    }

    fn sign(&self, typ: &str, claims: &impl Serialize) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "typ": typ});
        let claims = serde_json::to_vec(claims).unwrap_or_default();
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.key.sign(jwt.as_bytes());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        jwt
    }
}

/// The DER inside the first `-----BEGIN {label}-----` block of `text`.
pub(crate) fn pem_body(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let base64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    BASE64.decode(base64).ok()
}

/// The raw key of an Ed25519 SPKI PEM (`-----BEGIN PUBLIC KEY-----`), if it is one.
pub fn ed25519_public_key_from_pem(text: &str) -> Option<[u8; 32]> {
    let der = pem_body(text, "PUBLIC KEY")?;
    let raw = der.strip_prefix(&SPKI_PREFIX[..])?;
    <[u8; 32]>::try_from(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    /// `openssl genpkey -algorithm ed25519` of seed [1; 32], and its public key.
    fn pkcs8_pem(seed: u8) -> String {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[seed; 32]);
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            BASE64.encode(der)
        )
    }

    #[test]
    fn keys_load_from_pkcs8_and_tokens_verify_with_jsonwebtoken() {
        let issuer = Issuer::from_pkcs8_pem(&pkcs8_pem(1)).unwrap();
        assert_eq!(issuer.public_key(), Issuer::from_seed([1; 32]).public_key());
        let pem = issuer.public_key_pem();
        assert_eq!(ed25519_public_key_from_pem(&pem), Some(issuer.public_key()));
        assert!(format!("{issuer:?}").contains(&issuer.public_key_base64()));
        let claims = Claims {
            sub: Some("alice".into()),
            project: Some("p".into()),
            exp: Some(4_000_000_000),
            nbf: None,
            pk: None,
        };
        let token = issuer.mint_token(&claims);
        let key = DecodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        let decoded =
            jsonwebtoken::decode::<Claims>(&token, &key, &Validation::new(Algorithm::EdDSA))
                .unwrap();
        assert_eq!(decoded.claims, claims);
        assert!(matches!(
            Issuer::from_pkcs8_pem("nothing"),
            Err(IssuerKeyError::NotPem)
        ));
        let not_ed = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        assert!(matches!(
            Issuer::from_pkcs8_pem(not_ed),
            Err(IssuerKeyError::NotEd25519)
        ));
    }
}
