//! The registry's place in the server: its state from `[registry]`, and its optional listener
//! of its own (`[registry] listen`), beside the HTTP API's listeners, which also serve
//! [`super::routes`] (on `http.address`, and on TLS listeners that serve HTTP).

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

/// Serves [`routes`] on `listener` until `shutdown` holds true, as the HTTP API's listener
/// serves its routes ([`crate::http::serve`]): the same header timeout, the same cap on
/// connections in the HTTP handshake, the client's address for the per-IP limits.
pub async fn serve(listener: TcpListener, state: RegistryState, shutdown: watch::Receiver<bool>) {
    crate::http::serve(listener, routes(state), shutdown).await;
}
