//! Unit tests of live tokens (`token_expiring`, the close at `exp`, `reauth`), the one-token
//! ladder in `welcome`, relay usage notices and key attestations: a fake clock, a fake
//! [`Authority`], no sockets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::attest::{AttestationClaims, Expected, verify_attestation};
use super::auth::{Claims, Keys};
use super::config::RegistryConfig;
use super::core::{Authority, ConnId, Identity, Lease, NoAuthority, Registry};
use super::issuer::Issuer;
use super::messages::build_relay;
use super::metrics::{AuthFailure, RegistryMetrics};
use super::queue::Transmit;
use crate::proto::credentials::IceServer;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The fake wall clock at the harness's start.
const UNIX: u64 = 1_800_000_000;

fn key(n: u8) -> String {
    BASE64.encode([n; 32])
}

fn identity(peer: &str, project: &str, expires_at: u64) -> Identity {
    Identity {
        peer_id: peer.into(),
        project: project.into(),
        pinned_key: None,
        expires_at,
    }
}

fn ice(user: &str) -> Vec<IceServer> {
    vec![IceServer {
        urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        username: format!("{}:{user}", UNIX + 3600),
        credential: "c2VjcmV0".into(),
    }]
}

/// Answers `reauth` from a table of tokens, and verifies attestations with `issuers` (none:
/// unchecked) at the fake time.
#[derive(Default)]
struct FakeAuthority {
    tokens: HashMap<String, Result<(Identity, Lease), String>>,
    issuers: Vec<[u8; 32]>,
}

impl Authority for FakeAuthority {
    fn reauth(&self, token: &str) -> Result<(Identity, Lease), String> {
        self.tokens
            .get(token)
            .cloned()
            .unwrap_or_else(|| Err("the token is not a well-formed JWT".to_owned()))
    }

    fn check_attestation(&self, jwt: &str, expected: &Expected<'_>) -> Option<Result<(), String>> {
        if self.issuers.is_empty() {
            return None;
        }
        Some(
            verify_attestation(&self.issuers, jwt, expected, UNIX)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        )
    }
}

struct Harness {
    core: Registry,
    start: Instant,
    now: Instant,
    authority: FakeAuthority,
}

impl Harness {
    fn new(config: RegistryConfig) -> Harness {
        let now = Instant::now();
        Harness {
            core: Registry::new(config, Arc::new(RegistryMetrics::default())),
            start: now,
            now,
            authority: FakeAuthority::default(),
        }
    }

    /// No idle or ping noise: the tests here are about other timers.
    fn quiet() -> RegistryConfig {
        RegistryConfig {
            ping_interval_secs: 50_000,
            idle_timeout_secs: 100_000,
            join_timeout_secs: 1000,
            ..RegistryConfig::default()
        }
    }

    /// A lease ending `secs` after the harness's start.
    fn lease(&self, secs: u64, ice_servers: Option<Vec<IceServer>>) -> Lease {
        Lease {
            deadline: Some(self.start + Duration::from_secs(secs)),
            ice_servers,
        }
    }

    fn connect(&mut self, peer: &str, project: &str, secs: u64, lease: Lease) -> ConnId {
        self.core
            .connect(self.now, IP, identity(peer, project, UNIX + secs), lease)
            .unwrap()
    }

    /// Connects with a token for `secs` seconds and joins with key `[n; 32]`; returns the
    /// connection and everything it was sent (the welcome first).
    fn join(&mut self, peer: &str, secs: u64, n: u8, join: Value) -> (ConnId, Vec<Value>) {
        let lease = self.lease(secs, None);
        let conn = self.connect(peer, "p1", secs, lease);
        let mut message = json!({"type": "join", "public_key": key(n)});
        if let (Some(m), Some(extra)) = (message.as_object_mut(), join.as_object()) {
            m.extend(extra.clone());
        }
        self.text(conn, &message);
        let texts = self.texts(conn);
        assert_eq!(texts.first().map(|w| &w["type"]), Some(&json!("welcome")));
        (conn, texts)
    }

    fn text(&mut self, conn: ConnId, message: &Value) {
        self.core
            .handle_text(self.now, conn, &message.to_string(), &self.authority);
    }

    fn advance_to(&mut self, secs: u64) {
        self.now = self.start + Duration::from_secs(secs);
        self.core.handle_timeout(self.now);
    }

    fn drain(&mut self, conn: ConnId) -> Vec<Transmit> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match self.core.poll_transmit(conn) {
                Some(t) => out.push(t),
                None => return out,
            }
        }
        panic!("endless queue");
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

    fn metric(&self, name: &str, label: Option<&str>) -> i64 {
        self.core.metrics().value(name, label).unwrap()
    }
}

const EXPIRED_CLOSE: Transmit = Transmit::Close {
    code: 4003,
    reason: "token_expired",
};

#[test]
fn a_token_is_warned_about_then_the_connection_closes_at_exp() {
    let mut h = Harness::new(Harness::quiet()); // token_warning_secs = 60
    let (alice, texts) = h.join("alice", 120, 1, json!({}));
    assert_eq!(texts.len(), 1, "a token of 120 s is not warned about yet");
    let (bob, _) = h.join("bob", 3600, 2, json!({}));
    h.texts(alice);
    h.advance_to(59);
    assert!(h.drain(alice).is_empty());
    h.advance_to(60);
    assert_eq!(
        h.texts(alice),
        vec![json!({"type": "token_expiring", "expires_at": UNIX + 120})]
    );
    h.advance_to(100);
    assert!(h.drain(alice).is_empty(), "warned once per token");
    h.advance_to(119);
    assert!(h.drain(alice).is_empty());
    h.advance_to(120);
    assert_eq!(h.drain(alice), vec![EXPIRED_CLOSE]);
    assert_eq!(
        h.texts(bob),
        vec![json!({"type": "peer_left", "peer_id": "alice"})]
    );
    assert_eq!(
        h.metric("turnpike_registry_closes_total", Some("token_expired")),
        1
    );
    assert_eq!(h.metric("turnpike_registry_token_warnings_total", None), 1);
}

#[test]
fn a_short_token_is_warned_about_right_after_the_welcome() {
    let mut h = Harness::new(Harness::quiet());
    let (_, texts) = h.join("alice", 30, 1, json!({}));
    assert_eq!(
        texts[1],
        json!({"type": "token_expiring", "expires_at": UNIX + 30})
    );
    // No warning at all when token_warning_secs is 0; the close at exp stays.
    let mut h = Harness::new(RegistryConfig {
        token_warning_secs: 0,
        ..Harness::quiet()
    });
    let (alice, texts) = h.join("alice", 30, 1, json!({}));
    assert_eq!(texts.len(), 1);
    h.advance_to(29);
    assert!(h.drain(alice).is_empty());
    h.advance_to(31);
    assert_eq!(h.drain(alice), vec![EXPIRED_CLOSE]);
}

#[test]
fn a_connection_that_has_not_joined_is_closed_at_exp_too() {
    let mut h = Harness::new(Harness::quiet());
    let lease = h.lease(5, None);
    let conn = h.connect("alice", "p1", 5, lease);
    h.advance_to(4);
    assert!(h.drain(conn).is_empty());
    h.advance_to(5);
    assert_eq!(h.drain(conn), vec![EXPIRED_CLOSE]);
}

#[test]
fn a_good_reauth_moves_the_deadline_and_hands_out_fresh_ice_servers() {
    let mut h = Harness::new(Harness::quiet());
    let (alice, _) = h.join("alice", 120, 1, json!({}));
    let fresh = h.lease(3600, Some(ice("alice")));
    h.authority.tokens.insert(
        "fresh".into(),
        Ok((identity("alice", "p1", UNIX + 3600), fresh)),
    );
    h.advance_to(100);
    assert_eq!(h.texts(alice)[0]["type"], "token_expiring");
    h.text(alice, &json!({"type": "reauth", "token": "fresh"}));
    assert_eq!(
        h.texts(alice),
        vec![json!({"type": "reauthed", "expires_at": UNIX + 3600,
                    "ice_servers": serde_json::to_value(ice("alice")).unwrap()})]
    );
    h.advance_to(120);
    assert!(h.drain(alice).is_empty(), "the old deadline is gone");
    h.advance_to(3540);
    assert_eq!(
        h.texts(alice),
        vec![json!({"type": "token_expiring", "expires_at": UNIX + 3600})],
        "the new token is warned about in its turn"
    );
    h.advance_to(3600);
    assert_eq!(h.drain(alice), vec![EXPIRED_CLOSE]);
    assert_eq!(h.metric("turnpike_registry_reauths_total", None), 1);
    // Without the ladder, `reauthed` has no `ice_servers`; a short new token is warned about
    // at once.
    let mut h = Harness::new(Harness::quiet());
    let (bob, _) = h.join("bob", 120, 2, json!({}));
    let short = h.lease(50, None);
    h.authority.tokens.insert(
        "short".into(),
        Ok((identity("bob", "p1", UNIX + 50), short)),
    );
    h.text(bob, &json!({"type": "reauth", "token": "short"}));
    assert_eq!(
        h.texts(bob),
        vec![
            json!({"type": "reauthed", "expires_at": UNIX + 50}),
            json!({"type": "token_expiring", "expires_at": UNIX + 50}),
        ]
    );
}

#[test]
fn a_bad_or_foreign_reauth_is_refused_and_the_old_deadline_stays() {
    let mut h = Harness::new(Harness::quiet());
    let before = h.core.connect(
        h.now,
        IP,
        identity("early", "p1", UNIX + 60),
        Lease::default(),
    );
    let early = before.unwrap();
    h.text(early, &json!({"type": "reauth", "token": "x"}));
    assert_eq!(h.texts(early)[0]["code"], "not_joined");
    let (alice, _) = h.join("alice", 120, 1, json!({}));
    let lease = h.lease(3600, None);
    h.authority.tokens.insert(
        "expired".into(),
        Err("the token has expired (expired)".into()),
    );
    h.authority.tokens.insert(
        "bob".into(),
        Ok((identity("bob", "p1", UNIX + 3600), lease.clone())),
    );
    h.authority.tokens.insert(
        "other-project".into(),
        Ok((identity("alice", "p2", UNIX + 3600), lease.clone())),
    );
    let mut pinned = identity("alice", "p1", UNIX + 3600);
    pinned.pinned_key = Some([9; 32]);
    h.authority
        .tokens
        .insert("pinned".into(), Ok((pinned, lease.clone())));
    for (token, code, says) in [
        ("expired", "invalid_token", "expired"),
        ("garbage", "invalid_token", "well-formed"),
        ("bob", "identity_mismatch", "`bob`"),
        ("other-project", "identity_mismatch", "`p2`"),
        ("pinned", "identity_mismatch", "public key"),
    ] {
        h.text(alice, &json!({"type": "reauth", "token": token}));
        let answer = h.texts(alice);
        assert_eq!(answer.len(), 1, "{answer:?}");
        assert_eq!(answer[0]["type"], "error");
        assert_eq!(answer[0]["code"], code, "{token}");
        assert_eq!(answer[0]["ref"], "reauth");
        let message = answer[0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{token}: {message}");
    }
    h.text(alice, &json!({"type": "reauth"}));
    assert_eq!(h.texts(alice)[0]["code"], "bad_message");
    h.advance_to(120);
    assert!(h.drain(alice).contains(&EXPIRED_CLOSE));
    assert_eq!(
        h.metric("turnpike_registry_errors_total", Some("identity_mismatch")),
        3
    );
    assert_eq!(h.metric("turnpike_registry_reauths_total", None), 0);
}

#[test]
fn the_welcome_carries_the_leases_ice_servers() {
    let mut h = Harness::new(Harness::quiet());
    let lease = h.lease(3600, Some(ice("alice")));
    let alice = h.connect("alice", "p1", 3600, lease);
    // A refused join keeps them for the next try.
    h.text(alice, &json!({"type": "join", "public_key": "c2hvcnQ="}));
    assert_eq!(h.texts(alice)[0]["code"], "bad_public_key");
    h.text(alice, &json!({"type": "join", "public_key": key(1)}));
    let welcome = &h.texts(alice)[0];
    assert_eq!(
        welcome["ice_servers"],
        serde_json::to_value(ice("alice")).unwrap()
    );
    let (_, texts) = h.join("bob", 3600, 2, json!({}));
    assert!(texts[0].get("ice_servers").is_none(), "{}", texts[0]);
}

#[test]
fn heavy_relay_use_is_reported_once_per_window() {
    let mut h = Harness::new(RegistryConfig {
        relay_warn_bytes_per_sec: 1000,
        relay_bytes_per_sec: 100_000,
        ..Harness::quiet()
    });
    let (alice, _) = h.join("alice", 3600, 1, json!({}));
    let (bob, _) = h.join("bob", 3600, 2, json!({}));
    h.texts(alice);
    let frame = build_relay("bob", &[1; 496]); // 500 bytes
    let send = |h: &mut Harness, count: usize| {
        for _ in 0..count {
            h.core.handle_binary(h.now, alice, &frame);
        }
        h.drain(bob);
    };
    // 10,000 bytes in a window: 1000 B/s, not above the threshold.
    send(&mut h, 20);
    h.advance_to(10);
    assert!(h.texts(alice).is_empty());
    // 12,000 bytes: 1200 B/s, reported when the window ends, once.
    for second in 10..20 {
        h.advance_to(second);
        send(&mut h, 2);
        assert!(h.texts(alice).is_empty(), "not before the window ends");
    }
    send(&mut h, 4);
    h.advance_to(20);
    assert_eq!(
        h.texts(alice),
        vec![
            json!({"type": "relay_usage", "bytes_per_sec": 1200, "window_secs": 10,
                    "threshold": 1000})
        ]
    );
    h.advance_to(25);
    assert!(h.texts(alice).is_empty(), "at most once per window");
    // The next window is judged on its own.
    send(&mut h, 40);
    h.advance_to(30);
    assert_eq!(h.texts(alice)[0]["bytes_per_sec"], 2000);
    h.advance_to(40);
    assert!(h.texts(alice).is_empty(), "a quiet window");
    assert_eq!(
        h.metric("turnpike_registry_relay_usage_warnings_total", None),
        2
    );
    assert!(h.texts(bob).is_empty(), "only the sender is told");
    // 0 turns the notices off.
    let mut h = Harness::new(RegistryConfig {
        relay_warn_bytes_per_sec: 0,
        ..Harness::quiet()
    });
    let (alice, _) = h.join("alice", 3600, 1, json!({}));
    let (bob, _) = h.join("bob", 3600, 2, json!({}));
    h.texts(alice);
    for _ in 0..500 {
        h.core.handle_binary(h.now, alice, &frame);
        h.drain(bob);
    }
    h.advance_to(10);
    assert!(h.texts(alice).is_empty());
}

#[test]
fn attestations_are_forwarded_unchanged_and_left_out_when_absent() {
    let mut h = Harness::new(Harness::quiet());
    let attestation = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
    let (alice, _) = h.join("alice", 3600, 1, json!({"attestation": attestation}));
    let (_, texts) = h.join("bob", 3600, 2, json!({}));
    assert_eq!(
        texts[0]["peers"],
        json!([{"peer_id": "alice", "public_key": key(1), "attestation": attestation}])
    );
    assert_eq!(
        h.texts(alice),
        vec![json!({"type": "peer_joined", "peer_id": "bob", "public_key": key(2)})]
    );
    let (_, texts) = h.join("carol", 3600, 3, json!({"attestation": attestation}));
    assert_eq!(
        texts[0]["peers"][1],
        json!({"peer_id": "bob", "public_key": key(2)})
    );
    assert_eq!(
        h.texts(alice),
        vec![
            json!({"type": "peer_joined", "peer_id": "carol", "public_key": key(3),
                    "attestation": attestation})
        ]
    );
}

#[test]
fn attestations_that_do_not_verify_are_refused() {
    let issuer = Issuer::from_seed([5; 32]);
    let forger = Issuer::from_seed([6; 32]);
    let mut h = Harness::new(Harness::quiet());
    h.authority.issuers = vec![issuer.public_key()];
    let claims = |sub: &str, n: u8| AttestationClaims {
        sub: sub.into(),
        project: "p1".into(),
        pk: key(n),
        exp: UNIX + 600,
        iat: None,
    };
    let lease = h.lease(3600, None);
    let alice = h.connect("alice", "p1", 3600, lease);
    let cases = [
        (forger.mint_attestation(&claims("alice", 1)), "signature"),
        (issuer.mint_attestation(&claims("bob", 1)), "`bob`"),
        (issuer.mint_attestation(&claims("alice", 2)), "public key"),
        ("not a jwt".to_owned(), "JWT"),
        (format!("a.{}.c", "b".repeat(3000)), "2048"),
    ];
    for (attestation, says) in cases {
        h.text(
            alice,
            &json!({"type": "join", "public_key": key(1), "attestation": attestation}),
        );
        let answer = h.texts(alice);
        assert_eq!(answer[0]["code"], "bad_attestation", "{answer:?}");
        assert_eq!(answer[0]["ref"], "join");
        let message = answer[0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{says}: {message}");
    }
    let good = issuer.mint_attestation(&claims("alice", 1));
    h.text(
        alice,
        &json!({"type": "join", "public_key": key(1), "attestation": good}),
    );
    assert_eq!(h.texts(alice)[0]["type"], "welcome");
    assert_eq!(
        h.metric("turnpike_registry_errors_total", Some("bad_attestation")),
        5
    );
    // Without keys the server checks only the form, and forwards.
    let mut h = Harness::new(Harness::quiet());
    let lease = h.lease(3600, None);
    let bob = h.connect("bob", "p1", 3600, lease);
    let forged = forger.mint_attestation(&claims("alice", 9));
    h.core.handle_text(
        h.now,
        bob,
        &json!({"type": "join", "public_key": key(2), "attestation": forged}).to_string(),
        &NoAuthority,
    );
    assert_eq!(h.texts(bob)[0]["type"], "welcome");
}

#[test]
fn an_attestation_is_never_a_login_token() {
    let issuer = Issuer::from_seed([5; 32]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("issuer.pem");
    std::fs::write(&path, issuer.public_key_pem()).unwrap();
    let config = RegistryConfig {
        jwt_public_keys: vec![path],
        ..RegistryConfig::default()
    };
    let keys = Keys::from_config(&config).unwrap();
    assert_eq!(keys.attestation_keys(), &[issuer.public_key()]);
    let attestation = issuer.mint_attestation(&AttestationClaims {
        sub: "alice".into(),
        project: "p1".into(),
        pk: key(1),
        exp: UNIX + 600,
        iat: Some(UNIX),
    });
    assert_eq!(
        keys.verify(&attestation, UNIX),
        Err(AuthFailure::WrongTokenType)
    );
    // The same claims as a login token pass.
    let token = issuer.mint_token(&Claims {
        sub: Some("alice".into()),
        project: Some("p1".into()),
        exp: Some(UNIX + 600),
        nbf: None,
        pk: Some(key(1)),
    });
    let identity = keys.verify(&token, UNIX).unwrap();
    assert_eq!(identity.expires_at, UNIX + 600);
    assert_eq!(identity.pinned_key, Some([1; 32]));
}

/// The example attestation of docs/registry-protocol.md is what the example issuer (seed: 32
/// bytes of 0x01) signs, and verifies with the public key the document gives.
#[test]
fn the_documents_example_attestation_is_genuine() {
    let doc = include_str!("../../docs/registry-protocol.md");
    let issuer = Issuer::from_seed([1; 32]);
    assert!(doc.contains(&issuer.public_key_base64()));
    let join = doc
        .split("```json c2s carol\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("carol's join");
    let join: Value = serde_json::from_str(join).unwrap();
    let (jwt, public_key) = (
        join["attestation"].as_str().unwrap(),
        join["public_key"].as_str().unwrap(),
    );
    let claims = AttestationClaims {
        sub: "carol".into(),
        project: "demo".into(),
        pk: public_key.into(),
        exp: 4_102_444_800,
        iat: Some(1_767_225_600),
    };
    assert_eq!(jwt, issuer.mint_attestation(&claims));
    let expected = Expected {
        sub: "carol",
        project: "demo",
        public_key,
    };
    assert_eq!(
        verify_attestation(&[issuer.public_key()], jwt, &expected, 1_767_225_600),
        Ok(claims)
    );
}
