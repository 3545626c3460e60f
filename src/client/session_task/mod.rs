//! The session's task: owns the registry client, every link core and its p2p path, and moves
//! frames, events and timers between them (see [`super::session`]).

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::events::Event;
use super::link_handle::{Incoming, Link, MAX_UNREAD_BYTES, Progress, Shared};
use super::p2p::{P2pOutput, P2pParams, P2pPath, P2pSink};
use super::registry::RegistryClient;
use super::session::{Command, SessionConfig, SessionError, SessionEvent};
use crate::link::attest::TrustedIssuers;
use crate::link::{self, CloseReason, ErrorCode, LinkConfig, LinkError, Mode, Path, SendError};
use crate::registry::messages::{SignalKind, valid_id};

mod pump;

/// Links per session, at most (links the peers open count too).
const MAX_LINKS: usize = 1024;
/// Bytes a sealed relay blob adds to a link frame: the id length byte, nonce, tag, counter.
const SEAL_OVERHEAD: usize = 1 + 24 + 16 + 8;

struct PendingSend {
    data: Vec<u8>,
    binary: bool,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), SendError>>,
}

struct LinkEntry {
    core: link::Link,
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedSender<(usize, Incoming)>,
    mode: watch::Sender<Mode>,
    progress: watch::Sender<Progress>,
    waiting: VecDeque<PendingSend>,
    path: Option<Box<dyn P2pPath>>,
    generation: u64,
    signal_epoch: Option<u32>,
    unknown_peer_reported: bool,
    /// The p2p path's selected pair: (local, remote) candidate types, for `stats()`.
    candidate_types: Option<(String, String)>,
}

struct PeerInfo {
    public_key: String,
    attestation: Option<String>,
}

pub(crate) struct Task {
    config: SessionConfig,
    client: RegistryClient,
    peer_id: String,
    project: String,
    peers: HashMap<String, PeerInfo>,
    issuers: TrustedIssuers,
    links: HashMap<String, LinkEntry>,
    generation: u64,
    commands_tx: mpsc::Sender<Command>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
    p2p_tx: mpsc::Sender<(String, u64, P2pOutput)>,
    p2p_rx: mpsc::Receiver<(String, u64, P2pOutput)>,
    /// Signaling payloads from p2p paths, sent on the next pump: (kind, to, payload).
    outgoing_signals: Vec<(SignalKind, String, serde_json::Value)>,
    /// Since when, and how many times in a row, no valid token came (the callback failed, or
    /// the registry refused its token); cleared by `reauthed` or a reconnection.
    token_failures: Option<(Instant, u32)>,
}

fn now() -> Instant {
    Instant::now()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Task {
    pub(crate) fn new(
        config: SessionConfig,
        client: RegistryClient,
        welcome: Event,
        commands_tx: mpsc::Sender<Command>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<SessionEvent>,
    ) -> Task {
        let (p2p_tx, p2p_rx) = mpsc::channel(1024);
        let issuers = TrustedIssuers::from_raw(&config.trusted_issuer_keys);
        let mut task = Task {
            config,
            client,
            peer_id: String::new(),
            project: String::new(),
            peers: HashMap::new(),
            issuers,
            links: HashMap::new(),
            generation: 0,
            commands_tx,
            commands,
            events,
            p2p_tx,
            p2p_rx,
            outgoing_signals: Vec::new(),
            token_failures: None,
        };
        task.on_welcome(welcome);
        task
    }

    pub(crate) fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Queues a session event without waiting: an application that does not read its session
    /// events must not stop its links. Beyond [`super::session::EVENT_QUEUE`] unread events,
    /// new ones are dropped (and logged).
    fn emit(&self, event: SessionEvent) {
        if let Err(error) = self.events.try_send(event) {
            tracing::warn!(event = ?error.into_inner(), "link session: event dropped (unread)");
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.next_deadline();
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => {
                        self.shutdown("closed by the application").await;
                        return;
                    }
                    Some(command) => self.on_command(command),
                },
                event = self.client.next_event() => match event {
                    Some(event) => {
                        if !self.on_registry_event(event).await {
                            return;
                        }
                    }
                    None => {
                        if !self.reconnect("the registry connection ended".into()).await {
                            return;
                        }
                    }
                },
                Some((peer, generation, output)) = self.p2p_rx.recv() => {
                    self.on_p2p(&peer, generation, output);
                }
                () = sleep => self.on_timers(),
            }
            self.pump_all().await;
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut at = now() + Duration::from_secs(3600);
        for entry in self.links.values() {
            if let Some(t) = entry.core.poll_timeout() {
                at = at.min(t);
            }
            if let Some(send) = entry.waiting.front() {
                at = at.min(send.deadline);
            }
        }
        at
    }

    fn on_timers(&mut self) {
        let now = now();
        for entry in self.links.values_mut() {
            if entry.core.poll_timeout().is_some_and(|at| at <= now) {
                entry.core.handle_timeout(now);
            }
            while entry.waiting.front().is_some_and(|s| s.deadline <= now) {
                if let Some(send) = entry.waiting.pop_front() {
                    let _ = send.reply.send(Err(SendError::BufferFull));
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Open { peer, reply } => {
                let result = if valid_id(&peer) && peer != self.peer_id {
                    self.ensure_link(&peer, true)
                        .map(|entry| Link {
                            shared: entry.shared.clone(),
                        })
                        .ok_or(SessionError::BadPeer(peer))
                } else {
                    Err(SessionError::BadPeer(peer))
                };
                let _ = reply.send(result);
            }
            Command::Send {
                peer,
                data,
                binary,
                reply,
            } => {
                let timeout = self.config.send_timeout;
                let Some(entry) = self.links.get_mut(&peer) else {
                    let _ = reply.send(Err(SendError::LinkClosed));
                    return;
                };
                if !entry.waiting.is_empty() || !entry.core.fits(data.len()) {
                    if data.len() > link::frame::MAX_MESSAGE_BYTES {
                        let _ = reply.send(Err(SendError::MessageTooLarge(data.len())));
                    } else if entry.core.mode() == Mode::Closed {
                        let _ = reply.send(Err(SendError::LinkClosed));
                    } else {
                        let deadline = now() + timeout;
                        entry.waiting.push_back(PendingSend {
                            data,
                            binary,
                            deadline,
                            reply,
                        });
                    }
                    return;
                }
                let _ = reply.send(entry.core.send(now(), data, binary));
            }
            Command::Stats { peer, reply } => {
                if let Some(entry) = self.links.get(&peer) {
                    let mut stats = entry.core.stats();
                    if let Some((local, remote)) = &entry.candidate_types {
                        stats.local_candidate_type = Some(local.clone());
                        stats.remote_candidate_type = Some(remote.clone());
                    }
                    let _ = reply.send(stats);
                }
            }
            Command::CloseLink { peer } => {
                if let Some(entry) = self.links.get_mut(&peer) {
                    entry.core.close(now(), CloseReason::Local);
                }
            }
            Command::ForceRelay { peer, on } => {
                if let Some(entry) = self.links.get_mut(&peer) {
                    entry.core.force_relay(now(), on);
                }
            }
            Command::Wake | Command::Close => {}
        }
    }

    /// The link to `peer`, created when there is none (or the last one closed).
    fn ensure_link(&mut self, peer: &str, offerer: bool) -> Option<&mut LinkEntry> {
        let closed = self
            .links
            .get(peer)
            .is_some_and(|e| e.core.mode() == Mode::Closed);
        if closed {
            self.links.remove(peer);
        }
        if !self.links.contains_key(peer) {
            if self.links.len() >= MAX_LINKS {
                return None;
            }
            let entry = self.new_link(peer, offerer);
            if !offerer {
                let handle = Link {
                    shared: entry.shared.clone(),
                };
                self.emit(SessionEvent::Link(handle));
            }
            self.links.insert(peer.to_owned(), entry);
            self.check_attestation(peer);
        }
        self.links.get_mut(peer)
    }

    fn new_link(&mut self, peer: &str, offerer: bool) -> LinkEntry {
        let config = LinkConfig {
            fallback_after: self.config.fallback_after,
            max_buffered_bytes: self.config.max_buffered_bytes,
            relay_bytes_per_sec: self.config.relay_bytes_per_sec,
            relay_overhead: SEAL_OVERHEAD + peer.len(),
            offerer,
            ..LinkConfig::default()
        };
        let epoch = NonZeroU32::new(rand::random::<u32>()).unwrap_or(NonZeroU32::MIN);
        let core = link::Link::new(config, now(), epoch, rand::random());
        let (incoming, incoming_rx) = mpsc::unbounded_channel();
        let (mode, mode_rx) = watch::channel(Mode::Connecting);
        let (progress, progress_rx) = watch::channel(Progress::default());
        let shared = Arc::new(Shared {
            peer: peer.to_owned(),
            commands: self.commands_tx.clone(),
            incoming: Mutex::new(incoming_rx),
            unread: AtomicUsize::new(0),
            mode: mode_rx,
            progress: progress_rx,
        });
        let (path, generation) = self.new_path(peer, epoch.get(), offerer);
        LinkEntry {
            core,
            shared,
            incoming,
            mode,
            progress,
            waiting: VecDeque::new(),
            path,
            generation,
            signal_epoch: None,
            unknown_peer_reported: false,
            candidate_types: None,
        }
    }

    /// A p2p path for the link end `epoch` to `peer` (none without a connector), and the
    /// generation its reports carry.
    fn new_path(
        &mut self,
        peer: &str,
        epoch: u32,
        offerer: bool,
    ) -> (Option<Box<dyn P2pPath>>, u64) {
        self.generation += 1;
        let Some(connector) = self.config.p2p.clone() else {
            return (None, self.generation);
        };
        let params = P2pParams {
            local_peer_id: self.peer_id.clone(),
            remote_peer_id: peer.to_owned(),
            local_epoch: epoch,
            offerer,
            polite: self.peer_id.as_bytes() < peer.as_bytes(),
            ice_servers: self
                .config
                .ice_servers
                .clone()
                .or_else(|| self.client.ice_servers())
                .unwrap_or_default(),
            ice_transport_policy: self.config.ice_transport_policy,
        };
        let sink = P2pSink {
            peer: peer.to_owned(),
            generation: self.generation,
            tx: self.p2p_tx.clone(),
        };
        (Some(connector.create(params, sink)), self.generation)
    }

    /// With trusted issuers, the relay is allowed for a peer only when its attestation
    /// verifies (§5); a refusal is reported once as `not_attested`.
    fn check_attestation(&mut self, peer: &str) {
        if self.issuers.is_empty() {
            return;
        }
        let Some(info) = self.peers.get(peer) else {
            return;
        };
        let result = self.issuers.verify(
            info.attestation.as_deref(),
            peer,
            &self.project,
            &info.public_key,
            unix_now(),
        );
        let Some(entry) = self.links.get_mut(peer) else {
            return;
        };
        entry.core.set_relay_allowed(now(), result.is_ok());
        if let Err(reason) = result {
            let error = LinkError {
                code: ErrorCode::NotAttested,
                message: reason.as_str().to_owned(),
            };
            let _ = entry.incoming.send((0, Incoming::Error(error)));
        }
    }

    fn on_welcome(&mut self, welcome: Event) {
        if let Event::Welcome {
            peer_id,
            project,
            peers,
            attestations,
            ..
        } = welcome
        {
            self.peer_id = peer_id;
            self.project = project;
            self.peers.clear();
            for (id, public_key) in peers {
                let attestation = attestations.get(&id).cloned();
                self.peers.insert(
                    id,
                    PeerInfo {
                        public_key,
                        attestation,
                    },
                );
            }
            let known: Vec<String> = self.links.keys().cloned().collect();
            for peer in known {
                self.check_attestation(&peer);
            }
        }
    }

    /// Handles one registry event; `false` when the session ended.
    async fn on_registry_event(&mut self, event: Event) -> bool {
        match event {
            Event::Welcome { .. } => self.on_welcome(event),
            Event::PeerJoined {
                peer_id,
                public_key,
                attestation,
            } => {
                self.peers.insert(
                    peer_id.clone(),
                    PeerInfo {
                        public_key,
                        attestation,
                    },
                );
                if let Some(entry) = self.links.get_mut(&peer_id) {
                    entry.unknown_peer_reported = false;
                }
                self.check_attestation(&peer_id);
                self.emit(SessionEvent::PeerJoined(peer_id));
            }
            Event::PeerLeft { peer_id } => {
                self.peers.remove(&peer_id);
                self.emit(SessionEvent::PeerLeft(peer_id));
            }
            Event::Relay { from, message } => {
                if let Some(entry) = self.ensure_link(&from, false) {
                    entry.core.handle_frame(now(), Path::Relay, &message);
                }
            }
            Event::Signal {
                kind,
                from,
                payload,
            } => self.on_signal(kind, from, payload).await,
            Event::Error {
                code,
                message,
                to_peer_id: Some(peer),
                ..
            } if self.links.contains_key(&peer) => {
                let code = match code.as_str() {
                    "unknown_peer" => ErrorCode::UnknownPeer,
                    "undelivered" => ErrorCode::Undelivered,
                    _ => {
                        self.emit(SessionEvent::Error { code, message });
                        return true;
                    }
                };
                if let Some(entry) = self.links.get_mut(&peer) {
                    let _ = entry
                        .incoming
                        .send((0, Incoming::Error(LinkError { code, message })));
                }
            }
            Event::Error { code, message, .. } => {
                self.emit(SessionEvent::Error { code, message });
            }
            Event::TokenExpiring { expires_at } => match self.config.token.token().await {
                Ok(token) => {
                    let _ = self.client.reauth(&token).await;
                }
                Err(message) => {
                    let expired = expires_at <= unix_now();
                    if self.token_failed(message, expired) {
                        self.end_links();
                        self.client.close().await;
                        self.emit(SessionEvent::Closed("no valid token".into()));
                        return false;
                    }
                }
            },
            Event::Reauthed { expires_at, .. } => {
                self.token_failures = None;
                self.emit(SessionEvent::Reauthed { expires_at });
            }
            Event::RelayUsage { bytes_per_sec, .. } => {
                self.emit(SessionEvent::RelayUsage { bytes_per_sec });
            }
            Event::Closed { reason, .. } => return self.reconnect(reason).await,
            _ => {}
        }
        true
    }

    async fn on_signal(&mut self, kind: SignalKind, from: String, payload: String) {
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        let epoch = value.get("epoch").and_then(serde_json::Value::as_u64);
        let is_link = value.get("link").and_then(serde_json::Value::as_u64) == Some(1);
        let Some(epoch) = epoch
            .filter(|_| is_link)
            .and_then(|e| u32::try_from(e).ok())
        else {
            let event = SessionEvent::Signal {
                kind,
                from,
                payload,
            };
            self.emit(event);
            return;
        };
        let new_incarnation = self
            .links
            .get(&from)
            .and_then(|e| e.signal_epoch)
            .is_some_and(|known| known != epoch);
        if new_incarnation {
            if kind != SignalKind::Offer {
                return; // stale
            }
            // A new incarnation offers: a fresh peer connection answers it.
            let epoch_now = self.links.get(&from).map(|e| e.core.epoch());
            if let Some(local_epoch) = epoch_now {
                let (path, generation) = self.new_path(&from, local_epoch, false);
                if let Some(entry) = self.links.get_mut(&from) {
                    if let Some(mut old) = std::mem::replace(&mut entry.path, path) {
                        old.close();
                    }
                    entry.generation = generation;
                }
            }
        }
        if let Some(entry) = self.ensure_link(&from, false) {
            entry.signal_epoch = Some(epoch);
            if let Some(path) = entry.path.as_mut() {
                path.handle_signal(kind, epoch, value);
            }
        }
    }

    fn on_p2p(&mut self, peer: &str, generation: u64, output: P2pOutput) {
        let Some(entry) = self.links.get_mut(peer) else {
            return;
        };
        if entry.generation != generation {
            return; // a replaced peer connection
        }
        let now = now();
        match output {
            P2pOutput::Event(event) => entry.core.handle_p2p_event(now, event),
            P2pOutput::Frame(frame) => entry.core.handle_frame(now, Path::P2p, &frame),
            P2pOutput::Signal { kind, body } => {
                let mut payload = serde_json::json!({"link": 1, "epoch": entry.core.epoch()});
                if let (Some(out), serde_json::Value::Object(fields)) =
                    (payload.as_object_mut(), body)
                {
                    out.extend(fields);
                }
                // Sent on the next pump (the registry client is async).
                if self.outgoing_signals.len() < 1024 {
                    self.outgoing_signals.push((kind, peer.to_owned(), payload));
                }
            }
            P2pOutput::SelectedPair { local, remote } => {
                entry.candidate_types = Some((local, remote));
            }
        }
    }
}
