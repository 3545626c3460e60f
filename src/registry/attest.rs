//! Key attestations: an issuer-signed statement "peer `sub` of `project` holds the X25519 public
//! key `pk`", so that peers can check each other's relay keys without trusting the server that
//! forwards them (a compromised server could otherwise swap keys and read the relay).
//!
//! An attestation is an EdDSA (Ed25519) JWT whose header has `"typ":"turnpike-attest+jwt"` and
//! whose claims are `sub`, `project`, `pk` (base64, standard alphabet, padded, of 32 bytes),
//! `exp` and optionally `iat`. It is never a login token: the registry refuses it at the
//! upgrade (`wrong_token_type`), and [`verify_attestation`] refuses anything else.
//!
//! [`verify_attestation`] is pure: trusted issuer keys (raw 32-byte Ed25519 public keys, the
//! form SDKs take as `trustedIssuerKeys`), the JWT, what it must say and the time are passed
//! in. The server uses it (with the Ed25519 keys of `registry.jwt_public_keys`) and so do
//! clients, independently.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::messages::{LEEWAY_SECS, valid_id};

/// The `typ` header of an attestation.
pub const ATTESTATION_TYP: &str = "turnpike-attest+jwt";

/// The longest attestation accepted, in bytes (an Ed25519 attestation of two 64-byte ids is
/// under 600).
pub const MAX_ATTESTATION_BYTES: usize = 2048;

/// The claims of an attestation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationClaims {
    /// The peer id.
    pub sub: String,
    /// The project.
    pub project: String,
    /// The peer's X25519 public key, base64 (standard alphabet, padded) of 32 bytes.
    pub pk: String,
    /// Expiry, UNIX seconds.
    pub exp: u64,
    /// Issued at, UNIX seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// What an attestation must say to be accepted for a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The peer id it must name.
    pub sub: &'a str,
    /// The project it must name.
    pub project: &'a str,
    /// The public key (base64 of 32 bytes) the peer announced.
    pub public_key: &'a str,
}

/// Why an attestation is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// Longer than [`MAX_ATTESTATION_BYTES`].
    #[error("the attestation is longer than {MAX_ATTESTATION_BYTES} bytes")]
    TooLong,
    /// Not three base64url parts with a JSON header and an Ed25519-sized signature.
    #[error("the attestation is not a well-formed JWT")]
    Malformed,
    /// The header's `typ` is not `turnpike-attest+jwt` (a login token, say).
    #[error("the JWT is not a key attestation (its header's typ must be turnpike-attest+jwt)")]
    NotAnAttestation,
    /// The header's `alg` is not `EdDSA`.
    #[error("the attestation must be signed with EdDSA (Ed25519)")]
    BadAlgorithm,
    /// No trusted issuer key was given.
    #[error("no trusted issuer key to verify the attestation with")]
    NoTrustedKeys,
    /// No trusted key verifies the signature.
    #[error("no trusted issuer key verifies the attestation's signature")]
    BadSignature,
    /// A claim is missing or malformed.
    #[error("the attestation's claims are malformed: {0}")]
    InvalidClaims(&'static str),
    /// `exp` has passed (30 seconds of clock skew are tolerated).
    #[error("the attestation has expired")]
    Expired,
    /// It names another peer.
    #[error("the attestation is for peer `{0}`")]
    SubjectMismatch(String),
    /// It names another project.
    #[error("the attestation is for project `{0}`")]
    ProjectMismatch(String),
    /// It attests another public key.
    #[error("the attestation is for another public key")]
    KeyMismatch,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
}

/// The `typ` of a JWT's header, if it has one (no signature is checked).
pub fn token_type(jwt: &str) -> Option<String> {
    let header = jwt.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<Header>(&json).ok()?.typ
}

/// True when the JWT's header says it is an attestation (compared without regard to ASCII
/// case, so that no spelling of it passes as a login token).
pub fn is_attestation(jwt: &str) -> bool {
    token_type(jwt).is_some_and(|typ| typ.eq_ignore_ascii_case(ATTESTATION_TYP))
}

/// Verifies `jwt` as an attestation signed by one of `trusted` (raw 32-byte Ed25519 public
/// keys) that says `expected`, at UNIX time `now`. Returns its claims.
pub fn verify_attestation(
    trusted: &[[u8; 32]],
    jwt: &str,
    expected: &Expected<'_>,
    now: u64,
) -> Result<AttestationClaims, AttestationError> {
    if jwt.len() > MAX_ATTESTATION_BYTES {
        return Err(AttestationError::TooLong);
    }
    let mut parts = jwt.split('.');
    let (Some(header_part), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AttestationError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_part)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AttestationError::Malformed)?;
    if header.typ.as_deref() != Some(ATTESTATION_TYP) {
        return Err(AttestationError::NotAnAttestation);
    }
    if header.alg != "EdDSA" {
        return Err(AttestationError::BadAlgorithm);
    }
    if trusted.is_empty() {
        return Err(AttestationError::NoTrustedKeys);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|bytes| Signature::from_slice(&bytes).ok())
        .ok_or(AttestationError::Malformed)?;
    // The signed input: the header and payload exactly as sent.
    let signed = &jwt.as_bytes()[..header_part.len() + 1 + payload.len()];
    let verified = trusted.iter().any(|key| {
        VerifyingKey::from_bytes(key).is_ok_and(|key| key.verify_strict(signed, &signature).is_ok())
    });
    if !verified {
        return Err(AttestationError::BadSignature);
    }
    let claims: AttestationClaims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(AttestationError::InvalidClaims(
            "sub, project, pk (strings) and exp (a number) are required",
        ))?;
    if !valid_id(&claims.sub) || !valid_id(&claims.project) {
        return Err(AttestationError::InvalidClaims(
            "sub and project must be 1 to 64 bytes of printable ASCII",
        ));
    }
    let Some(attested) = decode_key(&claims.pk) else {
        return Err(AttestationError::InvalidClaims(
            "pk must be base64 of 32 bytes",
        ));
    };
    if claims.exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(AttestationError::Expired);
    }
    if claims.sub != expected.sub {
        return Err(AttestationError::SubjectMismatch(claims.sub));
    }
    if claims.project != expected.project {
        return Err(AttestationError::ProjectMismatch(claims.project));
    }
    match decode_key(expected.public_key) {
        Some(announced) if announced == attested => Ok(claims),
        _ => Err(AttestationError::KeyMismatch),
    }
}

/// A base64 (standard, padded) 32-byte key.
fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = BASE64.decode(text).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::issuer::Issuer;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> AttestationClaims {
        AttestationClaims {
            sub: "alice".into(),
            project: "p1".into(),
            pk: BASE64.encode([7u8; 32]),
            exp: NOW + 600,
            iat: Some(NOW),
        }
    }

    fn expected(pk: &str) -> Expected<'_> {
        Expected {
            sub: "alice",
            project: "p1",
            public_key: pk,
        }
    }

    #[test]
    fn an_attestation_verifies_with_its_issuers_key_only() {
        let issuer = Issuer::from_seed([1; 32]);
        let other = Issuer::from_seed([2; 32]);
        let jwt = issuer.mint_attestation(&claims());
        let pk = BASE64.encode([7u8; 32]);
        let trusted = [other.public_key(), issuer.public_key()];
        assert_eq!(
            verify_attestation(&trusted, &jwt, &expected(&pk), NOW),
            Ok(claims())
        );
        assert_eq!(
            verify_attestation(&[other.public_key()], &jwt, &expected(&pk), NOW),
            Err(AttestationError::BadSignature)
        );
        assert_eq!(
            verify_attestation(&[], &jwt, &expected(&pk), NOW),
            Err(AttestationError::NoTrustedKeys)
        );
        assert_eq!(
            verify_attestation(&trusted, &jwt, &expected(&pk), NOW + 600 + LEEWAY_SECS),
            Err(AttestationError::Expired)
        );
        let other_key = BASE64.encode([8u8; 32]);
        assert_eq!(
            verify_attestation(&trusted, &jwt, &expected(&other_key), NOW),
            Err(AttestationError::KeyMismatch)
        );
        let mut bob = expected(&pk);
        bob.sub = "bob";
        assert_eq!(
            verify_attestation(&trusted, &jwt, &bob, NOW),
            Err(AttestationError::SubjectMismatch("alice".into()))
        );
        let mut p2 = expected(&pk);
        p2.project = "p2";
        assert_eq!(
            verify_attestation(&trusted, &jwt, &p2, NOW),
            Err(AttestationError::ProjectMismatch("p1".into()))
        );
    }

    #[test]
    fn altered_or_foreign_jwts_are_refused() {
        let issuer = Issuer::from_seed([1; 32]);
        let trusted = [issuer.public_key()];
        let pk = BASE64.encode([7u8; 32]);
        let jwt = issuer.mint_attestation(&claims());
        // Claims swapped under the signature.
        let mut bob = claims();
        bob.sub = "bob".into();
        let other = issuer.mint_attestation(&bob);
        let parts: Vec<&str> = jwt.split('.').collect();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(
            verify_attestation(&trusted, &swapped, &expected(&pk), NOW),
            Err(AttestationError::BadSignature)
        );
        // A login token signed by the same issuer is not an attestation.
        let login = issuer.mint_token(&crate::registry::auth::Claims {
            sub: Some("alice".into()),
            project: Some("p1".into()),
            exp: Some(NOW + 60),
            nbf: None,
            pk: Some(pk.clone()),
        });
        assert!(!is_attestation(&login));
        assert!(is_attestation(&jwt));
        assert_eq!(
            verify_attestation(&trusted, &login, &expected(&pk), NOW),
            Err(AttestationError::NotAnAttestation)
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(3000)] {
            assert!(verify_attestation(&trusted, bad, &expected(&pk), NOW).is_err());
        }
        assert_eq!(
            verify_attestation(&trusted, &format!("{jwt}x"), &expected(&pk), NOW),
            Err(AttestationError::Malformed)
        );
        let mut bad_pk = claims();
        bad_pk.pk = "c2hvcnQ=".into();
        assert!(matches!(
            verify_attestation(
                &trusted,
                &issuer.mint_attestation(&bad_pk),
                &expected(&pk),
                NOW
            ),
            Err(AttestationError::InvalidClaims(_))
        ));
    }
}
