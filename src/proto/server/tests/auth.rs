//! Authentication in the core: unauthenticated answers kept small, REST and static
//! credentials, SHA-256 integrity, nonces (stale, bound to the client address), and the
//! username an allocation belongs to.

use super::*;

#[test]
fn binding_is_answered_without_auth_at_most_twice_its_size() {
    let mut h = Harness::new();
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::BINDING, [1; 12]);
    assert_eq!(req.len(), 20);
    let answer = h.send(ft("198.51.100.7:40000"), &req).unwrap();
    assert!(answer.len() <= 40, "{} bytes", answer.len());
    let m = Message::parse(&answer).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Success, method::BINDING));
    assert_eq!(
        m.xor_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap()),
        Some("198.51.100.7:40000".parse().unwrap())
    );
    assert!(m.get(attr::SOFTWARE).is_none());
}

#[test]
fn unauthenticated_allocate_gets_a_small_401() {
    let mut h = Harness::new();
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [1; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    assert_eq!(req.len(), 28);
    let answer = h.send(ft("198.51.100.7:40000"), &req).unwrap();
    assert!(
        answer.len() * 10 <= 28 * 25,
        "{} bytes is more than 2.5x",
        answer.len()
    );
    let m = Message::parse(&answer).unwrap();
    assert_eq!(error_code(&answer), 401);
    assert_eq!(m.get(attr::REALM), Some(REALM.as_bytes()));
    assert!(m.get(attr::NONCE).is_some());
    assert!(
        m.get(attr::SOFTWARE).is_none(),
        "no SOFTWARE before authentication"
    );
}

#[test]
fn rest_allocation_succeeds_and_the_answer_is_signed() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:40000"), "alice", b"new-secret", 3600);
    let answer = c.allocate(&mut h);
    assert_eq!(error_code(&answer), 0);
    let m = Message::parse(&answer).unwrap();
    assert_eq!(m.verify_integrity(&c.key), Some(Integrity::Sha1));
    assert_eq!(
        relayed(&answer),
        vec!["203.0.113.1:50000".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(m.get(attr::LIFETIME), Some(&600u32.to_be_bytes()[..]));
    assert_eq!(m.get(attr::SOFTWARE), Some(&b"turnpike-test"[..]));
    assert_eq!(
        m.xor_address(m.get(attr::XOR_MAPPED_ADDRESS).unwrap()),
        Some(c.ft.client)
    );
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn sha256_integrity_is_answered_in_kind() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:40000"), "alice", b"new-secret", 3600);
    c.integrity = Integrity::Sha256;
    let answer = c.allocate(&mut h);
    assert_eq!(error_code(&answer), 0);
    let m = Message::parse(&answer).unwrap();
    assert!(m.get(attr::MESSAGE_INTEGRITY).is_none());
    assert_eq!(m.verify_integrity(&c.key), Some(Integrity::Sha256));
}

#[test]
fn any_listed_secret_validates_and_others_do_not() {
    let mut h = Harness::new();
    let mut old = Client::rest(ft("198.51.100.7:1"), "bob", b"old-secret", 60);
    assert_eq!(error_code(&old.allocate(&mut h)), 0);
    let mut other = Client::rest(ft("198.51.100.7:2"), "bob", b"not-a-secret", 60);
    assert_eq!(error_code(&other.allocate(&mut h)), 401);
    assert_eq!(
        h.server
            .stats()
            .snapshot()
            .auth_failures(AuthFailure::BadIntegrity),
        1
    );
}

#[test]
fn expired_rest_usernames_are_refused() {
    let mut h = Harness::new();
    let c = mint(b"new-secret", "carol", UNIX0 - 100, 50);
    let mut client = Client::with_password(ft("198.51.100.7:1"), &c.username, &c.password);
    assert_eq!(error_code(&client.allocate(&mut h)), 401);
    assert_eq!(
        h.server
            .stats()
            .snapshot()
            .auth_failures(AuthFailure::Expired),
        1
    );
    // It was valid until its expiry: a credential expiring in 10 s works now, not in 11 s.
    let mut soon = Client::rest(ft("198.51.100.7:2"), "carol", b"new-secret", 10);
    h.elapsed += Duration::from_secs(11);
    assert_eq!(error_code(&soon.allocate(&mut h)), 401);
}

#[test]
fn static_users_authenticate_and_wrong_passwords_do_not() {
    let mut h = Harness::new();
    let mut good = Client::with_password(ft("198.51.100.7:1"), "alice", "wonderland");
    assert_eq!(error_code(&good.allocate(&mut h)), 0);
    let mut bad = Client::with_password(ft("198.51.100.7:2"), "alice", "looking-glass");
    assert_eq!(error_code(&bad.allocate(&mut h)), 401);
    let mut nobody = Client::with_password(ft("198.51.100.7:3"), "mallory", "x");
    assert_eq!(error_code(&nobody.allocate(&mut h)), 401);
    assert_eq!(
        h.server
            .stats()
            .snapshot()
            .auth_failures(AuthFailure::UnknownUser),
        1
    );
}

#[test]
fn stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "dave", b"new-secret", 86400);
    assert_eq!(error_code(&c.allocate(&mut h)), 0);
    h.elapsed += Duration::from_secs(601);
    let tid = c.tid();
    let answer = h.send(c.ft, &c.request(method::REFRESH, tid, &[])).unwrap();
    assert_eq!(error_code(&answer), 438);
    let fresh = Message::parse(&answer)
        .unwrap()
        .get(attr::NONCE)
        .unwrap()
        .to_vec();
    assert_ne!(fresh, c.nonce);
    c.nonce = fresh;
    let tid = c.tid();
    assert_eq!(
        error_code(&h.send(c.ft, &c.request(method::REFRESH, tid, &[])).unwrap()),
        0
    );
}

#[test]
fn a_nonce_is_bound_to_its_client_address() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "erin", b"new-secret", 86400);
    assert_eq!(error_code(&a.allocate(&mut h)), 0);
    let mut b = Client::rest(ft("198.51.100.8:1"), "erin", b"new-secret", 86400);
    b.nonce = a.nonce.clone();
    let tid = b.tid();
    let answer = h
        .send(b.ft, &b.request(method::ALLOCATE, tid, &[udp()]))
        .unwrap();
    assert_eq!(error_code(&answer), 438);
}

#[test]
fn wrong_credentials_on_an_allocation_get_441() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "sam", b"new-secret", 86400);
    a.allocate(&mut h);
    let mut b = Client::with_password(ft("198.51.100.7:1"), "alice", "wonderland");
    assert_eq!(error_code(&b.call(&mut h, method::REFRESH, &[])), 441);
}
