//! The sans-IO registry: connections, projects, peers, routing, limits and bounded per-peer
//! outgoing queues, as a pure state machine.
//!
//! The WebSocket tasks feed it ([`Registry::connect`], [`Registry::handle_text`],
//! [`Registry::handle_binary`], [`Registry::handle_activity`], [`Registry::disconnect`],
//! [`Registry::handle_timeout`]) with the current time, and drain it: [`Registry::poll_wake`]
//! names the connections that have something to send, [`Registry::poll_transmit`] hands out
//! their frames. It never touches a socket or reads a clock (the style of `quinn-proto` and
//! `str0m`), so every rule is tested without a network (see `tests.rs`). What depends on keys,
//! secrets and the wall clock (a token's deadline, the `ice_servers` minted for it, checking a
//! `reauth` token or a key attestation) comes in from the caller: a [`Lease`] with each
//! connection, an [`Authority`] with each text message.
//!
//! With a cluster ([`Registry::enable_cluster`], driven by `crate::cluster`), the core also
//! holds the peers of other nodes and emits what goes to them ([`ClusterOutput`]); see the
//! `cluster` submodule.
//!
//! Every table is bounded: connections by `max_connections`, the per-IP table by the
//! connections, projects by `max_projects`, peers by `max_peers_per_project`, and each queue by
//! its limits.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod admin;
mod budget;
mod cluster;
mod lifetime;
mod membership;
mod usage;

pub use admin::PeerSummary;
use budget::source_key;
pub use cluster::{ClusterMetrics, ClusterOutput, ClusterSettings, Forward, Presence};
pub use lifetime::{Authority, Lease, NoAuthority};

use super::config::RegistryConfig;
use super::messages::{
    CloseReason, Control, ErrorCode, Incoming, Refusal, SignalKind, build_relay, forwarded_signal,
    parse_relay, parse_text,
};
use super::metrics::{ConnectRefusal, DropReason, RegistryMetrics};
use super::queue::{Origin, OutQueue, QueueLimits, TokenBucket, Transmit};
use crate::proto::credentials::IceServer;

/// Identifies one connection for as long as the registry lives (never reused).
pub type ConnId = u64;

/// Who a connection is, from its verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The peer id (`sub`).
    pub peer_id: String,
    /// The project.
    pub project: String,
    /// The X25519 public key the issuer pinned (`pk`), if any.
    pub pinned_key: Option<[u8; 32]>,
    /// The token's `exp`, UNIX seconds.
    pub expires_at: u64,
}

/// Relay and signaling volume of one project while it has peers (per-project metering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProjectUsage {
    /// Relay blobs forwarded to peers of the project.
    pub relay_blobs: u64,
    /// Relay bytes forwarded to peers of the project.
    pub relay_bytes: u64,
    /// Signaling messages forwarded inside the project.
    pub signals: u64,
}

#[derive(Debug)]
enum State {
    Pending,
    Joined {
        public_key: String,
        attestation: Option<String>,
    },
    Closing,
}

#[derive(Debug)]
struct Conn {
    ip: IpAddr,
    identity: Identity,
    state: State,
    connected_at: Instant,
    last_seen: Instant,
    last_ping: Instant,
    queue: OutQueue,
    messages: TokenBucket,
    relay: TokenBucket,
    woken: bool,
    /// When the token ends (closed with 4003 then); `None`: never.
    deadline: Option<Instant>,
    /// `token_expiring` was sent for the current token.
    warned: bool,
    /// The `ice_servers` for the welcome (dropped once it is sent).
    ice_servers: Option<Vec<IceServer>>,
    /// Relayed bytes in the current usage window.
    window: usage::Window,
}

#[derive(Debug, Default)]
struct Project {
    peers: BTreeMap<String, ConnId>,
    usage: ProjectUsage,
    /// `project_messages_per_sec`, made at the project's first message.
    messages: Option<TokenBucket>,
}

/// Control messages a peer may have queued beyond its signaling bound, on top of two per peer
/// of a full project (each may join and leave once before the peer reads).
const CONTROL_RESERVE: usize = 64;

/// The registry state machine.
#[derive(Debug)]
pub struct Registry {
    config: RegistryConfig,
    queue_limits: QueueLimits,
    metrics: Arc<RegistryMetrics>,
    next_id: ConnId,
    conns: HashMap<ConnId, Conn>,
    projects: HashMap<String, Project>,
    per_ip: HashMap<IpAddr, u32>,
    wakes: Vec<ConnId>,
    to_close: Vec<(ConnId, CloseReason)>,
    /// Peers of other nodes and what goes to them (`[cluster]`; idle without one).
    cluster: cluster::Cluster,
    /// Bytes queued for all peers (bounded by `budget_bytes`).
    queued_bytes: usize,
}

impl Registry {
    /// An empty registry with the limits of `config`, counting into `metrics`.
    pub fn new(config: RegistryConfig, metrics: Arc<RegistryMetrics>) -> Registry {
        let queue_limits = QueueLimits {
            signal_messages: config.signal_queue_messages as usize,
            signal_bytes: config.signal_queue_bytes as usize,
            control_messages: 2 * config.max_peers_per_project as usize + CONTROL_RESERVE,
            relay_blobs: config.relay_queue_blobs as usize,
        };
        Registry {
            config,
            queue_limits,
            metrics,
            next_id: 1,
            conns: HashMap::new(),
            projects: HashMap::new(),
            per_ip: HashMap::new(),
            wakes: Vec::new(),
            to_close: Vec::new(),
            cluster: cluster::Cluster::default(),
            queued_bytes: 0,
        }
    }

    /// The metrics this registry counts into.
    pub fn metrics(&self) -> &Arc<RegistryMetrics> {
        &self.metrics
    }

    /// Admits a new (authenticated, not yet joined) connection from `ip`, or refuses it for
    /// capacity. `lease` says when its token ends and what the welcome hands out with it.
    pub fn connect(
        &mut self,
        now: Instant,
        ip: IpAddr,
        identity: Identity,
        lease: Lease,
    ) -> Result<ConnId, ConnectRefusal> {
        let source = source_key(ip);
        let refusal = if self.conns.len() >= self.config.max_connections as usize {
            Some(ConnectRefusal::ServerFull)
        } else if self.per_ip.get(&source).copied().unwrap_or(0)
            >= self.config.max_connections_per_ip
        {
            Some(ConnectRefusal::TooManyConnections)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.metrics.count_refused(refusal);
            return Err(refusal);
        }
        let id = self.next_id;
        self.next_id += 1;
        *self.per_ip.entry(source).or_insert(0) += 1;
        let rate = f64::from(self.config.messages_per_sec);
        let bytes = self.config.relay_bytes_per_sec as f64;
        let relay_burst = bytes.max(f64::from(self.config.max_relay_frame_bytes));
        self.conns.insert(
            id,
            Conn {
                ip,
                identity,
                state: State::Pending,
                connected_at: now,
                last_seen: now,
                last_ping: now,
                queue: OutQueue::default(),
                messages: TokenBucket::new(rate, 2.0 * rate, now),
                relay: TokenBucket::new(bytes, relay_burst, now),
                woken: false,
                deadline: lease.deadline,
                warned: false,
                ice_servers: lease.ice_servers,
                window: usage::Window::new(now),
            },
        );
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// A text frame from `conn`. `authority` checks what needs keys or the wall clock (a
    /// `reauth` token, a key attestation).
    pub fn handle_text(
        &mut self,
        now: Instant,
        conn: ConnId,
        text: &str,
        authority: &dyn Authority,
    ) {
        let parsed = parse_text(text, self.config.max_payload_bytes as usize);
        self.handle_parsed(now, conn, parsed, authority);
    }

    /// A text frame from `conn`, already parsed with [`parse_text`] (with
    /// `max_payload_bytes`): the WebSocket task parses outside the registry's lock.
    pub fn handle_parsed(
        &mut self,
        now: Instant,
        conn: ConnId,
        parsed: Result<Incoming<'_>, Refusal>,
        authority: &dyn Authority,
    ) {
        let Some(c) = self.live(conn) else { return };
        c.last_seen = now;
        let allowed = c.messages.take(now, 1.0);
        let joined = matches!(c.state, State::Joined { .. });
        let project = joined.then(|| c.identity.project.clone());
        let mut code = ErrorCode::RateLimited;
        if let (true, Some(project)) = (allowed, project) {
            if !self.project_allows(now, &project) {
                code = ErrorCode::ProjectRateLimited;
            }
        }
        if !allowed || code == ErrorCode::ProjectRateLimited {
            let (refers_to, id, to) = match &parsed {
                Ok(Incoming::Join { .. }) => (Some("join".to_owned()), None, None),
                Ok(Incoming::Reauth { .. }) => (Some("reauth".to_owned()), None, None),
                Ok(Incoming::Ping) => (Some("ping".to_owned()), None, None),
                Ok(Incoming::Signal { kind, id, to, .. }) => {
                    (Some(kind.as_str().to_owned()), *id, Some(to.clone()))
                }
                Err(refusal) => (refusal.refers_to.clone(), refusal.id, None),
            };
            let message = if code == ErrorCode::RateLimited {
                format!(
                    "more than {} messages per second",
                    self.config.messages_per_sec
                )
            } else {
                format!(
                    "the project sends more than {} messages per second",
                    self.config.project_messages_per_sec
                )
            };
            self.refuse(
                conn,
                Refusal {
                    code,
                    message,
                    refers_to,
                    id,
                    to_peer_id: to,
                },
            );
        } else {
            match parsed {
                Err(refusal) => self.refuse(conn, refusal),
                Ok(Incoming::Join {
                    public_key,
                    attestation,
                }) => self.join(now, conn, &public_key, attestation, authority),
                Ok(Incoming::Reauth { token }) => self.reauth(now, conn, &token, authority),
                Ok(Incoming::Ping) => self.send_control(conn, Control::Pong.to_json()),
                Ok(Incoming::Signal {
                    kind,
                    to,
                    payload,
                    id,
                }) => self.signal(conn, kind, to, payload, id),
            }
        }
        self.process_closes();
    }

    /// A binary frame (relay blob) from `conn`.
    pub fn handle_binary(&mut self, now: Instant, conn: ConnId, frame: &[u8]) {
        let parsed = parse_relay(frame, self.config.max_relay_frame_bytes as usize);
        let Some(c) = self.live(conn) else { return };
        c.last_seen = now;
        let joined = matches!(c.state, State::Joined { .. });
        let (project, from) = (c.identity.project.clone(), c.identity.peer_id.clone());
        if joined && parsed.is_ok() {
            c.window.add(frame.len());
        }
        let allowed = joined && parsed.is_ok() && c.relay.take(now, frame.len() as f64);
        // Frames that only earn an error answer (before `join`, malformed) count against the
        // text message rate: beyond it they are dropped unanswered, so a flood of them costs
        // the server no more than a flood of text.
        if (!joined || parsed.is_err()) && !c.messages.take(now, 1.0) {
            self.metrics.count_drop(DropReason::RateLimited);
            return;
        }
        if !joined {
            self.metrics.count_drop(DropReason::NotJoined);
            let refusal = Refusal::new(
                ErrorCode::NotJoined,
                "send `join` before relay frames",
                Some("relay"),
            );
            self.refuse(conn, refusal);
            return self.process_closes();
        }
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(refusal) => {
                self.metrics.count_drop(DropReason::Malformed);
                self.refuse(conn, refusal);
                return self.process_closes();
            }
        };
        if !allowed {
            // Datagram semantics: counted, not answered (an answer would double a flood).
            self.metrics.count_drop(DropReason::RateLimited);
            return;
        }
        let target = self
            .projects
            .get(&project)
            .and_then(|p| p.peers.get(parsed.peer_id))
            .copied();
        let Some(target) = target else {
            let out = build_relay(&from, parsed.sealed);
            let to = parsed.peer_id.to_owned();
            if self.forward_relay(conn, &project, &from, &to, out) {
                return self.process_closes();
            }
            self.metrics.count_drop(DropReason::UnknownPeer);
            let mut refusal = Refusal::new(
                ErrorCode::UnknownPeer,
                format!("no peer `{}` in this project", parsed.peer_id),
                Some("relay"),
            );
            refusal.to_peer_id = Some(parsed.peer_id.to_owned());
            self.refuse(conn, refusal);
            return self.process_closes();
        };
        let out = build_relay(&from, parsed.sealed);
        self.queue_relay(&project, target, out);
    }

    /// Any frame from `conn` (a Pong included): it is alive.
    pub fn handle_activity(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_seen = now;
        }
    }

    /// The connection ended (closed by either side, or failed). Idempotent.
    pub fn disconnect(&mut self, conn: ConnId) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.leave(conn);
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        self.account_sub(c.queue.bytes());
        let unsent = c.queue.drain_unsent();
        let source = source_key(c.ip);
        if let Some(count) = self.per_ip.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&source);
            }
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        self.undelivered(unsent);
        self.process_closes();
    }

    /// Sends pings, `token_expiring` and `relay_usage` notices, and closes connections whose
    /// token ended, idle connections and connections that did not join in time. Call it about
    /// twice a second (a token's connection closes within one call of its `exp`).
    pub fn handle_timeout(&mut self, now: Instant) {
        let idle = Duration::from_secs(self.config.idle_timeout_secs.into());
        let join = Duration::from_secs(self.config.join_timeout_secs.into());
        let ping = Duration::from_secs(self.config.ping_interval_secs.into());
        let warning = Duration::from_secs(self.config.token_warning_secs.into());
        let mut pinged = Vec::new();
        let mut notices = Vec::new();
        let mut warnings = Vec::new();
        for (&id, c) in &mut self.conns {
            if matches!(c.state, State::Closing) {
                continue;
            }
            if c.deadline.is_some_and(|deadline| now >= deadline) {
                self.to_close.push((id, CloseReason::TokenExpired));
                continue;
            }
            if lifetime::warning_due(c, now, warning) {
                warnings.push(id);
            }
            if matches!(c.state, State::Joined { .. }) {
                if let Some(notice) = c.window.roll(now, self.config.relay_warn_bytes_per_sec) {
                    notices.push((id, notice));
                }
            }
            if now.saturating_duration_since(c.last_seen) >= idle {
                self.to_close.push((id, CloseReason::IdleTimeout));
            } else if matches!(c.state, State::Pending)
                && now.saturating_duration_since(c.connected_at) >= join
            {
                self.to_close.push((id, CloseReason::JoinTimeout));
            } else if now.saturating_duration_since(c.last_ping) >= ping {
                c.last_ping = now;
                c.queue.push_ping();
                pinged.push(id);
            }
        }
        for id in pinged {
            self.wake(id);
        }
        for (id, notice) in notices {
            self.metrics
                .relay_usage_warnings
                .fetch_add(1, Ordering::Relaxed);
            self.send_control(id, notice);
        }
        for id in warnings {
            self.send_token_warning(id);
        }
        self.process_closes();
    }

    /// Closes every connection (the server shuts down).
    pub fn close_all(&mut self, reason: CloseReason) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        self.to_close.extend(ids.into_iter().map(|id| (id, reason)));
        self.process_closes();
    }

    /// A connection that has frames to send, once per batch of new frames.
    pub fn poll_wake(&mut self) -> Option<ConnId> {
        let id = self.wakes.pop()?;
        if let Some(c) = self.conns.get_mut(&id) {
            c.woken = false;
        }
        Some(id)
    }

    /// The next frame to send on `conn`, if any.
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<Transmit> {
        let queue = &mut self.conns.get_mut(&conn)?.queue;
        let before = queue.bytes();
        let transmit = queue.pop();
        let freed = before - queue.bytes();
        self.account_sub(freed);
        transmit
    }

    /// Moves the next frames to send on `conn` into `out`, until `max_bytes` of them (at least
    /// one frame when there is one) or the close: one call per batch instead of one per frame.
    pub fn poll_transmits(&mut self, conn: ConnId, out: &mut Vec<Transmit>, max_bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let before = c.queue.bytes();
        while before - c.queue.bytes() < max_bytes {
            let Some(transmit) = c.queue.pop() else { break };
            let last = matches!(transmit, Transmit::Close { .. });
            out.push(transmit);
            if last {
                break;
            }
        }
        let freed = before - c.queue.bytes();
        self.account_sub(freed);
    }

    /// Bytes queued for all peers.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Connections held, joined or not.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Connections admitted since the registry started.
    pub fn admitted(&self) -> u64 {
        self.next_id - 1
    }

    /// Projects with at least one joined peer.
    pub fn project_count(&self) -> usize {
        self.projects.len()
    }

    /// Per-project metering, sorted by project.
    pub fn project_usage(&self) -> Vec<(String, ProjectUsage)> {
        let mut usage: Vec<(String, ProjectUsage)> = self
            .projects
            .iter()
            .map(|(name, p)| (name.clone(), p.usage))
            .collect();
        usage.sort_by(|a, b| a.0.cmp(&b.0));
        usage
    }

    /// The connection, unless it is gone or closing.
    fn live(&mut self, conn: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(&conn)
            .filter(|c| !matches!(c.state, State::Closing))
    }

    fn signal(
        &mut self,
        conn: ConnId,
        kind: SignalKind,
        to: String,
        payload: &serde_json::value::RawValue,
        id: Option<u64>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let refusal = |code, message: String| Refusal {
            code,
            message,
            refers_to: Some(kind.as_str().to_owned()),
            id,
            to_peer_id: Some(to.clone()),
        };
        if !matches!(c.state, State::Joined { .. }) {
            let refusal = refusal(ErrorCode::NotJoined, "send `join` first".to_owned());
            return self.refuse(conn, refusal);
        }
        let project = c.identity.project.clone();
        let from = c.identity.peer_id.clone();
        let target = self
            .projects
            .get(&project)
            .and_then(|p| p.peers.get(&to))
            .copied();
        let Some(target) = target else {
            match self.forward_signal(conn, kind, &to, payload, id) {
                Some(Ok(())) => {
                    if let Some(p) = self.projects.get_mut(&project) {
                        p.usage.signals += 1;
                    }
                    return;
                }
                Some(Err(refusal)) => return self.refuse(conn, refusal),
                None => {}
            }
            let refusal = refusal(
                ErrorCode::UnknownPeer,
                format!("no peer `{to}` in this project"),
            );
            return self.refuse(conn, refusal);
        };
        let text = forwarded_signal(kind, &from, payload);
        if !self.fits(target, text.len()) {
            let refusal = refusal(
                ErrorCode::OverBudget,
                format!("`{to}` has more queued than its memory budget"),
            );
            return self.refuse(conn, refusal);
        }
        let length = text.len();
        let limits = self.queue_limits;
        let origin = Origin {
            sender: conn,
            kind,
            id,
            to: to.clone(),
        };
        let queued = self
            .conns
            .get_mut(&target)
            .is_some_and(|t| t.queue.push_signal(&limits, text, origin));
        if !queued {
            let refusal = refusal(ErrorCode::QueueFull, format!("the queue of `{to}` is full"));
            return self.refuse(conn, refusal);
        }
        self.account_add(length);
        self.metrics.signals[kind as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(p) = self.projects.get_mut(&project) {
            p.usage.signals += 1;
        }
        self.wake(target);
    }

    /// Answers `conn` with an error.
    fn refuse(&mut self, conn: ConnId, refusal: Refusal) {
        self.metrics.count_error(refusal.code);
        self.send_control(conn, refusal.to_json());
    }

    /// Queues a control message; a peer whose control queue overflows is closed.
    /// A peer whose control messages no longer fit its byte budget (or the registry's) is
    /// closed with `over_budget`.
    fn send_control(&mut self, conn: ConnId, text: String) {
        let limits = self.queue_limits;
        let length = text.len();
        let fits = self.fits(conn, length);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if matches!(c.state, State::Closing) {
            return; // nothing more is sent on a closing connection
        }
        if !fits {
            self.to_close.push((conn, CloseReason::OverBudget));
        } else if c.queue.push_control(&limits, text) {
            self.account_add(length);
            self.wake(conn);
        } else {
            self.to_close.push((conn, CloseReason::SlowConsumer));
        }
    }

    fn wake(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if !c.woken {
                c.woken = true;
                self.wakes.push(conn);
            }
        }
    }

    /// Answers the senders of signaling messages that were queued but never sent.
    fn undelivered(&mut self, unsent: Vec<Origin>) {
        for origin in unsent {
            let refusal = Refusal {
                code: ErrorCode::Undelivered,
                message: format!("`{}` left before the message was delivered", origin.to),
                refers_to: Some(origin.kind.as_str().to_owned()),
                id: origin.id,
                to_peer_id: Some(origin.to),
            };
            if self.conns.contains_key(&origin.sender) {
                self.refuse(origin.sender, refusal);
            } else {
                self.undelivered_remote(origin.sender, refusal);
            }
        }
    }

    /// Closes the connections scheduled for closing (which may schedule more).
    fn process_closes(&mut self) {
        while let Some((conn, reason)) = self.to_close.pop() {
            let Some(c) = self.conns.get(&conn) else {
                continue;
            };
            if matches!(c.state, State::Closing) {
                continue;
            }
            self.leave(conn);
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.state = State::Closing;
            let before = c.queue.bytes();
            let unsent = c.queue.close(reason.code(), reason.as_str());
            let freed = before - c.queue.bytes();
            self.account_sub(freed);
            self.metrics.count_close(reason);
            self.wake(conn);
            self.undelivered(unsent);
        }
    }
}
