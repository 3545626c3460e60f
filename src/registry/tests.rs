//! Unit tests of the registry core: a fake clock, no sockets.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::config::RegistryConfig;
use super::core::{ConnId, Identity, Lease, NoAuthority, Registry};
use super::messages::{build_relay, parse_relay, parse_text};
use super::metrics::{ConnectRefusal, RegistryMetrics};
use super::queue::Transmit;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

struct Harness {
    core: Registry,
    now: Instant,
}

fn key(n: u8) -> String {
    BASE64.encode([n; 32])
}

fn identity(peer: &str, project: &str) -> Identity {
    Identity {
        peer_id: peer.into(),
        project: project.into(),
        pinned_key: None,
        expires_at: 0,
    }
}

impl Harness {
    fn new(config: RegistryConfig) -> Harness {
        Harness {
            core: Registry::new(config, Arc::new(RegistryMetrics::default())),
            now: Instant::now(),
        }
    }

    fn default() -> Harness {
        Harness::new(RegistryConfig::default())
    }

    fn metric(&self, name: &str, label: Option<&str>) -> i64 {
        self.core.metrics().value(name, label).unwrap()
    }

    /// Connects and joins `peer` in `project` with key `[n; 32]`; drains the welcome.
    fn join(&mut self, peer: &str, project: &str, n: u8) -> ConnId {
        let conn = self
            .core
            .connect(self.now, IP, identity(peer, project), Lease::default())
            .unwrap();
        self.text(conn, json!({"type": "join", "public_key": key(n)}));
        let welcome = self.next_json(conn).expect("a welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        conn
    }

    fn text(&mut self, conn: ConnId, message: Value) {
        self.core
            .handle_text(self.now, conn, &message.to_string(), &NoAuthority);
    }

    /// Everything queued for `conn`.
    fn drain(&mut self, conn: ConnId) -> Vec<Transmit> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match self.core.poll_transmit(conn) {
                Some(t) => out.push(t),
                None => return out,
            }
        }
        panic!("endless queue");
    }

    fn next_json(&mut self, conn: ConnId) -> Option<Value> {
        match self.core.poll_transmit(conn)? {
            Transmit::Text(text) => Some(serde_json::from_str(&text).unwrap()),
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn texts(&mut self, conn: ConnId) -> Vec<Value> {
        self.drain(conn)
            .into_iter()
            .filter_map(|t| match t {
                Transmit::Text(text) => Some(serde_json::from_str(&text).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn error_codes(&mut self, conn: ConnId) -> Vec<String> {
        self.texts(conn)
            .into_iter()
            .filter(|m| m["type"] == "error")
            .map(|m| m["code"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[test]
fn join_welcomes_and_announces() {
    let mut h = Harness::default();
    let alice = h.join("alice", "p1", 1);
    let conn = h
        .core
        .connect(h.now, IP, identity("bob", "p1"), Lease::default())
        .unwrap();
    h.text(conn, json!({"type": "join", "public_key": key(2)}));
    let welcome = h.next_json(conn).unwrap();
    assert_eq!(welcome["peer_id"], "bob");
    assert_eq!(welcome["project"], "p1");
    assert_eq!(
        welcome["peers"],
        json!([{"peer_id": "alice", "public_key": key(1)}])
    );
    assert_eq!(
        h.texts(alice),
        vec![json!({"type": "peer_joined", "peer_id": "bob", "public_key": key(2)})]
    );
    assert_eq!(h.metric("turnpike_registry_peers", None), 2);
    assert_eq!(h.metric("turnpike_registry_projects", None), 1);
    h.core.disconnect(conn);
    assert_eq!(
        h.texts(alice),
        vec![json!({"type": "peer_left", "peer_id": "bob"})]
    );
    h.core.disconnect(alice);
    assert_eq!(h.core.project_count(), 0);
    assert_eq!(h.core.connection_count(), 0);
    assert_eq!(h.metric("turnpike_registry_peers", None), 0);
    assert_eq!(h.metric("turnpike_registry_connections", None), 0);
}

#[test]
fn signaling_stays_inside_the_project_and_payloads_are_untouched() {
    let mut h = Harness::default();
    let alice = h.join("alice", "p1", 1);
    let bob = h.join("bob", "p1", 2);
    let carol = h.join("carol", "p2", 3);
    h.drain(alice);
    // Whitespace, key order and escapes of the payload survive byte for byte.
    let raw = r#"{"type":"webrtc_offer","to_peer_id":"bob","payload":{ "sdp" : "v=0\r\n\u00e9", "z":1,"a":[ ]}}"#;
    h.core.handle_text(h.now, alice, raw, &NoAuthority);
    match h.core.poll_transmit(bob) {
        Some(Transmit::Text(text)) => assert_eq!(
            text,
            r#"{"type":"webrtc_offer","from_peer_id":"alice","payload":{ "sdp" : "v=0\r\n\u00e9", "z":1,"a":[ ]}}"#
        ),
        other => panic!("{other:?}"),
    }
    h.text(
        alice,
        json!({"type": "webrtc_answer", "to_peer_id": "carol", "payload": 1, "id": 9}),
    );
    let error = h.next_json(alice).unwrap();
    assert_eq!(
        error,
        json!({"type": "error", "code": "unknown_peer", "message": "no peer `carol` in this project",
               "ref": "webrtc_answer", "id": 9, "to_peer_id": "carol"})
    );
    assert!(h.drain(carol).is_empty());
    assert_eq!(
        h.metric(
            "turnpike_registry_signaling_messages_total",
            Some("webrtc_offer")
        ),
        1
    );
    assert_eq!(h.core.project_usage()[0].1.signals, 1);
}

#[test]
fn bad_messages_get_their_documented_errors() {
    let mut h = Harness::default();
    let conn = h
        .core
        .connect(h.now, IP, identity("alice", "p1"), Lease::default())
        .unwrap();
    let cases: Vec<(&str, &str)> = vec![
        ("hello", "bad_json"),
        ("[1,2]", "bad_message"),
        (r#"{"to_peer_id":"x"}"#, "bad_message"),
        (r#"{"type":"teleport"}"#, "unknown_type"),
        (r#"{"type":"join"}"#, "bad_message"),
        (
            r#"{"type":"join","public_key":"c2hvcnQ="}"#,
            "bad_public_key",
        ),
        (r#"{"type":"join","public_key":7}"#, "bad_message"),
        (
            r#"{"type":"webrtc_offer","to_peer_id":"bob","payload":1}"#,
            "not_joined",
        ),
    ];
    for (text, code) in &cases {
        h.core.handle_text(h.now, conn, text, &NoAuthority);
        assert_eq!(h.error_codes(conn), vec![code.to_string()], "{text}");
    }
    h.core.handle_binary(h.now, conn, &[1, b'b']);
    assert_eq!(h.error_codes(conn), vec!["not_joined"]);
    h.text(conn, json!({"type": "join", "public_key": key(1)}));
    h.drain(conn);
    let more: Vec<(String, &str)> = vec![
        (
            json!({"type": "join", "public_key": key(1)}).to_string(),
            "already_joined",
        ),
        (
            json!({"type": "webrtc_offer", "to_peer_id": "", "payload": 1}).to_string(),
            "bad_message",
        ),
        (
            json!({"type": "webrtc_offer", "to_peer_id": "bob"}).to_string(),
            "bad_message",
        ),
        (
            json!({"type": "webrtc_offer", "to_peer_id": "bob", "payload": "x".repeat(40_000)})
                .to_string(),
            "payload_too_large",
        ),
        ("x".repeat(40_000), "payload_too_large"),
        (r#"{"type":"ping","type":"ping"}"#.to_owned(), "bad_message"),
    ];
    for (text, code) in &more {
        h.core.handle_text(h.now, conn, text, &NoAuthority);
        assert_eq!(h.error_codes(conn), vec![code.to_string()], "{text:.80}");
    }
    for (frame, code) in [
        (vec![], "frame_too_short"),
        (vec![3, b'b', b'o', b'b'], "frame_too_short"),
        (vec![0; 60], "bad_frame"),
        (build_relay("b\u{7f}", &[0; 40]), "bad_frame"),
        (vec![1; 70_000], "frame_too_large"),
        (build_relay("nobody", &[0; 40]), "unknown_peer"),
    ] {
        h.core.handle_binary(h.now, conn, &frame);
        assert_eq!(
            h.error_codes(conn),
            vec![code],
            "{:?}",
            &frame[..frame.len().min(8)]
        );
    }
    let long_type = format!(r#"{{"type":"{}"}}"#, "é".repeat(1000));
    h.core.handle_text(h.now, conn, &long_type, &NoAuthority);
    let error = h.next_json(conn).unwrap();
    assert_eq!(error["code"], "unknown_type");
    assert_eq!(
        error["ref"],
        "é".repeat(16),
        "the echoed type is cut to 32 bytes"
    );
    assert_eq!(
        error["message"],
        format!("unknown message type `{}…`", "é".repeat(16)),
        "the message quotes a 32-byte prefix"
    );
    // Still serving: a ping is answered.
    h.text(conn, json!({"type": "ping"}));
    assert_eq!(h.texts(conn), vec![json!({"type": "pong"})]);
    assert_eq!(
        h.metric("turnpike_registry_errors_total", Some("bad_json")),
        1
    );
    assert_eq!(
        h.metric("turnpike_registry_relay_drops_total", Some("malformed")),
        5
    );
}

#[test]
fn a_pinned_key_must_match() {
    let mut h = Harness::default();
    let mut id = identity("alice", "p1");
    id.pinned_key = Some([7; 32]);
    let conn = h.core.connect(h.now, IP, id, Lease::default()).unwrap();
    h.text(conn, json!({"type": "join", "public_key": key(8)}));
    assert_eq!(h.error_codes(conn), vec!["public_key_mismatch"]);
    h.text(conn, json!({"type": "join", "public_key": key(7)}));
    assert_eq!(h.next_json(conn).unwrap()["type"], "welcome");
}

#[test]
fn relay_blobs_are_forwarded_with_the_source_id_and_bounded() {
    let config = RegistryConfig {
        relay_queue_blobs: 4,
        ..RegistryConfig::default()
    };
    let mut h = Harness::new(config);
    let alice = h.join("alice", "p1", 1);
    let bob = h.join("bob", "p1", 2);
    let carol = h.join("carol", "p2", 3);
    h.drain(alice);
    let sealed = [9u8; 40];
    for _ in 0..6 {
        h.core
            .handle_binary(h.now, alice, &build_relay("bob", &sealed));
    }
    let frames: Vec<Transmit> = h.drain(bob);
    assert_eq!(frames.len(), 4, "4 queued, 2 dropped");
    assert_eq!(frames[0], Transmit::Binary(build_relay("alice", &sealed)));
    assert_eq!(
        h.metric("turnpike_registry_relay_drops_total", Some("queue_full")),
        2
    );
    assert!(
        h.drain(alice).is_empty(),
        "queue_full drops are not answered"
    );
    h.core
        .handle_binary(h.now, alice, &build_relay("carol", &sealed));
    let error = h.next_json(alice).unwrap();
    assert_eq!(error["code"], "unknown_peer");
    assert_eq!(error["ref"], "relay");
    assert_eq!(error["to_peer_id"], "carol");
    assert!(h.drain(carol).is_empty());
    assert_eq!(h.metric("turnpike_registry_relay_blobs_total", None), 4);
    let usage = h.core.project_usage();
    assert_eq!(usage[0].0, "p1");
    assert_eq!(usage[0].1.relay_blobs, 4);
}

#[test]
fn relay_bytes_are_rate_limited_per_peer() {
    let config = RegistryConfig {
        relay_bytes_per_sec: 1000,
        max_relay_frame_bytes: 200,
        ..RegistryConfig::default()
    };
    let mut h = Harness::new(config);
    let alice = h.join("alice", "p1", 1);
    let bob = h.join("bob", "p1", 2);
    let frame = build_relay("bob", &[1; 96]); // 100 bytes
    let mut forwarded = 0;
    for _ in 0..20 {
        h.core.handle_binary(h.now, alice, &frame);
        forwarded += h.drain(bob).len();
    }
    assert_eq!(forwarded, 10, "a burst of one second: 1000 bytes");
    h.now += Duration::from_millis(500);
    for _ in 0..20 {
        h.core.handle_binary(h.now, alice, &frame);
        forwarded += h.drain(bob).len();
    }
    assert_eq!(forwarded, 15);
    assert_eq!(
        h.metric("turnpike_registry_relay_drops_total", Some("rate_limited")),
        25
    );
}

#[test]
fn messages_are_rate_limited_and_answered() {
    let config = RegistryConfig {
        messages_per_sec: 5,
        ..RegistryConfig::default()
    };
    let mut h = Harness::new(config);
    let alice = h.join("alice", "p1", 1);
    let bob = h.join("bob", "p1", 2);
    h.drain(alice);
    for i in 0..20u64 {
        h.text(
            alice,
            json!({"type": "webrtc_ice_candidate", "to_peer_id": "bob", "payload": i, "id": i}),
        );
    }
    let delivered = h.texts(bob).len();
    let errors = h.texts(alice);
    // The join took one token of the burst of 10.
    assert_eq!(delivered, 9);
    assert_eq!(errors.len(), 11, "every refused message is answered");
    assert!(errors.iter().all(|e| e["code"] == "rate_limited"));
    assert_eq!(errors[0]["id"], 9);
    assert_eq!(errors[0]["ref"], "webrtc_ice_candidate");
}

#[test]
fn a_full_signal_queue_is_answered_and_unsent_messages_are_reported() {
    let config = RegistryConfig {
        signal_queue_messages: 3,
        ..RegistryConfig::default()
    };
    let mut h = Harness::new(config);
    let alice = h.join("alice", "p1", 1);
    let bob = h.join("bob", "p1", 2);
    h.drain(alice);
    for i in 0..5u64 {
        h.text(
            alice,
            json!({"type": "webrtc_offer", "to_peer_id": "bob", "payload": i, "id": i}),
        );
    }
    assert_eq!(h.error_codes(alice), vec!["queue_full", "queue_full"]);
    h.core.disconnect(bob);
    let answers = h.texts(alice);
    let undelivered: Vec<&Value> = answers
        .iter()
        .filter(|m| m["code"] == "undelivered")
        .collect();
    assert_eq!(undelivered.len(), 3, "{answers:?}");
    assert_eq!(undelivered[0]["to_peer_id"], "bob");
    assert!(answers.contains(&json!({"type": "peer_left", "peer_id": "bob"})));
}

#[test]
fn a_second_connection_replaces_the_first() {
    let mut h = Harness::default();
    let alice = h.join("alice", "p1", 1);
    let old = h.join("bob", "p1", 2);
    h.drain(alice);
    let new = h.join("bob", "p1", 3);
    assert_eq!(
        h.drain(old),
        vec![Transmit::Close {
            code: 4001,
            reason: "replaced"
        }]
    );
    assert_eq!(
        h.texts(alice),
        vec![
            json!({"type": "peer_left", "peer_id": "bob"}),
            json!({"type": "peer_joined", "peer_id": "bob", "public_key": key(3)})
        ]
    );
    // The old connection's end does not remove the new one.
    h.core.disconnect(old);
    h.text(
        alice,
        json!({"type": "webrtc_offer", "to_peer_id": "bob", "payload": 1}),
    );
    assert_eq!(h.texts(new).len(), 1);
    assert_eq!(
        h.metric("turnpike_registry_closes_total", Some("replaced")),
        1
    );
}

#[test]
fn pings_idle_and_join_timeouts() {
    let mut h = Harness::default(); // ping 20 s, idle 60 s, join 10 s
    let alice = h.join("alice", "p1", 1);
    let lazy = h
        .core
        .connect(h.now, IP, identity("lazy", "p1"), Lease::default())
        .unwrap();
    h.now += Duration::from_secs(11);
    h.core.handle_timeout(h.now);
    assert_eq!(
        h.drain(lazy),
        vec![Transmit::Close {
            code: 4004,
            reason: "join_timeout"
        }]
    );
    h.now += Duration::from_secs(10);
    h.core.handle_timeout(h.now);
    assert_eq!(h.drain(alice), vec![Transmit::Ping]);
    h.core.handle_activity(h.now, alice);
    h.now += Duration::from_secs(59);
    h.core.handle_timeout(h.now);
    assert_eq!(h.drain(alice), vec![Transmit::Ping]);
    h.now += Duration::from_secs(2);
    h.core.handle_timeout(h.now);
    assert_eq!(
        h.drain(alice),
        vec![Transmit::Close {
            code: 4002,
            reason: "idle_timeout"
        }]
    );
    assert_eq!(h.core.project_count(), 0, "a closing peer has left");
    h.core.disconnect(alice);
    h.core.disconnect(lazy);
    assert_eq!(h.core.connection_count(), 0);
}

#[test]
fn connection_and_project_tables_are_bounded() {
    let config = RegistryConfig {
        max_connections: 4,
        max_connections_per_ip: 2,
        max_projects: 1,
        max_peers_per_project: 1,
        ..RegistryConfig::default()
    };
    let mut h = Harness::new(config);
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let a = h
        .core
        .connect(h.now, IP, identity("a", "p1"), Lease::default())
        .unwrap();
    let b = h
        .core
        .connect(h.now, IP, identity("b", "p1"), Lease::default())
        .unwrap();
    assert_eq!(
        h.core
            .connect(h.now, IP, identity("c", "p1"), Lease::default()),
        Err(ConnectRefusal::TooManyConnections)
    );
    let c = h
        .core
        .connect(h.now, other, identity("c", "p2"), Lease::default())
        .unwrap();
    h.core
        .connect(h.now, other, identity("d", "p2"), Lease::default())
        .unwrap();
    assert_eq!(
        h.core
            .connect(h.now, IP, identity("e", "p1"), Lease::default()),
        Err(ConnectRefusal::ServerFull)
    );
    h.text(a, json!({"type": "join", "public_key": key(1)}));
    h.drain(a);
    h.text(b, json!({"type": "join", "public_key": key(2)}));
    assert_eq!(h.error_codes(b), vec!["project_full"]);
    h.text(c, json!({"type": "join", "public_key": key(3)}));
    assert_eq!(h.error_codes(c), vec!["project_full"], "max_projects");
    h.core.disconnect(a);
    h.text(b, json!({"type": "join", "public_key": key(2)}));
    assert_eq!(h.next_json(b).unwrap()["type"], "welcome", "room again");
}

#[test]
fn a_peer_that_never_reads_is_closed_not_silently_skipped() {
    let config = RegistryConfig {
        max_peers_per_project: 2, // control bound: 2 * 2 + 64
        ..RegistryConfig::default()
    };
    let mut h = Harness::new(config);
    let slow = h.join("slow", "p1", 1);
    for _ in 0..100 {
        h.text(slow, json!({"type": "ping"}));
        h.now += Duration::from_millis(100);
    }
    let out = h.drain(slow);
    assert_eq!(
        out.last(),
        Some(&Transmit::Close {
            code: 4005,
            reason: "slow_consumer"
        })
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn parsers_never_panic_on_arbitrary_input() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut h = Harness::default();
    let conn = h.join("fuzz", "p1", 1);
    let samples = [
        r#"{"type":"webrtc_offer","to_peer_id":"fuzz","payload":{"a":[1,2,{"b":null}]}}"#,
        r#"{"type":"join","public_key":"AAAA"}"#,
    ];
    for i in 0..3000 {
        let mut bytes: Vec<u8> = samples[i % 2].as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = rng.r#gen();
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_text(&text, 100);
        h.core.handle_text(h.now, conn, &text, &NoAuthority);
        let _ = parse_relay(&bytes, 65_536);
        h.core.handle_binary(h.now, conn, &bytes);
        h.now += Duration::from_millis(50);
        h.drain(conn);
    }
}

/// Every client-to-server example of docs/registry-protocol.md parses to what its tag says.
#[test]
fn the_protocol_documents_examples_parse() {
    let doc = include_str!("../../docs/registry-protocol.md");
    let mut count = 0;
    for block in doc.split("```json ").skip(1) {
        let (tag, rest) = block.split_once('\n').unwrap();
        let body = rest.split("\n```").next().unwrap();
        let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        if tag.starts_with("c2s") {
            let known = [
                "join",
                "reauth",
                "ping",
                "webrtc_offer",
                "webrtc_answer",
                "webrtc_ice_candidate",
            ];
            let parsed = parse_text(body, 32_768);
            if known.contains(&value["type"].as_str().unwrap()) {
                assert!(parsed.is_ok(), "{body}: {parsed:?}");
            } else {
                assert_eq!(parsed.unwrap_err().code.as_str(), "unknown_type");
            }
            count += 1;
        }
    }
    assert!(count >= 8, "only {count} examples found");
}
