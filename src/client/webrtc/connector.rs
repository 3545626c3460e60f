//! The link session's p2p seam ([`crate::client::p2p`]) implemented with [`WebRtcPeer`]: one
//! task per link end turns the session's calls (signaling payloads, frames, ICE restarts) into
//! calls on the peer, and the peer's events into [`P2pOutput`] reports.
//!
//! - ICE servers come from the session (`welcome.ice_servers` unless the application gave its
//!   own): every `turn:` / `turns:` URL with its minted credentials is a TURN option, UDP first,
//!   then TCP, then TLS (a network that drops UDP still gets a relay candidate over TLS on 443).
//! - `iceTransportPolicy: relay` offers only the relay candidate; `all` adds a host candidate on
//!   the address the system routes toward the first TURN server, and a server-reflexive one
//!   for each distinct address the `stun:` servers see it as (behind a NAT).
//! - A peer connection whose DataChannel closed cannot reopen it (the channel is negotiated):
//!   the next ICE restart (offering side) or the next offer with a new DTLS fingerprint
//!   (answering side) starts a new peer connection, as the browser SDK does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::WebRtcError;
use super::driver::{TurnOption, WebRtcOptions, WebRtcPeer};
use super::peer::{IceState as PeerIce, PeerEvent, RtcPeerConfig};
use super::signal::LinkSignal;
use super::srflx;
use crate::client::p2p::{
    IceTransportPolicy, P2pConnector, P2pOutput, P2pParams, P2pPath, P2pSink,
};
use crate::client::turn::{TurnConfig, TurnServer, TurnTransport};
use crate::link::{IceState, P2pEvent};
use crate::proto::credentials::IceServer;
use crate::registry::messages::SignalKind;

/// How long resolving a `stun:` server's name may take.
const STUN_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Signaling payloads held while the peer connection is being created.
const MAX_HELD_SIGNALS: usize = 300;
/// How often a path re-reads the DataChannel's buffered amount while it is not zero (the link
/// core stops writing above its high-water mark until it hears a lower amount).
const BUFFERED_POLL: Duration = Duration::from_millis(10);

/// Where the host candidate goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostCandidate {
    /// The local address the system routes toward the first TURN server (no packet is sent).
    #[default]
    Auto,
    /// This address.
    Fixed(IpAddr),
    /// No host candidate (as with `iceTransportPolicy: relay`).
    None,
}

/// Creates a [`WebRtcPeer`] for each link end of a session (`SessionConfig::p2p`).
#[derive(Clone, Debug)]
pub struct WebRtcConnector {
    tls: Option<Arc<rustls::ClientConfig>>,
    host: HostCandidate,
}

impl Default for WebRtcConnector {
    fn default() -> Self {
        WebRtcConnector::new()
    }
}

impl WebRtcConnector {
    /// A connector trusting the system's certificate authorities for `turns:` (when a bundle
    /// is found at a usual path), with an automatic host candidate.
    pub fn new() -> WebRtcConnector {
        let mut roots = rustls::RootCertStore::empty();
        add_system_roots(&mut roots);
        let tls = (!roots.is_empty()).then(|| crate::client::turn::tls_client_config(roots));
        WebRtcConnector {
            tls,
            host: HostCandidate::Auto,
        }
    }

    /// Uses this TLS configuration for `turns:` (see
    /// [`tls_client_config`](crate::client::turn::tls_client_config)).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> WebRtcConnector {
        self.tls = Some(tls);
        self
    }

    /// Where the host candidate goes.
    pub fn with_host(mut self, host: HostCandidate) -> WebRtcConnector {
        self.host = host;
        self
    }

    /// The TURN options for `servers`: UDP, then TCP, then TLS (`turns:` only with a TLS
    /// configuration). Short timers: an unreachable server costs seconds, not the RFC's 39.5.
    pub fn turn_options(&self, servers: &[IceServer]) -> Vec<TurnOption> {
        let mut options: Vec<TurnOption> = Vec::new();
        for server in servers {
            for url in &server.urls {
                let Ok(parsed) = TurnServer::from_url(url) else {
                    continue; // stun: URLs, or not a URL we know
                };
                if parsed.transport == TurnTransport::Tls && self.tls.is_none() {
                    tracing::debug!(%url, "turns: skipped: no TLS trust anchors");
                    continue;
                }
                let stream = parsed.transport != TurnTransport::Udp;
                let mut config = TurnConfig::new(&server.username, &server.credential, stream);
                config.rto = Duration::from_millis(250);
                config.max_transmits = 4;
                config.last_wait_factor = 4;
                config.stream_timeout = Duration::from_secs(5);
                options.push(TurnOption {
                    server: parsed,
                    config,
                    tls: self.tls.clone(),
                });
            }
        }
        let rank = |t: TurnTransport| match t {
            TurnTransport::Udp => 0,
            TurnTransport::Tcp => 1,
            TurnTransport::Tls => 2,
        };
        options.sort_by_key(|o| rank(o.server.transport)); // stable: the app's order within
        options
    }
}

/// The `stun:` servers among `servers` (at most [`srflx::MAX_STUN_SERVERS`]).
fn stun_servers(servers: &[IceServer]) -> Vec<(String, u16)> {
    servers
        .iter()
        .flat_map(|s| s.urls.iter())
        .filter_map(|url| srflx::stun_host_port(url))
        .take(srflx::MAX_STUN_SERVERS)
        .collect()
}

/// Adds the certificates of the system bundle (Debian, Fedora, Alpine paths), if any.
fn add_system_roots(roots: &mut rustls::RootCertStore) {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        let Ok(certs) = CertificateDer::pem_file_iter(path) else {
            continue;
        };
        let certs: Vec<_> = certs.flatten().collect();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added > 0 {
            return;
        }
    }
}

impl P2pConnector for WebRtcConnector {
    fn create(&self, params: P2pParams, sink: P2pSink) -> Box<dyn P2pPath> {
        // Unbounded by count, bounded in bytes by the link core: it stops writing above its
        // high-water mark, and the amount it hears includes what waits here (`queued`).
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let turn = self.turn_options(&params.ice_servers);
        let relay_only = params.ice_transport_policy == IceTransportPolicy::Relay;
        let base = Base {
            peer: RtcPeerConfig {
                epoch: params.local_epoch,
                relay_only,
                polite: params.polite,
                sctp_max_buffered: super::SCTP_MAX_BUFFERED,
            },
            host: if relay_only {
                HostCandidate::None
            } else {
                self.host
            },
            turn,
            stun: if relay_only {
                Vec::new()
            } else {
                stun_servers(&params.ice_servers)
            },
        };
        tokio::spawn(run(base, params.offerer, rx, queued.clone(), sink));
        Box::new(WebRtcPath { tx, queued })
    }
}

/// What the session asks of a path.
enum Call {
    Signal(LinkSignal),
    Frame(Vec<u8>),
    RestartIce,
    Close,
}

/// The session's handle on one link end's WebRTC path.
struct WebRtcPath {
    tx: mpsc::UnboundedSender<Call>,
    /// Frame bytes sent to the task and not yet handed to the peer.
    queued: Arc<AtomicUsize>,
}

impl P2pPath for WebRtcPath {
    fn handle_signal(&mut self, kind: SignalKind, remote_epoch: u32, payload: serde_json::Value) {
        match LinkSignal::from_json(&payload.to_string()) {
            Ok(Some(signal)) if signal.epoch() == remote_epoch && kind_of(&signal) == kind => {
                let _ = self.tx.send(Call::Signal(signal));
            }
            Ok(_) => tracing::debug!(?kind, "a link payload that does not match its message"),
            Err(error) => tracing::debug!(%error, "a link payload refused"),
        }
    }

    fn send_frame(&mut self, frame: &[u8]) -> bool {
        let len = frame.len();
        let sent = self.tx.send(Call::Frame(frame.to_vec())).is_ok();
        if sent {
            self.queued.fetch_add(len, Ordering::Relaxed);
        }
        sent
    }

    fn restart_ice(&mut self) {
        let _ = self.tx.send(Call::RestartIce);
    }

    fn close(&mut self) {
        let _ = self.tx.send(Call::Close);
    }
}

fn kind_of(signal: &LinkSignal) -> SignalKind {
    match signal {
        LinkSignal::Offer { .. } => SignalKind::Offer,
        LinkSignal::Answer { .. } => SignalKind::Answer,
        LinkSignal::Candidate { .. } => SignalKind::IceCandidate,
    }
}

/// The `a=fingerprint:` line of an SDP: a new one means a new peer connection on the other side.
fn fingerprint(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=fingerprint:"))
}

/// What every peer connection of one link end is built from.
struct Base {
    peer: RtcPeerConfig,
    host: HostCandidate,
    turn: Vec<TurnOption>,
    /// `stun:` servers (host, port), resolved when a peer connection starts.
    stun: Vec<(String, u16)>,
}

impl Base {
    fn start(&self, offer: bool) -> BoxFuture<'static, Result<WebRtcPeer, WebRtcError>> {
        let peer = self.peer;
        let turn = self.turn.clone();
        let host = self.host;
        let stun_urls = self.stun.clone();
        Box::pin(async move {
            let host = match host {
                HostCandidate::Fixed(ip) => Some(ip),
                HostCandidate::None => None,
                HostCandidate::Auto => route_toward(turn.first()).await,
            };
            let mut stun = Vec::new();
            if host.is_some() {
                for (name, port) in stun_urls.iter().take(srflx::MAX_STUN_SERVERS) {
                    let lookup = tokio::net::lookup_host((name.as_str(), *port));
                    if let Ok(Ok(addrs)) = tokio::time::timeout(STUN_LOOKUP_TIMEOUT, lookup).await {
                        stun.extend(addrs.take(2));
                    }
                }
            }
            WebRtcPeer::start(WebRtcOptions {
                peer,
                host,
                turn,
                stun,
                offer,
            })
            .await
        })
    }
}

/// The local address the system would use toward the TURN server (a connected UDP socket
/// sends nothing); loopback when there is no server.
async fn route_toward(turn: Option<&TurnOption>) -> Option<IpAddr> {
    let Some(turn) = turn else {
        return Some(IpAddr::from([127, 0, 0, 1]));
    };
    let target: SocketAddr = tokio::net::lookup_host((turn.server.host.as_str(), turn.server.port))
        .await
        .ok()?
        .next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = tokio::net::UdpSocket::bind(bind).await.ok()?;
    socket.connect(target).await.ok()?;
    Some(socket.local_addr().ok()?.ip())
}

fn ice(state: PeerIce) -> IceState {
    match state {
        PeerIce::New => IceState::New,
        PeerIce::Checking => IceState::Checking,
        PeerIce::Connected => IceState::Connected,
        PeerIce::Completed => IceState::Completed,
        PeerIce::Disconnected => IceState::Disconnected,
        PeerIce::Failed => IceState::Failed,
    }
}

/// The body of a payload for the session (it adds `link` and `epoch` itself).
fn body(signal: &LinkSignal) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_str(&signal.to_json()).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("link");
        fields.remove("epoch");
    }
    value
}

/// One link end's path: at most one live peer connection, replaced when its channel is gone.
async fn run(
    base: Base,
    offerer: bool,
    mut calls: mpsc::UnboundedReceiver<Call>,
    queued: Arc<AtomicUsize>,
    sink: P2pSink,
) {
    // `bufferedAmount` as the core sees it: what waits here, in the peer's queue, and in the
    // channel.
    let buffered = |peer: &Option<WebRtcPeer>| {
        queued.load(Ordering::Relaxed) + peer.as_ref().map_or(0, WebRtcPeer::buffered_amount)
    };
    let mut peer: Option<WebRtcPeer> = None;
    let mut starting = Some(base.start(offerer));
    let mut held: Vec<LinkSignal> = Vec::new();
    let mut remote_fingerprint: Option<String> = None;
    let mut channel_open = false;
    let mut reported_buffered = 0usize;
    // Frames went to the channel since the last report (the core counts them up itself, and
    // needs to hear the amount fall).
    let mut sent_since_report = false;
    loop {
        let next_event = async {
            match peer.as_mut() {
                Some(p) => p.next_event().await,
                None => std::future::pending().await,
            }
        };
        let started = async {
            match starting.as_mut() {
                Some(f) => f.await,
                None => std::future::pending().await,
            }
        };
        let poll_buffered = async {
            if reported_buffered > 0 || sent_since_report {
                tokio::time::sleep(BUFFERED_POLL).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            call = calls.recv() => match call {
                None | Some(Call::Close) => {
                    if let Some(p) = peer.take() {
                        p.close();
                    }
                    return;
                }
                Some(Call::Frame(frame)) => {
                    queued.fetch_sub(frame.len(), Ordering::Relaxed);
                    if let Some(p) = peer.as_ref().filter(|_| channel_open) {
                        if let Err(error) = p.send(frame) {
                            tracing::debug!(%error, "a DataChannel frame was not queued");
                        }
                        sent_since_report = true;
                    }
                }
                Some(Call::RestartIce) => {
                    match peer.as_ref() {
                        Some(p) => {
                            // The same peer connection (DTLS and SCTP survive an ICE restart,
                            // and a browser expects the same m-lines in every later offer).
                            if let Err(error) = p.restart_ice() {
                                tracing::debug!(%error, "ICE restart not queued");
                            }
                        }
                        None if starting.is_none() => {
                            // No peer connection (its channel closed, or it never started):
                            // a new one offers.
                            remote_fingerprint = None;
                            held.clear();
                            starting = Some(base.start(true));
                        }
                        None => {}
                    }
                }
                Some(Call::Signal(signal)) => {
                    if let LinkSignal::Offer { sdp, .. } = &signal {
                        let theirs = fingerprint(sdp).map(str::to_owned);
                        let replaced = remote_fingerprint.is_some() && theirs != remote_fingerprint;
                        if replaced || (peer.is_none() && starting.is_none()) {
                            // The other side started a new peer connection: a new one answers.
                            if let Some(p) = peer.take() {
                                p.close();
                                if channel_open {
                                    channel_open = false;
                                    sink.report(P2pOutput::Event(P2pEvent::ChannelClosed)).await;
                                }
                            }
                            held.clear();
                            starting = Some(base.start(false));
                        }
                        remote_fingerprint = theirs;
                    } else if let LinkSignal::Answer { sdp, .. } = &signal {
                        remote_fingerprint = fingerprint(sdp).map(str::to_owned);
                    }
                    match peer.as_ref() {
                        Some(p) if starting.is_none() => {
                            if let Err(error) = p.signal(signal) {
                                tracing::debug!(%error, "signaling payload not queued");
                            }
                        }
                        _ if held.len() < MAX_HELD_SIGNALS => held.push(signal),
                        _ => {}
                    }
                }
            },
            result = started => {
                starting = None;
                match result {
                    Ok(p) => {
                        for signal in held.drain(..) {
                            let _ = p.signal(signal);
                        }
                        peer = Some(p);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "link: no WebRTC peer connection; the relay carries");
                        held.clear();
                        if !sink.report(P2pOutput::Event(P2pEvent::Ice(IceState::Failed))).await {
                            return;
                        }
                    }
                }
            }
            event = next_event => {
                let output = match event {
                    None => {
                        // The peer's task ended.
                        peer = None;
                        remote_fingerprint = None;
                        if !std::mem::take(&mut channel_open) {
                            continue;
                        }
                        P2pOutput::Event(P2pEvent::ChannelClosed)
                    }
                    Some(PeerEvent::Signal(signal)) => P2pOutput::Signal {
                        kind: kind_of(&signal),
                        body: body(&signal),
                    },
                    Some(PeerEvent::Ice(state)) => P2pOutput::Event(P2pEvent::Ice(ice(state))),
                    Some(PeerEvent::ChannelOpen) => {
                        channel_open = true;
                        P2pOutput::Event(P2pEvent::ChannelOpen)
                    }
                    Some(PeerEvent::ChannelClosed) => {
                        channel_open = false;
                        // A negotiated channel does not reopen: this peer connection is done.
                        if let Some(p) = peer.take() {
                            p.close();
                        }
                        remote_fingerprint = None;
                        P2pOutput::Event(P2pEvent::ChannelClosed)
                    }
                    Some(PeerEvent::Message(frame)) => P2pOutput::Frame(frame),
                    Some(PeerEvent::BufferedAmountLow) => {
                        reported_buffered = buffered(&peer);
                        P2pOutput::Event(P2pEvent::BufferedAmount(reported_buffered as u64))
                    }
                    Some(PeerEvent::RemoteCandidate(_)) => continue,
                    Some(PeerEvent::SelectedPair { local, remote }) => {
                        P2pOutput::SelectedPair { local, remote }
                    }
                };
                if !sink.report(output).await {
                    return;
                }
            }
            () = poll_buffered => {
                let now = buffered(&peer);
                if now != reported_buffered || std::mem::take(&mut sent_since_report) {
                    reported_buffered = now;
                    if !sink.report(P2pOutput::Event(P2pEvent::BufferedAmount(now as u64))).await {
                        return;
                    }
                }
            }
        }
    }
}
