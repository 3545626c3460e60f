//! The HTTP API: credentials for WebRTC apps, Prometheus metrics, health checks.
//!
//! | route | what |
//! |---|---|
//! | `POST`/`GET /api/v1/ice-servers` | `{"iceServers":[{"urls","username","credential"}],"ttl"}` (bearer token) |
//! | `GET /api/v1/turn-credentials` | the classic TURN REST API: `{"username","password","ttl","uris"}` |
//! | `GET /metrics` | OpenMetrics text ([`crate::metrics`]) |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when every listener is bound and not draining, else 503 (`?require=cluster`: also 503 while the registry cluster is unavailable) |
//! | `GET /sdk/turnpike.js` | the browser SDK ([`sdk`]) |
//! | `GET /check` | the TURN check page: credentials from an API key the person gives ([`check`]) |
//! | `GET /demo`, `POST /demo/token` | the registry demo, when `http.demo` is on ([`sdk`]) |
//! | `/admin/v1/...` | the admin API, behind `http.admin_keys` ([`admin`], docs/admin-api.md) |
//!
//! Every error is JSON (`{"error":{"code","message"}}`, see [`error`]). [`router`] builds the
//! routes so that other parts of the server can [`axum::Router::merge`] theirs (the registry
//! WebSocket), and [`serve_connection`] serves them on any accepted stream (a TLS connection
//! on port 443 whose first bytes are not TURN). [`serve`] is the plain-TCP accept loop.

pub mod admin;
pub mod auth;
pub mod check;
pub mod error;
pub mod health;
pub mod ice;
pub mod sdk;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::metrics::{self, Metrics};
pub use error::ApiError;
pub use health::{Health, Readiness};
pub use ice::IceService;

/// Largest request body accepted, in bytes (the credential request is a tiny JSON object).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Most HTTP connections served at once; further connections wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The credential endpoints: their keys, secret and URLs, replaced as a whole by a
    /// configuration reload ([`HttpState::reload`]).
    pub ice: Arc<ArcSwap<IceService>>,
    /// The counters `/metrics` reports.
    pub metrics: Arc<Metrics>,
    /// The readiness flags `/readyz` reports.
    pub health: Arc<Health>,
    /// The registry demo (`/demo`, `/demo/token`), when `http.demo` is on.
    pub demo: Option<Arc<sdk::Demo>>,
    /// The fleet the credential endpoints list, with `[cluster] redis_url`.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The admin API (`/admin/v1/...`), when set before the router is built.
    pub admin: Option<Arc<admin::AdminApi>>,
    cors_origins: Arc<Vec<String>>,
}

impl HttpState {
    /// State for `config`, reporting `metrics` and `health`.
    pub fn new(config: &Config, metrics: Arc<Metrics>, health: Arc<Health>) -> HttpState {
        HttpState {
            ice: Arc::new(ArcSwap::from_pointee(IceService::new(config))),
            metrics,
            health,
            demo: None,
            fleet: None,
            admin: None,
            cors_origins: Arc::new(config.http.cors_origins.clone()),
        }
    }

    /// Serves the registry demo with `demo` (set before the router is built).
    pub fn set_demo(&mut self, demo: sdk::Demo) {
        self.demo = Some(Arc::new(demo));
    }

    /// Serves the admin API over `admin` (set before the router is built).
    pub fn set_admin(
        &mut self,
        admin: Arc<crate::admin::Admin>,
        registry: Option<crate::registry::RegistryState>,
        config: &Config,
    ) {
        self.admin = Some(Arc::new(admin::AdminApi::new(admin, registry, config)));
    }

    /// Applies a reloaded configuration to the credential endpoints: API keys, JWT keys, the
    /// signing secret (the first of `auth.secrets`), TTLs and `public_host`. Requests already
    /// being served finish with what they started with. CORS origins are set when the router
    /// is built and need a restart.
    pub fn reload(&self, config: &Config) {
        if let Some(fleet) = &self.fleet {
            fleet.set_uris(ice::uris(config));
        }
        self.ice.store(Arc::new(
            IceService::new(config).with_fleet(self.fleet.clone()),
        ));
        if let Some(admin) = &self.admin {
            admin.reload(config);
        }
    }

    /// Lists `fleet`'s nodes in the credential endpoints' answers (and the registry's
    /// `ice_servers`, which share them); set before the router is built.
    pub fn set_fleet(&mut self, config: &Config, fleet: Arc<crate::fleet::Fleet>) {
        self.fleet = Some(fleet.clone());
        self.ice
            .store(Arc::new(IceService::new(config).with_fleet(Some(fleet))));
    }
}

/// Every route of the API, ready to serve or to merge with other routers.
pub fn router(state: HttpState) -> Router {
    let mut credentials = Router::new()
        .route(
            "/api/v1/ice-servers",
            get(ice::ice_servers).post(ice::ice_servers),
        )
        .route("/api/v1/turn-credentials", get(ice::turn_credentials))
        // Set before the CORS layer so that a preflight (OPTIONS) reaches CORS, not a 405.
        .method_not_allowed_fallback(error::method_not_allowed);
    if let Some(cors) = cors_layer(&state.cors_origins) {
        credentials = credentials.layer(cors);
    }
    let mut router = Router::new()
        .merge(credentials)
        .route("/metrics", get(scrape))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/sdk/turnpike.js", get(sdk::sdk_js))
        .route("/check", get(check::check_page));
    if state.demo.is_some() {
        router = router
            .route("/demo", get(sdk::demo_page))
            .route("/demo/token", post(sdk::demo_token));
    }
    if let Some(api) = &state.admin {
        router = router.merge(admin::routes(api.clone()));
    }
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// CORS for the credential endpoints: the configured origins may call them with
/// `Authorization` and `Content-Type`; no cookies are involved, so no credentials mode.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(3600)),
    )
}

/// `GET /metrics`.
async fn scrape(State(state): State<HttpState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => ApiError::internal("the metrics could not be encoded").into_response(),
    }
}

/// Serves HTTP/1.1 on one accepted connection (plain TCP, or a TLS stream accepted on port
/// 443) until the client closes it. Upgrades (WebSocket) are supported; a client that takes
/// longer than [`HEADER_TIMEOUT`] to send its headers is disconnected.
pub async fn serve_connection<I>(router: Router, io: I) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .with_upgrades()
        .await
}

/// [`serve_connection`] for a client at `peer`: handlers see its address as
/// `ConnectInfo<SocketAddr>` (the registry's per-IP limit reads it).
pub async fn serve_connection_from<I>(
    router: Router,
    io: I,
    peer: SocketAddr,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let router = router.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
    serve_connection(router, io).await
}

/// Binds the HTTP listener (before anything else starts, so `/readyz` can say "starting").
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Resolves once `shutdown` holds true (or its sender is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Accepts connections on `listener` and serves `router` on each, at most
/// [`MAX_CONNECTIONS`] at once, until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop_requested(&mut shutdown) => return,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, do not spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop_requested(&mut shutdown) => return,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection_from(router, stream, peer).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
}
