//! Counters of the cluster seam (docs/metrics.md), read at scrape time.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::super::super::metrics::{Sample, SampleKind};
use super::Forward;

/// Counters of cluster traffic (docs/metrics.md), read at scrape time.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// 1 while the link to Redis is up (set by the I/O layer).
    pub up: AtomicI64,
    pub(crate) remote_peers: AtomicI64,
    /// Times the link to Redis was established (the first time included).
    pub connects: AtomicU64,
    /// Presence rewritten as a whole (after a reconnection or a lost change).
    pub presence_rebuilds: AtomicU64,
    pub(crate) sent: [AtomicU64; 4],
    pub(crate) received: [AtomicU64; 4],
    pub(crate) dropped: [AtomicU64; 3],
    pub(crate) outbox_bytes: AtomicI64,
}

/// Why something for another node was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClusterDrop {
    /// The link to Redis is down.
    LinkDown,
    /// The queue to Redis is over `cluster.forward_queue_bytes`.
    QueueFull,
    /// The remote view is full (`cluster.max_remote_peers`).
    ViewFull,
}

const FORWARD_KINDS: [&str; 4] = ["signal", "relay", "error", "replace"];
const DROP_REASONS: [&str; 3] = ["link_down", "queue_full", "view_full"];

pub(crate) fn kind_index(message: &Forward) -> usize {
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

    pub(crate) fn count_drop(&self, reason: ClusterDrop) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}
