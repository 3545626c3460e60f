//! Builds this node's fleet view from the configuration: its id, the URIs it is listed with,
//! the IP-literal addresses it offers as an alternate, and the configured alternates.

use crate::config::{Config, client_uris};
use crate::proto::alternate::parse_turn_address;

use super::load::NodeLoad;
use super::view::Fleet;

/// The node id: `cluster.node_id`, else the host name, else `turnpike`.
pub fn node_id(config: &Config) -> String {
    config.cluster.node_id.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "turnpike".to_owned())
    })
}

/// The fleet view of this node, when it is part of one: `[cluster] redis_url` or
/// `fleet.alternate_servers` set. `None` otherwise (a node alone: nothing changes).
pub fn fleet(config: &Config) -> Option<Fleet> {
    if config.cluster.redis_url.is_none() && config.fleet.alternate_servers.is_empty() {
        return None;
    }
    // What other nodes may send clients to: our listeners with IP hosts (relay.external_ip or
    // the listener's address), as `turn:`/`turns:` URIs.
    let alternates = client_uris(config)
        .into_iter()
        .filter(|uri| parse_turn_address(uri).is_ok())
        .collect();
    let local = NodeLoad {
        node: node_id(config),
        allocations: 0,
        relayed_bytes_per_sec: 0,
        draining: false,
        uris: crate::http::ice::uris(config),
        alternates,
    };
    let configured = config
        .fleet
        .alternate_servers
        .iter()
        .filter_map(|uri| parse_turn_address(uri).ok())
        .collect();
    Some(Fleet::new(
        local,
        config.fleet.ice_servers_nodes,
        configured,
    ))
}
