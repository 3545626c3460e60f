//! Settings replaced while the core runs (a configuration reload), and the drain: new
//! requests follow the new settings at once, allocations that exist keep working.

use super::*;

/// The harness settings with other REST secrets and static users (the same nonce key).
fn with_credentials(secrets: &[&[u8]], users: &[(&str, &str)]) -> Arc<Settings> {
    let mut s = settings(Limits::default(), &[]);
    let users: HashMap<String, String> = users
        .iter()
        .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
        .collect();
    s.auth = Authenticator::new(
        REALM.into(),
        secrets.iter().map(|s| s.to_vec()).collect(),
        &users,
        NonceKey::new([7; 32], 600),
    );
    Arc::new(s)
}

fn refresh(c: &mut Client, h: &mut Harness, lifetime: u32) -> Vec<u8> {
    c.call(
        h,
        method::REFRESH,
        &[(attr::LIFETIME, lifetime.to_be_bytes().to_vec())],
    )
}

fn signed_by(answer: &[u8], c: &Client) -> bool {
    Message::parse(answer).unwrap().verify_integrity(&c.key) == Some(Integrity::Sha1)
}

const PEER: &str = "198.51.100.9:7000";
const CHANNEL_DATA: [u8; 8] = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];

#[test]
fn rotated_secrets_apply_to_the_next_request_and_allocations_keep_relaying() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"old-secret", 3600);
    let relay = relayed(&a.allocate(&mut h))[0];
    assert_eq!(bind(&mut a, &mut h, 0x4000, PEER), 0);

    h.server
        .set_settings(with_credentials(&[b"brand-new"], &[]));

    // A new secret works at once; the removed one does not.
    let mut b = Client::rest(ft("198.51.100.7:2"), "bob", b"brand-new", 3600);
    assert_eq!(error_code(&b.allocate(&mut h)), 0);
    let mut c = Client::rest(ft("198.51.100.7:3"), "cid", b"old-secret", 3600);
    assert_eq!(error_code(&c.allocate(&mut h)), 401);
    // The allocation made with the old secret still relays, both ways...
    assert!(matches!(
        h.client_out(a.ft, &CHANNEL_DATA),
        ClientOutput::Relay { .. }
    ));
    assert!(
        h.peer_sends(relay, PEER.parse().unwrap(), b"pong")
            .is_some()
    );
    // ...and its next Refresh is checked against the new secrets: 401, not 438 (the nonce
    // key did not change, so its nonce is still good).
    assert_eq!(error_code(&refresh(&mut a, &mut h, 600)), 401);
    assert_eq!(h.server.allocation_count(), 2);
}

#[test]
fn static_users_follow_a_reload() {
    let mut h = Harness::new();
    let mut alice = Client::with_password(ft("198.51.100.7:1"), "alice", "wonderland");
    assert_eq!(error_code(&alice.allocate(&mut h)), 0);
    h.server
        .set_settings(with_credentials(&[], &[("carol", "secret-garden")]));
    let mut carol = Client::with_password(ft("198.51.100.7:2"), "carol", "secret-garden");
    assert_eq!(error_code(&carol.allocate(&mut h)), 0);
    let mut again = Client::with_password(ft("198.51.100.7:3"), "alice", "wonderland");
    assert_eq!(error_code(&again.allocate(&mut h)), 401);
    assert_eq!(error_code(&refresh(&mut alice, &mut h, 600)), 401);
}

#[test]
fn peer_policy_and_lifetimes_follow_a_reload() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    c.allocate(&mut h);
    assert_eq!(permit(&mut c, &mut h, &[PEER]), 0);
    let mut s = settings(
        Limits {
            max_lifetime: Duration::from_secs(120),
            default_lifetime: Duration::from_secs(60),
            ..Limits::default()
        },
        &[],
    );
    s.policy = PeerPolicy::new(vec![], vec!["198.51.100.0/24".parse().unwrap()]);
    h.server.set_settings(Arc::new(s));
    assert_eq!(permit(&mut c, &mut h, &[PEER]), 403);
    assert_eq!(permit(&mut c, &mut h, &["203.0.113.9:1"]), 0);
    let answer = refresh(&mut c, &mut h, 3600);
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&120u32.to_be_bytes()[..]),
        "the new max_lifetime"
    );
}

#[test]
fn quota_limits_change_live() {
    let shared = Arc::new(Shared::new(10, 100));
    let t0 = Instant::now();
    let mut h = Harness {
        server: Server::new(settings(Limits::default(), &[]), shared.clone(), t0),
        io: FakeIo::default(),
        t0,
        elapsed: Duration::ZERO,
    };
    let mut one = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    assert_eq!(error_code(&one.allocate(&mut h)), 0);
    shared.quota.set_limits(1, 100);
    let mut two = Client::rest(ft("198.51.100.7:2"), "ann", b"new-secret", 3600);
    assert_eq!(error_code(&two.allocate(&mut h)), 486);
    shared.quota.set_limits(0, 1);
    assert_eq!(error_code(&two.allocate(&mut h)), 508);
    shared.quota.set_limits(0, 2);
    assert_eq!(error_code(&two.allocate(&mut h)), 0);
}

#[test]
fn draining_refuses_allocate_with_a_signed_508_and_serves_what_exists() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    let relay = relayed(&a.allocate(&mut h))[0];
    assert_eq!(bind(&mut a, &mut h, 0x4000, PEER), 0);
    assert!(!h.server.is_draining());

    h.server.set_draining(true);

    let mut b = Client::rest(ft("198.51.100.7:2"), "bob", b"new-secret", 3600);
    let answer = b.allocate(&mut h);
    assert_eq!(error_code(&answer), 508);
    assert!(signed_by(&answer, &b), "the refusal is authenticated");
    assert_eq!(h.server.allocation_count(), 1);
    // Unauthenticated, the Allocate still gets the usual 401 challenge (no drain hint).
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [5; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    assert_eq!(
        error_code(&h.send(ft("198.51.100.7:3"), &req).unwrap()),
        401
    );
    // The existing allocation: Refresh, CreatePermission, ChannelBind, relaying both ways.
    let answer = refresh(&mut a, &mut h, 600);
    assert_eq!(error_code(&answer), 0);
    assert!(signed_by(&answer, &a));
    assert_eq!(permit(&mut a, &mut h, &["198.51.100.10:1"]), 0);
    assert_eq!(bind(&mut a, &mut h, 0x4001, "198.51.100.11:2"), 0);
    assert!(matches!(
        h.client_out(a.ft, &CHANNEL_DATA),
        ClientOutput::Relay { .. }
    ));
    assert!(
        h.peer_sends(relay, PEER.parse().unwrap(), b"pong")
            .is_some()
    );
    // Binding is answered as always.
    let mut binding = Vec::new();
    Writer::new(&mut binding, Class::Request, method::BINDING, [6; 12]);
    assert_eq!(
        error_code(&h.send(ft("198.51.100.7:4"), &binding).unwrap()),
        0
    );
    // Deleting the allocation still works, and then the core holds none.
    assert_eq!(error_code(&refresh(&mut a, &mut h, 0)), 0);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(
        h.server
            .stats()
            .snapshot()
            .requests(RequestMethod::Allocate, Err(508)),
        1
    );
}

#[test]
fn the_same_settings_again_keep_the_rate_limiter() {
    let limits = Limits {
        unauthenticated_rate: 1,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits.clone(), &[]), Shared::new(10, 100));
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [5; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let client = ft("198.51.100.7:3");
    // A burst of 2 × rate, then silence.
    assert!(h.send(client, &req).is_some());
    assert!(h.send(client, &req).is_some());
    assert!(h.send(client, &req).is_none());
    // Same limits: the limiter keeps its state.
    h.server
        .set_settings(Arc::new(settings(limits.clone(), &[])));
    assert!(h.send(client, &req).is_none());
    // A new rate: a fresh table.
    h.server.set_settings(Arc::new(settings(
        Limits {
            unauthenticated_rate: 5,
            ..limits
        },
        &[],
    )));
    assert!(h.send(client, &req).is_some());
}

#[test]
fn draining_with_an_alternate_answers_a_signed_300_for_its_transport_and_family_only() {
    use crate::proto::alternate::{Alternate, Alternates};
    let mut h = Harness::new();
    let udp_v4: SocketAddr = "192.0.2.200:3478".parse().unwrap();
    h.server.set_alternates(Arc::new(Alternates::new(vec![
        // The node itself (the listener the request reached) is never chosen.
        Alternate {
            transport: Transport::Udp,
            address: "192.0.2.100:3478".parse().unwrap(),
        },
        Alternate {
            transport: Transport::Tcp,
            address: "192.0.2.201:3478".parse().unwrap(),
        },
        Alternate {
            transport: Transport::Udp,
            address: udp_v4,
        },
    ])));
    // Not draining: alternates change nothing.
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    assert_eq!(error_code(&a.allocate(&mut h)), 0);

    h.server.set_draining(true);
    let mut b = Client::rest(ft("198.51.100.7:2"), "bob", b"new-secret", 3600);
    let answer = b.allocate(&mut h);
    assert_eq!(error_code(&answer), 300);
    assert!(signed_by(&answer, &b), "the redirection is authenticated");
    let msg = Message::parse(&answer).unwrap();
    assert_eq!(
        msg.get(attr::ALTERNATE_SERVER)
            .and_then(crate::proto::stun::decode_address),
        Some(udp_v4)
    );
    assert_eq!(h.server.allocation_count(), 1);
    // An IPv6 client: no alternate of its family, so 508.
    let v6 = FiveTuple {
        transport: Transport::Udp,
        client: "[2001:db8::7]:1".parse().unwrap(),
        server: "[2001:db8::100]:3478".parse().unwrap(),
    };
    let mut c = Client::rest(v6, "cat", b"new-secret", 3600);
    assert_eq!(error_code(&c.allocate(&mut h)), 508);
    let stats = h.server.stats().snapshot();
    assert_eq!(stats.requests(RequestMethod::Allocate, Err(300)), 1);
    assert_eq!(stats.requests(RequestMethod::Allocate, Err(508)), 1);
}
