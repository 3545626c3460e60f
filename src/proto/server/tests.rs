//! The TURN core driven without sockets: a fake clock and a fake relay I/O.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::credentials::mint;
use crate::proto::nonce::NonceKey;
use crate::proto::policy::{Cidr, PeerPolicy};
use crate::proto::stun::{Integrity, Message, Writer, attr, method};

mod counting;
#[path = "tcp_tests.rs"]
mod tcp_tests;

const REALM: &str = "harness.test";
const UNIX0: u64 = 1_800_000_000;

/// Relay sockets as numbers: IPv4 relays on 203.0.113.1, IPv6 on 2001:db8::1.
#[derive(Default)]
struct FakeIo {
    next_port: u16,
    open: BTreeSet<u32>,
    held: BTreeSet<u16>,
    no_ports: bool,
}

impl RelayIo for FakeIo {
    fn open(&mut self, r: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        if self.no_ports {
            return Err(RelayOpenError::NoPort);
        }
        if self.next_port == 0 {
            self.next_port = 50000;
        }
        if r.even && self.next_port % 2 == 1 {
            self.next_port += 1;
        }
        let ip: IpAddr = match r.family {
            Family::V4 => "203.0.113.1".parse().unwrap(),
            Family::V6 => "2001:db8::1".parse().unwrap(),
        };
        let port = self.next_port;
        self.next_port += if r.reserve_next { 2 } else { 1 };
        self.open.insert(port as u32);
        let reserved = r.reserve_next.then(|| {
            self.held.insert(port + 1);
            SocketAddr::new(ip, port + 1)
        });
        Ok(OpenedRelay {
            id: RelayId(port as u32),
            addr: SocketAddr::new(ip, port),
            reserved,
        })
    }

    fn open_reserved(
        &mut self,
        addr: SocketAddr,
        _df: bool,
    ) -> Result<OpenedRelay, RelayOpenError> {
        assert!(self.held.remove(&addr.port()), "not reserved: {addr}");
        self.open.insert(addr.port() as u32);
        Ok(OpenedRelay {
            id: RelayId(addr.port() as u32),
            addr,
            reserved: None,
        })
    }

    fn release_reserved(&mut self, addr: SocketAddr) {
        assert!(self.held.remove(&addr.port()), "not reserved: {addr}");
    }

    fn close(&mut self, id: RelayId) {
        assert!(
            self.open.remove(&id.0),
            "closed twice or never opened: {id:?}"
        );
    }

    fn open_tcp(&mut self, family: Family) -> Result<OpenedRelay, RelayOpenError> {
        self.open(RelayRequest {
            family,
            even: false,
            reserve_next: false,
            dont_fragment: false,
        })
    }
}

struct Harness {
    server: Server,
    io: FakeIo,
    t0: Instant,
    elapsed: Duration,
}

fn settings(limits: Limits, allow: &[&str]) -> Settings {
    let users: HashMap<String, String> = [("alice".to_owned(), "wonderland".to_owned())].into();
    Settings {
        auth: Authenticator::new(
            REALM.into(),
            vec![b"new-secret".to_vec(), b"old-secret".to_vec()],
            &users,
            NonceKey::new([7; 32], 600),
        ),
        policy: PeerPolicy::new(
            allow.iter().map(|c| c.parse::<Cidr>().unwrap()).collect(),
            vec![],
        ),
        own_relay_ips: vec![
            "203.0.113.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ],
        relay_ports: (49152, 65535),
        limits,
        software: Some("turnpike-test".into()),
        families: [true, true],
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(settings(Limits::default(), &[]), Shared::new(10, 100))
    }

    fn with(settings: Settings, shared: Shared) -> Self {
        let t0 = Instant::now();
        Harness {
            server: Server::new(settings, Arc::new(shared), t0),
            io: FakeIo::default(),
            t0,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.t0 + self.elapsed,
            unix: UNIX0 + self.elapsed.as_secs(),
        }
    }

    fn advance(&mut self, secs: u64) {
        self.elapsed += Duration::from_secs(secs);
        let now = self.now();
        self.server.handle_timeout(now, &mut self.io);
    }

    /// Sends bytes from a client; returns the reply, if any.
    fn send(&mut self, ft: FiveTuple, data: &[u8]) -> Option<Vec<u8>> {
        let now = self.now();
        match self.server.handle_client(now, ft, data, &mut self.io) {
            ClientOutput::Reply => Some(self.server.reply().to_vec()),
            _ => None,
        }
    }

    fn client_out(&mut self, ft: FiveTuple, data: &[u8]) -> ClientOutput {
        let now = self.now();
        self.server.handle_client(now, ft, data, &mut self.io)
    }

    /// A peer sends `payload` to relay `relay`; returns the frame the client would get.
    fn peer_sends(
        &mut self,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let mut buf = vec![0xAAu8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        let now = self.now().instant;
        match self.server.handle_peer(
            now,
            RelayId(relay.port() as u32),
            peer,
            &mut buf,
            payload.len(),
        ) {
            PeerOutput::ToClient { frame, .. } => Some(buf[frame].to_vec()),
            PeerOutput::Nothing => None,
        }
    }
}

fn ft(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: client.parse().unwrap(),
        server: "192.0.2.100:3478".parse().unwrap(),
    }
}

/// A TURN client's view: its credentials and the current nonce.
struct Client {
    ft: FiveTuple,
    username: String,
    key: [u8; 16],
    nonce: Vec<u8>,
    integrity: Integrity,
    next_tid: u8,
}

impl Client {
    fn rest(ft: FiveTuple, user: &str, secret: &[u8], ttl: u64) -> Self {
        let c = mint(secret, user, UNIX0, ttl);
        Self::with_password(ft, &c.username, &c.password)
    }

    fn with_password(ft: FiveTuple, username: &str, password: &str) -> Self {
        Client {
            ft,
            username: username.into(),
            key: long_term_key(username, REALM, password),
            nonce: Vec::new(),
            integrity: Integrity::Sha1,
            next_tid: 1,
        }
    }

    fn tid(&mut self) -> [u8; 12] {
        self.next_tid += 1;
        [self.next_tid; 12]
    }

    /// Builds a signed request.
    fn request(&self, m: u16, tid: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Request, m, tid);
        for (t, v) in attrs {
            w.attr(*t, v);
        }
        w.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &self.nonce)
            .integrity(self.integrity, &self.key)
            .fingerprint();
        buf
    }

    /// Sends a request, learning the nonce from a 401/438 first when needed. Returns the answer.
    fn call(&mut self, h: &mut Harness, m: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        for _ in 0..2 {
            let tid = self.tid();
            let answer = h
                .send(self.ft, &self.request(m, tid, attrs))
                .expect("an answer");
            let msg = Message::parse(&answer).unwrap();
            if msg.class() == Class::Error
                && matches!(error_code(&answer), 401 | 438)
                && msg.get(attr::NONCE).is_some()
            {
                let nonce = msg.get(attr::NONCE).unwrap().to_vec();
                if nonce != self.nonce {
                    self.nonce = nonce;
                    continue;
                }
            }
            return answer;
        }
        panic!("no answer after a nonce refresh");
    }

    fn allocate(&mut self, h: &mut Harness) -> Vec<u8> {
        self.call(h, method::ALLOCATE, &[udp()])
    }
}

fn udp() -> (u16, Vec<u8>) {
    (attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

/// Builds XOR-PEER-ADDRESS for a given tid (XOR depends on it for IPv6).
fn xor_peer(peer: &str, tid: [u8; 12]) -> (u16, Vec<u8>) {
    let mut out = [0u8; 20];
    let n = crate::proto::stun::encode_xor_address(peer.parse().unwrap(), &tid, &mut out);
    (attr::XOR_PEER_ADDRESS, out[..n].to_vec())
}

fn error_code(answer: &[u8]) -> u16 {
    let m = Message::parse(answer).unwrap();
    match m.get(attr::ERROR_CODE) {
        Some(v) => (v[2] & 7) as u16 * 100 + v[3] as u16,
        None => 0,
    }
}

fn relayed(answer: &[u8]) -> Vec<SocketAddr> {
    let m = Message::parse(answer).unwrap();
    m.attributes()
        .filter(|(t, _)| *t == attr::XOR_RELAYED_ADDRESS)
        .map(|(_, v)| m.xor_address(v).unwrap())
        .collect()
}

/// Sends a request whose XOR-PEER-ADDRESS attributes are encoded for its own tid.
fn call_with_peers(
    c: &mut Client,
    h: &mut Harness,
    m: u16,
    peers: &[&str],
    extra: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    for _ in 0..2 {
        let tid = c.tid();
        let mut attrs: Vec<(u16, Vec<u8>)> = extra.to_vec();
        attrs.extend(peers.iter().map(|p| xor_peer(p, tid)));
        let answer = h.send(c.ft, &c.request(m, tid, &attrs)).expect("an answer");
        if error_code(&answer) == 438 {
            c.nonce = Message::parse(&answer)
                .unwrap()
                .get(attr::NONCE)
                .unwrap()
                .to_vec();
            continue;
        }
        return answer;
    }
    panic!("nonce loop");
}

fn permit(c: &mut Client, h: &mut Harness, peers: &[&str]) -> u16 {
    error_code(&call_with_peers(
        c,
        h,
        method::CREATE_PERMISSION,
        peers,
        &[],
    ))
}

fn bind(c: &mut Client, h: &mut Harness, number: u16, peer: &str) -> u16 {
    let ch = (
        attr::CHANNEL_NUMBER,
        vec![(number >> 8) as u8, number as u8, 0, 0],
    );
    error_code(&call_with_peers(c, h, method::CHANNEL_BIND, &[peer], &[ch]))
}

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
fn retransmissions_get_the_same_answer_and_a_second_allocate_437() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "frank", b"new-secret", 86400);
    c.allocate(&mut h); // learns the nonce and allocates
    let tid = [0x55; 12];
    let mut c2 = Client::rest(ft("198.51.100.7:2"), "frank", b"new-secret", 86400);
    c2.allocate(&mut h);
    h.send(
        c2.ft,
        &c2.request(
            method::REFRESH,
            [1; 12],
            &[(attr::LIFETIME, vec![0, 0, 0, 0])],
        ),
    );
    // A fresh 5-tuple: first answer, then the same bytes for the retransmission.
    let mut c3 = Client::rest(ft("198.51.100.7:3"), "frank", b"new-secret", 86400);
    c3.nonce = h.server.settings.auth.nonce(UNIX0, c3.ft.client).to_vec();
    let req = c3.request(method::ALLOCATE, tid, &[udp()]);
    let first = h.send(c3.ft, &req).unwrap();
    assert_eq!(error_code(&first), 0);
    h.elapsed += Duration::from_millis(500);
    assert_eq!(
        h.send(c3.ft, &req).unwrap(),
        first,
        "retransmission answered identically"
    );
    assert_eq!(h.server.allocation_count(), 2);
    assert_eq!(error_code(&c3.allocate(&mut h)), 437);
    let _ = c;
}

#[test]
fn refresh_without_allocation_is_437_and_lifetime_zero_deletes() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "gina", b"new-secret", 86400);
    assert_eq!(error_code(&c.call(&mut h, method::REFRESH, &[])), 437);
    assert_eq!(error_code(&c.allocate(&mut h)), 0);
    assert_eq!(h.io.open.len(), 1);
    let answer = c.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, vec![0, 0, 0, 0])],
    );
    assert_eq!(error_code(&answer), 0);
    assert_eq!(
        Message::parse(&answer).unwrap().verify_integrity(&c.key),
        Some(Integrity::Sha1)
    );
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.open.is_empty(), "relay socket closed");
    assert_eq!(error_code(&c.call(&mut h, method::REFRESH, &[])), 437);
}

#[test]
fn lifetimes_are_capped_and_allocations_expire() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "hank", b"new-secret", 86400);
    let answer = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::LIFETIME, 999_999u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&3600u32.to_be_bytes()[..])
    );
    let answer = c.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, 30u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&30u32.to_be_bytes()[..])
    );
    h.advance(29);
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(2);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.open.is_empty());
    // The quota came back.
    assert_eq!(h.server.shared.quota.in_use(), 0);
}

#[test]
fn a_short_requested_lifetime_gets_the_default_on_allocate() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ivy", b"new-secret", 86400);
    let answer = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::LIFETIME, 10u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&600u32.to_be_bytes()[..])
    );
}

#[test]
fn denied_peer_classes_get_403() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "jack", b"new-secret", 86400);
    c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    for denied in [
        "127.0.0.1:9",
        "10.1.2.3:9",
        "172.16.0.1:9",
        "192.168.1.1:9",
        "100.64.0.1:9",
        "169.254.169.254:80",
        "0.0.0.0:9",
        "224.0.0.1:9",
        "255.255.255.255:9",
        "[::1]:9",
        "[fc00::1]:9",
        "[fe80::1]:9",
        "[ff02::1]:9",
        "[fd00:ec2::254]:80",
        "[::ffff:127.0.0.1]:9",
        "[::ffff:10.0.0.1]:9",
    ] {
        assert_eq!(permit(&mut c, &mut h, &[denied]), 403, "{denied}");
        assert_eq!(bind(&mut c, &mut h, 0x4001, denied), 403, "{denied}");
    }
    assert_eq!(
        permit(&mut c, &mut h, &["198.51.100.9:9", "[2001:db8::9]:9"]),
        0
    );
    // All or nothing: one denied peer in the list refuses the whole request.
    assert_eq!(
        permit(&mut c, &mut h, &["198.51.100.10:9", "10.0.0.1:9"]),
        403
    );
    let alloc = h.server.allocations.iter().flatten().next().unwrap();
    assert!(!alloc.permits("198.51.100.10".parse().unwrap(), h.now().instant));
}

#[test]
fn operator_allow_list_and_own_relays_are_permitted() {
    let mut h = Harness::with(
        settings(Limits::default(), &["127.0.0.1/32"]),
        Shared::new(10, 100),
    );
    let mut c = Client::rest(ft("198.51.100.7:1"), "kim", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(permit(&mut c, &mut h, &["127.0.0.1:9"]), 0);
    assert_eq!(permit(&mut c, &mut h, &["127.0.0.2:9"]), 403);
    // 203.0.113.1 is TEST-NET-3 (denied as documentation space? no: allowed publicly) — the
    // own-relay rule is what matters for private relay IPs: see the next test.
}

#[test]
fn own_relay_addresses_are_allowed_even_when_private() {
    let mut s = settings(Limits::default(), &[]);
    s.own_relay_ips = vec!["10.0.0.5".parse().unwrap()];
    let mut h = Harness::with(s, Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "lee", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(
        permit(&mut c, &mut h, &["10.0.0.5:50001"]),
        0,
        "a relay of ours"
    );
    assert_eq!(
        permit(&mut c, &mut h, &["10.0.0.5:22"]),
        403,
        "outside the relay range"
    );
    assert_eq!(permit(&mut c, &mut h, &["10.0.0.6:50001"]), 403);
}

#[test]
fn relaying_needs_a_permission_by_ip_not_port_and_permissions_expire() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "max", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    assert_eq!(
        h.peer_sends(relay, peer, b"early"),
        None,
        "no permission yet"
    );
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.9:1"]), 0);
    let frame = h
        .peer_sends(relay, peer, b"hello")
        .expect("relayed: permission is by IP");
    let m = Message::parse(&frame).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Indication, method::DATA));
    assert_eq!(m.get(attr::DATA), Some(&b"hello"[..]));
    assert_eq!(
        m.xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap()),
        Some(peer)
    );
    assert_eq!(
        h.peer_sends(relay, "198.51.100.10:7000".parse().unwrap(), b"x"),
        None
    );
    h.advance(299);
    assert!(h.peer_sends(relay, peer, b"still").is_some());
    h.advance(2);
    assert_eq!(
        h.peer_sends(relay, peer, b"late"),
        None,
        "permission expired after 300 s"
    );
    assert!(
        h.server
            .stats()
            .snapshot()
            .dropped(DropReason::NoPermission)
            >= 3
    );
}

#[test]
fn send_indications_relay_only_to_permitted_peers() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ned", b"new-secret", 86400);
    c.allocate(&mut h);
    let send = |peer: &str| {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Indication, method::SEND, [9; 12]);
        w.xor_addr(attr::XOR_PEER_ADDRESS, peer.parse().unwrap())
            .attr(attr::DATA, b"payload!");
        buf
    };
    let msg = send("198.51.100.9:7000");
    assert_eq!(h.client_out(c.ft, &msg), ClientOutput::Nothing);
    permit(&mut c, &mut h, &["198.51.100.9:1"]);
    match h.client_out(c.ft, &msg) {
        ClientOutput::Relay {
            peer,
            payload,
            relay,
        } => {
            assert_eq!(peer, "198.51.100.9:7000".parse().unwrap());
            assert_eq!(&msg[payload], b"payload!");
            assert_eq!(relay, RelayId(50000));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.client_out(c.ft, &send("10.0.0.1:7000")),
        ClientOutput::Nothing
    );
    assert_eq!(
        h.client_out(ft("198.51.100.7:99"), &msg),
        ClientOutput::Nothing,
        "no allocation"
    );
}

#[test]
fn channels_carry_data_both_ways() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "olga", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    assert_eq!(bind(&mut c, &mut h, 0x4001, "198.51.100.9:7000"), 0);
    let data = [0x40, 0x01, 0x00, 0x03, b'a', b'b', b'c', 0];
    match h.client_out(c.ft, &data) {
        ClientOutput::Relay { peer, payload, .. } => {
            assert_eq!(peer, "198.51.100.9:7000".parse().unwrap());
            assert_eq!(&data[payload], b"abc");
        }
        other => panic!("{other:?}"),
    }
    let frame = h
        .peer_sends(relay, "198.51.100.9:7000".parse().unwrap(), b"xyz")
        .unwrap();
    assert_eq!(frame, vec![0x40, 0x01, 0x00, 0x03, b'x', b'y', b'z']);
    // Another port of the same IP has the permission but no channel: a Data indication.
    let frame = h
        .peer_sends(relay, "198.51.100.9:7001".parse().unwrap(), b"xyz")
        .unwrap();
    assert_eq!(Message::parse(&frame).unwrap().method(), method::DATA);
    // An unbound channel number is dropped.
    assert_eq!(
        h.client_out(c.ft, &[0x40, 0x02, 0, 1, 1, 0, 0, 0]),
        ClientOutput::Nothing
    );
}

#[test]
fn channel_rebinding_rules() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "pam", b"new-secret", 86400);
    c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::LIFETIME, 3600u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        bind(&mut c, &mut h, 0x3FFF, "198.51.100.9:7000"),
        400,
        "below the range"
    );
    assert_eq!(
        bind(&mut c, &mut h, 0x7FFF, "198.51.100.9:7000"),
        400,
        "above the range"
    );
    assert_eq!(bind(&mut c, &mut h, 0x4000, "198.51.100.9:7000"), 0);
    assert_eq!(
        bind(&mut c, &mut h, 0x4000, "198.51.100.9:7000"),
        0,
        "refresh"
    );
    assert_eq!(
        bind(&mut c, &mut h, 0x4000, "198.51.100.9:7001"),
        400,
        "number taken"
    );
    assert_eq!(
        bind(&mut c, &mut h, 0x4001, "198.51.100.9:7000"),
        400,
        "peer taken"
    );
    // Expired, the binding still blocks others during the cooldown, then frees both.
    h.advance(601);
    assert_eq!(
        h.client_out(c.ft, &[0x40, 0x00, 0, 1, 1, 0, 0, 0]),
        ClientOutput::Nothing
    );
    assert_eq!(
        bind(&mut c, &mut h, 0x4000, "198.51.100.9:7001"),
        400,
        "cooldown"
    );
    h.advance(300);
    assert_eq!(bind(&mut c, &mut h, 0x4000, "198.51.100.9:7001"), 0);
}

#[test]
fn error_codes_for_malformed_and_unsupported_allocates() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "quinn", b"new-secret", 86400);
    assert_eq!(error_code(&c.call(&mut h, method::ALLOCATE, &[])), 400);
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[(attr::REQUESTED_TRANSPORT, vec![132, 0, 0, 0])]
        )),
        442,
        "SCTP"
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]
        )),
        400,
        "TCP relays only over TCP or TLS (RFC 6062 §5.1)"
    );
    let unknown = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (0x0030, vec![1, 2, 3, 4])],
    );
    assert_eq!(error_code(&unknown), 420);
    assert_eq!(
        Message::parse(&unknown)
            .unwrap()
            .get(attr::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x30][..])
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (attr::REQUESTED_ADDRESS_FAMILY, vec![3, 0, 0, 0])]
        )),
        440
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[
                udp(),
                (attr::EVEN_PORT, vec![0]),
                (attr::RESERVATION_TOKEN, vec![0; 8])
            ]
        )),
        400
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (attr::RESERVATION_TOKEN, vec![1; 8])]
        )),
        508
    );
    // An optional unknown attribute (>= 0x8000) is ignored.
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (0x8fff, vec![1, 2, 3, 4])]
        )),
        0
    );
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn ipv6_and_dual_allocations() {
    let mut s = settings(Limits::default(), &[]);
    s.families = [true, false];
    let mut h = Harness::with(s, Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "rae", b"new-secret", 86400);
    let v6 = (attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    assert_eq!(
        error_code(&c.call(&mut h, method::ALLOCATE, &[udp(), v6])),
        440
    );
    let dual = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    assert_eq!(error_code(&dual), 0, "IPv4 is still allocated");
    assert_eq!(relayed(&dual).len(), 1);
    let aec = Message::parse(&dual)
        .unwrap()
        .get(attr::ADDRESS_ERROR_CODE)
        .unwrap()
        .to_vec();
    assert_eq!(
        aec,
        [&[2u8, 0, 4, 40][..], b"Address Family not Supported"].concat()
    );
    assert_eq!(permit(&mut c, &mut h, &["[2001:db8::9]:9"]), 443);

    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "rae", b"new-secret", 86400);
    let dual = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    let addrs = relayed(&dual);
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());
    assert_eq!(
        permit(&mut c, &mut h, &["[2001:db8::9]:9", "198.51.100.9:9"]),
        0
    );
    let mut c6 = Client::rest(ft("198.51.100.7:2"), "rae", b"new-secret", 86400);
    let only6 = c6.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    assert!(relayed(&only6)[0].is_ipv6());
    assert_eq!(permit(&mut c6, &mut h, &["198.51.100.9:9"]), 443);
    let refresh4 = c6.call(
        &mut h,
        method::REFRESH,
        &[(attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0])],
    );
    assert_eq!(error_code(&refresh4), 443);
}

#[test]
fn wrong_credentials_on_an_allocation_get_441() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "sam", b"new-secret", 86400);
    a.allocate(&mut h);
    let mut b = Client::with_password(ft("198.51.100.7:1"), "alice", "wonderland");
    assert_eq!(error_code(&b.call(&mut h, method::REFRESH, &[])), 441);
}

#[test]
fn quotas_per_user_and_in_total() {
    let mut h = Harness::with(settings(Limits::default(), &[]), Shared::new(1, 2));
    let mut a1 = Client::rest(ft("198.51.100.7:1"), "tom", b"new-secret", 86400);
    let mut a2 = Client::rest(ft("198.51.100.7:2"), "tom", b"new-secret", 86400);
    assert_eq!(error_code(&a1.allocate(&mut h)), 0);
    assert_eq!(error_code(&a2.allocate(&mut h)), 486);
    let mut b = Client::rest(ft("198.51.100.7:3"), "uma", b"new-secret", 86400);
    assert_eq!(error_code(&b.allocate(&mut h)), 0);
    let mut c = Client::rest(ft("198.51.100.7:4"), "vic", b"new-secret", 86400);
    assert_eq!(error_code(&c.allocate(&mut h)), 508);
    a1.call(&mut h, method::REFRESH, &[(attr::LIFETIME, vec![0; 4])]);
    assert_eq!(
        error_code(&a2.allocate(&mut h)),
        0,
        "quota released with the allocation"
    );
}

#[test]
fn no_relay_port_is_508() {
    let mut h = Harness::new();
    h.io.no_ports = true;
    let mut c = Client::rest(ft("198.51.100.7:1"), "will", b"new-secret", 86400);
    assert_eq!(error_code(&c.allocate(&mut h)), 508);
    assert_eq!(h.server.shared.quota.in_use(), 0);
}

#[test]
fn even_port_reservations() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "xena", b"new-secret", 86400);
    let answer = a.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::EVEN_PORT, vec![0x80])],
    );
    let port = relayed(&answer)[0].port();
    assert_eq!(port % 2, 0);
    let token = Message::parse(&answer)
        .unwrap()
        .get(attr::RESERVATION_TOKEN)
        .unwrap()
        .to_vec();
    let mut b = Client::rest(ft("198.51.100.7:2"), "xena", b"new-secret", 86400);
    let second = b.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::RESERVATION_TOKEN, token.clone())],
    );
    assert_eq!(relayed(&second)[0].port(), port + 1);
    let mut c = Client::rest(ft("198.51.100.7:3"), "xena", b"new-secret", 86400);
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (attr::RESERVATION_TOKEN, token)]
        )),
        508,
        "used once"
    );
    // An unclaimed reservation is released after 30 s.
    let mut d = Client::rest(ft("198.51.100.7:4"), "xena", b"new-secret", 86400);
    d.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::EVEN_PORT, vec![0x80])],
    );
    assert_eq!(h.io.held.len(), 1);
    h.advance(31);
    assert!(h.io.held.is_empty(), "the reserved port went back");
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source() {
    let limits = Limits {
        unauthenticated_rate: 5,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [1; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let answered = (0..50)
        .filter(|_| h.send(ft("198.51.100.7:1"), &req).is_some())
        .count();
    assert_eq!(answered, 10);
    assert!(
        h.send(ft("198.51.100.8:1"), &req).is_some(),
        "another source is not affected"
    );
    let mut binding = Vec::new();
    Writer::new(&mut binding, Class::Request, method::BINDING, [2; 12]);
    assert!(
        h.send(ft("198.51.100.7:1"), &binding).is_some(),
        "Binding still answered"
    );
    h.elapsed += Duration::from_secs(1);
    assert!(h.send(ft("198.51.100.7:1"), &req).is_some(), "refilled");
}

#[test]
fn the_unauthenticated_limit_is_shared_by_every_core() {
    // Two workers' cores on one Shared; one source IP whose datagrams (from many ports) are
    // spread over both, as SO_REUSEPORT spreads 4-tuples.
    let limits = Limits {
        unauthenticated_rate: 5,
        ..Limits::default()
    };
    let shared = Arc::new(Shared::new(10, 100));
    let t0 = Instant::now();
    let mut cores: Vec<Server> = (0..2)
        .map(|_| Server::new(settings(limits.clone(), &[]), shared.clone(), t0))
        .collect();
    let mut io = FakeIo::default();
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [1; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let now = Now {
        instant: t0,
        unix: UNIX0,
    };
    let answered = (0..50u16)
        .filter(|i| {
            let from = ft(&format!("198.51.100.7:{}", 1000 + i));
            let core = &mut cores[usize::from(i % 2)];
            core.handle_client(now, from, &req, &mut io) == ClientOutput::Reply
        })
        .count();
    assert_eq!(
        answered, 10,
        "a burst of 2 × 5 across both cores, not per core"
    );
    let dropped: u64 = cores
        .iter()
        .map(|c| c.stats().snapshot().dropped(DropReason::RateLimit))
        .sum();
    assert_eq!(dropped, 40);
    let one_second_later = Now {
        instant: t0 + Duration::from_secs(1),
        unix: UNIX0 + 1,
    };
    let refilled = (0..50u16)
        .filter(|i| {
            let from = ft(&format!("198.51.100.7:{}", 2000 + i));
            let core = &mut cores[usize::from(i % 2)];
            core.handle_client(one_second_later, from, &req, &mut io) == ClientOutput::Reply
        })
        .count();
    assert_eq!(refilled, 5, "the rate, once");
    // A core on another Shared (another server) has a table of its own.
    let mut other = Server::new(settings(limits, &[]), Arc::new(Shared::new(10, 100)), t0);
    assert_eq!(
        other.handle_client(now, ft("198.51.100.7:1"), &req, &mut io),
        ClientOutput::Reply
    );
}

#[test]
fn bandwidth_cap_drops_excess() {
    let limits = Limits {
        bandwidth_bps: 1000,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "yan", b"new-secret", 86400);
    c.allocate(&mut h);
    bind(&mut c, &mut h, 0x4000, "198.51.100.9:7000");
    let mut data = vec![0x40, 0x00, 0x01, 0x90];
    data.resize(4 + 400, 7);
    let sent = (0..10)
        .filter(|_| matches!(h.client_out(c.ft, &data), ClientOutput::Relay { .. }))
        .count();
    assert_eq!(sent, 2, "1000 bytes of burst carry two 400-byte packets");
    assert_eq!(
        h.server
            .stats()
            .snapshot()
            .dropped(DropReason::BandwidthCap),
        8
    );
}

#[test]
fn the_bandwidth_cap_holds_in_each_direction_separately() {
    let limits = Limits {
        bandwidth_bps: 1000,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "yan", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    assert_eq!(bind(&mut c, &mut h, 0x4000, "198.51.100.9:7000"), 0);
    let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    let mut data = vec![0x40, 0x00, 0x01, 0x90];
    data.resize(4 + 400, 7);
    let to_peer = |h: &mut Harness| {
        (0..3)
            .filter(|_| matches!(h.client_out(c.ft, &data), ClientOutput::Relay { .. }))
            .count()
    };
    let to_client = |h: &mut Harness| {
        (0..3)
            .filter(|_| h.peer_sends(relay, peer, &[7; 400]).is_some())
            .count()
    };
    assert_eq!(to_peer(&mut h), 2, "client → peer: 1000 bytes of burst");
    assert_eq!(to_client(&mut h), 2, "peer → client has its own 1000 bytes");
    assert_eq!(to_peer(&mut h), 0);
    h.elapsed += Duration::from_secs(1);
    assert_eq!(to_client(&mut h), 2, "refilled at 1000 bytes a second");
    assert_eq!(to_peer(&mut h), 2);
}

#[test]
fn tables_are_bounded() {
    let limits = Limits {
        permissions_per_allocation: 2,
        channels_per_allocation: 1,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "zed", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(
        permit(&mut c, &mut h, &["198.51.100.1:1", "198.51.100.2:1"]),
        0
    );
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.3:1"]), 508);
    assert_eq!(
        permit(&mut c, &mut h, &["198.51.100.1:1"]),
        0,
        "refreshing is fine"
    );
    assert_eq!(bind(&mut c, &mut h, 0x4000, "198.51.100.1:5"), 0);
    assert_eq!(bind(&mut c, &mut h, 0x4001, "198.51.100.2:5"), 508);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut h = Harness::new();
    for junk in [
        &b""[..],
        &[0x40],
        &[0x00, 0x01, 0, 0],
        &[0xff; 64],
        &[0x40, 0x00, 0xff, 0xff, 1],
    ] {
        assert_eq!(
            h.client_out(ft("198.51.100.7:1"), junk),
            ClientOutput::Nothing
        );
    }
    assert!(h.server.stats().snapshot().dropped(DropReason::Malformed) >= 3);
}
