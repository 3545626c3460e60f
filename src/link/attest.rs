//! Key attestations (docs/link-protocol.md §5): an issuer-signed JWS that binds a peer id and
//! project to the X25519 key the registry announced, so a compromised registry cannot
//! announce its own key for a peer. Pure: the time and the trusted keys come in.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use serde::Deserialize;

/// The only accepted JWS `typ`.
pub const ATTESTATION_TYPE: &str = "turnpike-attest+jwt";
/// Clock skew tolerated on `exp`, in seconds.
pub const SKEW_SECS: u64 = 30;

/// Why an attestation was refused (the reasons of §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// No trusted key verifies the signature.
    #[error("bad_signature")]
    BadSignature,
    /// The header's `typ` (or `alg`) is not the attestation's.
    #[error("wrong_type")]
    WrongType,
    /// `exp` has passed (beyond the skew).
    #[error("expired")]
    Expired,
    /// `pk` is not the key the registry announced.
    #[error("key_mismatch")]
    KeyMismatch,
    /// `sub` or `project` is not the peer's.
    #[error("identity_mismatch")]
    IdentityMismatch,
    /// Not a compact JWS with the expected claims.
    #[error("malformed")]
    Malformed,
    /// The peer has no attestation.
    #[error("missing")]
    Missing,
}

impl AttestError {
    /// The reason's name in §5.
    pub fn as_str(self) -> &'static str {
        match self {
            AttestError::BadSignature => "bad_signature",
            AttestError::WrongType => "wrong_type",
            AttestError::Expired => "expired",
            AttestError::KeyMismatch => "key_mismatch",
            AttestError::IdentityMismatch => "identity_mismatch",
            AttestError::Malformed => "malformed",
            AttestError::Missing => "missing",
        }
    }
}

/// Ed25519 public keys of the issuers an SDK trusts (`trustedIssuerKeys`).
#[derive(Clone, Debug, Default)]
pub struct TrustedIssuers {
    keys: Vec<ed25519_dalek::VerifyingKey>,
}

impl TrustedIssuers {
    /// Reads base64 raw 32-byte keys; `None` names the first that is not one.
    pub fn from_base64<S: AsRef<str>>(keys: &[S]) -> Result<TrustedIssuers, String> {
        let mut parsed = Vec::with_capacity(keys.len());
        for key in keys {
            let text = key.as_ref();
            let bytes: [u8; 32] = BASE64
                .decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("`{text}` is not base64 of 32 bytes"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| format!("`{text}` is not an Ed25519 public key"))?;
            parsed.push(key);
        }
        Ok(TrustedIssuers { keys: parsed })
    }

    /// Raw 32-byte keys; those that are not Ed25519 public keys are skipped.
    pub fn from_raw(keys: &[[u8; 32]]) -> TrustedIssuers {
        TrustedIssuers {
            keys: keys
                .iter()
                .filter_map(|k| ed25519_dalek::VerifyingKey::from_bytes(k).ok())
                .collect(),
        }
    }

    /// True when no issuer is trusted (attestations are not checked).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `attestation` for the peer `peer_id` of `project` whose announced key is
    /// `public_key` (base64), at `now` (UNIX seconds).
    pub fn verify(
        &self,
        attestation: Option<&str>,
        peer_id: &str,
        project: &str,
        public_key: &str,
        now: u64,
    ) -> Result<(), AttestError> {
        #[derive(Deserialize)]
        struct Header {
            alg: Option<String>,
            typ: Option<String>,
        }
        #[derive(Deserialize)]
        struct Claims {
            sub: Option<String>,
            project: Option<String>,
            pk: Option<String>,
            exp: Option<u64>,
        }
        let attestation = attestation.ok_or(AttestError::Missing)?;
        if attestation.len() > 8192 {
            return Err(AttestError::Malformed);
        }
        let mut parts = attestation.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AttestError::Malformed);
        };
        let decode = |part: &str| BASE64URL.decode(part).map_err(|_| AttestError::Malformed);
        let header: Header =
            serde_json::from_slice(&decode(header_b64)?).map_err(|_| AttestError::Malformed)?;
        if header.typ.as_deref() != Some(ATTESTATION_TYPE) || header.alg.as_deref() != Some("EdDSA")
        {
            return Err(AttestError::WrongType);
        }
        let signature: [u8; 64] = decode(signature_b64)?
            .try_into()
            .map_err(|_| AttestError::Malformed)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature);
        let signed = &attestation[..header_b64.len() + 1 + claims_b64.len()];
        if !self
            .keys
            .iter()
            .any(|key| key.verify_strict(signed.as_bytes(), &signature).is_ok())
        {
            return Err(AttestError::BadSignature);
        }
        let claims: Claims =
            serde_json::from_slice(&decode(claims_b64)?).map_err(|_| AttestError::Malformed)?;
        let (Some(sub), Some(claimed_project), Some(pk), Some(exp)) =
            (claims.sub, claims.project, claims.pk, claims.exp)
        else {
            return Err(AttestError::Malformed);
        };
        if exp.saturating_add(SKEW_SECS) < now {
            return Err(AttestError::Expired);
        }
        if sub != peer_id || claimed_project != project {
            return Err(AttestError::IdentityMismatch);
        }
        let same_key = matches!(
            (BASE64.decode(pk.trim()), BASE64.decode(public_key.trim())),
            (Ok(a), Ok(b)) if a.len() == 32 && a == b
        );
        if !same_key {
            return Err(AttestError::KeyMismatch);
        }
        Ok(())
    }
}
