//! Unit tests of the registry core's budgets: bytes queued per peer and in all, accounted to
//! the byte as frames are queued, sent, and dropped with a closing or departing peer; the
//! per-/64 connection count; a project's shared message rate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::config::RegistryConfig;
use super::core::{ConnId, Identity, Lease, NoAuthority, Registry};
use super::messages::build_relay;
use super::metrics::{ConnectRefusal, RegistryMetrics};
use super::queue::Transmit;

fn identity(peer: &str) -> Identity {
    Identity {
        peer_id: peer.into(),
        project: "p".into(),
        pinned_key: None,
        expires_at: 0,
    }
}

fn text(core: &mut Registry, now: Instant, conn: ConnId, message: Value) {
    core.handle_text(now, conn, &message.to_string(), &NoAuthority);
}

fn join(core: &mut Registry, now: Instant, peer: &str, ip: &str) -> ConnId {
    let ip: IpAddr = ip.parse().unwrap();
    let conn = core
        .connect(now, ip, identity(peer), Lease::default())
        .unwrap();
    let key = BASE64.encode([conn as u8; 32]);
    text(core, now, conn, json!({"type": "join", "public_key": key}));
    conn
}

fn drain(core: &mut Registry, conn: ConnId) -> Vec<Transmit> {
    let mut out = Vec::new();
    core.poll_transmits(conn, &mut out, usize::MAX);
    out
}

#[test]
fn queued_bytes_are_accounted_to_the_byte_and_bounded() {
    let config = RegistryConfig {
        peer_budget_bytes: 70_000,
        messages_per_sec: 100_000,
        relay_bytes_per_sec: 100_000_000,
        relay_queue_blobs: 1000,
        ..RegistryConfig::default()
    };
    let metrics = Arc::new(RegistryMetrics::default());
    let mut core = Registry::new(config, metrics.clone());
    let now = Instant::now();
    let a = join(&mut core, now, "a", "127.0.0.1");
    let b = join(&mut core, now, "b", "127.0.0.1");
    drain(&mut core, a);
    drain(&mut core, b);
    assert_eq!(core.queued_bytes(), 0);
    // 1,000-byte blobs for b until its budget is reached: dropped from then on, counted.
    for _ in 0..100 {
        core.handle_binary(now, a, &build_relay("b", &[7; 1000]));
    }
    let queued = core.queued_bytes();
    assert!((69_000..=70_000).contains(&queued), "{queued}");
    assert_eq!(
        metrics.value("turnpike_registry_relay_drops_total", Some("over_budget")),
        Some(100 - (queued / 1002) as i64)
    );
    assert_eq!(
        metrics.value("turnpike_registry_queued_bytes", None),
        Some(queued as i64)
    );
    // A signaling message that does not fit is refused with over_budget.
    text(
        &mut core,
        now,
        a,
        json!({"type": "webrtc_offer", "to_peer_id": "b", "payload": {"sdp": "x".repeat(2000)}}),
    );
    let answers = drain(&mut core, a);
    assert!(
        matches!(&answers[..], [Transmit::Text(t)] if t.contains("\"over_budget\"")),
        "{answers:?}"
    );
    // What is sent is given back; what a closing or departing peer held too.
    let sent = drain(&mut core, b);
    assert_eq!(sent.len(), queued / 1002);
    assert_eq!(core.queued_bytes(), 0);
    for _ in 0..10 {
        core.handle_binary(now, a, &build_relay("b", &[7; 1000]));
    }
    assert_eq!(core.queued_bytes(), 10 * 1002);
    core.disconnect(b);
    assert_eq!(
        core.queued_bytes(),
        r#"{"type":"peer_left","peer_id":"b"}"#.len(),
        "the departed peer's queue is given back; a's peer_left is queued"
    );
    // Then a's control messages until they do not fit: closed 4007.
    drain(&mut core, a);
    assert_eq!(core.queued_bytes(), 0);
    for _ in 0..1000 {
        text(
            &mut core,
            now,
            a,
            json!({"type": "webrtc_offer", "to_peer_id": "nobody", "payload": {}, "id": 1}),
        );
    }
    let out = drain(&mut core, a);
    assert!(
        matches!(
            out.first(),
            Some(Transmit::Close {
                code: 4007,
                reason: "over_budget"
            })
        ),
        "{:?}",
        out.first()
    );
    assert_eq!(core.queued_bytes(), 0);
    assert_eq!(
        metrics.value("turnpike_registry_closes_total", Some("over_budget")),
        Some(1)
    );
}

#[test]
fn connections_are_counted_per_ipv4_address_and_ipv6_64() {
    let config = RegistryConfig {
        max_connections_per_ip: 2,
        ..RegistryConfig::default()
    };
    let mut core = Registry::new(config, Arc::new(RegistryMetrics::default()));
    let now = Instant::now();
    let connect = |core: &mut Registry, ip: &str| {
        core.connect(now, ip.parse().unwrap(), identity("x"), Lease::default())
    };
    assert!(connect(&mut core, "2001:db8:0:1::1").is_ok());
    assert!(connect(&mut core, "2001:db8:0:1:ffff::2").is_ok());
    assert_eq!(
        connect(&mut core, "2001:db8:0:1::3"),
        Err(ConnectRefusal::TooManyConnections)
    );
    assert!(connect(&mut core, "2001:db8:0:2::1").is_ok(), "another /64");
    assert!(connect(&mut core, "192.0.2.1").is_ok());
    assert!(
        connect(&mut core, "::ffff:192.0.2.1").is_ok(),
        "the same IPv4"
    );
    assert_eq!(
        connect(&mut core, "192.0.2.1"),
        Err(ConnectRefusal::TooManyConnections)
    );
    assert!(connect(&mut core, "192.0.2.2").is_ok());
}

#[test]
fn a_project_shares_one_message_rate() {
    let config = RegistryConfig {
        messages_per_sec: 1000,
        project_messages_per_sec: 5,
        ..RegistryConfig::default()
    };
    let mut core = Registry::new(config, Arc::new(RegistryMetrics::default()));
    let now = Instant::now();
    let a = join(&mut core, now, "a", "127.0.0.1");
    let b = join(&mut core, now, "b", "127.0.0.2");
    drain(&mut core, a);
    drain(&mut core, b);
    for conn in [a, b, a, b, a, b, a, b, a, b, a, b] {
        text(&mut core, now, conn, json!({"type": "ping"}));
    }
    let mut codes = Vec::new();
    for conn in [a, b] {
        for t in drain(&mut core, conn) {
            if let Transmit::Text(t) = t {
                let v: Value = serde_json::from_str(&t).unwrap();
                codes.push(v["code"].as_str().unwrap_or("pong").to_owned());
            }
        }
    }
    let pongs = codes.iter().filter(|c| *c == "pong").count();
    assert_eq!(pongs, 10, "a burst of twice the rate: {codes:?}");
    assert_eq!(
        codes
            .iter()
            .filter(|c| *c == "project_rate_limited")
            .count(),
        2
    );
    // A second later, the project has 5 more.
    let later = now + std::time::Duration::from_secs(1);
    text(&mut core, later, a, json!({"type": "ping"}));
    assert!(matches!(&drain(&mut core, a)[..], [Transmit::Text(t)] if t.contains("pong")));
}
