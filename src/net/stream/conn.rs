//! One TCP or TLS client connection: a task that frames STUN/ChannelData off the stream, feeds
//! a core of its own ([`Server::for_stream`]: a 5-tuple over TCP holds at most one
//! allocation), and relays through that connection's relay sockets.
//!
//! Memory stays bounded whatever the client or its peers do:
//! - the input buffer holds at most one frame (64 KiB + 20) plus one read;
//! - the output buffer stops growing at [`OUT_HIGH`]: above it, neither the client nor the
//!   relay sockets are read (the client's TCP window and the relay sockets' kernel buffers
//!   take the back-pressure, and excess datagrams are dropped by the kernel, as over UDP);
//! - a client that stops reading is closed after the idle timeout without write progress.
//!
//! The allocation, its relay sockets and its RFC 6062 peer connections end with the task.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::relays::StreamRelays;
use super::tcp_relay::{self, ControlMsg, Registry};
use crate::net::admin::{AdminHub, CoreTicket};
use crate::net::live::CoreUpdates;
use crate::net::ports::PortPool;
use crate::net::relay::RelayAddresses;
use crate::net::udp::now;
use crate::proto::framing::{Frame, MAX_FRAME, next_frame};
use crate::proto::server::{
    CONNECT_TIMEOUT, ClientOutput, ConnectionId, DropReason, FiveTuple, PEER_HEADROOM,
    PEER_TAILROOM, PeerOutput, Server, Shared, Stats, TcpEvent,
};

/// Above this many unsent bytes, the connection stops reading from the client and the relays.
pub const OUT_HIGH: usize = 256 * 1024;
/// Bytes asked of each read from the client.
const READ_CHUNK: usize = 4096;
/// Largest datagram a relay socket receives.
const MAX_DATAGRAM: usize = 65535;
/// Control messages (binds, closes) queued to one owner task.
const CONTROL_QUEUE: usize = 16;

/// What every connection task shares.
pub struct Context {
    /// The core's settings (credentials, policy, limits) and the draining flag, shared by
    /// every connection and followed as they change.
    pub updates: Arc<CoreUpdates>,
    /// Where admin commands come from (each connection's core answers them).
    pub admin: Arc<AdminHub>,
    /// Quotas and reservations shared with the UDP workers.
    pub shared: Arc<Shared>,
    /// Counters shared by every stream core.
    pub stats: Arc<Stats>,
    /// The relay port pool shared with the UDP workers.
    pub pool: Arc<PortPool>,
    /// Where relays bind and what is advertised.
    pub relay_addrs: RelayAddresses,
    /// Socket buffer size for relay sockets.
    pub buffer_bytes: usize,
    /// Silence allowed to a connection without an allocation, and to a stalled writer.
    pub idle_timeout: Duration,
    /// RFC 6062 connection ids and their owners.
    pub registry: Arc<Registry>,
}

/// Unsent bytes for the client.
#[derive(Default)]
struct OutBuf {
    buf: Vec<u8>,
    start: usize,
}

impl OutBuf {
    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > 64 * 1024 {
                self.buf.shrink_to(4096);
            }
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Writes some of `pending` (returning how much), or flushes when nothing is pending (TLS
/// keeps records buffered until then). Each is one cancel-safe operation.
async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    pending: &[u8],
) -> io::Result<Option<usize>> {
    if pending.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(pending).await.map(Some)
    }
}

/// How the TURN loop ended.
enum Ending {
    /// The connection is done.
    Closed,
    /// A ConnectionBind succeeded: the stream becomes a data connection.
    Bound {
        id: ConnectionId,
        handover: tcp_relay::Handover,
        owner: mpsc::Sender<ControlMsg>,
        early: Vec<u8>,
    },
}

/// The per-connection state besides the stream.
struct Conn {
    ctx: Arc<Context>,
    ft: FiveTuple,
    core: Server,
    /// The generation of [`Context::updates`] the core has.
    updates_seen: u64,
    /// This core's registration for admin commands.
    admin: CoreTicket,
    relays: StreamRelays,
    out: OutBuf,
    peer_buf: Option<Box<[u8]>>,
    connects: JoinSet<(ConnectionId, io::Result<TcpStream>)>,
    pending_peers: HashMap<ConnectionId, TcpStream>,
    bound: HashMap<ConnectionId, oneshot::Sender<()>>,
    control: mpsc::Sender<ControlMsg>,
}

/// Serves TURN on an accepted (and, for TLS, decrypted) stream. `initial` holds bytes already
/// read from it (the first byte a shared port sniffed).
pub async fn serve<S>(ctx: Arc<Context>, stream: S, ft: FiveTuple, initial: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (control, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let mut conn = Conn {
        core: Server::for_stream(
            ctx.updates.settings(),
            ctx.shared.clone(),
            Instant::now(),
            ctx.stats.clone(),
        ),
        updates_seen: 0,
        admin: ctx.admin.register(),
        relays: StreamRelays::new(ctx.pool.clone(), ctx.relay_addrs.clone(), ctx.buffer_bytes),
        ctx,
        ft,
        out: OutBuf::default(),
        peer_buf: None,
        connects: JoinSet::new(),
        pending_peers: HashMap::new(),
        bound: HashMap::new(),
        control,
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let ending = conn
        .run(&mut rd, &mut wr, initial, control_rx)
        .await
        .unwrap_or(Ending::Closed);
    conn.close();
    tracing::debug!(client = %ft.client, transport = ft.transport.as_str(), "connection closed");
    if let Ending::Bound {
        id,
        handover,
        owner,
        early,
    } = ending
    {
        // The ConnectionBind answer (and anything before it) goes out before the raw bytes.
        let answered = wr.write_all(conn.out.pending()).await.is_ok() && wr.flush().await.is_ok();
        if !answered {
            let _ = owner.send(ControlMsg::Closed(id)).await;
            return;
        }
        let client = rd.unsplit(wr);
        let meter = tcp_relay::Meter {
            stats: &conn.ctx.stats,
            transport: ft.transport,
        };
        let (up, down) = tcp_relay::pipe(client, handover, &early, meter).await;
        tracing::debug!(client = %ft.client, id = id.0, up, down, "TCP relay connection closed");
        let _ = owner.send(ControlMsg::Closed(id)).await;
    }
}

impl Conn {
    async fn run<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        initial: Vec<u8>,
        mut control_rx: mpsc::Receiver<ControlMsg>,
    ) -> io::Result<Ending>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut input = initial;
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let mut needs_flush = false;
        let idle = self.ctx.idle_timeout;
        loop {
            // A reload or the start of a drain, before the next messages are handled.
            self.ctx
                .updates
                .sync(&mut self.core, &mut self.updates_seen);
            // An admin command (list or end allocations), between two batches of input.
            self.admin.serve(&mut self.core, &mut self.relays);
            // Frame and handle whatever is buffered (the initial bytes on the first turn).
            if let Some(ending) = self.handle_input(&mut input).await? {
                return Ok(ending);
            }
            self.handle_tcp_events();
            let want = match next_frame(&input) {
                Frame::Incomplete(total) => total.saturating_sub(input.len()),
                _ => 0,
            };
            input.reserve(want.clamp(READ_CHUNK, MAX_FRAME));
            let room = self.out.len() < OUT_HIGH;
            let has_alloc = self.core.allocation_count() > 0;
            let busy = has_alloc || self.core.tcp_connection_count() > 0;
            let deadline = if self.out.len() > 0 {
                last_write + idle
            } else if busy {
                self.core.poll_timeout()
            } else {
                last_read + idle
            };
            // The datagram buffer exists only while a UDP relay does (64 KiB).
            if self.relays.has_udp() && self.peer_buf.is_none() {
                self.peer_buf =
                    Some(vec![0u8; PEER_HEADROOM + MAX_DATAGRAM + PEER_TAILROOM].into());
            }
            let peer_buf: &mut [u8] = self.peer_buf.as_deref_mut().unwrap_or_default();
            tokio::select! {
                read = rd.read_buf(&mut input), if room => {
                    if read? == 0 {
                        return Ok(Ending::Closed);
                    }
                    last_read = Instant::now();
                }
                (relay, received) = self.relays.recv(
                    peer_buf.get_mut(PEER_HEADROOM..PEER_HEADROOM + MAX_DATAGRAM).unwrap_or_default()
                ), if room && self.relays.has_udp() => {
                    if let Ok((len, peer)) = received {
                        let t = Instant::now();
                        if let PeerOutput::ToClient { frame, .. } =
                            self.core.handle_peer(t, relay, peer, peer_buf, len)
                        {
                            self.out.push(&peer_buf[frame]);
                        }
                    }
                }
                (relay, accepted) = self.relays.accept(), if self.relays.has_tcp() => {
                    if let Ok((stream, peer)) = accepted {
                        self.peer_connected(relay, stream, peer);
                    }
                }
                written = write_or_flush(wr, self.out.pending()), if self.out.len() > 0 || needs_flush => {
                    match written? {
                        Some(0) => return Ok(Ending::Closed),
                        Some(n) => {
                            self.out.consume(n);
                            last_write = Instant::now();
                            needs_flush = true;
                        }
                        None => needs_flush = false,
                    }
                }
                Some(joined) = self.connects.join_next(), if !self.connects.is_empty() => {
                    if let Ok((id, result)) = joined {
                        self.connect_finished(id, result);
                    }
                }
                Some(msg) = control_rx.recv() => self.control(msg),
                // Served at the top of the loop.
                _ = self.admin.changed() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let t = Instant::now();
                    if self.out.len() > 0 && t >= last_write + idle {
                        tracing::debug!(client = %self.ft.client, "client stopped reading: closing");
                        return Ok(Ending::Closed);
                    }
                    if !busy && t >= last_read + idle {
                        tracing::debug!(client = %self.ft.client, "idle connection without allocation: closing");
                        return Ok(Ending::Closed);
                    }
                    self.core.handle_timeout(now(), &mut self.relays);
                }
            }
        }
    }

    /// Handles every complete frame in `input`, then drops them from it.
    async fn handle_input(&mut self, input: &mut Vec<u8>) -> io::Result<Option<Ending>> {
        let mut used = 0;
        let mut ending = None;
        while ending.is_none() {
            let frame = match next_frame(&input[used..]) {
                Frame::Complete(n) => used..used + n,
                Frame::Incomplete(_) => break,
                Frame::Invalid => {
                    tracing::debug!(client = %self.ft.client, "not STUN or ChannelData: closing");
                    return Err(io::ErrorKind::InvalidData.into());
                }
            };
            used = frame.end;
            let data = &input[frame.clone()];
            match self
                .core
                .handle_client(now(), self.ft, data, &mut self.relays)
            {
                ClientOutput::Nothing => {}
                ClientOutput::Reply => self.out.push(self.core.reply()),
                ClientOutput::Relay {
                    relay,
                    peer,
                    payload,
                } => {
                    if !self.relays.send(relay, &data[payload], peer) {
                        self.ctx.stats.dropped(DropReason::SendFailed);
                    }
                }
                ClientOutput::Connect { id, relay, peer } => self.connect(id, relay, peer),
                ClientOutput::ConnectionBind { id, username } => {
                    ending = self
                        .connection_bind(id, username, input[used..].to_vec())
                        .await;
                }
            }
        }
        input.drain(..used);
        if input.capacity() > 2 * MAX_FRAME && input.is_empty() {
            input.shrink_to(READ_CHUNK);
        }
        Ok(ending)
    }

    /// Starts an outgoing peer connection for a Connect request.
    fn connect(
        &mut self,
        id: ConnectionId,
        relay: crate::proto::server::RelayId,
        peer: SocketAddr,
    ) {
        match self.relays.connector(relay) {
            Ok(socket) => {
                self.connects.spawn(async move {
                    let result =
                        match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(peer)).await {
                            Ok(r) => r,
                            Err(_) => Err(io::ErrorKind::TimedOut.into()),
                        };
                    (id, result)
                });
            }
            Err(e) => self.connect_finished(id, Err(e)),
        }
    }

    fn connect_finished(&mut self, id: ConnectionId, result: io::Result<TcpStream>) {
        let registered = result.is_ok() && self.ctx.registry.insert(id, self.control.clone());
        if let Err(e) = &result {
            tracing::debug!(client = %self.ft.client, error = %e, "connection to a TCP peer failed");
        }
        if self.core.connect_finished(now(), id, registered) {
            self.out.push(self.core.reply());
            if let (true, Ok(stream)) = (registered, result) {
                self.pending_peers.insert(id, stream);
                return;
            }
        }
        if registered {
            self.ctx.registry.remove(id);
        }
    }

    /// A peer connected to a TCP relay: announce it (ConnectionAttempt) or close it.
    fn peer_connected(
        &mut self,
        relay: crate::proto::server::RelayId,
        stream: TcpStream,
        peer: SocketAddr,
    ) {
        let Some(id) = self.core.peer_connected(now(), relay, peer) else {
            return;
        };
        if !self.ctx.registry.insert(id, self.control.clone()) {
            self.core.tcp_connection_closed(id);
            return;
        }
        self.pending_peers.insert(id, stream);
        self.out.push(self.core.reply());
    }

    /// This connection sent ConnectionBind: ask the owner, answer, and become a data
    /// connection when it worked.
    async fn connection_bind(
        &mut self,
        id: ConnectionId,
        username: String,
        early: Vec<u8>,
    ) -> Option<Ending> {
        let result = tcp_relay::request_bind(&self.ctx.registry, id, username).await;
        let refusal = result.as_ref().err().copied();
        self.core
            .finish_connection_bind(refusal.map_or(Ok(()), Err));
        self.out.push(self.core.reply());
        let (handover, owner) = result.ok()?;
        Some(Ending::Bound {
            id,
            handover,
            owner,
            early,
        })
    }

    /// A message from a data connection to this owner.
    fn control(&mut self, msg: ControlMsg) {
        match msg {
            ControlMsg::Bind {
                id,
                username,
                answer,
            } => {
                let result =
                    self.core
                        .bind_connection(now(), id, &username)
                        .and_then(|bandwidth| {
                            let peer = self
                                .pending_peers
                                .remove(&id)
                                .ok_or((400, "Unknown CONNECTION-ID"))?;
                            Ok((peer, bandwidth))
                        });
                let handover = result.map(|(peer, bandwidth)| {
                    self.ctx.registry.remove(id);
                    let (close, closed) = oneshot::channel();
                    self.bound.insert(id, close);
                    tcp_relay::Handover {
                        peer,
                        closed,
                        bandwidth,
                    }
                });
                if answer.send(handover).is_err() {
                    self.bound.remove(&id);
                    self.core.tcp_connection_closed(id);
                }
            }
            ControlMsg::Closed(id) => {
                self.bound.remove(&id);
                self.core.tcp_connection_closed(id);
            }
        }
    }

    fn handle_tcp_events(&mut self) {
        while let Some(TcpEvent::Close(id)) = self.core.poll_tcp_event() {
            self.ctx.registry.remove(id);
            self.pending_peers.remove(&id);
            self.bound.remove(&id);
        }
    }

    /// Ends the allocation: relays, quotas, peer connections.
    fn close(&mut self) {
        self.core.close_all(&mut self.relays);
        self.handle_tcp_events();
        for id in self.pending_peers.keys() {
            self.ctx.registry.remove(*id);
        }
        self.pending_peers.clear();
        self.bound.clear();
        self.connects.abort_all();
    }
}
