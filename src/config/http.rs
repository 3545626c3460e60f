//! The `[http]` section: the HTTP API (ICE-servers credentials, `/metrics`, `/healthz`,
//! `/readyz`), and its validation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use super::validate::Invalid;

/// The `[http]` section. Its `Debug` output never shows an API key or a JWT secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the HTTP API at all.
    pub enabled: bool,
    /// Where the HTTP API listens.
    pub address: SocketAddr,
    /// The host name (or IP address) put in the `turn:`/`turns:`/`stun:` URLs the
    /// credential endpoints return; unset: `relay.external_ip`, else the listener's address.
    pub public_host: Option<String>,
    /// Bearer tokens that may fetch credentials (compared in constant time).
    pub api_keys: Vec<String>,
    /// Bearer tokens of the admin API (`/admin/v1/...`: list and end allocations, revoke
    /// credentials). Never the same as a credential key; empty: the admin API is off.
    pub admin_keys: Vec<String>,
    /// Where the revocation list is kept across restarts; unset: `revocations.json` in
    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else nowhere (lost at restart).
    pub revocations_file: Option<std::path::PathBuf>,
    /// The credential lifetime when a request asks for none, in seconds.
    pub credential_ttl_secs: u64,
    /// The longest credential lifetime a request may ask for, in seconds (longer asks are
    /// shortened to it).
    pub max_credential_ttl_secs: u64,
    /// Origins browsers may call the credential endpoints from (CORS); `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// JSON Web Tokens accepted as bearer tokens.
    pub jwt: JwtConfig,
    /// Serve the registry demo: `GET /demo` (the page) and `POST /demo/token` (registry tokens
    /// for project `demo`, to loopback clients only).
    pub demo: bool,
}

/// The `[http.jwt]` section: keys that verify bearer JWTs. The token's `sub` claim becomes the
/// credential's user.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Shared secrets for HS256 tokens.
    pub hs256_secrets: Vec<String>,
    /// Ed25519 public keys (PEM, `-----BEGIN PUBLIC KEY-----`) for EdDSA tokens.
    pub eddsa_public_keys: Vec<String>,
    /// When set, tokens must carry this `aud` claim.
    pub audience: Option<String>,
    /// When set, tokens must carry this `iss` claim.
    pub issuer: Option<String>,
}

/// The default HTTP address: loopback only, so metrics are not published by accident.
pub const DEFAULT_HTTP_PORT: u16 = 9641;
/// The longest credential lifetime accepted in the configuration: 7 days.
pub const MAX_CREDENTIAL_TTL_SECS: u64 = 7 * 86_400;
/// The shortest API key accepted, in bytes (a key is a password: make it long and random).
pub const MIN_API_KEY_BYTES: usize = 16;
/// The shortest HS256 secret accepted, in bytes (RFC 7518 §3.2 asks for 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            enabled: true,
            address: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_HTTP_PORT),
            public_host: None,
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            revocations_file: None,
            credential_ttl_secs: 86_400,
            max_credential_ttl_secs: 86_400,
            cors_origins: Vec::new(),
            jwt: JwtConfig::default(),
            demo: false,
        }
    }
}

impl HttpConfig {
    /// True when some bearer token can authenticate (an API key or a JWT key).
    pub fn has_token_auth(&self) -> bool {
        !self.api_keys.is_empty()
            || !self.jwt.hs256_secrets.is_empty()
            || !self.jwt.eddsa_public_keys.is_empty()
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("enabled", &self.enabled)
            .field("address", &self.address)
            .field("public_host", &self.public_host)
            .field(
                "api_keys",
                &format_args!("<{} redacted>", self.api_keys.len()),
            )
            .field(
                "admin_keys",
                &format_args!("<{} redacted>", self.admin_keys.len()),
            )
            .field("revocations_file", &self.revocations_file)
            .field("credential_ttl_secs", &self.credential_ttl_secs)
            .field("max_credential_ttl_secs", &self.max_credential_ttl_secs)
            .field("cors_origins", &self.cors_origins)
            .field("jwt", &self.jwt)
            .field("demo", &self.demo)
            .finish()
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field(
                "hs256_secrets",
                &format_args!("<{} redacted>", self.hs256_secrets.len()),
            )
            .field("eddsa_public_keys", &self.eddsa_public_keys.len())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Checks the `[http]` section.
pub fn validate(http: &HttpConfig) -> Result<(), Invalid> {
    let ip = http.address.ip();
    if ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        return Err(invalid(
            "http.address",
            format!("{ip} is not a unicast address"),
        ));
    }
    if let Some(host) = &http.public_host {
        if !is_valid_host(host) {
            return Err(invalid(
                "http.public_host",
                format!(
                    "`{host}` is not a host name or IP address (letters, digits, `-` and `.`, at most 253 characters)"
                ),
            ));
        }
    }
    for (index, key) in http.api_keys.iter().enumerate() {
        if key.len() < MIN_API_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                format!("http.api_keys[{index}]"),
                format!(
                    "must be at least {MIN_API_KEY_BYTES} printable ASCII characters without spaces, e.g. `openssl rand -hex 32`"
                ),
            ));
        }
    }
    for (index, key) in http.admin_keys.iter().enumerate() {
        if key.len() < MIN_API_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                format!("http.admin_keys[{index}]"),
                format!(
                    "must be at least {MIN_API_KEY_BYTES} printable ASCII characters without spaces, e.g. `openssl rand -hex 32`"
                ),
            ));
        }
        if http.api_keys.contains(key) {
            return Err(invalid(
                format!("http.admin_keys[{index}]"),
                "is also a credential key (http.api_keys): an admin key must be a key of its own, never given to the apps that fetch credentials",
            ));
        }
    }
    if http
        .revocations_file
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty() || p.is_dir())
    {
        return Err(invalid(
            "http.revocations_file",
            "must be a file path (its directory must exist and be writable by turnpike)",
        ));
    }
    if http.max_credential_ttl_secs == 0 || http.max_credential_ttl_secs > MAX_CREDENTIAL_TTL_SECS {
        return Err(invalid(
            "http.max_credential_ttl_secs",
            format!("must be between 1 and {MAX_CREDENTIAL_TTL_SECS} seconds"),
        ));
    }
    if http.credential_ttl_secs == 0 || http.credential_ttl_secs > http.max_credential_ttl_secs {
        return Err(invalid(
            "http.credential_ttl_secs",
            format!(
                "must be between 1 and http.max_credential_ttl_secs ({})",
                http.max_credential_ttl_secs
            ),
        ));
    }
    for (index, origin) in http.cors_origins.iter().enumerate() {
        if origin != "*" && !is_valid_origin(origin) {
            return Err(invalid(
                format!("http.cors_origins[{index}]"),
                format!(
                    "`{origin}` is not an origin such as \"https://app.example.org\" (or \"*\")"
                ),
            ));
        }
    }
    if http.cors_origins.len() > 1 && http.cors_origins.iter().any(|o| o == "*") {
        return Err(invalid(
            "http.cors_origins",
            "\"*\" allows every origin and must be the only entry",
        ));
    }
    for (index, secret) in http.jwt.hs256_secrets.iter().enumerate() {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(invalid(
                format!("http.jwt.hs256_secrets[{index}]"),
                format!("must be at least {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2)"),
            ));
        }
    }
    for (index, pem) in http.jwt.eddsa_public_keys.iter().enumerate() {
        if let Err(e) = jsonwebtoken::DecodingKey::from_ed_pem(pem.as_bytes()) {
            return Err(invalid(
                format!("http.jwt.eddsa_public_keys[{index}]"),
                format!("is not an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----): {e}"),
            ));
        }
    }
    for (key, value) in [
        ("http.jwt.audience", &http.jwt.audience),
        ("http.jwt.issuer", &http.jwt.issuer),
    ] {
        if value.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                key,
                "must not be empty; omit it to not check the claim",
            ));
        }
    }
    Ok(())
}

/// A DNS name or an IP address (IPv6 with or without brackets).
fn is_valid_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `http://HOST[:PORT]` or `https://HOST[:PORT]`, as browsers send in `Origin`.
fn is_valid_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
        _ => (rest, None),
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) && is_valid_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        for good in [
            "turn.example.org",
            "203.0.113.7",
            "2001:db8::7",
            "[2001:db8::7]",
            "a",
        ] {
            assert!(is_valid_host(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "-a.org", "a..org", "x?y", "user@host"] {
            assert!(!is_valid_host(bad), "{bad}");
        }
        for good in [
            "https://app.example.org",
            "http://localhost:8080",
            "https://[2001:db8::1]:8443",
        ] {
            assert!(is_valid_origin(good), "{good}");
        }
        for bad in [
            "app.example.org",
            "https://",
            "https://a.org/",
            "https://a.org:0",
            "ftp://a.org",
            "https://a.org:99999",
        ] {
            assert!(!is_valid_origin(bad), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(validate(&HttpConfig::default()), Ok(()));
        let check = |f: &dyn Fn(&mut HttpConfig)| {
            let mut c = HttpConfig::default();
            f(&mut c);
            validate(&c).map_err(|e| e.key)
        };
        assert_eq!(
            check(&|c| c.api_keys = vec!["short".into()]),
            Err("http.api_keys[0]".into())
        );
        assert_eq!(
            check(&|c| c.credential_ttl_secs = 90_000),
            Err("http.credential_ttl_secs".into())
        );
        assert_eq!(
            check(&|c| c.max_credential_ttl_secs = 0),
            Err("http.max_credential_ttl_secs".into())
        );
        assert_eq!(
            check(&|c| c.cors_origins = vec!["*".into(), "https://a.org".into()]),
            Err("http.cors_origins".into())
        );
        assert_eq!(
            check(&|c| c.jwt.hs256_secrets = vec!["too-short".into()]),
            Err("http.jwt.hs256_secrets[0]".into())
        );
        assert_eq!(
            check(&|c| c.jwt.eddsa_public_keys = vec!["not a key".into()]),
            Err("http.jwt.eddsa_public_keys[0]".into())
        );
        assert_eq!(
            check(&|c| c.public_host = Some("bad host".into())),
            Err("http.public_host".into())
        );
        let debug = format!(
            "{:?}",
            HttpConfig {
                api_keys: vec!["0123456789abcdef-very-secret".into()],
                ..HttpConfig::default()
            }
        );
        assert!(!debug.contains("very-secret"), "{debug}");
    }
}
