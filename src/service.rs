//! Start-up, signals and shutdown: turns a [`Config`] into bound sockets and running workers,
//! serves the HTTP API (credentials, metrics, health) on a tokio runtime, tells systemd when it
//! is ready, feeds the watchdog while the workers are alive, reloads the configuration on
//! SIGHUP ([`crate::reload`]), and on SIGTERM/SIGINT drains (existing allocations carry on,
//! new ones are refused) before it stops ([`supervise`]).

mod supervise;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mio::{Poll, Waker};
use rand::RngCore;

use crate::config::{Config, ListenTransport};
use crate::http::{self, Health, HttpState};
use crate::logging::LogHandle;
use crate::metrics::Metrics;
use crate::net::addr::{advertisable_address, listener_addresses, named_interface_addresses};
use crate::net::listeners::{ListenerInbox, WildcardListeners};
use crate::net::live::CoreUpdates;
use crate::net::ports::PortPool;
use crate::net::relay::{RelayAddresses, RelaySet};
use crate::net::shortcut::{Handoffs, RelayDirectory};
use crate::net::socket::{UdpOptions, bind_udp};
use crate::net::udp::{UdpWorker, WAKER_TOKEN, WorkerHandle, WorkerShared};
use crate::proto::Transport;
use crate::proto::server::{Server, Shared, Stats};
use crate::reload::{Reloader, Targets, core_settings};

/// What [`run`] needs besides the configuration.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The file the configuration was read from, read again on SIGHUP; `None` when the server
    /// runs with the built-in configuration (SIGHUP then only reloads the TLS certificate).
    pub config_path: Option<PathBuf>,
    /// The log filter a reload of `log.level` changes; `None` leaves logging alone.
    pub log: Option<LogHandle>,
}

/// Runs the server with `config` until SIGTERM or SIGINT (and the drain that follows). Blocks.
pub fn run(mut config: Config, options: RunOptions) -> anyhow::Result<()> {
    raise_open_file_limit();
    let mut generated = None;
    if config.auth.secrets.is_empty() && config.auth.users.is_empty() {
        let mut raw = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut raw);
        let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        // Logged once, on purpose: with no credentials configured this is the only way an
        // operator trying the embedded default can mint credentials.
        tracing::warn!(
            secret = %secret,
            "no auth.secrets or auth.users configured: generated a REST secret for this run only; \
             mint credentials with `turnpike credentials --secret <it> --user NAME`"
        );
        config.auth.secrets.push(secret.clone());
        generated = Some(secret);
    }
    // One runtime for the control plane (signals, HTTP) and for the TCP/TLS client
    // connections (one task each); the UDP workers run on their own threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("turnpike-control")
        .enable_all()
        .build()
        .context("starting the control-plane runtime")?;
    let outcome = runtime.block_on(serve(config, generated, options));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if outcome.is_ok() {
        tracing::info!("stopped");
    }
    outcome
}

/// Starts the HTTP API first (so `/healthz` answers and `/readyz` says "starting" while
/// listeners bind), then the workers; runs until a signal, then drains and stops.
async fn serve(
    config: Config,
    generated_secret: Option<String>,
    options: RunOptions,
) -> anyhow::Result<()> {
    let signals = supervise::Signals::install().context("installing the signal handlers")?;
    let metrics = Arc::new(Metrics::new(&config.realm));
    let health = Arc::new(Health::default());
    metrics.set_health(health.clone());
    let (stop_http, stopped) = tokio::sync::watch::channel(false);
    // The API router: on the HTTP listener, and on TLS listeners with `serve_http = true`.
    let mut http_state = HttpState::new(&config, metrics.clone(), health.clone());
    // Part of a fleet: the credential answers list its nodes (with Redis), and a drain sends
    // new allocations to an alternate.
    let fleet = crate::fleet::setup::fleet(&config).map(Arc::new);
    if let Some(fleet) = &fleet {
        if config.cluster.redis_url.is_some() {
            http_state.set_fleet(&config, fleet.clone());
        }
        metrics.set_fleet(fleet.clone());
    }
    let admin = Arc::new(
        crate::admin::Admin::new(config.http.revocations_file.as_deref())
            .context("reading the revocation list")?,
    );
    metrics.set_admin(admin.hub().clone());
    if let Some(url) = &config.cluster.redis_url {
        admin
            .start_sync(url)
            .context("the revocation sync with cluster.redis_url")?;
        tracing::info!("revocations are shared with the cluster through Redis");
    }
    let registry = crate::registry::standalone::state(&config.registry)?;
    if let Some(state) = &registry {
        if config.registry.ice_servers {
            // The one-token ladder mints with the credential endpoints' secret and URLs.
            state.set_ice_service(http_state.ice.clone());
        }
        if config.http.demo {
            http_state.set_demo(http::sdk::Demo::start(&config.registry, state));
        }
    }
    if let Some(state) = &registry {
        // The registry cluster: presence and forwarding through Redis.
        crate::cluster::start(&config, state, health.clone(), stop_http.subscribe());
    }
    http_state.set_admin(admin.clone(), registry.clone(), &config);
    let mut api = http::router(http_state.clone());
    // The registry (/v1/registry) rides on the same router, so also on TLS 443.
    if let Some(state) = &registry {
        api = api.merge(crate::registry::routes(state.clone()));
        metrics.set_registry(state.clone());
        tracing::info!(
            "registry enabled: /v1/registry on the HTTP API and on TLS listeners that serve HTTP"
        );
        if let Some(address) = config.registry.listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| {
                    format!("binding the registry listener (registry.listen) on {address}")
                })?;
            let address = listener.local_addr().unwrap_or(address);
            tracing::info!(%address, "registry listening on ws://{address}/v1/registry");
            tokio::spawn(crate::registry::standalone::serve(
                listener,
                state.clone(),
                stopped.clone(),
            ));
        }
    }
    if config.http.enabled {
        let address = config.http.address;
        let listener = http::bind(address)
            .with_context(|| format!("binding the HTTP API (http.address) on {address}"))?;
        let address = listener.local_addr().unwrap_or(address);
        if !config.http.has_token_auth() {
            tracing::info!(
                "no http.api_keys and no http.jwt keys: the credential endpoints refuse every request"
            );
        }
        tracing::info!(%address, "HTTP API listening (/metrics, /healthz, /readyz, /api/v1/ice-servers)");
        tokio::spawn(http::serve(listener, api.clone(), stopped));
    }
    let start_config = config.clone();
    let start_metrics = metrics.clone();
    let running =
        tokio::task::spawn_blocking(move || start(&start_config, api, &admin, &start_metrics))
            .await
            .context("start-up failed")??;
    if let Some(fleet) = fleet {
        tracing::info!(
            node = fleet.node(),
            redis = config.cluster.redis_url.is_some(),
            "fleet: publishing this node's load and following the others'"
        );
        tokio::spawn(crate::fleet::publish::run(
            fleet,
            config.cluster.redis_url.clone(),
            Duration::from_secs(config.fleet.load_ttl_secs),
            crate::fleet::publish::Sources {
                metrics: metrics.clone(),
                updates: running.updates.clone(),
            },
            stop_http.subscribe(),
        ));
    }
    health.set_listening(true);
    let targets = Targets {
        updates: running.updates.clone(),
        quotas: running.quotas.clone(),
        relay_addrs: running.relay_addrs.clone(),
        nonce_key: running.nonce_key,
        interfaces: running.interfaces.clone(),
        http: http_state,
        registry: registry.clone(),
        certs: running
            .streams
            .as_ref()
            .and_then(|s| s.certificates().cloned()),
        log: options.log,
        metrics,
    };
    let mut reloader = Reloader::new(options.config_path, config, generated_secret, targets);
    supervise::supervise(signals, &running, &mut reloader, &health, registry.as_ref()).await;
    let _ = stop_http.send(true);
    tokio::task::spawn_blocking(move || running.stop())
        .await
        .context("stopping the workers")?;
    Ok(())
}

/// A started worker thread, with what it takes to watch and stop it.
struct WorkerThread {
    handle: Arc<WorkerHandle>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// The running workers.
pub struct Running {
    workers: Vec<WorkerThread>,
    /// The addresses actually bound (useful when a config asks for port 0).
    pub bound: Vec<SocketAddr>,
    /// The TCP and TLS listeners, when configured.
    pub streams: Option<crate::net::stream::Streams>,
    /// Every core's live counters (each UDP worker's, and the one the connections share).
    pub stats: Vec<Arc<Stats>>,
    /// The relay port pool every worker takes from.
    pub ports: Arc<PortPool>,
    /// Every core's settings and the draining flag (reloads and the drain change them).
    pub updates: Arc<CoreUpdates>,
    /// The allocation quotas and reservations every core shares.
    pub quotas: Arc<Shared>,
    /// Where relays bind and what is advertised (fixed at start).
    pub relay_addrs: RelayAddresses,
    /// The nonce key of this process (kept across reloads).
    nonce_key: [u8; 32],
    /// The host's interface addresses read at start.
    interfaces: Vec<IpAddr>,
    /// Wildcard UDP listeners, which gain sockets as the host gains addresses.
    listeners: Option<WildcardListeners>,
    /// The XDP fast path, when `relay.xdp` is set and it attached.
    #[cfg(feature = "xdp")]
    pub xdp: Option<Arc<crate::net::xdp::FastPath>>,
}

impl Running {
    /// Stops every worker (their allocations end) and waits for them, then stops accepting
    /// TCP and TLS connections.
    pub fn stop(mut self) {
        for w in &self.workers {
            w.handle.stop.store(true, Ordering::Relaxed);
            let _ = w.waker.wake();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        // Stop accepting; open connections end with the runtime.
        if let Some(streams) = &self.streams {
            streams.stop();
        }
    }
}

impl Running {
    /// True when every worker turned its loop within `within`.
    fn workers_alive(&self, within: Duration) -> bool {
        let now_ms = crate::net::udp::now().unix * 1000;
        let slack = within.as_millis() as u64 + 1000;
        self.workers.iter().all(|w| {
            w.thread.as_ref().is_some_and(|t| !t.is_finished())
                && now_ms.saturating_sub(w.handle.heartbeat_ms.load(Ordering::Relaxed)) <= slack
        })
    }

    /// Live allocations over all workers.
    pub fn allocations(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.handle.allocations.load(Ordering::Relaxed))
            .sum()
    }

    /// Live allocations over every core: UDP workers and TCP/TLS connections.
    pub fn live_allocations(&self) -> u64 {
        self.stats
            .iter()
            .map(|stats| {
                let snapshot = stats.snapshot();
                [Transport::Udp, Transport::Tcp, Transport::Tls]
                    .into_iter()
                    .map(|t| snapshot.allocations_active(t))
                    .sum::<u64>()
            })
            .sum()
    }

    /// Binds the wildcard UDP listeners to the addresses in `interfaces` they lack, and wakes
    /// the workers to serve them.
    pub fn refresh_listeners(&self, interfaces: &[IpAddr]) {
        if self
            .listeners
            .as_ref()
            .is_some_and(|l| l.refresh(interfaces))
        {
            self.wake_workers();
        }
    }

    /// Wakes every worker, so that it picks up what was published in [`Running::updates`]
    /// now rather than at its next packet or timer.
    pub fn wake_workers(&self) {
        for w in &self.workers {
            let _ = w.waker.wake();
        }
    }

    /// Starts the drain: every core refuses new allocations from now on and serves the
    /// allocations it has.
    pub fn start_draining(&self) {
        self.updates.start_draining();
        self.wake_workers();
    }
}

/// Binds every listener, builds one core per worker and starts the workers, and the TCP/TLS
/// listeners on the current tokio runtime (their HTTP side serves `http_router`). Every core's
/// counters, the port pool and the fast path are in `metrics` before the first packet can be
/// served, so no scrape misses what a client was already answered. Returns once all are
/// serving (and has told systemd READY=1).
pub fn start(
    config: &Config,
    http_router: axum::Router,
    admin: &crate::admin::Admin,
    metrics: &Metrics,
) -> anyhow::Result<Running> {
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    // A wildcard UDP listener becomes one socket per address of the host, so that answers
    // leave from the address each client sent to (see `listener_addresses`).
    let host_addresses = crate::net::addr::interface_addresses();
    let udp: Vec<SocketAddr> = config
        .listen
        .iter()
        .filter(|l| l.transport == ListenTransport::Udp)
        .flat_map(|l| {
            let each = listener_addresses(l.address, &host_addresses);
            if each.len() == 1 && each[0] == l.address {
                return each;
            }
            // An address the host lists but cannot bind yet (IPv6 still in duplicate address
            // detection) is left out rather than failing the start.
            let each: Vec<SocketAddr> = each
                .into_iter()
                .filter(|a| {
                    let probe = bind_udp(SocketAddr::new(a.ip(), 0), UdpOptions {
                        reuse_port: false,
                        buffer_bytes: 0,
                        dont_fragment: false,
                    });
                    if let Err(error) = &probe {
                        tracing::warn!(address = %a.ip(), %error, "cannot bind this address: the UDP listener leaves it out");
                    }
                    probe.is_ok()
                })
                .collect();
            tracing::info!(listener = %l.address, addresses = ?each, "UDP listener bound on each address of the host");
            each
        })
        .collect();
    if udp.is_empty()
        && config
            .listen
            .iter()
            .any(|l| l.transport == ListenTransport::Udp)
    {
        bail!("no address of this host could be bound for the UDP listeners");
    }
    if config.listen.is_empty() {
        bail!("no listener configured");
    }
    // TCP and TLS connections run as tasks of the caller's runtime.
    let runtime = tokio::runtime::Handle::try_current()
        .context("start() runs inside the service's tokio runtime")?;
    let relay_addrs = relay_addresses(config)?;
    let pool = Arc::new(PortPool::new(
        config.relay.ports.start,
        config.relay.ports.end,
    ));
    let shared = Arc::new(
        Shared::new(
            config.limits.allocations_per_user,
            config.limits.allocations_total,
        )
        .with_revoked(admin.revoked().clone()),
    );
    let mut nonce_key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce_key);
    let buffer_bytes = config.server.socket_buffer_bytes;
    let bind_retry = Duration::from_secs(config.server.bind_retry_secs);

    // SO_REUSEPORT lets any process of the same user join our listener group and silently take
    // a share of the traffic (a second turnpike started by mistake, say). Probe each address
    // with a plain bind first, so that an address already in use fails loudly instead.
    for addr in udp.iter().filter(|a| a.port() != 0) {
        let opts = UdpOptions {
            reuse_port: false,
            buffer_bytes: 0,
            dont_fragment: false,
        };
        bind_retrying(*addr, opts, bind_retry)
            .with_context(|| format!("UDP listener {addr} is already in use by another process"))?;
    }
    // Bind the first worker's sockets first: a port of 0 then resolves to the port the others
    // share.
    let mut bound: Vec<SocketAddr> = udp.clone();
    let mut per_worker: Vec<Vec<std::net::UdpSocket>> = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut sockets = Vec::with_capacity(bound.len());
        for addr in bound.iter_mut() {
            let opts = UdpOptions {
                reuse_port: true,
                buffer_bytes,
                dont_fragment: false,
            };
            let socket = bind_retrying(*addr, opts, bind_retry)
                .with_context(|| format!("binding UDP listener {addr}"))?;
            *addr = socket.local_addr()?;
            sockets.push(socket);
        }
        per_worker.push(sockets);
    }

    // Every TCP/TLS connection has a core of its own; they count into one shared Stats.
    // One set of settings for every core, replaced as a whole by a reload.
    let interfaces = crate::net::addr::interface_addresses();
    let updates = Arc::new(CoreUpdates::new(Arc::new(core_settings(
        config,
        &relay_addrs,
        &interfaces,
        nonce_key,
    ))));
    let stream_stats = Arc::new(Stats::shared());
    metrics.register(stream_stats.clone());
    metrics.set_port_pool(pool.clone());
    let streams = crate::net::stream::start(
        config,
        crate::net::stream::Resources {
            updates: updates.clone(),
            quotas: shared.clone(),
            stats: stream_stats.clone(),
            pool: pool.clone(),
            relay_addrs: relay_addrs.clone(),
            http: http_router,
            admin: admin.hub().clone(),
        },
        &runtime,
    )?;
    let mut running = Running {
        workers: Vec::new(),
        bound: bound.clone(),
        streams,
        stats: vec![stream_stats],
        ports: pool.clone(),
        updates: updates.clone(),
        quotas: shared.clone(),
        relay_addrs: relay_addrs.clone(),
        nonce_key,
        interfaces,
        listeners: None,
        #[cfg(feature = "xdp")]
        xdp: None,
    };
    let own_ips: Vec<IpAddr> = [relay_addrs.advertised_v4, relay_addrs.advertised_v6]
        .into_iter()
        .flatten()
        .collect();
    let directory = Arc::new(RelayDirectory::new(own_ips));
    let handoffs = Arc::new(Handoffs::new(workers, HANDOFF_DEPTH));
    let inboxes: Vec<Arc<ListenerInbox>> = (0..workers).map(|_| Arc::default()).collect();
    running.listeners = Some(WildcardListeners::new(
        config
            .listen
            .iter()
            .filter(|l| l.transport == ListenTransport::Udp && l.address.ip().is_unspecified())
            .map(|l| l.address)
            .collect(),
        bound.clone(),
        inboxes.clone(),
        buffer_bytes,
    ));
    #[cfg(feature = "xdp")]
    let xdp = crate::net::xdp::start(&config.relay.xdp);
    #[cfg(feature = "xdp")]
    if let Some(xdp) = &xdp {
        running.xdp = Some(xdp.clone());
        metrics.set_xdp(xdp.clone());
    }
    #[cfg(not(feature = "xdp"))]
    if !config.relay.xdp.is_empty() {
        tracing::warn!(
            "relay.xdp is set but this binary was built without the xdp feature; relaying in user space"
        );
    }
    let mut polls = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new().context("creating an event loop")?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?));
        polls.push(poll);
    }
    let wakers = Arc::new(wakers);
    admin.hub().set_wakers(wakers.clone());
    for (index, (sockets, poll)) in per_worker.into_iter().zip(polls).enumerate() {
        let registry = poll.registry().try_clone()?;
        let relays = RelaySet::new(
            registry,
            pool.clone(),
            relay_addrs.clone(),
            buffer_bytes,
            directory.clone(),
            index,
        );
        let core = Server::with_shared_settings(
            updates.settings(),
            shared.clone(),
            Instant::now(),
            Arc::new(Stats::single_writer()),
        );
        running.stats.push(core.stats().clone());
        metrics.register(core.stats().clone());
        let handle = Arc::new(WorkerHandle::default());
        let with_others = WorkerShared {
            index,
            directory: directory.clone(),
            handoffs: handoffs.clone(),
            wakers: wakers.clone(),
            updates: updates.clone(),
            admin: admin.hub().clone(),
            new_listeners: inboxes[index].clone(),
            #[cfg(feature = "xdp")]
            xdp: xdp.clone(),
        };
        let worker = UdpWorker::new(poll, sockets, relays, core, handle.clone(), with_others)?;
        let thread = std::thread::Builder::new()
            .name(format!("turnpike-udp-{index}"))
            .spawn(move || worker.run())
            .context("starting a worker thread")?;
        running.workers.push(WorkerThread {
            handle,
            waker: wakers[index].clone(),
            thread: Some(thread),
        });
    }
    tracing::info!(
        listeners = ?bound,
        stream_listeners = ?running.streams.as_ref().map(|s| &s.bound),
        workers,
        relay_v4 = ?relay_addrs.advertised_v4,
        relay_v6 = ?relay_addrs.advertised_v6,
        ports = %config.relay.ports,
        realm = %config.realm,
        "ready"
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    Ok(running)
}

/// Packets in flight per worker inbox for the relay-to-relay short-circuit (each holds a 2 KiB
/// pooled buffer).
const HANDOFF_DEPTH: usize = 1024;

/// Binds a UDP listener, retrying for up to `retry` while the address is in use or not
/// assigned yet (`server.bind_retry_secs`: at boot the address may come up after us).
fn bind_retrying(
    addr: SocketAddr,
    opts: UdpOptions,
    retry: Duration,
) -> std::io::Result<std::net::UdpSocket> {
    use std::io::ErrorKind;
    let deadline = Instant::now() + retry;
    let mut warned = false;
    loop {
        match bind_udp(addr, opts) {
            Ok(socket) => return Ok(socket),
            Err(e)
                if matches!(e.kind(), ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable)
                    && Instant::now() < deadline =>
            {
                if !warned {
                    tracing::warn!(%addr, error = %e, retry_secs = retry.as_secs(), "cannot bind a listener yet; retrying");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where relay sockets bind and what is advertised, from `[relay]`. Without
/// `relay.external_ip` and with a wildcard `relay.bind_ip`, the relay binds and advertises one
/// address of the host, never a loopback, link-local or container-bridge one (see
/// [`advertisable_address`]), and says which; binding it (rather than the wildcard) makes
/// relayed packets leave from the address peers send to. With no such IPv4 address the server
/// refuses to start; with no such IPv6 address IPv6 relays are off.
fn relay_addresses(config: &Config) -> anyhow::Result<RelayAddresses> {
    let interfaces = named_interface_addresses();
    let mappings = config.relay.external_mappings();
    // What a relay bound at `bind` is advertised as: its `external_ips` mapping, else itself.
    let mapped = |bind: IpAddr| {
        mappings
            .iter()
            .find(|(_, private)| *private == bind)
            .map_or(bind, |(public, _)| *public)
    };
    // (bind, advertised) for one family, or None for no relays of that family.
    let pick = |bind: IpAddr,
                external: Option<IpAddr>,
                v6: bool|
     -> anyhow::Result<Option<(IpAddr, IpAddr)>> {
        if let Some(ip) = external {
            return Ok(Some((bind, ip)));
        }
        if !bind.is_unspecified() {
            return Ok(Some((bind, mapped(bind))));
        }
        let (key, family) = if v6 {
            ("relay.external_ipv6", "IPv6")
        } else {
            ("relay.external_ip", "IPv4")
        };
        match advertisable_address(v6, &interfaces) {
            Some((interface, ip)) => {
                tracing::info!(%ip, %interface, "{key} not set: relays bind and advertise this {family} address; set {key} behind NAT");
                Ok(Some((ip, ip)))
            }
            None if v6 => {
                tracing::warn!(
                    "no IPv6 address to advertise for relays other than loopback, link-local or container-bridge ones: IPv6 relays are off (set relay.external_ipv6 or relay.bind_ipv6)"
                );
                Ok(None)
            }
            None => bail!(
                "{key} is not set and this host has no {family} address to advertise for relays \
                 other than loopback, link-local or container-bridge ones: set {key} (the address \
                 peers reach this server at) or relay.bind_ip"
            ),
        }
    };
    let v4 = Some(config.relay.bind_ip)
        .filter(|ip| ip.is_ipv4())
        .map(|b| pick(b, config.relay.external_ip, false))
        .transpose()?
        .flatten();
    let v6 = config
        .relay
        .bind_ipv6
        .filter(|ip| ip.is_ipv6())
        .map(|b| pick(b, config.relay.external_ipv6, true))
        .transpose()?
        .flatten();
    Ok(RelayAddresses {
        bind_v4: v4.map(|(b, _)| b),
        bind_v6: v6.map(|(b, _)| b),
        advertised_v4: v4.map(|(_, a)| a),
        advertised_v6: v6.map(|(_, a)| a),
        extra: config
            .relay
            .bind_ips
            .iter()
            .map(|&bind| (bind, mapped(bind)))
            .collect(),
    })
}

/// Every allocation holds a socket: raise the soft open-file limit to the hard limit (systemd's
/// `LimitNOFILE=` sets the hard one), as servers commonly do, and say what we got.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    tracing::debug!(open_files = lim.rlim_cur, "open-file limit");
}
