//! The HTTP side of a TLS listener with `serve_http = true`: a decrypted connection that is not
//! TURN is served by an HTTP router.
//!
//! The hand-off is one function, [`serve_connection`]: give it an accepted, decrypted stream
//! and a router, and it serves HTTP/1.1 on it (with upgrades, for WebSockets) until the client
//! is done. The router here is a placeholder answering `GET /` and `GET /healthz`; the HTTP API
//! (ICE servers, metrics, registry WebSocket) replaces it by passing its own `axum::Router`.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The placeholder router: `GET /` names the server, `GET /healthz` answers `ok`.
pub fn placeholder_router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { "turnpike: STUN/TURN over TLS on this port\n" }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Serves HTTP/1.1 with `router` on one accepted, decrypted connection, until it closes.
pub async fn serve_connection<S>(router: Router, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
