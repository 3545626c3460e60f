//! TEMPORARY: the registry's own HTTP listener (`[registry] listen`), until the shared HTTP
//! server (src/http/) merges [`super::routes`] and serves it on its listeners (and on TLS 443).
//! At that merge this module and the `listen` key can go, or stay as a dedicated listener.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;

use super::{RegistryConfig, RegistryState, routes};

/// A running registry listener with its runtime.
pub struct Standalone {
    runtime: Option<tokio::runtime::Runtime>,
    state: RegistryState,
    /// The bound address.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("addr", &self.addr)
            .finish()
    }
}

/// Starts the registry when `[registry] enabled` and `listen` are set; `None` otherwise.
pub fn start(config: &RegistryConfig) -> anyhow::Result<Option<Standalone>> {
    if !config.enabled {
        return Ok(None);
    }
    let Some(addr) = config.listen else {
        tracing::warn!(
            "registry.enabled is set but registry.listen is not: the registry is not served"
        );
        return Ok(None);
    };
    let state = RegistryState::new(config).context("loading the registry's token keys")?;
    serve_standalone(addr, state).map(Some)
}

/// Serves [`routes`] on `addr` from a runtime of its own (two worker threads).
pub fn serve_standalone(addr: SocketAddr, state: RegistryState) -> anyhow::Result<Standalone> {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("turnpike-registry")
        .enable_all()
        .build()
        .context("starting the registry runtime")?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("binding the registry listener {addr}"))?;
    let addr = listener.local_addr()?;
    let app = routes(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    runtime.spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the registry listener failed");
        }
    });
    tracing::info!(%addr, "registry listening on ws://{addr}/v1/registry");
    Ok(Standalone {
        runtime: Some(runtime),
        state,
        addr,
    })
}

impl Standalone {
    /// The registry state (metrics, usage).
    pub fn state(&self) -> &RegistryState {
        &self.state
    }

    /// Closes every connection with 1001 and stops.
    pub fn stop(mut self) {
        self.state.shutdown();
        if let Some(runtime) = self.runtime.take() {
            // Give the writers a moment to send their close frames.
            runtime.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Raises the soft limit on open files to the hard limit: every WebSocket is a descriptor.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
