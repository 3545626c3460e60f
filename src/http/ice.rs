//! The credential endpoints: `POST|GET /api/v1/ice-servers` answers a ready-to-use WebRTC
//! `iceServers` array; `GET /api/v1/turn-credentials` is the classic TURN REST API form
//! (`{"username","password","ttl","uris"}`). Both mint REST credentials
//! (`EXPIRY:USER`, `base64(HMAC-SHA1(secret, username))`) with the first `auth.secrets` entry.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::HttpState;
use super::auth::{BearerAuth, Caller};
use super::error::ApiError;
use crate::config::{Config, ListenTransport, client_uris};
use crate::fleet::Fleet;
use crate::proto::credentials;

/// Longest user name accepted, in bytes (the REST username is `EXPIRY:USER`, and STUN allows
/// 513 bytes).
pub const MAX_USER_BYTES: usize = 256;

/// What the credential endpoints need, built once from the configuration.
#[derive(Debug)]
pub struct IceService {
    auth: BearerAuth,
    /// The REST secret that signs; `None` when only static users are configured.
    secret: Option<Vec<u8>>,
    uris: Vec<String>,
    default_ttl: u64,
    max_ttl: u64,
    /// The fleet, with `[cluster] redis_url`: the answers list its least-loaded nodes first.
    fleet: Option<Arc<Fleet>>,
}

impl IceService {
    /// The service for `config` (signing with the first of `auth.secrets`).
    pub fn new(config: &Config) -> IceService {
        IceService {
            auth: BearerAuth::new(&config.http),
            secret: config.auth.secrets.first().map(|s| s.as_bytes().to_vec()),
            uris: uris(config),
            default_ttl: config.http.credential_ttl_secs,
            max_ttl: config.http.max_credential_ttl_secs,
            fleet: None,
        }
    }

    /// The service listing `fleet`'s nodes (least loaded first, draining ones left out)
    /// instead of this node's URLs alone.
    pub fn with_fleet(mut self, fleet: Option<Arc<Fleet>>) -> IceService {
        self.fleet = fleet;
        self
    }

    /// The `iceServers` entries for `credential`: one per node of the fleet, least loaded
    /// first (every node accepts the same REST credential), or this node's alone.
    fn servers(&self, credential: credentials::RestCredential) -> Vec<IceServer> {
        match &self.fleet {
            None => vec![IceServer::new(self.uris.clone(), credential)],
            Some(fleet) => fleet
                .ice_uris()
                .into_iter()
                .map(|urls| IceServer::new(urls, credential.clone()))
                .collect(),
        }
    }

    /// The URLs handed out.
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The longest credential lifetime handed out (`http.max_credential_ttl_secs`).
    pub fn max_ttl(&self) -> u64 {
        self.max_ttl
    }

    /// A ready-to-use `iceServers` array for `user`, valid `ttl` seconds from `now_unix`
    /// (shortened to [`IceService::max_ttl`]), exactly as `/api/v1/ice-servers` answers it;
    /// `None` when the server has no REST secret (`auth.secrets`). The registry's `welcome`
    /// and `reauthed` carry it (`registry.ice_servers`). The caller passes the time.
    pub fn ice_servers(&self, user: &str, now_unix: u64, ttl: u64) -> Option<Vec<IceServer>> {
        let secret = self.secret.as_ref()?;
        let ttl = ttl.clamp(1, self.max_ttl.max(1));
        let credential = credentials::mint(secret, user, now_unix, ttl);
        Some(self.servers(credential))
    }

    /// Authenticates, checks the user and TTL, and mints a credential.
    fn mint(
        &self,
        headers: &HeaderMap,
        query_key: Option<&str>,
        user: Option<&str>,
        ttl: Option<u64>,
    ) -> Result<(credentials::RestCredential, u64), ApiError> {
        let token = bearer(headers)?.or(query_key).ok_or_else(|| {
            ApiError::unauthorized(
                "unauthorized",
                "missing credentials: send `Authorization: Bearer <API key or JWT>`",
            )
        })?;
        let user = match self.auth.check(token)? {
            Caller::ApiKey => user.unwrap_or(""),
            Caller::Token { subject } => {
                if user.is_some_and(|u| u != subject) {
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "forbidden",
                        "a token may only fetch credentials for its own subject (sub)",
                    ));
                }
                check_user(&subject, "the token's `sub`")?;
                return self.mint_for(&subject, ttl);
            }
        };
        check_user(user, "`user`")?;
        self.mint_for(user, ttl)
    }

    fn mint_for(
        &self,
        user: &str,
        ttl: Option<u64>,
    ) -> Result<(credentials::RestCredential, u64), ApiError> {
        let ttl = match ttl {
            None => self.default_ttl,
            Some(0) => return Err(ApiError::bad_request("`ttl` must be at least 1 second")),
            Some(t) => t.min(self.max_ttl),
        };
        let Some(secret) = &self.secret else {
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "no_secret",
                "this server has no REST secret (auth.secrets) to sign credentials with",
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ApiError::internal("the server clock is before 1970"))?
            .as_secs();
        Ok((credentials::mint(secret, user, now, ttl), ttl))
    }
}

/// The URLs of every listener: `turn:`/`turns:` per listener and one `stun:`, with
/// `http.public_host` as the host when set (else as `turnpike credentials` chooses).
pub fn uris(config: &Config) -> Vec<String> {
    let Some(host) = &config.http.public_host else {
        return client_uris(config);
    };
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.clone(),
    };
    let mut out: Vec<String> = Vec::new();
    let mut push = |uri: String| {
        if !out.contains(&uri) {
            out.push(uri);
        }
    };
    for l in &config.listen {
        let port = l.address.port();
        push(match l.transport {
            ListenTransport::Udp => format!("turn:{host}:{port}?transport=udp"),
            ListenTransport::Tcp => format!("turn:{host}:{port}?transport=tcp"),
            ListenTransport::Tls => format!("turns:{host}:{port}?transport=tcp"),
        });
    }
    let stun = config
        .listen
        .iter()
        .find(|l| l.transport == ListenTransport::Udp)
        .or_else(|| config.listen.first())
        .map(|l| l.address)
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3478));
    push(format!("stun:{host}:{}", stun.port()));
    out
}

/// The bearer token of `Authorization`, if any (a malformed header is an error).
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("invalid_token", "Authorization is not ASCII"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Err(ApiError::unauthorized(
            "unauthorized",
            "Authorization must be `Bearer <API key or JWT>`",
        )),
    }
}

/// Refuses user names that would not make a sane REST username.
fn check_user(user: &str, what: &str) -> Result<(), ApiError> {
    if user.len() > MAX_USER_BYTES {
        return Err(ApiError::bad_request(format!(
            "{what} is longer than {MAX_USER_BYTES} bytes"
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Parameters of `/api/v1/ice-servers`, from the query string or a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceRequest {
    /// The user the credential is for (API keys only; a JWT's `sub` is used otherwise).
    pub user: Option<String>,
    /// Requested lifetime in seconds (bounded by `http.max_credential_ttl_secs`).
    pub ttl: Option<u64>,
}

pub use crate::proto::credentials::IceServer;

/// The answer of `/api/v1/ice-servers`. In a fleet (`[cluster] redis_url`), one entry per
/// node, least loaded first.
#[derive(Debug, Serialize)]
pub struct IceAnswer {
    /// Ready for `new RTCPeerConnection({iceServers})`.
    #[serde(rename = "iceServers")]
    pub ice_servers: Vec<IceServer>,
    /// Seconds the credential stays valid.
    pub ttl: u64,
}

/// `POST|GET /api/v1/ice-servers`.
pub async fn ice_servers(
    State(state): State<HttpState>,
    headers: HeaderMap,
    query: Result<Query<IceRequest>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(mut request) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let body = body.map_err(|e| {
        let code = if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(e.status(), code, e.body_text())
    })?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let from_body: IceRequest = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be a JSON object like {{\"user\": \"alice\", \"ttl\": 3600}}: {}",
                crate::registry::messages::echo_json_error(&e)
            ))
        })?;
        request.user = from_body.user.or(request.user);
        request.ttl = from_body.ttl.or(request.ttl);
    }
    let ice = state.ice.load();
    let (credential, ttl) = ice.mint(&headers, None, request.user.as_deref(), request.ttl)?;
    Ok(no_store(Json(IceAnswer {
        ice_servers: ice.servers(credential),
        ttl,
    })))
}

/// Parameters of the classic TURN REST API call.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestRequest {
    /// Must be `turn` when present.
    pub service: Option<String>,
    /// The user the credential is for.
    pub username: Option<String>,
    /// Requested lifetime in seconds.
    pub ttl: Option<u64>,
    /// An API key, for clients that cannot send `Authorization` (the draft's `key`).
    pub key: Option<String>,
}

/// The answer of `/api/v1/turn-credentials`.
#[derive(Debug, Serialize)]
pub struct RestAnswer {
    /// The REST username `EXPIRY:USER`.
    pub username: String,
    /// The password.
    pub password: String,
    /// Seconds the credential stays valid.
    pub ttl: u64,
    /// `turn:`, `turns:` and `stun:` URLs.
    pub uris: Vec<String>,
}

/// `GET /api/v1/turn-credentials?service=turn&username=U[&ttl=N][&key=K]`.
pub async fn turn_credentials(
    State(state): State<HttpState>,
    headers: HeaderMap,
    query: Result<Query<RestRequest>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(request) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if request.service.as_deref().is_some_and(|s| s != "turn") {
        return Err(ApiError::bad_request("`service` must be `turn`"));
    }
    let ice = state.ice.load();
    let (credential, ttl) = ice.mint(
        &headers,
        request.key.as_deref(),
        request.username.as_deref(),
        request.ttl,
    )?;
    Ok(no_store(Json(RestAnswer {
        username: credential.username,
        password: credential.password,
        ttl,
        uris: ice.uris.clone(),
    })))
}

/// Credentials must not be cached by browsers or proxies.
fn no_store(answer: impl IntoResponse) -> Response {
    let mut response = answer.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Listen;

    #[test]
    fn public_host_replaces_every_host() {
        let mut config = Config {
            listen: vec![
                Listen {
                    transport: ListenTransport::Udp,
                    address: "0.0.0.0:3478".parse().unwrap(),
                    serve_http: false,
                },
                Listen {
                    transport: ListenTransport::Tls,
                    address: "0.0.0.0:443".parse().unwrap(),
                    serve_http: true,
                },
            ],
            ..Config::default()
        };
        assert_eq!(
            uris(&config),
            [
                "turn:127.0.0.1:3478?transport=udp",
                "turns:127.0.0.1:443?transport=tcp",
                "stun:127.0.0.1:3478"
            ]
        );
        config.http.public_host = Some("turn.example.org".into());
        assert_eq!(
            uris(&config),
            [
                "turn:turn.example.org:3478?transport=udp",
                "turns:turn.example.org:443?transport=tcp",
                "stun:turn.example.org:3478"
            ]
        );
        config.http.public_host = Some("2001:db8::7".into());
        assert_eq!(uris(&config)[2], "stun:[2001:db8::7]:3478");
    }

    #[test]
    fn users_are_bounded() {
        assert!(check_user("alice", "u").is_ok());
        assert!(check_user("", "u").is_ok());
        assert!(check_user(&"a".repeat(257), "u").is_err());
        assert!(check_user("a\nb", "u").is_err());
    }
}
