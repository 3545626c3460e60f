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
use std::sync::atomic::Ordering;

use super::super::messages::{ErrorCode, Refusal, SignalKind};
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

mod deliver;
mod metrics;
mod view;

pub use metrics::ClusterMetrics;
use metrics::{ClusterDrop, kind_index};

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
}
