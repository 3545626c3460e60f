//! The `[fleet]` section: several TURN nodes behind one name. Where a draining node sends new
//! allocations (`alternate_servers`), and, with `[cluster] redis_url`, how long the load a node
//! publishes stays valid and how many nodes the ICE-servers answers list.

use serde::Deserialize;

use super::validate::{Invalid, invalid};
use crate::proto::alternate::{MAX_ALTERNATES, parse_turn_address};

/// The `[fleet]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// TURN URIs with IP-literal hosts a draining node sends new Allocates to (300 Try
    /// Alternate), before any live node of the cluster.
    pub alternate_servers: Vec<String>,
    /// Seconds a node's published load stays in Redis without a refresh; a node silent for
    /// longer is dead to the others. It publishes every quarter of this (at least every second).
    pub load_ttl_secs: u64,
    /// Most nodes listed by `/api/v1/ice-servers` and the registry's `ice_servers`.
    pub ice_servers_nodes: usize,
}

impl Default for FleetConfig {
    fn default() -> FleetConfig {
        FleetConfig {
            alternate_servers: Vec::new(),
            load_ttl_secs: 10,
            ice_servers_nodes: 3,
        }
    }
}

/// The range of `fleet.load_ttl_secs`.
pub const LOAD_TTL_RANGE: std::ops::RangeInclusive<u64> = 2..=300;
/// The range of `fleet.ice_servers_nodes`.
pub const ICE_SERVERS_NODES_RANGE: std::ops::RangeInclusive<usize> = 1..=16;

/// Checks the section: every alternate a TURN URI with an IP host, bounded counts.
pub(super) fn validate(fleet: &FleetConfig) -> Result<(), Invalid> {
    if fleet.alternate_servers.len() > MAX_ALTERNATES {
        return Err(invalid(
            "fleet.alternate_servers",
            format!("at most {MAX_ALTERNATES} entries"),
        ));
    }
    for (i, uri) in fleet.alternate_servers.iter().enumerate() {
        if let Err(error) = parse_turn_address(uri) {
            return Err(invalid(
                format!("fleet.alternate_servers[{i}]"),
                format!("{uri:.100}: {error}"),
            ));
        }
    }
    if !LOAD_TTL_RANGE.contains(&fleet.load_ttl_secs) {
        return Err(invalid(
            "fleet.load_ttl_secs",
            format!(
                "must be between {} and {} seconds",
                LOAD_TTL_RANGE.start(),
                LOAD_TTL_RANGE.end()
            ),
        ));
    }
    if !ICE_SERVERS_NODES_RANGE.contains(&fleet.ice_servers_nodes) {
        return Err(invalid(
            "fleet.ice_servers_nodes",
            format!(
                "must be between {} and {}",
                ICE_SERVERS_NODES_RANGE.start(),
                ICE_SERVERS_NODES_RANGE.end()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(validate(&FleetConfig::default()).is_ok());
        let ok = FleetConfig {
            alternate_servers: vec![
                "turn:192.0.2.7:3478?transport=udp".into(),
                "turns:[2001:db8::7]:443".into(),
            ],
            ..FleetConfig::default()
        };
        assert!(validate(&ok).is_ok());
        let cases = [
            (
                FleetConfig {
                    alternate_servers: vec!["turn:192.0.2.7".into(), "turn:a.example".into()],
                    ..FleetConfig::default()
                },
                "fleet.alternate_servers[1]",
            ),
            (
                FleetConfig {
                    load_ttl_secs: 1,
                    ..FleetConfig::default()
                },
                "fleet.load_ttl_secs",
            ),
            (
                FleetConfig {
                    ice_servers_nodes: 0,
                    ..FleetConfig::default()
                },
                "fleet.ice_servers_nodes",
            ),
        ];
        for (config, key) in cases {
            assert_eq!(validate(&config).unwrap_err().key, key);
        }
    }
}
