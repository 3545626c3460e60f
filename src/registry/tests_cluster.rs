//! Unit tests of the registry core's cluster seam: remote presence in, outputs to other nodes
//! out, with a fake clock and no Redis.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::config::RegistryConfig;
use super::core::{
    ClusterOutput, ClusterSettings, ConnId, Forward, Identity, Lease, NoAuthority, Presence,
    Registry,
};
use super::messages::SignalKind;
use super::metrics::RegistryMetrics;
use super::queue::Transmit;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

fn key(n: u8) -> String {
    BASE64.encode([n; 32])
}

fn registry(max_outbox_bytes: usize) -> Registry {
    let mut core = Registry::new(
        RegistryConfig::default(),
        Arc::new(RegistryMetrics::default()),
    );
    core.enable_cluster(ClusterSettings {
        max_outbox_bytes,
        max_remote_peers: 3,
    });
    core.cluster_link(true);
    core
}

fn join(core: &mut Registry, peer: &str, n: u8) -> (ConnId, Value) {
    let identity = Identity {
        peer_id: peer.into(),
        project: "p".into(),
        pinned_key: None,
        expires_at: 0,
    };
    let conn = core
        .connect(Instant::now(), IP, identity, Lease::default())
        .unwrap();
    let join = json!({"type": "join", "public_key": key(n)}).to_string();
    core.handle_text(Instant::now(), conn, &join, &NoAuthority);
    let welcome = texts(core, conn).remove(0);
    assert_eq!(welcome["type"], "welcome");
    (conn, welcome)
}

fn texts(core: &mut Registry, conn: ConnId) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(t) = core.poll_transmit(conn) {
        if let Transmit::Text(text) = t {
            out.push(serde_json::from_str(&text).unwrap());
        }
    }
    out
}

fn outputs(core: &mut Registry) -> Vec<ClusterOutput> {
    std::iter::from_fn(|| core.poll_cluster()).collect()
}

fn remote(peer: &str, session: u64, version: u64) -> Presence {
    Presence {
        project: "p".into(),
        peer_id: peer.into(),
        session,
        public_key: key(9),
        attestation: None,
        version,
    }
}

#[test]
fn remote_peers_are_listed_announced_and_stale_records_lose() {
    let mut core = registry(1 << 20);
    core.cluster_presence("n2", remote("bob", 7, 100));
    let (alice, welcome) = join(&mut core, "alice", 1);
    assert_eq!(welcome["peers"][0]["peer_id"], "bob", "{welcome}");
    assert!(matches!(&outputs(&mut core)[..], [ClusterOutput::Joined(p)] if p.peer_id == "alice"));
    core.cluster_presence("n3", remote("carol", 1, 100));
    assert_eq!(texts(&mut core, alice)[0]["type"], "peer_joined");
    // An older record of bob (a dead node's) does not replace the newer one.
    core.cluster_presence("n9", remote("bob", 1, 50));
    assert!(texts(&mut core, alice).is_empty());
    // A leave of another session is ignored; of this one, announced.
    core.cluster_leave("n2", "p", "bob", 8);
    assert!(texts(&mut core, alice).is_empty());
    core.cluster_leave("n2", "p", "bob", 7);
    assert_eq!(
        texts(&mut core, alice)[0],
        json!({"type": "peer_left", "peer_id": "bob"})
    );
    // A node's view replaces what it held: carol (n3) is gone.
    core.cluster_node_view("n3", Vec::new());
    assert_eq!(texts(&mut core, alice)[0]["peer_id"], "carol");
    assert!(core.cluster_nodes().is_empty());
}

#[test]
fn signals_for_remote_peers_go_out_or_are_answered_undelivered() {
    let mut core = registry(1 << 20);
    let (alice, _) = join(&mut core, "alice", 1);
    core.cluster_presence("n2", remote("bob", 7, 1));
    texts(&mut core, alice);
    outputs(&mut core);
    let offer =
        json!({"type": "webrtc_offer", "to_peer_id": "bob", "payload": {"sdp": 1}, "id": 4});
    core.handle_text(Instant::now(), alice, &offer.to_string(), &NoAuthority);
    match &outputs(&mut core)[..] {
        [
            ClusterOutput::Send {
                node,
                message:
                    Forward::Signal {
                        to, from, id, text, ..
                    },
            },
        ] => {
            assert_eq!(
                (node.as_str(), to.as_str(), from.as_str(), *id),
                ("n2", "bob", "alice", Some(4))
            );
            assert_eq!(
                serde_json::from_str::<Value>(text).unwrap()["from_peer_id"],
                "alice"
            );
        }
        other => panic!("{other:?}"),
    }
    // Link down: answered at once.
    core.cluster_link(false);
    core.handle_text(Instant::now(), alice, &offer.to_string(), &NoAuthority);
    let error = texts(&mut core, alice).remove(0);
    assert_eq!(
        (error["code"].as_str(), error["id"].as_u64()),
        (Some("undelivered"), Some(4))
    );
    // Taken but not sent (Redis failed mid-pipeline): answered too.
    core.cluster_link(true);
    core.handle_text(Instant::now(), alice, &offer.to_string(), &NoAuthority);
    let taken = outputs(&mut core);
    core.cluster_undeliverable(taken);
    assert_eq!(texts(&mut core, alice)[0]["code"], "undelivered");
}

#[test]
fn the_queue_to_redis_is_bounded_in_bytes() {
    let mut core = registry(1024);
    let (alice, _) = join(&mut core, "alice", 1);
    core.cluster_presence("n2", remote("bob", 7, 1));
    texts(&mut core, alice);
    let big = "x".repeat(300);
    let mut refused = 0;
    for _ in 0..10 {
        let offer = json!({"type": "webrtc_offer", "to_peer_id": "bob", "payload": big});
        core.handle_text(Instant::now(), alice, &offer.to_string(), &NoAuthority);
        refused += texts(&mut core, alice)
            .iter()
            .filter(|e| e["code"] == "undelivered")
            .count();
    }
    let queued = outputs(&mut core).len();
    assert!(
        queued >= 1 && queued + refused == 10 + 1,
        "{queued} + {refused}"
    );
    let dropped = core.cluster_metrics().samples();
    assert!(
        dropped
            .iter()
            .any(|s| s.label == Some(("reason", "queue_full")) && s.value > 0)
    );
}

#[test]
fn deliveries_from_other_nodes_and_errors_back() {
    let mut core = registry(1 << 20);
    let (alice, _) = join(&mut core, "alice", 1);
    core.cluster_presence("n2", remote("bob", 7, 1));
    texts(&mut core, alice);
    outputs(&mut core);
    let signal = |to: &str| Forward::Signal {
        project: "p".into(),
        to: to.into(),
        from: "bob".into(),
        session: 7,
        kind: SignalKind::Answer,
        id: Some(2),
        text: "{\"type\":\"webrtc_answer\",\"from_peer_id\":\"bob\",\"payload\":1}".into(),
    };
    core.cluster_receive("n2", signal("alice"));
    assert_eq!(texts(&mut core, alice)[0]["from_peer_id"], "bob");
    // For a peer this node does not have: unknown_peer back to bob's node and session.
    core.cluster_receive("n2", signal("nobody"));
    match &outputs(&mut core)[..] {
        [
            ClusterOutput::Send {
                node,
                message:
                    Forward::Error {
                        peer_id,
                        session,
                        text,
                        ..
                    },
            },
        ] => {
            assert_eq!(
                (node.as_str(), peer_id.as_str(), *session),
                ("n2", "bob", 7)
            );
            let error: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                (error["code"].as_str(), error["id"].as_u64()),
                (Some("unknown_peer"), Some(2))
            );
        }
        other => panic!("{other:?}"),
    }
    // Queued for alice, who leaves before reading it: undelivered back to bob.
    core.cluster_receive("n2", signal("alice"));
    core.disconnect(alice);
    let back: Vec<ClusterOutput> = outputs(&mut core)
        .into_iter()
        .filter(|o| matches!(o, ClusterOutput::Send { .. }))
        .collect();
    match &back[..] {
        [
            ClusterOutput::Send {
                message: Forward::Error { text, .. },
                ..
            },
        ] => {
            assert!(text.contains("undelivered"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // An error for a session of this node reaches it.
    let (carol, _) = join(&mut core, "carol", 3);
    core.cluster_receive(
        "n2",
        Forward::Error {
            project: "p".into(),
            peer_id: "carol".into(),
            session: carol,
            text: "{\"type\":\"error\",\"code\":\"queue_full\"}".into(),
        },
    );
    assert_eq!(texts(&mut core, carol)[0]["code"], "queue_full");
}

#[test]
fn joining_replaces_the_same_peer_id_on_another_node() {
    let mut core = registry(1 << 20);
    let (alice, _) = join(&mut core, "alice", 1);
    core.cluster_presence("n2", remote("bob", 7, 1));
    texts(&mut core, alice);
    outputs(&mut core);
    let (bob, _) = join(&mut core, "bob", 2);
    let out = outputs(&mut core);
    assert!(
        matches!(&out[0], ClusterOutput::Send { node, message: Forward::Replace { session: 7, .. } } if node == "n2"),
        "{out:?}"
    );
    assert!(matches!(&out[1], ClusterOutput::Joined(p) if p.peer_id == "bob"));
    let seen: Vec<String> = texts(&mut core, alice)
        .iter()
        .map(|e| e["type"].to_string())
        .collect();
    assert_eq!(seen, ["\"peer_left\"", "\"peer_joined\""]);
    // Another node's replacement closes the local bob with 4001.
    core.cluster_receive(
        "n3",
        Forward::Replace {
            project: "p".into(),
            peer_id: "bob".into(),
            session: bob,
        },
    );
    let mut closes = Vec::new();
    while let Some(t) = core.poll_transmit(bob) {
        if let Transmit::Close { code, .. } = t {
            closes.push(code);
        }
    }
    assert_eq!(closes, [4001]);
    assert!(
        outputs(&mut core)
            .iter()
            .any(|o| matches!(o, ClusterOutput::Left { peer_id, .. } if peer_id == "bob"))
    );
}

#[test]
fn the_remote_view_is_bounded() {
    let mut core = registry(1 << 20);
    for i in 0..5 {
        core.cluster_presence("n2", remote(&format!("peer{i}"), i, 1));
    }
    let samples = core.cluster_metrics().samples();
    let value = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|s| s.name == name && s.label == label)
            .map(|s| s.value)
    };
    assert_eq!(
        value("turnpike_registry_cluster_remote_peers", None),
        Some(3)
    );
    assert_eq!(
        value(
            "turnpike_registry_cluster_dropped_total",
            Some(("reason", "view_full"))
        ),
        Some(2)
    );
}
