//! The registry's place in the server: its state from `[registry]`, and its optional listener
//! of its own (`[registry] listen`), beside the HTTP API's listeners, which also serve
//! [`super::routes`] (on `http.address`, and on TLS listeners that serve HTTP).

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{RegistryConfig, RegistryState, routes};

/// The registry's state when `[registry] enabled` (loads the token keys), else `None`.
pub fn state(config: &RegistryConfig) -> anyhow::Result<Option<RegistryState>> {
    if !config.enabled {
        return Ok(None);
    }
    RegistryState::new(config)
        .context("loading the registry's token keys (registry.jwt_public_keys)")
        .map(Some)
}

/// Serves [`routes`] on `listener` until `shutdown` holds true.
pub async fn serve(
    listener: TcpListener,
    state: RegistryState,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = routes(state).into_make_service_with_connect_info::<SocketAddr>();
    let stop = async move {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(%error, "the registry listener failed");
    }
}
