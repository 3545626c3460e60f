//! The remote view: peers of other nodes, as presence reports them, and this node's joins
//! and leaves announced to the others.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::super::super::messages::{Control, PeerInfo};
use super::super::{ConnId, Registry, State};
use super::{ClusterDrop, ClusterOutput, Forward, Presence, Remote};

impl Registry {
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
    /// The local peers of `project` other than `peer_id`; `None` when `peer_id` is joined on
    /// this node (it hides the remote one: nothing to tell).
    pub(in crate::registry::core) fn local_peers(
        &self,
        project: &str,
        peer_id: &str,
    ) -> Option<Vec<ConnId>> {
        let Some(p) = self.projects.get(project) else {
            return Some(Vec::new());
        };
        if p.peers.contains_key(peer_id) {
            return None;
        }
        Some(p.peers.values().copied().collect())
    }
    /// Takes a remote peer out of the view; the local peers of its project get `peer_left`.
    pub(in crate::registry::core) fn cluster_leave_any(&mut self, project: &str, peer_id: &str) {
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
    /// A local peer joined: announced to the cluster; a connection of the same peer id on
    /// another node is replaced (closed there with 4001).
    pub(in crate::registry::core) fn cluster_joined(&mut self, conn: ConnId) {
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
    pub(in crate::registry::core) fn cluster_left(
        &mut self,
        conn: ConnId,
        project: &str,
        peer_id: &str,
    ) {
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
    pub(in crate::registry::core) fn has_remote(&self, project: &str, peer_id: &str) -> bool {
        self.cluster.get(project, peer_id).is_some()
    }
    /// The remote peers of `project` for a `welcome`, leaving out the ids in `local`.
    pub(in crate::registry::core) fn remote_infos<'a>(
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
