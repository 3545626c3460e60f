//! Bearer-token authentication for the credential endpoints: API keys from the configuration
//! (compared in constant time) and JSON Web Tokens (HS256 or EdDSA) whose `sub` names the user.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::HttpConfig;

/// Longest bearer token looked at, in bytes: longer ones are refused before any work.
const MAX_TOKEN_BYTES: usize = 8192;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const JWT_LEEWAY_SECS: u64 = 60;

/// Who a request authenticated as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An API key: the caller (an application backend) names the user itself.
    ApiKey,
    /// A JWT: its `sub` is the user.
    Token {
        /// The `sub` claim.
        subject: String,
    },
}

/// The configured ways to authenticate. Holds only digests of API keys.
pub struct BearerAuth {
    /// SHA-256 of each API key: comparing fixed-size digests in constant time hides both
    /// the content and the length of the keys.
    api_keys: Vec<[u8; 32]>,
    hs256: Vec<DecodingKey>,
    eddsa: Vec<DecodingKey>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("api_keys", &self.api_keys.len())
            .field("hs256", &self.hs256.len())
            .field("eddsa", &self.eddsa.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl BearerAuth {
    /// The keys of `[http]` (validated by the configuration: EdDSA keys parse).
    pub fn new(http: &HttpConfig) -> BearerAuth {
        BearerAuth {
            api_keys: http.api_keys.iter().map(|k| digest(k.as_bytes())).collect(),
            hs256: http
                .jwt
                .hs256_secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .collect(),
            eddsa: http
                .jwt
                .eddsa_public_keys
                .iter()
                .filter_map(|pem| DecodingKey::from_ed_pem(pem.as_bytes()).ok())
                .collect(),
            audience: http.jwt.audience.clone(),
            issuer: http.jwt.issuer.clone(),
        }
    }

    /// True when no token can authenticate.
    pub fn is_empty(&self) -> bool {
        self.api_keys.is_empty() && self.hs256.is_empty() && self.eddsa.is_empty()
    }

    /// Checks a token (the part after `Bearer `).
    pub fn check(&self, token: &str) -> Result<Caller, ApiError> {
        if self.is_empty() {
            return Err(ApiError::unauthorized(
                "no_auth_configured",
                "this server has no API key or JWT key configured (http.api_keys, http.jwt)",
            ));
        }
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(invalid_token());
        }
        let presented = digest(token.as_bytes());
        // Every key is compared, whatever matched, so timing tells nothing about which.
        let matched = self
            .api_keys
            .iter()
            .fold(subtle::Choice::from(0), |any, key| {
                any | key.ct_eq(&presented)
            });
        if bool::from(matched) {
            return Ok(Caller::ApiKey);
        }
        if token.bytes().filter(|&b| b == b'.').count() == 2 {
            return self.check_jwt(token);
        }
        Err(invalid_token())
    }

    fn check_jwt(&self, token: &str) -> Result<Caller, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid_token())?;
        let keys = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::EdDSA => &self.eddsa,
            _ => &Vec::new(),
        };
        if keys.is_empty() {
            return Err(ApiError::unauthorized(
                "invalid_token",
                format!("tokens signed with {:?} are not accepted", header.alg),
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = JWT_LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let mut last = invalid_token();
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => {
                    return Ok(Caller::Token {
                        subject: data.claims.sub,
                    });
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => {
                            ApiError::unauthorized("token_expired", "the token has expired")
                        }
                        ErrorKind::ImmatureSignature => {
                            ApiError::unauthorized("invalid_token", "the token is not valid yet")
                        }
                        ErrorKind::InvalidAudience => ApiError::unauthorized(
                            "invalid_token",
                            "the token's audience (aud) is not accepted",
                        ),
                        ErrorKind::InvalidIssuer => ApiError::unauthorized(
                            "invalid_token",
                            "the token's issuer (iss) is not accepted",
                        ),
                        ErrorKind::MissingRequiredClaim(claim) => ApiError::unauthorized(
                            "invalid_token",
                            format!("the token has no `{claim}` claim"),
                        ),
                        _ => invalid_token(),
                    };
                    // A signature that verified but a claim that failed is the answer; a
                    // signature failure may still verify under the next key.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized("invalid_token", "the bearer token is not valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-hs256";
    const KEY: &str = "key-0123456789abcdef";

    fn auth() -> BearerAuth {
        let mut http = HttpConfig {
            api_keys: vec![KEY.into(), "another-key-0123456789".into()],
            ..HttpConfig::default()
        };
        http.jwt.hs256_secrets = vec![HS_SECRET.into()];
        BearerAuth::new(&http)
    }

    fn hs_token(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn api_keys_match_exactly() {
        let a = auth();
        assert_eq!(a.check(KEY), Ok(Caller::ApiKey));
        assert_eq!(a.check("another-key-0123456789"), Ok(Caller::ApiKey));
        for wrong in [
            "",
            "key-0123456789abcde",
            "key-0123456789abcdef0",
            "KEY-0123456789abcdef",
        ] {
            assert_eq!(a.check(wrong).unwrap_err().code, "invalid_token", "{wrong}");
        }
        assert_eq!(
            a.check(&"x".repeat(10_000)).unwrap_err().code,
            "invalid_token"
        );
    }

    #[test]
    fn jwts_give_their_subject() {
        let a = auth();
        let good = hs_token(
            serde_json::json!({"sub": "carol", "exp": now() + 60}),
            HS_SECRET,
        );
        assert_eq!(
            a.check(&good),
            Ok(Caller::Token {
                subject: "carol".into()
            })
        );
        let expired = hs_token(
            serde_json::json!({"sub": "carol", "exp": now() - 3600}),
            HS_SECRET,
        );
        assert_eq!(a.check(&expired).unwrap_err().code, "token_expired");
        let forged = hs_token(
            serde_json::json!({"sub": "carol", "exp": now() + 60}),
            "some-other-secret-0123456789abcdef",
        );
        assert_eq!(a.check(&forged).unwrap_err().code, "invalid_token");
        let no_sub = hs_token(serde_json::json!({"exp": now() + 60}), HS_SECRET);
        assert_eq!(a.check(&no_sub).unwrap_err().code, "invalid_token");
        assert_eq!(a.check("a.b.c").unwrap_err().code, "invalid_token");
    }

    #[test]
    fn nothing_configured_says_so() {
        let a = BearerAuth::new(&HttpConfig::default());
        assert_eq!(a.check(KEY).unwrap_err().code, "no_auth_configured");
    }
}
