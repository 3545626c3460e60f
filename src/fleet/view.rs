//! What this node knows of the fleet: its own load, the other nodes' last records from Redis,
//! and whether Redis answers. Written by the publishing task ([`super::publish`]), read by the
//! ICE-servers endpoint, the registry's `ice_servers` and `/metrics`, without a lock on either
//! side (ArcSwap snapshots and atomics).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::load::{NodeLoad, alternates, order_for_ice};
use crate::proto::alternate::{Alternate, Alternates};

/// This node's view of the fleet.
pub struct Fleet {
    node: String,
    ice_nodes: usize,
    configured: Vec<Alternate>,
    /// This node's own record, refreshed by the publishing task.
    local: ArcSwap<NodeLoad>,
    /// The URIs this node is listed with.
    uris: ArcSwap<Vec<String>>,
    /// The other nodes' live records, as last read from Redis (empty while Redis is down).
    others: ArcSwap<Vec<NodeLoad>>,
    redis_up: AtomicBool,
    publishes_ok: AtomicU64,
    publishes_failed: AtomicU64,
    local_only_answers: AtomicU64,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("node", &self.node)
            .field("redis_up", &self.redis_up)
            .finish_non_exhaustive()
    }
}

/// What `/metrics` reports about the fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetSnapshot {
    /// True when the last exchange with Redis succeeded.
    pub redis_up: bool,
    /// Live nodes known, this one included, that take allocations.
    pub nodes_ready: u64,
    /// Live nodes known, this one included, that drain.
    pub nodes_draining: u64,
    /// Publications of this node's load that Redis took.
    pub publishes_ok: u64,
    /// Publications (or reads) that failed: Redis down, slow or refusing.
    pub publishes_failed: u64,
    /// `iceServers` answers that listed this node alone because Redis was down.
    pub local_only_answers: u64,
    /// Alternates a draining core would choose from now.
    pub alternates: u64,
}

impl Fleet {
    /// The view of node `node` whose own record starts as `local` (not draining, no load),
    /// listing at most `ice_nodes` nodes in `iceServers`, with `configured` alternates first.
    pub fn new(local: NodeLoad, ice_nodes: usize, configured: Vec<Alternate>) -> Fleet {
        Fleet {
            node: local.node.clone(),
            ice_nodes: ice_nodes.max(1),
            configured,
            uris: ArcSwap::from_pointee(local.uris.clone()),
            local: ArcSwap::from_pointee(local),
            others: ArcSwap::default(),
            redis_up: AtomicBool::new(false),
            publishes_ok: AtomicU64::new(0),
            publishes_failed: AtomicU64::new(0),
            local_only_answers: AtomicU64::new(0),
        }
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This node's current record.
    pub fn local(&self) -> Arc<NodeLoad> {
        self.local.load_full()
    }

    /// Replaces this node's load (the publishing task, once per period); its URIs stay those
    /// of [`Fleet::set_uris`].
    pub fn set_local(&self, mut load: NodeLoad) {
        load.uris = Vec::clone(&self.uris.load());
        self.local.store(Arc::new(load));
    }

    /// Replaces the URIs this node is listed with (a reload of `http.public_host`).
    pub fn set_uris(&self, uris: Vec<String>) {
        self.uris.store(Arc::new(uris.clone()));
        let mut local = NodeLoad::clone(&self.local.load());
        local.uris = uris;
        self.local.store(Arc::new(local));
    }

    /// Records a successful exchange with Redis and the other nodes' live records.
    pub fn redis_ok(&self, others: Vec<NodeLoad>) {
        let own = &self.node;
        let others: Vec<NodeLoad> = others.into_iter().filter(|n| &n.node != own).collect();
        self.others.store(Arc::new(others));
        self.publishes_ok.fetch_add(1, Ordering::Relaxed);
        if !self.redis_up.swap(true, Ordering::Relaxed) {
            tracing::info!("fleet: Redis answers; listing the fleet's nodes");
        }
    }

    /// Records a failed exchange: the view falls back to this node alone.
    pub fn redis_failed(&self, error: &str) {
        self.others.store(Arc::default());
        self.publishes_failed.fetch_add(1, Ordering::Relaxed);
        if self.redis_up.swap(false, Ordering::Relaxed) || self.publishes_ok() == 0 {
            tracing::warn!(
                %error,
                "fleet: Redis unavailable; iceServers list this node alone and drain alternates \
                 come from fleet.alternate_servers only, until it answers again"
            );
        }
    }

    fn publishes_ok(&self) -> u64 {
        self.publishes_ok.load(Ordering::Relaxed)
    }

    /// True when the last exchange with Redis succeeded.
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Every live node known: this one and the others.
    fn nodes(&self) -> Vec<NodeLoad> {
        let mut nodes = Vec::clone(&self.others.load());
        nodes.push(NodeLoad::clone(&self.local.load()));
        nodes
    }

    /// The URI lists `iceServers` answers carry, one per node, least loaded first, draining
    /// nodes left out; at most `fleet.ice_servers_nodes`. With Redis down, this node's alone
    /// (counted); when every node known drains, this node's too (a client still needs a
    /// server, and existing allocations are served).
    pub fn ice_uris(&self) -> Vec<Vec<String>> {
        if !self.redis_up() {
            self.local_only_answers.fetch_add(1, Ordering::Relaxed);
            return vec![self.local.load().uris.clone()];
        }
        let nodes = self.nodes();
        let ordered: Vec<Vec<String>> = order_for_ice(&nodes, self.ice_nodes)
            .into_iter()
            .map(|n| n.uris.clone())
            .collect();
        if ordered.is_empty() {
            return vec![self.local.load().uris.clone()];
        }
        ordered
    }

    /// The alternates a draining core sends new Allocates to: the configured ones, then the
    /// live, non-draining other nodes', least loaded first.
    pub fn alternates(&self) -> Alternates {
        alternates(&self.configured, &self.others.load(), &self.node)
    }

    /// What `/metrics` reports.
    pub fn snapshot(&self) -> FleetSnapshot {
        let nodes = self.nodes();
        let draining = nodes.iter().filter(|n| n.draining).count() as u64;
        FleetSnapshot {
            redis_up: self.redis_up(),
            nodes_ready: nodes.len() as u64 - draining,
            nodes_draining: draining,
            publishes_ok: self.publishes_ok(),
            publishes_failed: self.publishes_failed.load(Ordering::Relaxed),
            local_only_answers: self.local_only_answers.load(Ordering::Relaxed),
            alternates: self.alternates().as_slice().len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, allocations: u64, draining: bool) -> NodeLoad {
        NodeLoad {
            node: id.into(),
            allocations,
            relayed_bytes_per_sec: 0,
            draining,
            uris: vec![format!("turn:{id}.example")],
            alternates: vec![format!("turn:192.0.2.{}", id.len())],
        }
    }

    #[test]
    fn redis_down_means_this_node_alone_and_counted() {
        let fleet = Fleet::new(node("me", 5, false), 3, Vec::new());
        assert_eq!(fleet.ice_uris(), [["turn:me.example"]]);
        fleet.redis_ok(vec![node("other", 1, false), node("me", 99, true)]);
        assert_eq!(
            fleet.ice_uris(),
            [["turn:other.example"], ["turn:me.example"]],
            "the local record wins over this node's own record read back from Redis"
        );
        assert_eq!(fleet.alternates().as_slice().len(), 1);
        fleet.redis_failed("connection refused");
        assert_eq!(fleet.ice_uris(), [["turn:me.example"]]);
        assert!(fleet.alternates().is_empty());
        let snapshot = fleet.snapshot();
        assert!(!snapshot.redis_up);
        assert_eq!(snapshot.local_only_answers, 2);
        assert_eq!((snapshot.publishes_ok, snapshot.publishes_failed), (1, 1));
    }

    #[test]
    fn a_draining_node_is_left_out_unless_every_node_drains() {
        let fleet = Fleet::new(node("me", 0, true), 3, Vec::new());
        fleet.redis_ok(vec![node("b", 7, false)]);
        assert_eq!(fleet.ice_uris(), [["turn:b.example"]]);
        fleet.redis_ok(vec![node("b", 7, true)]);
        assert_eq!(fleet.ice_uris(), [["turn:me.example"]]);
        let snapshot = fleet.snapshot();
        assert_eq!((snapshot.nodes_ready, snapshot.nodes_draining), (0, 2));
    }
}
