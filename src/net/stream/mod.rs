//! TCP and TLS listeners: STUN/TURN over streams (RFC 8656 §3.1), TURN over TLS (`turns:`),
//! RFC 6062 TCP allocations, and TLS ports shared with HTTPS.
//!
//! One tokio task per connection (DESIGN §2), each with a core of its own
//! ([`conn::serve`]); they share the settings, the quotas and the relay port pool with the UDP
//! workers. Every accepted connection first takes a place in the [`ConnectionLimits`], then has
//! `connections.handshake_timeout_secs` to finish its TLS handshake and send its first bytes.
//!
//! On a TLS listener with `serve_http = true`, a connection is routed after the handshake: ALPN
//! `stun.turn` is TURN, `http/1.1` (or `h2`) is HTTP; without ALPN, a first byte of 0x00-0x03
//! is TURN and anything else HTTP, handed decrypted to the HTTP API
//! ([`crate::http::serve_connection`]).

pub mod conn;
pub mod limits;
pub mod prefixed;
pub mod relays;
pub mod tcp_relay;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, ListenTransport};
use crate::net::live::CoreUpdates;
use crate::net::ports::PortPool;
use crate::net::relay::RelayAddresses;
use crate::proto::Transport;
use crate::proto::framing::first_byte_is_stun;
use crate::proto::server::{FiveTuple, Shared, Stats};
use crate::tls::{self, ALPN_H2, ALPN_HTTP1, ALPN_TURN, CertStore};
pub use limits::ConnectionLimits;

/// Backlog of a client listener.
const LISTEN_BACKLOG: i32 = 1024;
/// Most RFC 6062 connections waiting for their ConnectionBind across the server.
const MAX_PENDING_TCP_CONNECTIONS: usize = 65536;

/// The running TCP and TLS listeners.
pub struct Streams {
    /// Every bound listener, with its transport.
    pub bound: Vec<(ListenTransport, SocketAddr)>,
    certs: Option<Arc<CertStore>>,
    limits: Arc<ConnectionLimits>,
    tasks: Vec<JoinHandle<()>>,
}

impl Streams {
    /// Reloads the TLS certificate (SIGHUP); logs the outcome. New handshakes use the new
    /// certificate; open connections are not touched.
    pub fn reload_certificates(&self, why: &str) {
        if let Some(certs) = &self.certs {
            tls::reload_and_log(certs, why);
        }
    }

    /// The certificate store of the TLS listeners, if there are any.
    pub fn certificates(&self) -> Option<&Arc<CertStore>> {
        self.certs.as_ref()
    }

    /// TCP and TLS client connections open now.
    pub fn open_connections(&self) -> u32 {
        self.limits.open()
    }

    /// Stops accepting (connections already open end with the runtime).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the accept loops share.
struct Front {
    ctx: Arc<conn::Context>,
    limits: Arc<ConnectionLimits>,
    handshake_timeout: Duration,
    router: axum::Router,
}

/// How one listener treats its connections.
#[derive(Clone)]
enum Kind {
    Tcp,
    Tls {
        acceptor: TlsAcceptor,
        serve_http: bool,
    },
}

/// What stream connections share with the rest of the server.
pub struct Resources {
    /// The core's settings (credentials, policy, limits) and the draining flag, as reloads and
    /// the drain change them.
    pub updates: Arc<CoreUpdates>,
    /// Allocation quotas and reservations, shared with the UDP workers.
    pub quotas: Arc<Shared>,
    /// Counters every stream core counts into (a [`Stats::shared`]).
    pub stats: Arc<Stats>,
    /// The relay port pool, shared with the UDP workers.
    pub pool: Arc<PortPool>,
    /// Where relays bind and what is advertised.
    pub relay_addrs: RelayAddresses,
    /// The HTTP API, for TLS listeners with `serve_http = true`.
    pub http: axum::Router,
    /// Where admin commands come from: every connection's core answers them.
    pub admin: Arc<crate::net::admin::AdminHub>,
}

/// Binds every TCP and TLS listener of `config` and starts accepting on `runtime`. Stream
/// clients take relay ports, quotas and counters from `resources`, like the UDP workers.
/// Returns `None` when the configuration has no TCP or TLS listener.
pub fn start(
    config: &Config,
    resources: Resources,
    runtime: &tokio::runtime::Handle,
) -> anyhow::Result<Option<Streams>> {
    let listeners: Vec<_> = config
        .listen
        .iter()
        .filter(|l| l.transport != ListenTransport::Udp)
        .collect();
    if listeners.is_empty() {
        return Ok(None);
    }
    let certs = if listeners
        .iter()
        .any(|l| l.transport == ListenTransport::Tls)
    {
        Some(certificates(config)?)
    } else {
        None
    };
    let _entered = runtime.enter();
    let connections = &config.connections;
    let limits = ConnectionLimits::new(connections.max_total, connections.max_per_ip);
    let front = Arc::new(Front {
        ctx: Arc::new(conn::Context {
            updates: resources.updates,
            admin: resources.admin,
            shared: resources.quotas,
            stats: resources.stats,
            pool: resources.pool,
            relay_addrs: resources.relay_addrs,
            buffer_bytes: config.server.socket_buffer_bytes,
            idle_timeout: Duration::from_secs(connections.idle_timeout_secs),
            registry: Arc::new(tcp_relay::Registry::new(MAX_PENDING_TCP_CONNECTIONS)),
        }),
        limits: limits.clone(),
        handshake_timeout: Duration::from_secs(connections.handshake_timeout_secs),
        router: without_metrics(resources.http),
    });
    let mut streams = Streams {
        bound: Vec::new(),
        certs: certs.clone(),
        limits,
        tasks: Vec::new(),
    };
    for listen in listeners {
        let std_listener = bind_tcp(listen.address)
            .with_context(|| format!("binding {} listener {}", listen.transport, listen.address))?;
        let local = std_listener.local_addr()?;
        let listener = TcpListener::from_std(std_listener)?;
        let kind = match (&certs, listen.transport) {
            (Some(certs), ListenTransport::Tls) => {
                let alpn: &[&[u8]] = if listen.serve_http {
                    &[ALPN_TURN, ALPN_HTTP1]
                } else {
                    &[ALPN_TURN]
                };
                Kind::Tls {
                    acceptor: TlsAcceptor::from(certs.server_config(alpn)),
                    serve_http: listen.serve_http,
                }
            }
            _ => Kind::Tcp,
        };
        streams.bound.push((listen.transport, local));
        streams
            .tasks
            .push(tokio::spawn(accept_loop(front.clone(), listener, kind)));
    }
    if let Some(certs) = &certs {
        let interval = config.tls.reload_interval_secs;
        if certs.files().is_some() && interval > 0 {
            streams.tasks.push(tokio::spawn(tls::watch(
                certs.clone(),
                Duration::from_secs(interval),
            )));
        }
    }
    Ok(Some(streams))
}

/// The HTTP API as a public TLS port serves it: everything but `/metrics`, which needs no token
/// and so stays on the `[http]` listener (loopback by default), where the operator chose who
/// reaches it.
fn without_metrics(router: axum::Router) -> axum::Router {
    async fn guard(
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if request.uri().path() == "/metrics" {
            return crate::http::ApiError::not_found().into_response();
        }
        next.run(request).await
    }
    router.layer(axum::middleware::from_fn(guard))
}

/// The certificate from `[tls]`, or a generated self-signed one (with a warning).
fn certificates(config: &Config) -> anyhow::Result<Arc<CertStore>> {
    match (&config.tls.certificate, &config.tls.private_key) {
        (Some(certificate), Some(key)) => {
            let store = CertStore::from_files(certificate, key)
                .context("loading the TLS certificate ([tls] certificate and private_key)")?;
            tracing::info!(certificate = %certificate.display(), "TLS certificate loaded");
            Ok(store)
        }
        _ => {
            tracing::warn!(
                "tls.certificate is not set: TLS listeners use a self-signed certificate for \
                 localhost generated at start, which clients will not trust; configure \
                 [tls] certificate and private_key"
            );
            CertStore::self_signed().context("generating a self-signed TLS certificate")
        }
    }
}

/// A non-blocking listening TCP socket (IPv6 sockets IPv6-only, so `[::]` and `0.0.0.0` can be
/// bound side by side; SO_REUSEADDR so a restart does not wait for TIME_WAIT).
fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

async fn accept_loop(front: Arc<Front>, listener: TcpListener, kind: Kind) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        let (tcp, client) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: log once a minute, back off a little.
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(%error, "cannot accept a TCP connection");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match front.limits.acquire(client.ip()) {
            Ok(permit) => permit,
            Err(refused) => {
                tracing::debug!(%client, ?refused, "connection limit reached: closing");
                continue;
            }
        };
        let front = front.clone();
        let kind = kind.clone();
        tokio::spawn(async move {
            handle(&front, tcp, client, kind).await;
            drop(permit);
        });
    }
}

/// Where a decrypted connection goes.
enum Route {
    Turn(Vec<u8>),
    Http(Vec<u8>),
}

async fn handle(front: &Front, tcp: TcpStream, client: SocketAddr, kind: Kind) {
    let _ = tcp.set_nodelay(true);
    let Ok(server) = tcp.local_addr() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + front.handshake_timeout;
    match kind {
        Kind::Tcp => {
            let mut tcp = tcp;
            let Some(first) = first_bytes(&mut tcp, deadline).await else {
                return;
            };
            let ft = FiveTuple {
                transport: Transport::Tcp,
                client,
                server,
            };
            conn::serve(front.ctx.clone(), tcp, ft, first).await;
        }
        Kind::Tls {
            acceptor,
            serve_http,
        } => {
            let accepted = tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await;
            let mut tls = match accepted {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%client, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%client, "TLS handshake timed out");
                    return;
                }
            };
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let route = match alpn.as_deref() {
                Some(ALPN_TURN) => Route::Turn(Vec::new()),
                Some(ALPN_HTTP1 | ALPN_H2) if serve_http => Route::Http(Vec::new()),
                _ => {
                    let Some(first) = first_bytes(&mut tls, deadline).await else {
                        return;
                    };
                    if !serve_http || first_byte_is_stun(first[0]) {
                        Route::Turn(first)
                    } else {
                        Route::Http(first)
                    }
                }
            };
            match route {
                Route::Turn(first) => {
                    let ft = FiveTuple {
                        transport: Transport::Tls,
                        client,
                        server,
                    };
                    conn::serve(front.ctx.clone(), tls, ft, first).await;
                }
                Route::Http(first) => {
                    let stream = prefixed::Prefixed::new(first, tls);
                    if let Err(error) =
                        crate::http::serve_connection_from(front.router.clone(), stream, client)
                            .await
                    {
                        tracing::debug!(%client, %error, "HTTPS connection ended with an error");
                    }
                }
            }
        }
    }
}

/// Reads the first bytes a client sends, by `deadline`. `None` when it sends nothing in time
/// or closes.
async fn first_bytes<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    deadline: tokio::time::Instant,
) -> Option<Vec<u8>> {
    let mut first = Vec::with_capacity(2048);
    match tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await {
        Ok(Ok(n)) if n > 0 => Some(first),
        _ => None,
    }
}
