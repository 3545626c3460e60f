//! REST ephemeral credentials (the "TURN REST API" scheme that coturn and eturnal use).
//!
//! The username is `expiry:user` (or a bare `expiry`), where `expiry` is a UNIX time in seconds,
//! and the password is `base64(HMAC-SHA1(secret, username))`. The server holds a list of secrets
//! so that an operator can rotate them: any secret on the list validates.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The password for a REST username under one shared secret.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A REST username split into its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestUsername<'a> {
    /// UNIX time (seconds) after which the credential is refused.
    pub expiry: u64,
    /// The user part (empty for a bare `expiry` username). Quotas are counted per user part.
    pub user: &'a str,
}

/// Splits a REST username (`expiry:user` or `expiry`). Returns `None` when it is not one.
pub fn parse_rest_username(username: &str) -> Option<RestUsername<'_>> {
    let (expiry, user) = match username.split_once(':') {
        Some((e, u)) => (e, u),
        None => (username, ""),
    };
    if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(RestUsername {
        expiry: expiry.parse().ok()?,
        user,
    })
}

/// A freshly minted REST credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestCredential {
    /// `expiry:user`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
}

/// Mints a credential for `user` valid for `ttl_secs` from `now_unix`.
pub fn mint(secret: &[u8], user: &str, now_unix: u64, ttl_secs: u64) -> RestCredential {
    let expiry = now_unix.saturating_add(ttl_secs);
    let username = if user.is_empty() {
        expiry.to_string()
    } else {
        format!("{expiry}:{user}")
    };
    let password = rest_password(secret, &username);
    RestCredential { username, password }
}

/// One entry of a WebRTC `iceServers` array (the `RTCIceServer` dictionary) carrying a REST
/// credential: what `/api/v1/ice-servers` answers and what the registry's `welcome` and
/// `reauthed` carry (`ice_servers`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` and `turns:` URLs.
    pub urls: Vec<String>,
    /// The REST username `EXPIRY:USER`.
    pub username: String,
    /// The password.
    pub credential: String,
}

impl IceServer {
    /// The entry for a credential minted with [`mint`], reaching `urls`.
    pub fn new(urls: Vec<String>, credential: RestCredential) -> IceServer {
        IceServer {
            urls,
            username: credential.username,
            credential: credential.password,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_the_coturn_scheme() {
        // echo -n "1700000000:alice" | openssl dgst -sha1 -hmac "s3cret" -binary | base64
        assert_eq!(
            rest_password(b"s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
    }

    #[test]
    fn usernames_parse() {
        assert_eq!(
            parse_rest_username("1700000000:alice"),
            Some(RestUsername {
                expiry: 1_700_000_000,
                user: "alice"
            })
        );
        assert_eq!(
            parse_rest_username("1700000000"),
            Some(RestUsername {
                expiry: 1_700_000_000,
                user: ""
            })
        );
        assert_eq!(
            parse_rest_username("1700000000:a:b"),
            Some(RestUsername {
                expiry: 1_700_000_000,
                user: "a:b"
            })
        );
        assert_eq!(parse_rest_username("alice"), None);
        assert_eq!(parse_rest_username(":alice"), None);
        assert_eq!(parse_rest_username("99999999999999999999999:x"), None);
    }

    #[test]
    fn mint_round_trips() {
        let c = mint(b"k", "bob", 100, 50);
        assert_eq!(c.username, "150:bob");
        assert_eq!(c.password, rest_password(b"k", "150:bob"));
    }
}
