//! The registry's seam to a cluster of nodes (`[cluster] redis_url`), still sans-IO.
//!
//! The core knows the peers joined on other nodes (the *remote view*, fed by
//! [`Registry::cluster_presence`], [`Registry::cluster_node_view`] and
//! [`Registry::cluster_leave`]), so a `welcome` lists the whole project and `peer_joined` /
//! `peer_left` follow peers of every node. A signaling message or relay blob for a remote peer
//! becomes a [`ClusterOutput::Send`] to its node; what other nodes send comes in through
//! [`Registry::cluster_receive`]. Errors travel back to the sender's node the same way, so a
//! message that cannot be delivered is answered across nodes as on one.
//!
//! The outputs wait in a queue bounded in bytes ([`ClusterSettings::max_outbox_bytes`]) that
//! the I/O layer (`crate::cluster`) drains to Redis; while the link is down or the queue is
//! full, signaling messages for remote peers are answered `undelivered`, relay blobs are
//! dropped and counted, and presence changes mark the presence *dirty* so that the I/O layer
//! rewrites it as a whole. Without [`Registry::enable_cluster`] nothing here runs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::super::messages::{
    CloseReason, Control, ErrorCode, PeerInfo, Refusal, SignalKind, forwarded_signal,
};
use super::super::metrics::{Sample, SampleKind};
use super::super::queue::Origin;
use super::{ConnId, Registry, State};

/// The limits of the cluster seam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The most bytes of outputs waiting for Redis (`cluster.forward_queue_bytes`).
    pub max_outbox_bytes: usize,
    /// The most peers of other nodes held in the remote view (`cluster.max_remote_peers`).
    pub max_remote_peers: usize,
}

/// A joined peer as presence lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// Its project.
    pub project: String,
    /// Its peer id.
    pub peer_id: String,
    /// Its connection on its node (tells a later connection of the same peer id apart).
    pub session: u64,
    /// Its X25519 public key, base64.
    pub public_key: String,
    /// Its key attestation, forwarded unchanged.
    pub attestation: Option<String>,
    /// Orders the joins of one peer id on different nodes: the latest wins. The cluster
    /// layer stamps it (UNIX milliseconds when the peer joined); 0 in what the core emits.
    pub version: u64,
}

/// What one node sends another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// A signaling message for `to`, already in the form its destination receives.
    Signal {
        /// The project.
        project: String,
        /// The destination peer.
        to: String,
        /// The sender.
        from: String,
        /// The sender's connection on its node.
        session: u64,
        /// The message type.
        kind: SignalKind,
        /// The sender's message id, echoed in errors.
        id: Option<u64>,
        /// The forwarded JSON text.
        text: String,
    },
    /// A relay blob for `to`, already framed with the sender's id.
    Relay {
        /// The project.
        project: String,
        /// The destination peer.
        to: String,
        /// The sender.
        from: String,
        /// The sender's connection on its node.
        session: u64,
        /// `[n][from][nonce][box]`.
        frame: Vec<u8>,
    },
    /// An `error` message for a peer of the receiving node (the answer to something it sent).
    Error {
        /// The project.
        project: String,
        /// The peer the error is for.
        peer_id: String,
        /// Its connection.
        session: u64,
        /// The `error` JSON text.
        text: String,
    },
    /// The peer id joined on the sending node: close the receiving node's connection (4001).
    Replace {
        /// The project.
        project: String,
        /// The peer id.
        peer_id: String,
        /// The connection to close.
        session: u64,
    },
}

impl Forward {
    /// Roughly the bytes it holds (the queue's budget).
    pub fn size(&self) -> usize {
        64 + match self {
            Forward::Signal {
                project,
                to,
                from,
                text,
                ..
            } => project.len() + to.len() + from.len() + text.len(),
            Forward::Relay {
                project,
                to,
                from,
                frame,
                ..
            } => project.len() + to.len() + from.len() + frame.len(),
            Forward::Error {
                project,
                peer_id,
                text,
                ..
            } => project.len() + peer_id.len() + text.len(),
            Forward::Replace {
                project, peer_id, ..
            } => project.len() + peer_id.len(),
        }
    }
}

/// What the core asks the cluster layer to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterOutput {
    /// A peer joined on this node: add it to this node's presence and announce it.
    Joined(Presence),
    /// A peer of this node left: remove it and announce it.
    Left {
        /// The project.
        project: String,
        /// The peer id.
        peer_id: String,
        /// Its connection.
        session: u64,
    },
    /// Send `message` to `node`.
    Send {
        /// The destination node.
        node: String,
        /// What to send.
        message: Forward,
    },
}

impl ClusterOutput {
    fn size(&self) -> usize {
        match self {
            ClusterOutput::Joined(p) => {
                64 + p.project.len()
                    + p.peer_id.len()
                    + p.public_key.len()
                    + p.attestation.as_ref().map_or(0, String::len)
            }
            ClusterOutput::Left {
                project, peer_id, ..
            } => 64 + project.len() + peer_id.len(),
            ClusterOutput::Send { node, message } => node.len() + message.size(),
        }
    }
}

/// Counters of cluster traffic (docs/metrics.md), read at scrape time.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// 1 while the link to Redis is up (set by the I/O layer).
    pub up: AtomicI64,
    remote_peers: AtomicI64,
    /// Times the link to Redis was established (the first time included).
    pub connects: AtomicU64,
    /// Presence rewritten as a whole (after a reconnection or a lost change).
    pub presence_rebuilds: AtomicU64,
    sent: [AtomicU64; 4],
    received: [AtomicU64; 4],
    dropped: [AtomicU64; 3],
    outbox_bytes: AtomicI64,
}

/// Why something for another node was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClusterDrop {
    /// The link to Redis is down.
    LinkDown,
    /// The queue to Redis is over `cluster.forward_queue_bytes`.
    QueueFull,
    /// The remote view is full (`cluster.max_remote_peers`).
    ViewFull,
}

const FORWARD_KINDS: [&str; 4] = ["signal", "relay", "error", "replace"];
const DROP_REASONS: [&str; 3] = ["link_down", "queue_full", "view_full"];

fn kind_index(message: &Forward) -> usize {
    match message {
        Forward::Signal { .. } => 0,
        Forward::Relay { .. } => 1,
        Forward::Error { .. } => 2,
        Forward::Replace { .. } => 3,
    }
}

impl ClusterMetrics {
    /// Every value, for the `/metrics` collector.
    pub fn samples(&self) -> Vec<Sample> {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed).min(i64::MAX as u64) as i64;
        let mut out = vec![
            Sample {
                name: "turnpike_registry_cluster_up",
                help: "1 while this node's registry is linked to the cluster's Redis.",
                kind: SampleKind::Gauge,
                label: None,
                value: self.up.load(Ordering::Relaxed),
            },
            Sample {
                name: "turnpike_registry_cluster_remote_peers",
                help: "Peers joined on other nodes that this node knows of.",
                kind: SampleKind::Gauge,
                label: None,
                value: self.remote_peers.load(Ordering::Relaxed),
            },
            Sample {
                name: "turnpike_registry_cluster_queue_bytes",
                help: "Bytes waiting to be sent to Redis.",
                kind: SampleKind::Gauge,
                label: None,
                value: self.outbox_bytes.load(Ordering::Relaxed),
            },
            Sample {
                name: "turnpike_registry_cluster_connects_total",
                help: "Times the registry's link to Redis was established.",
                kind: SampleKind::Counter,
                label: None,
                value: read(&self.connects),
            },
            Sample {
                name: "turnpike_registry_cluster_presence_rebuilds_total",
                help: "Times this node rewrote its presence in Redis as a whole.",
                kind: SampleKind::Counter,
                label: None,
                value: read(&self.presence_rebuilds),
            },
        ];
        for (i, kind) in FORWARD_KINDS.iter().enumerate() {
            out.push(Sample {
                name: "turnpike_registry_cluster_sent_total",
                help: "Messages queued for other nodes, by kind.",
                kind: SampleKind::Counter,
                label: Some(("kind", kind)),
                value: read(&self.sent[i]),
            });
        }
        for (i, kind) in FORWARD_KINDS.iter().enumerate() {
            out.push(Sample {
                name: "turnpike_registry_cluster_received_total",
                help: "Messages received from other nodes, by kind.",
                kind: SampleKind::Counter,
                label: Some(("kind", kind)),
                value: read(&self.received[i]),
            });
        }
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            out.push(Sample {
                name: "turnpike_registry_cluster_dropped_total",
                help: "Messages for other nodes or presence records not sent or kept, by reason.",
                kind: SampleKind::Counter,
                label: Some(("reason", reason)),
                value: read(&self.dropped[i]),
            });
        }
        out
    }

    fn count_drop(&self, reason: ClusterDrop) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A peer of another node in the remote view.
#[derive(Debug)]
struct Remote {
    node: String,
    session: u64,
    version: u64,
    public_key: String,
    attestation: Option<String>,
    /// Stands for the peer as the sender of the messages it forwards (an [`Origin`]).
    handle: ConnId,
}

/// The cluster state of the core.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    settings: Option<ClusterSettings>,
    up: bool,
    outbox: VecDeque<ClusterOutput>,
    outbox_bytes: usize,
    presence_dirty: bool,
    /// project → peer id → remote peer.
    remote: HashMap<String, BTreeMap<String, Remote>>,
    remote_count: usize,
    /// Remote peers' handles → (project, peer id).
    handles: HashMap<ConnId, (String, String)>,
    pub(super) metrics: std::sync::Arc<ClusterMetrics>,
}

impl Cluster {
    /// The remote peer `peer_id` of `project`, if any.
    fn get(&self, project: &str, peer_id: &str) -> Option<&Remote> {
        self.remote.get(project)?.get(peer_id)
    }

    fn remove(&mut self, project: &str, peer_id: &str) -> Option<Remote> {
        let peers = self.remote.get_mut(project)?;
        let removed = peers.remove(peer_id)?;
        if peers.is_empty() {
            self.remote.remove(project);
        }
        self.handles.remove(&removed.handle);
        self.remote_count -= 1;
        self.metrics
            .remote_peers
            .store(self.remote_count as i64, Ordering::Relaxed);
        Some(removed)
    }

    /// Queues an output when the link is up and it fits; false otherwise (counted).
    fn push(&mut self, output: ClusterOutput) -> bool {
        let Some(settings) = self.settings else {
            return false;
        };
        let reason = if !self.up {
            Some(ClusterDrop::LinkDown)
        } else if self.outbox_bytes + output.size() > settings.max_outbox_bytes {
            Some(ClusterDrop::QueueFull)
        } else {
            None
        };
        if let Some(reason) = reason {
            if matches!(output, ClusterOutput::Send { .. }) {
                self.metrics.count_drop(reason);
            }
            return false;
        }
        if let ClusterOutput::Send { message, .. } = &output {
            self.metrics.sent[kind_index(message)].fetch_add(1, Ordering::Relaxed);
        }
        self.outbox_bytes += output.size();
        self.metrics
            .outbox_bytes
            .store(self.outbox_bytes as i64, Ordering::Relaxed);
        self.outbox.push_back(output);
        true
    }

    /// Queues a presence change, or marks the presence for a rewrite when it cannot be.
    fn push_presence(&mut self, output: ClusterOutput) {
        if self.settings.is_some() && !self.push(output) {
            self.presence_dirty = true;
        }
    }
}

impl Registry {
    /// Makes this registry one node of a cluster with `settings`. The link starts down: call
    /// [`Registry::cluster_link`] once the I/O layer reaches Redis.
    pub fn enable_cluster(&mut self, settings: ClusterSettings) {
        self.cluster.settings = Some(settings);
        self.cluster.presence_dirty = true;
    }

    /// The cluster's counters (zero when no cluster is enabled).
    pub fn cluster_metrics(&self) -> &std::sync::Arc<ClusterMetrics> {
        &self.cluster.metrics
    }

    /// The link to Redis is up (the I/O layer rewrote the presence and subscribed) or down.
    /// Going down answers the signaling messages still queued for other nodes `undelivered`.
    pub fn cluster_link(&mut self, up: bool) {
        self.cluster.up = up;
        self.cluster
            .metrics
            .up
            .store(i64::from(up), Ordering::Relaxed);
        if up {
            // Whatever Redis holds of this node may be stale: rewrite it as a whole.
            self.cluster.presence_dirty = true;
        } else {
            let lost: Vec<ClusterOutput> = self.cluster.outbox.drain(..).collect();
            self.cluster.outbox_bytes = 0;
            self.cluster
                .metrics
                .outbox_bytes
                .store(0, Ordering::Relaxed);
            self.cluster_undeliverable(lost);
        }
    }

    /// The next output for the cluster layer.
    pub fn poll_cluster(&mut self) -> Option<ClusterOutput> {
        let output = self.cluster.outbox.pop_front()?;
        self.cluster.outbox_bytes = self.cluster.outbox_bytes.saturating_sub(output.size());
        self.cluster
            .metrics
            .outbox_bytes
            .store(self.cluster.outbox_bytes as i64, Ordering::Relaxed);
        Some(output)
    }

    /// True when outputs wait or the presence must be rewritten.
    pub fn cluster_pending(&self) -> bool {
        !self.cluster.outbox.is_empty() || (self.cluster.up && self.cluster.presence_dirty)
    }

    /// Outputs the cluster layer took but could not send: signaling messages are answered
    /// `undelivered`, presence changes mark the presence for a rewrite.
    pub fn cluster_undeliverable(&mut self, outputs: Vec<ClusterOutput>) {
        for output in outputs {
            match output {
                ClusterOutput::Joined(_) | ClusterOutput::Left { .. } => {
                    self.cluster.presence_dirty = true;
                }
                ClusterOutput::Send {
                    message:
                        Forward::Signal {
                            to,
                            session,
                            kind,
                            id,
                            ..
                        },
                    ..
                } => {
                    let refusal = Refusal {
                        code: ErrorCode::Undelivered,
                        message: format!("`{to}` is on another node, which could not be reached"),
                        refers_to: Some(kind.as_str().to_owned()),
                        id,
                        to_peer_id: Some(to),
                    };
                    if self.conns.contains_key(&session) {
                        self.refuse(session, refusal);
                    }
                }
                ClusterOutput::Send { .. } => {}
            }
        }
        self.process_closes();
    }

    /// When the presence must be rewritten as a whole: clears the flag and returns every
    /// joined peer of this node. `None` when nothing needs rewriting.
    pub fn take_cluster_rewrite(&mut self) -> Option<Vec<Presence>> {
        if !std::mem::take(&mut self.cluster.presence_dirty) {
            return None;
        }
        self.cluster
            .metrics
            .presence_rebuilds
            .fetch_add(1, Ordering::Relaxed);
        // Changes queued before the rewrite are part of it.
        self.cluster
            .outbox
            .retain(|o| matches!(o, ClusterOutput::Send { .. }));
        self.cluster.outbox_bytes = self.cluster.outbox.iter().map(ClusterOutput::size).sum();
        Some(self.local_presence())
    }

    /// Every joined peer of this node.
    pub fn local_presence(&self) -> Vec<Presence> {
        self.conns
            .iter()
            .filter_map(|(&id, c)| match &c.state {
                State::Joined {
                    public_key,
                    attestation,
                } => Some(Presence {
                    project: c.identity.project.clone(),
                    peer_id: c.identity.peer_id.clone(),
                    session: id,
                    public_key: public_key.clone(),
                    attestation: attestation.clone(),
                    version: 0,
                }),
                _ => None,
            })
            .collect()
    }

    /// A peer joined on `node` (or is listed again): added to the remote view; the local
    /// peers of its project get `peer_joined` (after `peer_left` when it replaces another
    /// connection of the same peer id). A peer id joined on this node hides it.
    pub fn cluster_presence(&mut self, node: &str, peer: Presence) {
        let Some(settings) = self.cluster.settings else {
            return;
        };
        if let Some(existing) = self.cluster.get(&peer.project, &peer.peer_id) {
            if existing.node == node && existing.session == peer.session {
                return;
            }
            // A stale record (a dead node's, read after the peer moved on) never wins.
            if (existing.version, existing.node.as_str()) > (peer.version, node) {
                return;
            }
            self.cluster_leave_any(&peer.project, &peer.peer_id);
        }
        if self.cluster.remote_count >= settings.max_remote_peers {
            self.cluster.metrics.count_drop(ClusterDrop::ViewFull);
            return;
        }
        let handle = self.next_id;
        self.next_id += 1;
        self.cluster
            .handles
            .insert(handle, (peer.project.clone(), peer.peer_id.clone()));
        let joined = Control::PeerJoined {
            peer_id: &peer.peer_id,
            public_key: &peer.public_key,
            attestation: peer.attestation.as_deref(),
        }
        .to_json();
        let locals = self.local_peers(&peer.project, &peer.peer_id);
        self.cluster.remote.entry(peer.project).or_default().insert(
            peer.peer_id,
            Remote {
                node: node.to_owned(),
                session: peer.session,
                version: peer.version,
                public_key: peer.public_key,
                attestation: peer.attestation,
                handle,
            },
        );
        self.cluster.remote_count += 1;
        self.cluster
            .metrics
            .remote_peers
            .store(self.cluster.remote_count as i64, Ordering::Relaxed);
        if let Some(locals) = locals {
            for conn in locals {
                self.send_control(conn, joined.clone());
            }
        }
        self.process_closes();
    }

    /// A peer of `node` left (`session`: that connection only).
    pub fn cluster_leave(&mut self, node: &str, project: &str, peer_id: &str, session: u64) {
        if self
            .cluster
            .get(project, peer_id)
            .is_some_and(|r| r.node == node && r.session == session)
        {
            self.cluster_leave_any(project, peer_id);
            self.process_closes();
        }
    }

    /// What `node` lists now (read from Redis), replacing what the view held for it: peers
    /// gone get `peer_left` sent about them, new ones `peer_joined`. An empty list forgets the
    /// node (dead, or Redis unreachable for too long).
    pub fn cluster_node_view(&mut self, node: &str, peers: Vec<Presence>) {
        let listed: HashMap<(&str, &str), u64> = peers
            .iter()
            .map(|p| ((p.project.as_str(), p.peer_id.as_str()), p.session))
            .collect();
        let gone: Vec<(String, String)> = self
            .cluster
            .remote
            .iter()
            .flat_map(|(project, peers)| {
                peers
                    .iter()
                    .filter(|(_, r)| r.node == node)
                    .map(move |(peer_id, r)| (project, peer_id, r.session))
            })
            .filter(|(project, peer_id, session)| {
                listed.get(&(project.as_str(), peer_id.as_str())) != Some(session)
            })
            .map(|(project, peer_id, _)| (project.clone(), peer_id.clone()))
            .collect();
        for (project, peer_id) in gone {
            self.cluster_leave_any(&project, &peer_id);
        }
        drop(listed);
        for peer in peers {
            self.cluster_presence(node, peer);
        }
        self.process_closes();
    }

    /// The nodes the remote view holds peers of.
    pub fn cluster_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .cluster
            .remote
            .values()
            .flat_map(|peers| peers.values().map(|r| r.node.clone()))
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    /// Something another node sent this one.
    pub fn cluster_receive(&mut self, from_node: &str, message: Forward) {
        self.cluster.metrics.received[kind_index(&message)].fetch_add(1, Ordering::Relaxed);
        match message {
            Forward::Signal {
                project,
                to,
                from,
                session,
                kind,
                id,
                text,
            } => {
                let refusal = |code, message: String| Refusal {
                    code,
                    message,
                    refers_to: Some(kind.as_str().to_owned()),
                    id,
                    to_peer_id: Some(to.clone()),
                };
                let Some(target) = self.local_peer(&project, &to) else {
                    let refusal = refusal(
                        ErrorCode::UnknownPeer,
                        format!("no peer `{to}` in this project"),
                    );
                    return self.answer_remote(from_node, &project, &from, session, refusal);
                };
                let sender = self
                    .cluster
                    .get(&project, &from)
                    .filter(|r| r.node == from_node && r.session == session)
                    .map_or(0, |r| r.handle);
                let limits = self.queue_limits;
                let origin = Origin {
                    sender,
                    kind,
                    id,
                    to: to.clone(),
                };
                let queued = self
                    .conns
                    .get_mut(&target)
                    .is_some_and(|t| t.queue.push_signal(&limits, text, origin));
                if !queued {
                    let refusal =
                        refusal(ErrorCode::QueueFull, format!("the queue of `{to}` is full"));
                    return self.answer_remote(from_node, &project, &from, session, refusal);
                }
                self.metrics.signals[kind as usize].fetch_add(1, Ordering::Relaxed);
                if let Some(p) = self.projects.get_mut(&project) {
                    p.usage.signals += 1;
                }
                self.wake(target);
            }
            Forward::Relay {
                project,
                to,
                from,
                session,
                frame,
            } => {
                let Some(target) = self.local_peer(&project, &to) else {
                    self.metrics
                        .count_drop(super::super::metrics::DropReason::UnknownPeer);
                    let mut refusal = Refusal::new(
                        ErrorCode::UnknownPeer,
                        format!("no peer `{to}` in this project"),
                        Some("relay"),
                    );
                    refusal.to_peer_id = Some(to);
                    return self.answer_remote(from_node, &project, &from, session, refusal);
                };
                self.queue_relay(&project, target, frame);
            }
            Forward::Error {
                project,
                peer_id,
                session,
                text,
            } => {
                if self.local_peer(&project, &peer_id) == Some(session) {
                    self.send_control(session, text);
                }
            }
            Forward::Replace {
                project,
                peer_id,
                session,
            } => {
                if self.local_peer(&project, &peer_id) == Some(session) {
                    self.to_close.push((session, CloseReason::Replaced));
                }
            }
        }
        self.process_closes();
    }

    /// The joined local connection of `peer_id` in `project`.
    fn local_peer(&self, project: &str, peer_id: &str) -> Option<ConnId> {
        self.projects.get(project)?.peers.get(peer_id).copied()
    }

    /// The local peers of `project` other than `peer_id`; `None` when `peer_id` is joined on
    /// this node (it hides the remote one: nothing to tell).
    fn local_peers(&self, project: &str, peer_id: &str) -> Option<Vec<ConnId>> {
        let Some(p) = self.projects.get(project) else {
            return Some(Vec::new());
        };
        if p.peers.contains_key(peer_id) {
            return None;
        }
        Some(p.peers.values().copied().collect())
    }

    /// Takes a remote peer out of the view; the local peers of its project get `peer_left`.
    fn cluster_leave_any(&mut self, project: &str, peer_id: &str) {
        if self.cluster.remove(project, peer_id).is_none() {
            return;
        }
        if let Some(locals) = self.local_peers(project, peer_id) {
            let left = Control::PeerLeft { peer_id }.to_json();
            for conn in locals {
                self.send_control(conn, left.clone());
            }
        }
    }

    /// Sends an `error` back to a peer of another node (counted like a local one).
    fn answer_remote(
        &mut self,
        node: &str,
        project: &str,
        peer_id: &str,
        session: u64,
        refusal: Refusal,
    ) {
        self.metrics.count_error(refusal.code);
        let message = Forward::Error {
            project: project.to_owned(),
            peer_id: peer_id.to_owned(),
            session,
            text: refusal.to_json(),
        };
        self.cluster.push(ClusterOutput::Send {
            node: node.to_owned(),
            message,
        });
        self.process_closes();
    }

    /// Answers a remote sender whose message was queued here but never sent (its
    /// [`Origin`] names the remote peer's handle). False when `sender` is no such handle.
    pub(super) fn undelivered_remote(&mut self, sender: ConnId, refusal: Refusal) -> bool {
        let Some((project, peer_id)) = self.cluster.handles.get(&sender).cloned() else {
            return false;
        };
        if let Some(r) = self.cluster.get(&project, &peer_id) {
            let (node, session) = (r.node.clone(), r.session);
            self.answer_remote(&node, &project, &peer_id, session, refusal);
        }
        true
    }

    /// Queues a relay frame for a local peer (counted as forwarded, or dropped when full).
    pub(super) fn queue_relay(&mut self, project: &str, target: ConnId, frame: Vec<u8>) {
        let length = frame.len() as u64;
        if !self.fits(target, frame.len()) {
            self.metrics
                .count_drop(super::super::metrics::DropReason::OverBudget);
            return;
        }
        let limits = self.queue_limits;
        let queued = self
            .conns
            .get_mut(&target)
            .is_some_and(|t| t.queue.push_relay(&limits, frame));
        if queued {
            self.account_add(length as usize);
            self.metrics.relay_blobs.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .relay_bytes
                .fetch_add(length, Ordering::Relaxed);
            if let Some(p) = self.projects.get_mut(project) {
                p.usage.relay_blobs += 1;
                p.usage.relay_bytes += length;
            }
            self.wake(target);
        } else {
            self.metrics
                .count_drop(super::super::metrics::DropReason::QueueFull);
        }
    }

    /// A signaling message for `to`, not joined here: forwarded when it is on another node.
    /// Returns the refusal for the sender when it cannot be sent; `None` when it was queued,
    /// and `Some(None)`... see the callers: `Err` carries the refusal to answer with.
    pub(super) fn forward_signal(
        &mut self,
        conn: ConnId,
        project: &str,
        from: &str,
        kind: SignalKind,
        to: &str,
        payload: &serde_json::value::RawValue,
        id: Option<u64>,
    ) -> Option<Result<(), Refusal>> {
        let node = self.cluster.get(project, to)?.node.clone();
        let message = Forward::Signal {
            project: project.to_owned(),
            to: to.to_owned(),
            from: from.to_owned(),
            session: conn,
            kind,
            id,
            text: forwarded_signal(kind, from, payload),
        };
        if self.cluster.push(ClusterOutput::Send { node, message }) {
            self.metrics.signals[kind as usize].fetch_add(1, Ordering::Relaxed);
            return Some(Ok(()));
        }
        Some(Err(Refusal {
            code: ErrorCode::Undelivered,
            message: format!("`{to}` is on another node, which cannot be reached now"),
            refers_to: Some(kind.as_str().to_owned()),
            id,
            to_peer_id: Some(to.to_owned()),
        }))
    }

    /// A relay frame for `to`, not joined here: forwarded when it is on another node (true;
    /// dropped and counted when it cannot be sent). False when no node has `to`.
    pub(super) fn forward_relay(
        &mut self,
        conn: ConnId,
        project: &str,
        from: &str,
        to: &str,
        frame: Vec<u8>,
    ) -> bool {
        let Some(node) = self.cluster.get(project, to).map(|r| r.node.clone()) else {
            return false;
        };
        let message = Forward::Relay {
            project: project.to_owned(),
            to: to.to_owned(),
            from: from.to_owned(),
            session: conn,
            frame,
        };
        self.cluster.push(ClusterOutput::Send { node, message });
        true
    }

    /// A local peer joined: announced to the cluster; a connection of the same peer id on
    /// another node is replaced (closed there with 4001).
    pub(super) fn cluster_joined(&mut self, conn: ConnId) {
        if self.cluster.settings.is_none() {
            return;
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let State::Joined {
            public_key,
            attestation,
        } = &c.state
        else {
            return;
        };
        let presence = Presence {
            project: c.identity.project.clone(),
            peer_id: c.identity.peer_id.clone(),
            session: conn,
            public_key: public_key.clone(),
            attestation: attestation.clone(),
            version: 0,
        };
        if let Some(old) = self.cluster.remove(&presence.project, &presence.peer_id) {
            let message = Forward::Replace {
                project: presence.project.clone(),
                peer_id: presence.peer_id.clone(),
                session: old.session,
            };
            self.cluster.push(ClusterOutput::Send {
                node: old.node,
                message,
            });
        }
        self.cluster.push_presence(ClusterOutput::Joined(presence));
    }

    /// A local peer left: announced to the cluster.
    pub(super) fn cluster_left(&mut self, conn: ConnId, project: &str, peer_id: &str) {
        if self.cluster.settings.is_none() {
            return;
        }
        self.cluster.push_presence(ClusterOutput::Left {
            project: project.to_owned(),
            peer_id: peer_id.to_owned(),
            session: conn,
        });
    }

    /// True when a remote peer `peer_id` of `project` is known (a local join then replaces it
    /// even though the project seems to lack it here).
    pub(super) fn has_remote(&self, project: &str, peer_id: &str) -> bool {
        self.cluster.get(project, peer_id).is_some()
    }

    /// The remote peers of `project` for a `welcome`, leaving out the ids in `local`.
    pub(super) fn remote_infos<'a>(
        &'a self,
        project: &str,
        local: &[PeerInfo<'a>],
    ) -> Vec<PeerInfo<'a>> {
        let Some(peers) = self.cluster.remote.get(project) else {
            return Vec::new();
        };
        peers
            .iter()
            .filter(|(id, _)| !local.iter().any(|l| l.peer_id == id.as_str()))
            .map(|(id, r)| PeerInfo {
                peer_id: id,
                public_key: &r.public_key,
                attestation: r.attestation.as_deref(),
            })
            .collect()
    }
}
