//! The registry: JWT-authenticated WebSocket signaling and the encrypted relay fallback
//! (protocol: `docs/registry-protocol.md`, subprotocol `turnpike.registry.v1`).
//!
//! Peers of one project find each other, exchange WebRTC offers, answers and ICE candidates,
//! and relay NaCl-box encrypted blobs the server cannot read when their direct path fails.
//!
//! - [`core`]: the sans-IO state machine (projects, peers, routing, limits, bounded queues,
//!   live tokens).
//! - [`messages`]: the wire format. [`auth`]: tokens. [`attest`]: key attestations.
//!   [`issuer`]: an issuer's signing key. [`metrics`]: counters.
//! - [`http`]: the axum endpoint, [`routes`] (merged into the HTTP API's router), whose
//!   WebSocket tasks feed the core.
//! - [`standalone`]: the state from `[registry]`, and the optional listener of its own.

pub mod attest;
pub mod auth;
pub mod config;
pub mod core;
pub mod fuzzing;
pub mod http;
pub mod issuer;
pub mod messages;
pub mod metrics;
mod queue;
pub mod standalone;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_budget;
#[cfg(test)]
mod tests_cluster;
#[cfg(test)]
mod tests_lifetime;
pub mod ws;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

pub use self::config::RegistryConfig;
pub use self::core::{
    Authority, ClusterMetrics, ClusterOutput, ClusterSettings, ConnId, Forward, Identity, Lease,
    PeerSummary, Presence, ProjectUsage, Registry,
};
pub use self::http::routes;
pub use self::metrics::RegistryMetrics;
pub use self::queue::Transmit;
use crate::http::IceService;

/// The registry as the endpoint shares it between WebSocket tasks: the core behind a mutex
/// (every call is short and never awaits), the token keys, and one [`Notify`] per connection
/// that wakes its writer when the core has frames for it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RegistryState {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// Replaced by a configuration reload ([`RegistryState::set_keys`]).
    keys: ArcSwap<auth::Keys>,
    metrics: Arc<RegistryMetrics>,
    ticking: AtomicBool,
    /// Set by [`RegistryState::shutdown`]: new connections are refused.
    closing: AtomicBool,
    /// The one-token ladder's minter (the HTTP API's, so reloads reach it), when on.
    ice: OnceLock<Arc<ArcSwap<IceService>>>,
    /// A token secret accepted besides the configured keys, across reloads (the demo's).
    extra_secret: OnceLock<Vec<u8>>,
    /// Wakes the cluster link (`crate::cluster`) when the core has outputs for it.
    cluster: OnceLock<Arc<Notify>>,
    /// `max_payload_bytes`, for parsing text frames before taking the lock.
    max_payload: usize,
}

#[derive(Debug)]
struct Inner {
    core: Registry,
    notifies: HashMap<ConnId, Arc<Notify>>,
}

/// The wall clock as a duration since 1970 (zero if the clock is set before).
pub(crate) fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// How often the core's timers (pings, idle and join timeouts) are checked.
const TICK: Duration = Duration::from_millis(500);

/// When at least this many connections have gone, and at least half of the peak, the memory
/// their buffers used is handed back to the operating system.
const TRIM_AFTER: usize = 64;

/// When at least this many connections were admitted since the last trim and none in the last
/// tick, freed memory is handed back too.
const TRIM_AFTER_JOINS: u64 = 1024;

/// Returns freed heap memory to the operating system. glibc keeps freed memory in its arenas
/// (one per runtime thread), so after a burst of connections the process would stay at its
/// peak size for good; `malloc_trim` releases the free pages of every arena.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl RegistryState {
    /// A registry with the limits and keys of `config` (reads the public key files).
    pub fn new(config: &RegistryConfig) -> Result<RegistryState, auth::KeyError> {
        let keys = auth::Keys::from_config(config)?;
        let metrics = Arc::new(RegistryMetrics::default());
        let core = Registry::new(config.clone(), metrics.clone());
        Ok(RegistryState {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    core,
                    notifies: HashMap::new(),
                }),
                keys: ArcSwap::from_pointee(keys),
                metrics,
                ticking: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                ice: OnceLock::new(),
                extra_secret: OnceLock::new(),
                cluster: OnceLock::new(),
                max_payload: config.max_payload_bytes as usize,
            }),
        })
    }

    /// The registry's counters, for the metrics collector.
    pub fn metrics(&self) -> Arc<RegistryMetrics> {
        self.shared.metrics.clone()
    }

    /// Per-project metering (relay bytes and blobs, signaling messages), sorted by project.
    pub fn project_usage(&self) -> Vec<(String, ProjectUsage)> {
        self.lock().core.project_usage()
    }

    /// The joined peers of `project` (admin API); `None` when it has none.
    pub fn project_peers(&self, project: &str) -> Option<Vec<PeerSummary>> {
        self.lock().core.project_peers(Instant::now(), project)
    }

    /// Disconnects one peer with close code 4006 (admin API); false when it is not joined.
    pub fn disconnect_peer(&self, project: &str, peer_id: &str) -> bool {
        self.with(|core| core.disconnect_peer(project, peer_id))
    }

    /// Closes every connection with 1001 (`going_away`) and refuses new ones from then on
    /// (503 `going_away`): the server is draining or stopping, and clients should reconnect
    /// elsewhere.
    pub fn shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.with(|core| core.close_all(messages::CloseReason::GoingAway));
    }

    /// True once [`RegistryState::shutdown`] was called.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::SeqCst)
    }

    /// Makes this registry a node of a cluster (`crate::cluster` drives it); returns what
    /// wakes the cluster link when the core has outputs for it. Set once, at start.
    pub fn enable_cluster(&self, settings: ClusterSettings) -> Arc<Notify> {
        let notify = self.shared.cluster.get_or_init(|| Arc::new(Notify::new()));
        self.lock().core.enable_cluster(settings);
        notify.clone()
    }

    /// The cluster's counters (all zero without a cluster).
    pub fn cluster_metrics(&self) -> Arc<ClusterMetrics> {
        self.lock().core.cluster_metrics().clone()
    }

    /// `max_payload_bytes`, to parse text frames with ([`messages::parse_text`]).
    pub(crate) fn max_payload(&self) -> usize {
        self.shared.max_payload
    }

    /// The keys that verify tokens.
    pub(crate) fn keys(&self) -> Arc<auth::Keys> {
        self.shared.keys.load_full()
    }

    /// Replaces the keys that verify tokens (a configuration reload: `registry.jwt_secrets`,
    /// `registry.jwt_public_keys`). Peers already joined stay; new upgrades, `reauth` tokens
    /// and attestations are checked with the new keys.
    pub fn set_keys(&self, mut keys: auth::Keys) {
        if let Some(secret) = self.shared.extra_secret.get() {
            keys.add_hs256_secret(secret);
        }
        self.shared.keys.store(Arc::new(keys));
    }

    /// Turns the one-token ladder on: `welcome` and `reauthed` carry `ice_servers` minted by
    /// `ice` (the HTTP API's credential service, whose REST secret and URLs follow reloads).
    /// Set once, at start.
    pub fn set_ice_service(&self, ice: Arc<ArcSwap<IceService>>) {
        let _ = self.shared.ice.set(ice);
    }

    /// Also accepts HS256 tokens signed with `secret`, now and after every reload (the demo's
    /// secret generated at start). Set once.
    pub fn accept_secret(&self, secret: Vec<u8>) {
        if self.shared.extra_secret.set(secret).is_ok() {
            self.set_keys((*self.keys()).clone());
        }
    }

    /// The [`Lease`] of a verified token at `now` (monotonic) and `unix` (wall clock): its
    /// deadline, and the `ice_servers` minted for it when the ladder is on (credential user =
    /// the peer id, lifetime = the token's remaining life, at most
    /// `http.max_credential_ttl_secs`).
    pub fn lease(&self, identity: &Identity, now: Instant, unix: Duration) -> Lease {
        let left = Duration::from_secs(identity.expires_at).saturating_sub(unix);
        let ice_servers = self.shared.ice.get().and_then(|ice| {
            let ice = ice.load();
            // Whole seconds, so that the credential ends with the token (EXPIRY = exp).
            let ttl = identity
                .expires_at
                .saturating_sub(unix.as_secs())
                .min(ice.max_ttl());
            ice.ice_servers(&identity.peer_id, unix.as_secs(), ttl)
        });
        Lease {
            deadline: Some(now + left),
            ice_servers,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the core half-updated in a way that
        // matters more than stopping the registry would: keep serving.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the core, then wakes the writers of the connections it gave frames to.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner.core);
        while let Some(conn) = inner.core.poll_wake() {
            if let Some(notify) = inner.notifies.get(&conn) {
                notify.notify_one();
            }
        }
        if let Some(cluster) = self.shared.cluster.get() {
            if inner.core.cluster_pending() {
                cluster.notify_one();
            }
        }
        result
    }

    /// Admits a connection; returns its id and the notifier of its writer.
    pub(crate) fn connect(
        &self,
        ip: IpAddr,
        identity: Identity,
    ) -> Result<(ConnId, Arc<Notify>), metrics::ConnectRefusal> {
        self.start_ticker();
        let now = Instant::now();
        let lease = self.lease(&identity, now, unix_time());
        let mut inner = self.lock();
        let conn = inner.core.connect(now, ip, identity, lease)?;
        let notify = Arc::new(Notify::new());
        inner.notifies.insert(conn, notify.clone());
        Ok((conn, notify))
    }

    /// Forgets a connection (its task ended).
    pub(crate) fn disconnect(&self, conn: ConnId) {
        self.with(|core| core.disconnect(conn));
        self.lock().notifies.remove(&conn);
    }

    /// Starts the timer task once, on the runtime of the first connection. It holds only a
    /// weak reference, so it ends when the registry is dropped.
    fn start_ticker(&self) {
        if self.shared.ticking.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            let mut peak = 0;
            let (mut last_admitted, mut trimmed_at) = (0, 0);
            loop {
                interval.tick().await;
                let Some(shared) = weak.upgrade() else { break };
                let state = RegistryState { shared };
                let (connections, admitted) = state.with(|core| {
                    core.handle_timeout(Instant::now());
                    (core.connection_count(), core.admitted())
                });
                peak = peak.max(connections);
                // A burst of joins leaves the welcomes and peer_joined messages it sent freed
                // but resident: trim once it is over.
                let burst_over =
                    admitted == last_admitted && admitted - trimmed_at >= TRIM_AFTER_JOINS;
                if (peak - connections >= TRIM_AFTER && connections <= peak / 2) || burst_over {
                    release_free_memory();
                    peak = connections;
                    trimmed_at = admitted;
                }
                last_admitted = admitted;
            }
        });
    }
}
