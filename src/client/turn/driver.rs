//! The tokio driver of the TURN client: one task per allocation owns the socket (UDP, TCP or
//! TLS), feeds the sans-IO [`TurnClient`] and reads the clock; the application talks to it
//! through a [`TurnRelay`] handle.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use super::TurnError;
use super::core::{TurnClient, TurnConfig, TurnEvent};
use super::stream::StreamDecoder;

/// Received data waiting for [`TurnRelay::recv`] (beyond it, datagrams are dropped, as UDP
/// would).
const DATA_QUEUE: usize = 256;
/// Commands waiting for the task.
const COMMAND_QUEUE: usize = 256;
/// Most 300 Try Alternate redirections one [`TurnRelay::allocate`] follows.
pub const MAX_REDIRECTS: usize = 2;
/// The ALPN protocol of TURN over TLS (RFC 7443); turnpike's shared port 443 routes by it.
pub const ALPN_TURN: &[u8] = b"stun.turn";

/// The transport to a TURN server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnTransport {
    /// `turn:` over UDP.
    Udp,
    /// `turn:...?transport=tcp`.
    Tcp,
    /// `turns:` (TLS over TCP).
    Tls,
}

/// Where a TURN server is: from a `turn:` / `turns:` URI (RFC 7065).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnServer {
    /// The host name or IP address (also the TLS server name).
    pub host: String,
    /// The port (3478 for `turn:`, 5349 for `turns:` when the URI gives none).
    pub port: u16,
    /// The transport.
    pub transport: TurnTransport,
}

impl TurnServer {
    /// Parses `turn:host[:port][?transport=udp|tcp]` or `turns:host[:port][?transport=tcp]`.
    pub fn from_url(url: &str) -> Result<TurnServer, TurnError> {
        let bad = || TurnError::Io(format!("not a TURN URI: {url:.100}"));
        let (scheme, rest) = url.split_once(':').ok_or_else(bad)?;
        let (hostport, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let tls = match scheme {
            "turn" => false,
            "turns" => true,
            _ => return Err(bad()),
        };
        let tcp = match query {
            None => tls,
            Some("transport=udp") if !tls => false,
            Some("transport=tcp") => true,
            Some(_) => return Err(bad()),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(bad)?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tls => 5349,
            None => 3478,
        };
        if host.is_empty() {
            return Err(bad());
        }
        let transport = match (tls, tcp) {
            (true, _) => TurnTransport::Tls,
            (false, true) => TurnTransport::Tcp,
            (false, false) => TurnTransport::Udp,
        };
        Ok(TurnServer {
            host: host.to_owned(),
            port,
            transport,
        })
    }
}

/// A rustls client configuration for `turns:` with these trust anchors, offering ALPN
/// `stun.turn` (so a port 443 shared with HTTPS routes us to TURN). The same crypto provider
/// as the server's (`crate::tls::provider`, feature `server`): ring.
pub fn tls_client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_TURN.to_vec()];
    Arc::new(config)
}

enum Command {
    Permission(IpAddr, oneshot::Sender<Result<(), TurnError>>),
    Bind(SocketAddr, oneshot::Sender<Result<u16, TurnError>>),
    Send(SocketAddr, Vec<u8>),
    Close(oneshot::Sender<()>),
}

/// A live allocation on a TURN server, driven by a task of its own.
///
/// Dropping the handle ends the task (without releasing the allocation: call
/// [`close`](Self::close) for that).
pub struct TurnRelay {
    commands: mpsc::Sender<Command>,
    data: mpsc::Receiver<Result<(SocketAddr, Vec<u8>), TurnError>>,
    relayed: SocketAddr,
    mapped: Option<SocketAddr>,
    local: SocketAddr,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Conn {
    Udp(UdpSocket, SocketAddr),
    Stream(Box<dyn Stream>, StreamDecoder),
}

impl TurnRelay {
    /// Connects to `server`, allocates a UDP relay and returns once the allocation exists.
    /// `tls` is required for `turns:` (see [`tls_client_config`]).
    ///
    /// A draining server may answer 300 Try Alternate (signed with our credentials): the
    /// allocation is then made at its ALTERNATE-SERVER, over the same transport (for `turns:`,
    /// the certificate is still checked against `server.host`), at most [`MAX_REDIRECTS`] hops
    /// and never twice at the same address.
    pub async fn allocate(
        server: &TurnServer,
        config: TurnConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<TurnRelay, TurnError> {
        let io = |e: std::io::Error| TurnError::Io(e.to_string());
        let addr = tokio::net::lookup_host((server.host.as_str(), server.port))
            .await
            .map_err(io)?
            .next()
            .ok_or_else(|| TurnError::Io(format!("{} does not resolve", server.host)))?;
        let mut visited = vec![addr];
        loop {
            let at = *visited.last().expect("starts with one");
            match Self::allocate_at(server, at, config.clone(), tls.clone()).await {
                Err(TurnError::TryAlternate { alternate, .. })
                    if visited.len() <= MAX_REDIRECTS && !visited.contains(&alternate) =>
                {
                    tracing::info!(from = %at, to = %alternate, "TURN server redirects (300 Try Alternate); allocating there");
                    visited.push(alternate);
                }
                outcome => return outcome,
            }
        }
    }

    /// Connects to `addr` (which is `server`, or an alternate of it) and allocates there.
    async fn allocate_at(
        server: &TurnServer,
        addr: SocketAddr,
        mut config: TurnConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<TurnRelay, TurnError> {
        let io = |e: std::io::Error| TurnError::Io(e.to_string());
        config.stream = server.transport != TurnTransport::Udp;
        let (conn, local) = match server.transport {
            TurnTransport::Udp => {
                let bind: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(bind).await.map_err(io)?;
                socket.connect(addr).await.map_err(io)?;
                let local = socket.local_addr().map_err(io)?;
                (Conn::Udp(socket, addr), local)
            }
            TurnTransport::Tcp | TurnTransport::Tls => {
                let tcp = TcpStream::connect(addr).await.map_err(io)?;
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().map_err(io)?;
                let stream: Box<dyn Stream> = if server.transport == TurnTransport::Tls {
                    let tls = tls.ok_or_else(|| {
                        TurnError::Io("turns: needs a TLS client configuration".into())
                    })?;
                    let name = rustls::pki_types::ServerName::try_from(server.host.clone())
                        .map_err(|e| TurnError::Io(e.to_string()))?;
                    let s = tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await
                        .map_err(io)?;
                    Box::new(s)
                } else {
                    Box::new(tcp)
                };
                (Conn::Stream(stream, StreamDecoder::new()), local)
            }
        };
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let mut client = TurnClient::new(config, seed);
        client.allocate(Instant::now())?;
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(run(client, conn, cmd_rx, data_tx, ready_tx));
        let (relayed, mapped) = ready_rx.await.map_err(|_| TurnError::Closed)??;
        Ok(TurnRelay {
            commands: cmd_tx,
            data: data_rx,
            relayed,
            mapped,
            local,
        })
    }

    /// The relayed address peers send to.
    pub fn relayed(&self) -> SocketAddr {
        self.relayed
    }

    /// Our address as the server saw it (a server-reflexive candidate), when it said.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The local address of the socket to the server.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Installs a permission for `ip` (kept refreshed until the relay closes).
    pub async fn create_permission(&self, ip: IpAddr) -> Result<(), TurnError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Permission(ip, tx)).await?;
        rx.await.map_err(|_| TurnError::Closed)?
    }

    /// Binds a channel to `peer` (kept bound until the relay closes); returns its number.
    pub async fn bind_channel(&self, peer: SocketAddr) -> Result<u16, TurnError> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Bind(peer, tx)).await?;
        rx.await.map_err(|_| TurnError::Closed)?
    }

    /// Asks for a channel to `peer` without waiting for the answer (for callers inside an event
    /// loop); until it is bound, data to the peer goes in Send indications.
    pub fn bind_channel_later(&self, peer: SocketAddr) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.commands.try_send(Command::Bind(peer, tx));
    }

    /// Queues `data` for `peer` without waiting; fails with [`TurnError::Limit`] when the
    /// queue is full (the caller treats it as a lost datagram).
    pub fn send_to(&self, peer: SocketAddr, data: Vec<u8>) -> Result<(), TurnError> {
        self.commands
            .try_send(Command::Send(peer, data))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => TurnError::Limit("command queue"),
                mpsc::error::TrySendError::Closed(_) => TurnError::Closed,
            })
    }

    /// The next datagram from a peer; an error once the allocation is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Result<(SocketAddr, Vec<u8>), TurnError> {
        self.data.recv().await.unwrap_or(Err(TurnError::Closed))
    }

    /// Releases the allocation (Refresh with lifetime 0) and ends the task.
    pub async fn close(self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    async fn command(&self, c: Command) -> Result<(), TurnError> {
        self.commands.send(c).await.map_err(|_| TurnError::Closed)
    }
}

type Ready = oneshot::Sender<Result<(SocketAddr, Option<SocketAddr>), TurnError>>;

#[derive(Default)]
struct Waiters {
    ready: Option<Ready>,
    permissions: HashMap<IpAddr, Vec<oneshot::Sender<Result<(), TurnError>>>>,
    channels: HashMap<SocketAddr, Vec<oneshot::Sender<Result<u16, TurnError>>>>,
    close: Vec<oneshot::Sender<()>>,
}

async fn run(
    mut client: TurnClient,
    mut conn: Conn,
    mut commands: mpsc::Receiver<Command>,
    data: mpsc::Sender<Result<(SocketAddr, Vec<u8>), TurnError>>,
    ready: Ready,
) {
    let mut w = Waiters {
        ready: Some(ready),
        ..Waiters::default()
    };
    let mut buf = vec![0u8; 65_536];
    let mut commands_open = true;
    loop {
        while let Some(t) = client.poll_transmit() {
            if let Err(e) = conn.send(&t).await {
                tracing::debug!(error = %e, "TURN connection lost");
                client.close(Instant::now());
                let _ = data.try_send(Err(TurnError::Io(e.to_string())));
                end(&mut w, TurnError::Io(e.to_string()));
                return;
            }
        }
        while let Some(event) = client.poll_event() {
            route(event, &mut w, &data);
        }
        if client.is_done() {
            end(&mut w, TurnError::Closed);
            return;
        }
        if !commands_open && w.close.is_empty() {
            // The handle is gone: nobody will read data or send more.
            return;
        }
        let deadline = client.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = conn.recv(&mut buf) => match r {
                Ok(messages) => {
                    let now = Instant::now();
                    for m in messages.iter() {
                        client.handle_message(now, m);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "TURN connection lost");
                    let _ = data.try_send(Err(e.clone()));
                    end(&mut w, e);
                    return;
                }
            },
            c = commands.recv(), if commands_open => {
                let now = Instant::now();
                match c {
                    Some(Command::Permission(ip, tx)) => match client.create_permission(now, ip) {
                        Ok(()) => w.permissions.entry(ip).or_default().push(tx),
                        Err(e) => { let _ = tx.send(Err(e)); }
                    },
                    Some(Command::Bind(peer, tx)) => match client.bind_channel(now, peer) {
                        Ok(_) => w.channels.entry(peer).or_default().push(tx),
                        Err(e) => { let _ = tx.send(Err(e)); }
                    },
                    Some(Command::Send(peer, bytes)) => {
                        if let Err(e) = client.send_to(peer, &bytes) {
                            tracing::trace!(error = %e, %peer, "TURN send dropped");
                        }
                    }
                    Some(Command::Close(tx)) => {
                        w.close.push(tx);
                        client.close(now);
                    }
                    None => {
                        commands_open = false;
                        client.close(now);
                    }
                }
            },
            _ = sleep => client.handle_timeout(Instant::now()),
        }
    }
}

fn route(
    event: TurnEvent,
    w: &mut Waiters,
    data: &mpsc::Sender<Result<(SocketAddr, Vec<u8>), TurnError>>,
) {
    match event {
        TurnEvent::Allocated {
            relayed, mapped, ..
        } => {
            if let Some(r) = w.ready.take() {
                let _ = r.send(Ok((relayed, mapped)));
            }
        }
        TurnEvent::PermissionCreated(ip) => {
            for tx in w.permissions.remove(&ip).unwrap_or_default() {
                let _ = tx.send(Ok(()));
            }
        }
        TurnEvent::PermissionFailed { ip, error } => {
            for tx in w.permissions.remove(&ip).unwrap_or_default() {
                let _ = tx.send(Err(error.clone()));
            }
        }
        TurnEvent::ChannelBound { peer, channel } => {
            for tx in w.channels.remove(&peer).unwrap_or_default() {
                let _ = tx.send(Ok(channel));
            }
        }
        TurnEvent::ChannelFailed { peer, error } => {
            for tx in w.channels.remove(&peer).unwrap_or_default() {
                let _ = tx.send(Err(error.clone()));
            }
        }
        TurnEvent::Data { peer, data: bytes } => {
            // Full: dropped like a datagram the application did not read in time.
            let _ = data.try_send(Ok((peer, bytes)));
        }
        TurnEvent::Failed(e) => {
            let _ = data.try_send(Err(e.clone()));
            end(w, e);
        }
        TurnEvent::Closed => end(w, TurnError::Closed),
    }
}

/// Answers every waiter: the relay is gone.
fn end(w: &mut Waiters, error: TurnError) {
    if let Some(r) = w.ready.take() {
        let _ = r.send(Err(error.clone()));
    }
    for (_, txs) in w.permissions.drain() {
        for tx in txs {
            let _ = tx.send(Err(error.clone()));
        }
    }
    for (_, txs) in w.channels.drain() {
        for tx in txs {
            let _ = tx.send(Err(error.clone()));
        }
    }
    for tx in w.close.drain(..) {
        let _ = tx.send(());
    }
}

impl Conn {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(socket, _) => {
                // A datagram the kernel refuses (buffer full, ICMP error) is a lost datagram.
                let _ = socket.send(bytes).await;
                Ok(())
            }
            Conn::Stream(stream, _) => stream.write_all(bytes).await,
        }
    }

    /// Reads what is there and returns the whole messages in it (cancel-safe: a read either
    /// completes into `buf` or does not happen).
    async fn recv(&mut self, buf: &mut [u8]) -> Result<Vec<Vec<u8>>, TurnError> {
        match self {
            Conn::Udp(socket, server) => loop {
                match socket.recv_from(buf).await {
                    Ok((n, from)) if from == *server => return Ok(vec![buf[..n].to_vec()]),
                    Ok(_) => continue,
                    // ICMP errors from an earlier send surface here: not fatal on UDP.
                    Err(_) => continue,
                }
            },
            Conn::Stream(stream, decoder) => {
                let room = decoder.room().min(buf.len());
                let n = stream
                    .read(&mut buf[..room])
                    .await
                    .map_err(|e| TurnError::Io(e.to_string()))?;
                if n == 0 {
                    return Err(TurnError::Io(
                        "the TURN server closed the connection".into(),
                    ));
                }
                decoder.push(&buf[..n]);
                let mut out = Vec::new();
                while let Some(m) = decoder.next_message().map_err(|_| TurnError::Framing)? {
                    out.push(m.to_vec());
                }
                Ok(out)
            }
        }
    }
}
