//! The tokio driver of [`RtcPeer`]: one task owns the host UDP socket and the TURN relay,
//! reads the clock, and routes str0m's datagrams by their source address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::WebRtcError;
use super::peer::{PeerEvent, PeerOutput, RtcPeer, RtcPeerConfig};
use super::signal::LinkSignal;
use crate::client::turn::{TurnConfig, TurnRelay, TurnServer};

/// Events waiting for [`WebRtcPeer::next_event`]; messages beyond are held by str0m's
/// buffers (the task stops reading when this queue is full).
const EVENT_QUEUE: usize = 1024;

/// One TURN server to allocate a relay candidate on.
#[derive(Clone, Debug)]
pub struct TurnOption {
    /// Where.
    pub server: TurnServer,
    /// Credentials.
    pub config: TurnConfig,
    /// For `turns:`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// How to start a [`WebRtcPeer`].
#[derive(Clone, Debug)]
pub struct WebRtcOptions {
    /// The sans-IO peer's settings (epoch, relay-only policy, politeness).
    pub peer: RtcPeerConfig,
    /// The local address for the host candidate's socket (`None`: no host candidate).
    pub host: Option<IpAddr>,
    /// TURN servers for relay candidates (the first that allocates is used).
    pub turn: Vec<TurnOption>,
    /// STUN servers asked for our server-reflexive address through the host socket (none
    /// without a host candidate); see [`super::srflx`].
    pub stun: Vec<SocketAddr>,
    /// Create and send the offer at once (the side that opens the link).
    pub offer: bool,
}

enum Command {
    Signal(LinkSignal),
    Send(Vec<u8>),
    RestartIce,
    Close,
}

/// A WebRTC peer running in a task of its own: signaling in and out, DataChannel messages,
/// state events. Dropping it closes the peer connection.
pub struct WebRtcPeer {
    /// Unbounded by count: DataChannel bytes are bounded by the caller, which reads
    /// [`WebRtcPeer::buffered_amount`] (queued commands included) as a browser's
    /// `bufferedAmount`; signaling is a handful of messages.
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<PeerEvent>,
    buffered: Arc<AtomicUsize>,
    /// Bytes handed to [`WebRtcPeer::send`] that the task has not written to the channel yet.
    queued: Arc<AtomicUsize>,
    relayed: Option<SocketAddr>,
}

impl WebRtcPeer {
    /// Gathers candidates (binds the host socket, allocates the relay), starts the task and,
    /// when `options.offer`, sends the offer (as a [`PeerEvent::Signal`]).
    pub async fn start(options: WebRtcOptions) -> Result<WebRtcPeer, WebRtcError> {
        let io = |e: std::io::Error| WebRtcError::Io(e.to_string());
        let now = Instant::now();
        let mut peer = RtcPeer::new(now, options.peer);
        let mut host = None;
        if let Some(ip) = options.host.filter(|_| !options.peer.relay_only) {
            let socket = UdpSocket::bind((ip, 0)).await.map_err(io)?;
            let addr = socket.local_addr().map_err(io)?;
            peer.add_host_candidate(addr)?;
            if !options.stun.is_empty() {
                let gather =
                    super::srflx::gather(&socket, &options.stun, super::srflx::GATHER_TIMEOUT);
                for mapped in gather.await {
                    peer.add_srflx_candidate(mapped, addr)?;
                }
            }
            host = Some((socket, addr));
        }
        let mut relay = None;
        let mut failures = Vec::new();
        for t in &options.turn {
            match TurnRelay::allocate(&t.server, t.config.clone(), t.tls.clone()).await {
                Ok(r) => {
                    peer.add_relay_candidate(r.relayed())?;
                    relay = Some(r);
                    break;
                }
                Err(e) => failures.push(format!("{}:{}: {e}", t.server.host, t.server.port)),
            }
        }
        if host.is_none() && relay.is_none() {
            return Err(WebRtcError::NoCandidates(failures.join("; ")));
        }
        peer.end_of_candidates();
        if options.offer {
            peer.create_offer()?;
        }
        let relayed = relay.as_ref().map(TurnRelay::relayed);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let buffered = Arc::new(AtomicUsize::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let counters = (buffered.clone(), queued.clone());
        let paths = Paths {
            host,
            relay,
            turn: options.turn,
        };
        tokio::spawn(run(peer, paths, cmd_rx, ev_tx, counters));
        Ok(WebRtcPeer {
            commands: cmd_tx,
            events: ev_rx,
            buffered,
            queued,
            relayed,
        })
    }

    /// The relayed address of our relay candidate, if any.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Hands a payload from the other peer to the peer connection.
    pub fn signal(&self, signal: LinkSignal) -> Result<(), WebRtcError> {
        self.command(Command::Signal(signal))
    }

    /// Sends a binary message on the DataChannel (queued; errors come as events are lost).
    pub fn send(&self, data: Vec<u8>) -> Result<(), WebRtcError> {
        if data.len() > super::peer::MAX_MESSAGE {
            return Err(WebRtcError::TooLarge(data.len()));
        }
        let len = data.len();
        self.command(Command::Send(data))?;
        self.queued.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    /// Restarts ICE (a new offer follows as a [`PeerEvent::Signal`]).
    pub fn restart_ice(&self) -> Result<(), WebRtcError> {
        self.command(Command::RestartIce)
    }

    /// The DataChannel's buffered amount as of the task's last turn, plus what
    /// [`send`](Self::send) queued for the task since.
    pub fn buffered_amount(&self) -> usize {
        self.buffered.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed)
    }

    /// The next event; `None` once the task ended. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<PeerEvent> {
        self.events.recv().await
    }

    /// Closes the peer connection and ends the task.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    fn command(&self, c: Command) -> Result<(), WebRtcError> {
        self.commands.send(c).map_err(|_| WebRtcError::Closed)
    }
}

impl Drop for WebRtcPeer {
    fn drop(&mut self) {
        self.close();
    }
}

/// The first delay before allocating again after the TURN allocation was lost; it doubles up
/// to [`REALLOCATE_MAX_BACKOFF`].
const REALLOCATE_FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest delay between two attempts to allocate again.
const REALLOCATE_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Remote candidate addresses remembered (to install permissions on a new allocation).
const MAX_REMOTE_ADDRS: usize = 256;

/// The driver's sockets: the host candidate's, and the TURN allocation (with the servers to
/// allocate on again when it is lost).
struct Paths {
    host: Option<(UdpSocket, SocketAddr)>,
    relay: Option<TurnRelay>,
    turn: Vec<TurnOption>,
}

/// A fresh allocation on the first server that grants one (new transaction, new nonce).
async fn allocate_any(turn: Vec<TurnOption>) -> Result<TurnRelay, String> {
    let mut failures = Vec::new();
    for t in &turn {
        match TurnRelay::allocate(&t.server, t.config.clone(), t.tls.clone()).await {
            Ok(r) => return Ok(r),
            Err(e) => failures.push(format!("{}:{}: {e}", t.server.host, t.server.port)),
        }
    }
    Err(failures.join("; "))
}

async fn run(
    mut peer: RtcPeer,
    Paths {
        host,
        mut relay,
        turn,
    }: Paths,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<PeerEvent>,
    (buffered, queued): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) {
    let mut buf = vec![0u8; 65_536];
    let mut relayed = relay.as_ref().map(TurnRelay::relayed);
    // A lost allocation (the server unreachable past its lifetime, a failed refresh) is made
    // again, with back-off: a new relay candidate is trickled, and permissions for every
    // remote candidate are installed on it; the link's ICE restarts then find the new pairs.
    let mut dead_relayed: Vec<SocketAddr> = Vec::new();
    let mut remote_addrs: Vec<SocketAddr> = Vec::new();
    let mut reallocating: Option<BoxFuture<'static, Result<TurnRelay, String>>> = None;
    let mut reallocate_at: Option<tokio::time::Instant> = None;
    let mut backoff = REALLOCATE_FIRST_BACKOFF;
    // Messages the channel refused (its buffer full): sent first, in order, as room comes.
    let mut held: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut held_bytes = 0usize;
    loop {
        while let Some(data) = held.front() {
            match peer.send(data) {
                Err(WebRtcError::Full) => break,
                result => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "DataChannel send failed");
                    }
                    held_bytes -= data.len();
                    held.pop_front();
                }
            }
        }
        // Drain outputs until str0m names its next deadline.
        let deadline = loop {
            match peer.poll_output() {
                PeerOutput::Timeout(t) => break t,
                PeerOutput::Transmit {
                    source,
                    destination,
                    data,
                } => {
                    if Some(source) == relayed {
                        if let Some(r) = &relay {
                            let _ = r.send_to(destination, data);
                        }
                    } else if dead_relayed.contains(&source) {
                        // A pair on a lost allocation: nowhere to send from.
                    } else if let Some((socket, _)) = &host {
                        let _ = socket.send_to(&data, destination).await;
                    }
                }
                PeerOutput::Event(PeerEvent::RemoteCandidate(addr)) => {
                    if remote_addrs.len() < MAX_REMOTE_ADDRS && !remote_addrs.contains(&addr) {
                        remote_addrs.push(addr);
                    }
                    if let (Some(r), Some(ours)) = (&relay, relayed) {
                        if ours.is_ipv4() == addr.is_ipv4() {
                            // Also installs the permission; the relay keeps both fresh.
                            r.bind_channel_later(addr);
                        }
                    }
                }
                PeerOutput::Event(e) => {
                    if events.send(e).await.is_err() {
                        peer.close();
                        return;
                    }
                }
            }
        };
        buffered.store(peer.buffered_amount() + held_bytes, Ordering::Relaxed);
        let host_recv = async {
            match &host {
                Some((socket, addr)) => socket
                    .recv_from(&mut buf)
                    .await
                    .map(|(n, from)| (n, from, *addr)),
                None => std::future::pending().await,
            }
        };
        let relay_recv = async {
            match relay.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = host_recv => {
                if let Ok((n, from, to)) = r {
                    peer.handle_receive(Instant::now(), from, to, &buf[..n]);
                }
            }
            r = relay_recv => match (r, relayed) {
                (Ok((from, data)), Some(to)) => peer.handle_receive(Instant::now(), from, to, &data),
                (Err(e), _) => {
                    tracing::debug!(error = %e, "TURN relay lost; allocating again");
                    relay = None;
                    if let Some(old) = relayed.take() {
                        if dead_relayed.len() < 16 {
                            dead_relayed.push(old);
                        }
                    }
                    if !turn.is_empty() {
                        reallocate_at = Some(tokio::time::Instant::now() + backoff);
                    }
                }
                _ => {}
            },
            c = commands.recv() => match c {
                Some(Command::Signal(s)) => {
                    if let Err(e) = peer.handle_signal(s) {
                        tracing::debug!(error = %e, "signaling payload refused");
                    }
                }
                Some(Command::Send(data)) => {
                    queued.fetch_sub(data.len(), Ordering::Relaxed);
                    let result = if held.is_empty() { peer.send(&data) } else { Err(WebRtcError::Full) };
                    match result {
                        Err(WebRtcError::Full) => {
                            held_bytes += data.len();
                            held.push_back(data);
                        }
                        Err(e) => tracing::debug!(error = %e, "DataChannel send failed"),
                        Ok(()) => {}
                    }
                }
                Some(Command::RestartIce) => {
                    if let Err(e) = peer.restart_ice() {
                        tracing::debug!(error = %e, "ICE restart failed");
                    }
                }
                Some(Command::Close) | None => {
                    peer.close();
                    if let Some(r) = relay.take() {
                        r.close().await;
                    }
                    return;
                }
            },
            () = async {
                match reallocate_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                reallocate_at = None;
                reallocating = Some(Box::pin(allocate_any(turn.clone())));
            }
            result = async {
                match reallocating.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => {
                reallocating = None;
                match result {
                    Ok(r) => {
                        let addr = r.relayed();
                        tracing::debug!(%addr, "TURN allocation made again");
                        match peer.add_relay_candidate(addr) {
                            Ok(()) => {
                                for remote in remote_addrs.iter().filter(|a| a.is_ipv4() == addr.is_ipv4()) {
                                    r.bind_channel_later(*remote);
                                }
                                relayed = Some(addr);
                                relay = Some(r);
                                backoff = REALLOCATE_FIRST_BACKOFF;
                            }
                            Err(e) => tracing::debug!(error = %e, "relay candidate refused"),
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "allocating again failed");
                        backoff = (backoff * 2).min(REALLOCATE_MAX_BACKOFF);
                        reallocate_at = Some(tokio::time::Instant::now() + backoff);
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        peer.handle_timeout(Instant::now());
    }
}
