//! The browser SDK and the registry demo:
//!
//! - `GET /sdk/turnpike.js`: the bundled browser SDK (`clients/js/dist/turnpike.js`, built into
//!   the binary), always served.
//! - `GET /demo`: the demo page (`clients/js/demo/index.html`), when `http.demo` is on.
//! - `POST /demo/token`: a registry token for project `demo`, valid one hour, for a loopback
//!   client that names a loopback host, when `http.demo` is on. With `"attest": true`, also a
//!   key attestation, the generated key pair it attests, and the issuer's public key.
//!
//! Demo tokens are signed with the first of `registry.jwt_secrets`, or with a random secret
//! generated at start that the registry accepts ([`Demo::start`]); attestations with an
//! Ed25519 key generated at start. Secrets are never logged.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::HttpState;
use super::error::ApiError;
use crate::client::KeyPair;
use crate::registry::attest::AttestationClaims;
use crate::registry::auth::{Claims, mint_hs256};
use crate::registry::issuer::Issuer;
use crate::registry::messages::valid_id;
use crate::registry::{RegistryConfig, RegistryState};

/// The bundled browser SDK (written by `npm run bundle` in clients/js).
pub const SDK_JS: &str = include_str!("../../clients/js/dist/turnpike.js");
/// The demo page.
pub const DEMO_HTML: &str = include_str!("../../clients/js/demo/index.html");
/// The project demo tokens are for.
pub const DEMO_PROJECT: &str = "demo";
/// How long a demo token (and its attestation) is valid, in seconds.
pub const DEMO_TOKEN_TTL_SECS: u64 = 3600;

/// What `/demo/token` signs with. Its `Debug` output shows no secret.
pub struct Demo {
    secret: Vec<u8>,
    issuer: Issuer,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("secret", &"<redacted>")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Demo {
    /// The demo for a server whose registry is `registry` (configured by `config`): it signs
    /// with the first `jwt_secrets` entry, or else with a random secret that `registry` is
    /// made to accept. Logs which.
    pub fn start(config: &RegistryConfig, registry: &RegistryState) -> Demo {
        let secret = match config.jwt_secrets.first() {
            Some(secret) => {
                tracing::info!(
                    "demo enabled (/demo): /demo/token signs with registry.jwt_secrets[0]"
                );
                secret.as_bytes().to_vec()
            }
            None => {
                let secret: [u8; 32] = rand::random();
                registry.accept_secret(secret.to_vec());
                tracing::info!(
                    "demo enabled (/demo): /demo/token signs with a random secret generated at \
                     start (no registry.jwt_secrets), accepted by the registry until it stops"
                );
                secret.to_vec()
            }
        };
        Demo {
            secret,
            issuer: Issuer::generate(),
        }
    }
}

/// `GET /sdk/turnpike.js`: a JavaScript module, revalidated by its ETag.
pub async fn sdk_js(headers: HeaderMap) -> Response {
    static ETAG: OnceLock<String> = OnceLock::new();
    let etag = ETAG.get_or_init(|| {
        let digest = Sha256::digest(SDK_JS.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    });
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        SDK_JS.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    // The file changes with the server: browsers keep it but ask again (a 304 when unchanged).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    // Public code: any page may import it as a module.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /demo`.
pub async fn demo_page() -> Response {
    let mut response = DEMO_HTML.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The body of `POST /demo/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoTokenRequest {
    /// The peer id the token is for.
    pub peer_id: String,
    /// Also mint a key attestation for a generated key pair.
    #[serde(default)]
    pub attest: bool,
}

/// The answer of `POST /demo/token`.
#[derive(Debug, Serialize)]
pub struct DemoTokenAnswer {
    /// The registry token (HS256; with `attest`, it pins `public_key`).
    pub token: String,
    /// `ws://HOST/v1/registry`, HOST from the request.
    pub url: String,
    /// `demo`.
    pub project: &'static str,
    /// With `attest`: the key attestation (EdDSA, `typ` `turnpike-attest+jwt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// With `attest`: the generated X25519 public key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// With `attest`: its secret key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// With `attest`: the Ed25519 public key that verifies the attestation (raw 32 bytes,
    /// base64), for the SDK's `trustedIssuerKeys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_public_key: Option<String>,
}

/// True for `localhost`, `127.x.y.z` and `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `POST /demo/token`.
pub async fn demo_token(State(state): State<HttpState>, request: Request) -> Response {
    match mint_demo_token(&state, request).await {
        Ok(answer) => {
            let mut response = Json(answer).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn mint_demo_token(state: &HttpState, request: Request) -> Result<DemoTokenAnswer, ApiError> {
    let Some(demo) = &state.demo else {
        return Err(ApiError::not_found());
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if !peer.is_some_and(|ip| ip.is_loopback() || ip.to_canonical().is_loopback()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "demo tokens are only given to clients on a loopback address",
        ));
    }
    // A loopback client that names another host reached us through DNS rebinding, or a
    // proxy: refused too.
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !is_loopback_host(&host) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "demo tokens are only given for a loopback Host (localhost, 127.0.0.1, [::1])",
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), super::MAX_BODY_BYTES)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let asked: DemoTokenRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON object like {{\"peer_id\": \"alice\"}}: {}",
            crate::registry::messages::echo_json_error(&e)
        ))
    })?;
    if !valid_id(&asked.peer_id) {
        return Err(ApiError::bad_request(
            "`peer_id` must be 1 to 64 bytes of printable ASCII without spaces",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ApiError::internal("the server clock is before 1970"))?
        .as_secs();
    let exp = now + DEMO_TOKEN_TTL_SECS;
    let keys = asked.attest.then(KeyPair::generate);
    let claims = Claims {
        sub: Some(asked.peer_id.clone()),
        project: Some(DEMO_PROJECT.to_owned()),
        exp: Some(exp),
        nbf: None,
        pk: keys.as_ref().map(KeyPair::public_base64),
    };
    let attestation = keys.as_ref().map(|keys| {
        demo.issuer.mint_attestation(&AttestationClaims {
            sub: asked.peer_id.clone(),
            project: DEMO_PROJECT.to_owned(),
            pk: keys.public_base64(),
            exp,
            iat: Some(now),
        })
    });
    Ok(DemoTokenAnswer {
        token: mint_hs256(&demo.secret, &claims),
        url: format!("ws://{host}/v1/registry"),
        project: DEMO_PROJECT,
        attestation,
        public_key: keys.as_ref().map(KeyPair::public_base64),
        secret_key: keys.as_ref().map(KeyPair::secret_base64),
        issuer_public_key: asked.attest.then(|| demo.issuer.public_key_base64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn state() -> HttpState {
        let config = crate::config::Config::default();
        let metrics = Arc::new(crate::metrics::Metrics::new(&config.realm));
        let mut state = HttpState::new(&config, metrics, Arc::default());
        state.set_demo(Demo {
            secret: b"demo-secret".to_vec(),
            issuer: Issuer::from_seed([1; 32]),
        });
        state
    }

    fn request(peer: Option<&str>, host: &str) -> Request {
        let mut request = Request::builder()
            .method("POST")
            .uri("/demo/token")
            .header(header::HOST, host)
            .body(axum::body::Body::from(r#"{"peer_id":"alice"}"#))
            .unwrap();
        if let Some(peer) = peer {
            let addr: SocketAddr = peer.parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(addr));
        }
        request
    }

    #[tokio::test]
    async fn demo_tokens_go_to_loopback_clients_only() {
        let state = state();
        for (peer, host) in [
            (Some("192.0.2.7:5000"), "127.0.0.1:9641"),
            (Some("[2001:db8::1]:5000"), "[::1]:9641"),
            (None, "127.0.0.1:9641"),
            (Some("127.0.0.1:5000"), "turn.example.org"),
        ] {
            let response = demo_token(State(state.clone()), request(peer, host)).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{peer:?} {host}");
        }
        for (peer, host) in [
            ("127.0.0.1:5000", "127.0.0.1:9641"),
            ("[::1]:5000", "localhost"),
            ("[::ffff:127.0.0.1]:5000", "localhost:9641"),
        ] {
            let response = demo_token(State(state.clone()), request(Some(peer), host)).await;
            assert_eq!(response.status(), StatusCode::OK, "{peer} {host}");
        }
        let mut off = state.clone();
        off.demo = None;
        let response = demo_token(State(off), request(Some("127.0.0.1:1"), "localhost")).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "LOCALHOST:9641",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:9641",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "example.org",
            "localhost.example.org",
            "10.0.0.1:9641",
            "[2001:db8::1]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
