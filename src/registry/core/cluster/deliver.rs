//! Messages between nodes: what goes out to a remote peer's node, what comes in from others,
//! and the errors that travel back to a sender on another node.

use std::sync::atomic::Ordering;

use super::super::super::messages::{
    CloseReason, ErrorCode, Refusal, SignalKind, forwarded_signal,
};
use super::super::super::queue::Origin;
use super::super::{ConnId, Registry};
use super::{ClusterOutput, Forward, kind_index};

impl Registry {
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
                if !self.fits(target, text.len()) {
                    let refusal = refusal(
                        ErrorCode::OverBudget,
                        format!("`{to}` has more queued than its memory budget"),
                    );
                    return self.answer_remote(from_node, &project, &from, session, refusal);
                }
                let length = text.len();
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
                self.account_add(length);
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
                        .count_drop(super::super::super::metrics::DropReason::UnknownPeer);
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
    pub(in crate::registry::core) fn local_peer(
        &self,
        project: &str,
        peer_id: &str,
    ) -> Option<ConnId> {
        self.projects.get(project)?.peers.get(peer_id).copied()
    }
    /// Sends an `error` back to a peer of another node (counted like a local one).
    pub(in crate::registry::core) fn answer_remote(
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
    pub(in crate::registry::core) fn undelivered_remote(
        &mut self,
        sender: ConnId,
        refusal: Refusal,
    ) -> bool {
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
    pub(in crate::registry::core) fn queue_relay(
        &mut self,
        project: &str,
        target: ConnId,
        frame: Vec<u8>,
    ) {
        let length = frame.len() as u64;
        if !self.fits(target, frame.len()) {
            self.metrics
                .count_drop(super::super::super::metrics::DropReason::OverBudget);
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
                .count_drop(super::super::super::metrics::DropReason::QueueFull);
        }
    }
    /// A signaling message from `conn` for `to`, who is not joined here: `None` when no node
    /// has `to`; `Some(Ok)` when it was queued for `to`'s node; `Some(Err)` with the refusal
    /// to answer when it cannot be sent (link down, queue full).
    pub(in crate::registry::core) fn forward_signal(
        &mut self,
        conn: ConnId,
        kind: SignalKind,
        to: &str,
        payload: &serde_json::value::RawValue,
        id: Option<u64>,
    ) -> Option<Result<(), Refusal>> {
        let c = self.conns.get(&conn)?;
        let (project, from) = (c.identity.project.as_str(), c.identity.peer_id.as_str());
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
    pub(in crate::registry::core) fn forward_relay(
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
}
