//! What a node publishes about itself ([`NodeLoad`]), and the pure choices made from what the
//! nodes published: the order the ICE-servers answers list them in ([`order_for_ice`]) and the
//! alternates a draining node sends new allocations to ([`alternates`]). No I/O, no clock.

use serde::{Deserialize, Serialize};

use crate::proto::alternate::{Alternate, Alternates, MAX_ALTERNATES, parse_turn_address};

/// Longest encoded [`NodeLoad`] accepted from Redis; longer records are ignored.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;
/// Most URIs a record may list (per list); a record with more is ignored.
pub const MAX_URIS: usize = 16;
/// Longest URI in a record; a record with a longer one is ignored.
pub const MAX_URI_BYTES: usize = 256;
/// Relayed bandwidth that weighs as much as one allocation in [`NodeLoad::score`]: 1 Mbit/s.
pub const BYTES_PER_SEC_PER_ALLOCATION: u64 = 125_000;

/// One node's published state, as JSON in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLoad {
    /// The node's `cluster.node_id`.
    pub node: String,
    /// Live allocations (every transport).
    pub allocations: u64,
    /// Bytes relayed per second (both directions), averaged since the previous publication.
    pub relayed_bytes_per_sec: u64,
    /// True once the node drains: it takes no new allocation.
    pub draining: bool,
    /// The client-facing URIs handed out in `iceServers` (`turn:`, `turns:`, `stun:`).
    pub uris: Vec<String>,
    /// `turn:`/`turns:` URIs with IP-literal hosts, for ALTERNATE-SERVER.
    pub alternates: Vec<String>,
}

impl NodeLoad {
    /// How loaded the node is, as a number of allocations: its allocations plus its relayed
    /// bandwidth counted at one allocation per [`BYTES_PER_SEC_PER_ALLOCATION`]. Lower is
    /// better.
    pub fn score(&self) -> u64 {
        self.allocations
            .saturating_add(self.relayed_bytes_per_sec / BYTES_PER_SEC_PER_ALLOCATION)
    }

    /// The record as stored in Redis.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a NodeLoad always serialises")
    }

    /// A record read from Redis, or `None` when it is too long, not a record, or lists too
    /// many or too long URIs (a bad record is ignored, never trusted).
    pub fn decode(bytes: &[u8]) -> Option<NodeLoad> {
        if bytes.len() > MAX_RECORD_BYTES {
            return None;
        }
        let load: NodeLoad = serde_json::from_slice(bytes).ok()?;
        let sane = |list: &[String]| {
            list.len() <= MAX_URIS && list.iter().all(|u| u.len() <= MAX_URI_BYTES)
        };
        (sane(&load.uris) && sane(&load.alternates) && !load.node.is_empty()).then_some(load)
    }
}

/// The nodes an `iceServers` answer lists, least loaded first: draining nodes and nodes without
/// URIs are left out, ties are broken by node id (so every node answers the same order), and at
/// most `max` are kept.
pub fn order_for_ice(nodes: &[NodeLoad], max: usize) -> Vec<&NodeLoad> {
    let mut live: Vec<&NodeLoad> = nodes
        .iter()
        .filter(|n| !n.draining && !n.uris.is_empty())
        .collect();
    live.sort_by(|a, b| a.score().cmp(&b.score()).then_with(|| a.node.cmp(&b.node)));
    live.dedup_by(|a, b| a.node == b.node);
    live.truncate(max);
    live
}

/// Where a draining node sends new allocations: first the configured `fleet.alternate_servers`
/// (`configured`), then the alternates of the live, non-draining nodes other than `own_node`,
/// least loaded first; URIs that do not parse are skipped; at most [`MAX_ALTERNATES`].
pub fn alternates(configured: &[Alternate], nodes: &[NodeLoad], own_node: &str) -> Alternates {
    let mut list: Vec<Alternate> = configured.to_vec();
    let others: Vec<NodeLoad> = nodes
        .iter()
        .filter(|n| n.node != own_node)
        .cloned()
        .map(|mut n| {
            // Ordered like iceServers, which needs URIs: a node is listed by its alternates.
            n.uris = n.alternates.clone();
            n
        })
        .collect();
    for node in order_for_ice(&others, usize::MAX) {
        for uri in &node.alternates {
            if let Ok(alternate) = parse_turn_address(uri) {
                if !list.contains(&alternate) {
                    list.push(alternate);
                }
            }
        }
    }
    list.truncate(MAX_ALTERNATES);
    Alternates::new(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Transport;

    fn node(id: &str, allocations: u64, bps: u64, draining: bool) -> NodeLoad {
        NodeLoad {
            node: id.into(),
            allocations,
            relayed_bytes_per_sec: bps,
            draining,
            uris: vec![format!("turn:{id}.example:3478?transport=udp")],
            alternates: vec![format!(
                "turn:192.0.2.{}:3478?transport=udp",
                id.len() + allocations as usize
            )],
        }
    }

    fn ids(list: &[&NodeLoad]) -> Vec<String> {
        list.iter().map(|n| n.node.clone()).collect()
    }

    #[test]
    fn least_loaded_first_draining_left_out_ties_by_id_bounded() {
        let nodes = vec![
            node("c", 5, 0, false),
            node("a", 2, 0, false),
            node("d", 0, 0, true),
            node("b", 2, 0, false),
            // 10 Mbit/s weighs ten allocations.
            node("e", 0, 10 * BYTES_PER_SEC_PER_ALLOCATION, false),
        ];
        assert_eq!(ids(&order_for_ice(&nodes, 10)), ["a", "b", "c", "e"]);
        assert_eq!(ids(&order_for_ice(&nodes, 2)), ["a", "b"]);
        // Load moves: the order follows.
        let mut moved = nodes.clone();
        moved[1].allocations = 50;
        assert_eq!(ids(&order_for_ice(&moved, 10)), ["b", "c", "e", "a"]);
        // A node without URIs cannot be listed.
        let mut bare = node("f", 0, 0, false);
        bare.uris.clear();
        assert!(order_for_ice(&[bare], 10).is_empty());
    }

    #[test]
    fn alternates_put_configured_first_then_live_others_least_loaded_first() {
        let configured = [parse_turn_address("turn:198.51.100.1:3478").unwrap()];
        let mut a = node("a", 9, 0, false);
        a.alternates = vec!["turn:192.0.2.1:3478?transport=udp".into()];
        let mut b = node("b", 1, 0, false);
        b.alternates = vec![
            "turn:192.0.2.2:3478?transport=udp".into(),
            "turns:192.0.2.2:5349?transport=tcp".into(),
            "turn:b.example:3478".into(),
        ];
        let mut own = node("me", 0, 0, false);
        own.alternates = vec!["turn:192.0.2.9:3478".into()];
        let mut draining = node("d", 0, 0, true);
        draining.alternates = vec!["turn:192.0.2.4:3478".into()];
        let list = alternates(&configured, &[a, own, draining, b], "me");
        let got: Vec<String> = list
            .as_slice()
            .iter()
            .map(|a| format!("{}/{}", a.transport.as_str(), a.address))
            .collect();
        assert_eq!(
            got,
            [
                "udp/198.51.100.1:3478",
                "udp/192.0.2.2:3478",
                "tls/192.0.2.2:5349",
                "udp/192.0.2.1:3478"
            ]
        );
        let client = "203.0.113.5:40000".parse().unwrap();
        let own_addr = "192.0.2.9:3478".parse().unwrap();
        assert_eq!(
            list.choose(Transport::Tls, client, own_addr),
            Some("192.0.2.2:5349".parse().unwrap())
        );
        assert!(alternates(&[], &[], "me").is_empty());
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_ignored() {
        let n = node("a", 3, 7, false);
        assert_eq!(NodeLoad::decode(n.encode().as_bytes()), Some(n.clone()));
        assert_eq!(NodeLoad::decode(b"not json"), None);
        assert_eq!(NodeLoad::decode(b"{\"node\":\"a\"}"), None);
        let mut many = n.clone();
        many.uris = vec!["turn:x".into(); MAX_URIS + 1];
        assert_eq!(NodeLoad::decode(many.encode().as_bytes()), None);
        let mut long = n.clone();
        long.alternates = vec!["t".repeat(MAX_URI_BYTES + 1)];
        assert_eq!(NodeLoad::decode(long.encode().as_bytes()), None);
        let huge = format!("{:width$}", "", width = MAX_RECORD_BYTES + 1);
        assert_eq!(NodeLoad::decode(huge.as_bytes()), None);
        let mut nameless = n;
        nameless.node.clear();
        assert_eq!(NodeLoad::decode(nameless.encode().as_bytes()), None);
    }
}
