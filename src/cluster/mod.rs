//! The registry cluster: several turnpike nodes whose registries share presence and forward
//! messages to each other through one Redis (`[cluster] redis_url`; README "Running several
//! nodes", docs/registry-protocol.md §9).
//!
//! The registry core stays sans-IO: it keeps the view of the peers joined on other nodes and
//! emits [`crate::registry::ClusterOutput`]s; this module is the I/O around it.
//!
//! - [`wire`]: the Redis keys and channels, presence records and events, and the binary
//!   messages between nodes.
//! - [`link`]: the task that keeps this node's presence in Redis with a TTL, follows the
//!   other nodes', carries messages both ways, and survives Redis going away.
//!
//! Redis layout (prefix `turnpike:registry:`): `presence:NODE` is a hash of the node's joined
//! peers (`PROJECT PEER` → session, public key, attestation) that expires unless the node
//! refreshes it; `nodes` is a sorted set of node ids scored by when their presence expires;
//! the channel `presence` announces joins, leaves, `hello` (a node rewrote its presence: read
//! it) and `bye` (a node stopped); the channel `inbox:NODE` carries signaling messages, relay
//! blobs, errors and replacements for the peers of NODE. One publishing connection per node,
//! one subscribing connection per node: messages from one sender reach their destination in
//! the order it sent them.
//!
//! Bounds: what waits to go to Redis is bounded in bytes in the core
//! (`cluster.forward_queue_bytes`); what comes from Redis is handed to the core as it arrives
//! (whose per-peer queues are bounded), and a subscriber that falls behind is cut off by Redis
//! itself (`client-output-buffer-limit pubsub`, 32 MB by default), which ends the session: the
//! node reconnects and rebuilds its presence.

pub mod link;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::http::Health;
use crate::registry::{ClusterSettings, RegistryState};

/// Starts the registry's cluster link when `[cluster] redis_url` is set and the registry is
/// enabled; it runs until `stop` turns true.
pub fn start(
    config: &Config,
    registry: &RegistryState,
    health: Arc<Health>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let Some(url) = config.cluster.redis_url.clone() else {
        return;
    };
    let settings = ClusterSettings {
        max_outbox_bytes: config.cluster.forward_queue_bytes as usize,
        max_remote_peers: config.cluster.max_remote_peers as usize,
    };
    let notify = registry.enable_cluster(settings);
    let link = link::LinkConfig {
        redis_url: url,
        node: crate::fleet::setup::node_id(config),
        ttl: Duration::from_secs(config.cluster.presence_ttl_secs),
    };
    tracing::info!(node = %link.node, "registry cluster: sharing presence through Redis");
    tokio::spawn(link::run(registry.clone(), link, notify, health, stop));
}
