//! turnpike driven by Rust STUN/TURN code that is not ours, over real UDP sockets on loopback:
//! exact answers (error codes, attributes, sizes) that `turnutils_uclient` cannot show.
//!
//! Requests are built and answers parsed with the `stun-types` codec (plus the TURN attributes
//! of `turn-types`); one test runs the complete `turn-client-proto` client. We sign with
//! MESSAGE-INTEGRITY (HMAC-SHA1, long-term key MD5(username:realm:password)) only: stun-types
//! derives its MESSAGE-INTEGRITY-SHA256 key with SHA-256, which RFC 8489 §9.2.2 does not do
//! without PASSWORD-ALGORITHM.

mod common;

use common::stun::*;
use common::*;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use stun_types::attribute::{
    AttributeStaticType, AttributeType, Nonce, RawAttribute, Realm, Software, UnknownAttributes,
    XorMappedAddress,
};
use stun_types::message::{BINDING, Message, MessageClass, Method};
use turn_client_proto::types::attribute::{
    ChannelNumber, Lifetime, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};
use turnpike::proto::credentials;

// ---------------------------------------------------------------------------------------------
// A minimal STUN client on a real UDP socket
// ---------------------------------------------------------------------------------------------

/// One UDP socket (one 5-tuple) talking to one server.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
}

impl Client {
    fn new(server: SocketAddr) -> Client {
        let local = SocketAddr::new(server.ip(), 0);
        let socket = UdpSocket::bind(local).expect("bind a client socket");
        socket.connect(server).expect("connect the client socket");
        Client { socket, server }
    }

    fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    fn send(&self, bytes: &[u8]) {
        self.socket.send(bytes).expect("send to the server");
    }

    /// Waits at most `timeout` for one datagram.
    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 65536];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => None,
        }
    }

    /// Sends a request and returns the answer with the same transaction id, retransmitting
    /// (at most 4 sends, 500 ms apart). Panics when nothing answers.
    fn transact(&self, request: &[u8], server: &Server) -> Vec<u8> {
        let id = &request[8..20];
        for _ in 0..4 {
            self.send(request);
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.recv(left) {
                    Some(answer) if answer.len() >= 20 && &answer[8..20] == id => return answer,
                    Some(_) => continue, // a late answer to an earlier request
                    None => break,
                }
            }
        }
        panic!(
            "no answer from {} to a {}-byte request\n--- server log ---\n{}",
            self.server,
            request.len(),
            server.log()
        );
    }
}

/// Sends `method` without credentials and returns the realm and nonce of the 401.
fn challenge(client: &Client, method: Method, server: &Server) -> (String, String) {
    let answer = client.transact(&request(method, None, udp_transport), server);
    let msg = expect_error(&answer, method, 401, server);
    let realm = msg
        .attribute::<Realm>()
        .expect("REALM in a 401")
        .realm()
        .to_owned();
    let nonce = msg
        .attribute::<Nonce>()
        .expect("NONCE in a 401")
        .nonce()
        .to_owned();
    (realm, nonce)
}

/// REST credentials for `user` (valid one hour) with the server's realm and a fresh nonce.
fn rest_auth(client: &Client, user: &str, server: &Server) -> Auth {
    let cred = credentials::mint(SECRET_ONE.as_bytes(), user, unix_now(), 3600);
    let (realm, nonce) = challenge(client, ALLOCATE, server);
    Auth {
        username: cred.username,
        password: cred.password,
        realm,
        nonce,
    }
}

/// Allocates (UDP) with `auth`; returns the relayed address.
fn allocate(client: &Client, auth: &Auth, server: &Server) -> SocketAddr {
    let answer = client.transact(&request(ALLOCATE, Some(auth), udp_transport), server);
    let msg = expect_success(&answer, ALLOCATE, auth, server);
    let relayed = msg
        .attribute::<XorRelayedAddress>()
        .expect("XOR-RELAYED-ADDRESS")
        .addr(msg.transaction_id());
    let mapped = msg
        .attribute::<XorMappedAddress>()
        .expect("XOR-MAPPED-ADDRESS")
        .addr(msg.transaction_id());
    assert_eq!(
        mapped,
        client.local_addr(),
        "XOR-MAPPED-ADDRESS of the Allocate answer"
    );
    assert_eq!(relayed.ip(), server.udp.ip(), "the relay binds 127.0.0.1");
    assert!(
        server.relay_ports.contains(&relayed.port()),
        "relayed port {} outside the configured range {:?}",
        relayed.port(),
        server.relay_ports
    );
    let lifetime = msg.attribute::<Lifetime>().expect("LIFETIME").seconds();
    assert!(lifetime > 0 && lifetime <= 3600, "LIFETIME {lifetime}");
    relayed
}

fn refresh(client: &Client, auth: &Auth, lifetime: u32, server: &Server) -> Vec<u8> {
    client.transact(
        &request(REFRESH, Some(auth), |m, _| add(m, &Lifetime::new(lifetime))),
        server,
    )
}

// ---------------------------------------------------------------------------------------------
// Reflection and amplification
// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_binding_gets_a_small_answer_with_the_mapped_address() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let request = binding_request(1);
    assert_eq!(request.len(), 20);
    let answer = client.transact(&request, &server);
    assert!(
        answer.len() <= 40,
        "a 20-byte Binding got {} bytes back: {answer:02x?}",
        answer.len()
    );
    let msg = parse(&answer, BINDING);
    assert!(msg.has_class(MessageClass::Success), "{msg}");
    let mapped = msg
        .attribute::<XorMappedAddress>()
        .expect("XOR-MAPPED-ADDRESS")
        .addr(msg.transaction_id());
    assert_eq!(mapped, client.local_addr());
}

#[test]
fn minimal_allocate_gets_a_small_401_with_realm_and_nonce_only() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    // Header + REQUESTED-TRANSPORT (UDP): 28 bytes, the smallest valid Allocate.
    let request = request(ALLOCATE, None, udp_transport);
    assert_eq!(request.len(), 28);
    let answer = client.transact(&request, &server);
    assert!(
        answer.len() <= 70,
        "a 28-byte Allocate got {} bytes back: {answer:02x?}",
        answer.len()
    );
    let msg = expect_error(&answer, ALLOCATE, 401, &server);
    assert_eq!(msg.attribute::<Realm>().expect("REALM").realm(), REALM);
    assert!(!msg.attribute::<Nonce>().expect("NONCE").nonce().is_empty());
    assert!(
        msg.attribute::<Software>().is_err(),
        "SOFTWARE in an answer to an unauthenticated request: {msg}"
    );
}

#[test]
fn unauthenticated_401s_are_rate_limited_per_source() {
    const RATE: u32 = 5;
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        ..Conf::default()
    });
    let client = Client::new(server.udp);
    let started = Instant::now();
    for _ in 0..50 {
        client.send(&request(ALLOCATE, None, udp_transport));
    }
    // Count the 401s until the socket stays quiet for 300 ms (at most 60 reads).
    let mut answers: u32 = 0;
    let mut last_answer = started;
    for _ in 0..60 {
        let Some(answer) = client.recv(Duration::from_millis(300)) else {
            break;
        };
        last_answer = Instant::now();
        expect_error(&answer, ALLOCATE, 401, &server);
        answers += 1;
    }
    // A bucket of 2 x RATE (the documented burst) plus what refills while the server works
    // through the 50 requests: no time limit is asserted, the bound follows the time taken.
    let refill = (f64::from(RATE) * (last_answer - started).as_secs_f64()).ceil() as u32;
    let most = 2 * RATE + refill;
    assert!(
        (RATE..=most).contains(&answers),
        "50 unauthenticated Allocates got {answers} 401s with unauthenticated_rate = {RATE} \
         (expected {RATE}..={most})\n--- server log ---\n{}",
        server.log()
    );
    // Binding is not subject to the 401 limit.
    let answer = client.transact(&binding_request(7), &server);
    let msg = parse(&answer, BINDING);
    assert!(msg.has_class(MessageClass::Success), "{msg}");
    // The limit is per source address: another loopback address is answered at once.
    let other = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    other.connect(server.udp).unwrap();
    let other = Client {
        socket: other,
        server: server.udp,
    };
    let answer = other.transact(&request(ALLOCATE, None, udp_transport), &server);
    expect_error(&answer, ALLOCATE, 401, &server);
}

#[test]
fn the_401_limit_holds_across_workers() {
    // Four workers; one source address sending from 16 ports, so SO_REUSEPORT spreads its
    // datagrams over the workers. The limit is the source's, not each worker's.
    const RATE: u32 = 5;
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        extra_toml: "[server]\nworkers = 4\n".into(),
        ..Conf::default()
    });
    let clients: Vec<Client> = (0..16).map(|_| Client::new(server.udp)).collect();
    let started = Instant::now();
    for _ in 0..10 {
        for client in &clients {
            client.send(&request(ALLOCATE, None, udp_transport));
        }
    }
    // Count the 401s until every socket stays quiet for 300 ms (at most 100 passes).
    let mut answers: u32 = 0;
    let mut last_answer = started;
    for _ in 0..100 {
        for client in &clients {
            while let Some(answer) = client.recv(Duration::from_millis(5)) {
                expect_error(&answer, ALLOCATE, 401, &server);
                answers += 1;
                last_answer = Instant::now();
            }
        }
        if last_answer.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let refill = (f64::from(RATE) * (last_answer - started).as_secs_f64()).ceil() as u32;
    let most = 2 * RATE + refill;
    assert!(
        (RATE..=most).contains(&answers),
        "160 unauthenticated Allocates from one address over 4 workers got {answers} 401s \
         with unauthenticated_rate = {RATE} (expected {RATE}..={most}; a limit per worker \
         would allow up to {})\n--- server log ---\n{}",
        4 * 2 * RATE,
        server.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

#[test]
fn rest_credentials_401_then_success() {
    let server = Server::start(Conf::default());
    // Both secrets of the rotation list validate; so does a static user.
    for (secret, user) in [(SECRET_ONE, "alice"), (SECRET_TWO, "bob")] {
        let client = Client::new(server.udp);
        let (realm, nonce) = challenge(&client, ALLOCATE, &server);
        assert_eq!(realm, REALM);
        let cred = credentials::mint(secret.as_bytes(), user, unix_now(), 3600);
        let auth = Auth {
            username: cred.username,
            password: cred.password,
            realm,
            nonce,
        };
        allocate(&client, &auth, &server);
    }
    let client = Client::new(server.udp);
    let (realm, nonce) = challenge(&client, ALLOCATE, &server);
    let auth = Auth {
        username: STATIC_USER.into(),
        password: STATIC_PASSWORD.into(),
        realm,
        nonce,
    };
    allocate(&client, &auth, &server);
}

#[test]
fn wrong_or_expired_credentials_get_401() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let good = rest_auth(&client, "alice", &server);

    let wrong_password = Auth {
        password: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ..good.clone()
    };
    let expired_cred = credentials::mint(SECRET_ONE.as_bytes(), "alice", unix_now() - 7200, 3600);
    let expired = Auth {
        username: expired_cred.username,
        password: expired_cred.password,
        ..good.clone()
    };
    let unknown_user = Auth {
        username: "mallory".into(),
        password: "whatever".into(),
        ..good.clone()
    };
    for auth in [&wrong_password, &expired, &unknown_user] {
        let answer = client.transact(&request(ALLOCATE, Some(auth), udp_transport), &server);
        let msg = expect_error(&answer, ALLOCATE, 401, &server);
        assert!(
            msg.has_attribute(Nonce::TYPE) && msg.has_attribute(Realm::TYPE),
            "{msg}"
        );
    }
    // The same socket then authenticates: the failures left no state behind.
    allocate(&client, &good, &server);
}

#[test]
fn stale_nonce_gets_438_with_a_new_nonce() {
    let server = Server::start(Conf {
        nonce_lifetime_secs: 1,
        ..Conf::default()
    });
    let client = Client::new(server.udp);
    let mut auth = rest_auth(&client, "alice", &server);
    std::thread::sleep(Duration::from_millis(2500));
    let answer = client.transact(&request(ALLOCATE, Some(&auth), udp_transport), &server);
    let msg = expect_error(&answer, ALLOCATE, 438, &server);
    let fresh = msg
        .attribute::<Nonce>()
        .expect("NONCE in a 438")
        .nonce()
        .to_owned();
    assert_ne!(fresh, auth.nonce, "the 438 must carry a new nonce");
    assert_eq!(
        msg.attribute::<Realm>().expect("REALM in a 438").realm(),
        REALM
    );
    auth.nonce = fresh;
    allocate(&client, &auth, &server);
}

// ---------------------------------------------------------------------------------------------
// TURN error codes
// ---------------------------------------------------------------------------------------------

#[test]
fn loopback_permission_and_channel_get_403_by_default() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    allocate(&client, &auth, &server);
    // No packet is sent to a peer by these requests; the port is the discard port.
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let answer = client.transact(
        &request(CREATE_PERMISSION, Some(&auth), |m, id| {
            add(m, &XorPeerAddress::new(peer, id))
        }),
        &server,
    );
    expect_error(&answer, CREATE_PERMISSION, 403, &server);
    let answer = client.transact(
        &request(CHANNEL_BIND, Some(&auth), |m, id| {
            add(m, &ChannelNumber::new(0x4000));
            add(m, &XorPeerAddress::new(peer, id));
        }),
        &server,
    );
    expect_error(&answer, CHANNEL_BIND, 403, &server);
}

#[test]
fn allowed_loopback_permission_succeeds() {
    let server = Server::start(Conf::loopback_peers());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    allocate(&client, &auth, &server);
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let answer = client.transact(
        &request(CREATE_PERMISSION, Some(&auth), |m, id| {
            add(m, &XorPeerAddress::new(peer, id))
        }),
        &server,
    );
    expect_success(&answer, CREATE_PERMISSION, &auth, &server);
}

#[test]
fn refresh_without_allocation_gets_437() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    let answer = refresh(&client, &auth, 600, &server);
    expect_error(&answer, REFRESH, 437, &server);
}

#[test]
fn second_allocate_on_the_same_5_tuple_gets_437() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    allocate(&client, &auth, &server);
    let answer = client.transact(&request(ALLOCATE, Some(&auth), udp_transport), &server);
    expect_error(&answer, ALLOCATE, 437, &server);
}

#[test]
fn per_user_quota_gets_486_and_is_released_on_delete() {
    let server = Server::start(Conf {
        allocations_per_user: 1,
        ..Conf::default()
    });
    let first = Client::new(server.udp);
    let first_auth = rest_auth(&first, "grace", &server);
    allocate(&first, &first_auth, &server);

    // The same user from a second 5-tuple: over quota.
    let second = Client::new(server.udp);
    let mut second_auth = rest_auth(&second, "grace", &server);
    let answer = second.transact(
        &request(ALLOCATE, Some(&second_auth), udp_transport),
        &server,
    );
    expect_error(&answer, ALLOCATE, 486, &server);

    // Another user from that 5-tuple is not affected by grace's quota.
    let third = Client::new(server.udp);
    let heidi = rest_auth(&third, "heidi", &server);
    allocate(&third, &heidi, &server);

    // grace deletes her allocation; her second 5-tuple may now allocate.
    let answer = refresh(&first, &first_auth, 0, &server);
    expect_success(&answer, REFRESH, &first_auth, &server);
    let (_, nonce) = challenge(&second, ALLOCATE, &server);
    second_auth.nonce = nonce;
    allocate(&second, &second_auth, &server);
}

#[test]
fn tcp_requested_transport_over_udp_gets_400_and_other_protocols_442() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    // RFC 6062 §5.1: TCP relays are asked for over TCP or TLS only.
    let answer = client.transact(
        &request(ALLOCATE, Some(&auth), |m, _| {
            add(m, &RequestedTransport::new(RequestedTransport::TCP))
        }),
        &server,
    );
    expect_error(&answer, ALLOCATE, 400, &server);
    // SCTP (132) is not a relay transport turnpike offers.
    let answer = client.transact(
        &request(ALLOCATE, Some(&auth), |m, _| {
            add(m, &RequestedTransport::new(132))
        }),
        &server,
    );
    expect_error(&answer, ALLOCATE, 442, &server);
}

#[test]
fn allocate_without_requested_transport_gets_400() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    let answer = client.transact(&request(ALLOCATE, Some(&auth), no_attributes), &server);
    expect_error(&answer, ALLOCATE, 400, &server);
    // Nothing was allocated: a correct Allocate from the same 5-tuple succeeds.
    allocate(&client, &auth, &server);
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    let unknown = AttributeType::new(0x0030);
    let answer = client.transact(
        &request(ALLOCATE, Some(&auth), |m, id| {
            udp_transport(m, id);
            add(m, &RawAttribute::new(unknown, &[0, 0, 0, 0]));
        }),
        &server,
    );
    let msg = expect_error(&answer, ALLOCATE, 420, &server);
    let listed = msg
        .attribute::<UnknownAttributes>()
        .unwrap_or_else(|e| panic!("no UNKNOWN-ATTRIBUTES in the 420 ({e:?}): {msg}"));
    assert!(
        listed.has_attribute(unknown),
        "UNKNOWN-ATTRIBUTES {listed} lacks 0x0030"
    );
    // An unassigned comprehension-optional attribute (0x8FFF) is ignored.
    let answer = client.transact(
        &request(ALLOCATE, Some(&auth), |m, id| {
            udp_transport(m, id);
            add(
                m,
                &RawAttribute::new(AttributeType::new(0x8FFF), &[0, 0, 0, 0]),
            );
        }),
        &server,
    );
    expect_success(&answer, ALLOCATE, &auth, &server);
}

#[test]
fn refresh_with_lifetime_zero_deletes_the_allocation() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    allocate(&client, &auth, &server);

    let answer = refresh(&client, &auth, 600, &server);
    let msg = expect_success(&answer, REFRESH, &auth, &server);
    let lifetime = msg.attribute::<Lifetime>().expect("LIFETIME").seconds();
    assert!(lifetime > 0, "a 600 s Refresh answered LIFETIME {lifetime}");

    let answer = refresh(&client, &auth, 0, &server);
    let msg = expect_success(&answer, REFRESH, &auth, &server);
    assert_eq!(msg.attribute::<Lifetime>().expect("LIFETIME").seconds(), 0);

    let answer = refresh(&client, &auth, 600, &server);
    expect_error(&answer, REFRESH, 437, &server);
    // The 5-tuple is free again.
    allocate(&client, &auth, &server);
}

// ---------------------------------------------------------------------------------------------
// An independent TURN client end to end: turn-client-proto
// ---------------------------------------------------------------------------------------------

/// A UDP echo peer on 127.0.0.1 in a thread, stopped on drop.
struct EchoPeer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoPeer {
    fn start() -> EchoPeer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Bounded: stops on drop, and after 60 s whatever happens.
            let until = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        EchoPeer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

mod driven {
    //! The sans-IO `turn-client-proto` client, driven over a real socket.
    use super::*;
    pub use turn_client_proto::api::{
        TurnClientApi, TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet,
    };
    pub use turn_client_proto::types::{TransportType, TurnCredentials};
    pub use turn_client_proto::udp::TurnClientUdp;

    pub struct Driver {
        pub client: TurnClientUdp,
        pub socket: UdpSocket,
        pub server: SocketAddr,
        pub peer: SocketAddr,
        base: Instant,
        /// What the server answered, in order: (class, error code).
        pub answers: Vec<(MessageClass, Option<u16>)>,
        pub events: Vec<TurnEvent>,
        /// Payloads received from `peer` through the relay.
        pub received: Vec<Vec<u8>>,
    }

    impl Driver {
        pub fn new(server: SocketAddr, peer: SocketAddr, username: &str, password: &str) -> Driver {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let local = socket.local_addr().unwrap();
            let config = TurnConfig::new(TurnCredentials::new(username, password));
            Driver {
                client: TurnClientUdp::allocate(local, server, config),
                socket,
                server,
                peer,
                base: Instant::now(),
                answers: Vec::new(),
                events: Vec::new(),
                received: Vec::new(),
            }
        }

        pub fn now(&self) -> turn_client_proto::types::Instant {
            turn_client_proto::types::Instant::from_std(self.base)
        }

        pub fn send(&self, data: &[u8], to: SocketAddr) {
            assert_eq!(to, self.server);
            self.socket.send_to(data, to).unwrap();
        }

        /// Runs the client until `done` holds or 5 s pass.
        pub fn drive(&mut self, done: impl Fn(&Driver) -> bool) {
            let until = Instant::now() + Duration::from_secs(5);
            let local = self.socket.local_addr().unwrap();
            let mut buf = vec![0u8; 2048];
            while Instant::now() < until && !done(self) {
                while let Some(transmit) = self.client.poll_transmit(self.now()) {
                    self.send(&transmit.data, transmit.to);
                }
                if let TurnPollRet::Closed = self.client.poll(self.now()) {
                    break;
                }
                while let Some(event) = self.client.poll_event() {
                    self.events.push(event);
                }
                if done(self) {
                    break;
                }
                self.socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                    continue;
                };
                let data = buf[..n].to_vec();
                if let Ok(msg) = Message::from_bytes(&data) {
                    if msg.is_response() {
                        self.answers.push((msg.class(), error_code(&msg)));
                    }
                }
                let transmit =
                    turn_client_proto::api::Transmit::new(data, TransportType::Udp, from, local);
                let now = self.now();
                match self.client.recv(transmit, now) {
                    TurnRecvRet::PeerData(peer_data) => {
                        assert_eq!(peer_data.peer, self.peer);
                        self.received.push(peer_data.data().to_vec());
                    }
                    TurnRecvRet::Handled | TurnRecvRet::Ignored(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
                while let Some(peer_data) = self.client.poll_recv(now) {
                    assert_eq!(peer_data.peer, self.peer);
                    self.received.push(peer_data.data().to_vec());
                }
            }
        }
    }
}

#[test]
fn turn_client_proto_allocates_and_relays_both_ways() {
    use driven::*;
    let server = Server::start(Conf::loopback_peers());
    let echo = EchoPeer::start();
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "ivan", unix_now(), 3600);
    let mut d = Driver::new(server.udp, echo.addr, &cred.username, &cred.password);

    d.drive(|d| {
        d.events.iter().any(|e| {
            matches!(
                e,
                TurnEvent::AllocationCreated(..) | TurnEvent::AllocationCreateFailed(..)
            )
        })
    });
    let relayed = match d.events.last() {
        Some(TurnEvent::AllocationCreated(TransportType::Udp, relayed)) => *relayed,
        other => panic!(
            "no allocation: {other:?}, answers {:?}\n--- server log ---\n{}",
            d.answers,
            server.log()
        ),
    };
    assert_eq!(relayed.ip(), server.udp.ip());
    assert!(server.relay_ports.contains(&relayed.port()));
    assert_eq!(
        d.answers,
        vec![
            (MessageClass::Error, Some(401)),
            (MessageClass::Success, None)
        ],
        "the Allocate exchange"
    );

    // Send indications first (a permission), then ChannelData (a channel).
    let now = d.now();
    d.client
        .create_permission(TransportType::Udp, echo.addr.ip(), now)
        .expect("create_permission");
    d.drive(|d| {
        d.events.iter().any(|e| {
            matches!(
                e,
                TurnEvent::PermissionCreated(..) | TurnEvent::PermissionCreateFailed(..)
            )
        })
    });
    assert!(
        matches!(d.events.last(), Some(TurnEvent::PermissionCreated(TransportType::Udp, ip)) if *ip == echo.addr.ip()),
        "{:?}\n--- server log ---\n{}",
        d.events,
        server.log()
    );
    let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
    for p in &payloads {
        let now = d.now();
        let transmit = d
            .client
            .send_to(TransportType::Udp, echo.addr, p.clone(), now)
            .expect("send_to")
            .expect("something to send")
            .build();
        d.send(&transmit.data, transmit.to);
    }
    d.drive(|d| d.received.len() >= payloads.len());
    assert_eq!(d.received, payloads, "echoed through Send/Data indications");

    d.received.clear();
    let now = d.now();
    d.client
        .bind_channel(TransportType::Udp, echo.addr, now)
        .expect("bind_channel");
    d.drive(|d| {
        d.events.iter().any(|e| {
            matches!(
                e,
                TurnEvent::ChannelCreated(..) | TurnEvent::ChannelCreateFailed(..)
            )
        })
    });
    assert!(
        matches!(d.events.last(), Some(TurnEvent::ChannelCreated(TransportType::Udp, a)) if *a == echo.addr),
        "{:?}\n--- server log ---\n{}",
        d.events,
        server.log()
    );
    for p in &payloads {
        let now = d.now();
        let transmit = d
            .client
            .send_to(TransportType::Udp, echo.addr, p.clone(), now)
            .expect("send_to")
            .expect("something to send")
            .build();
        // ChannelData: a channel number (0x4000-0x4FFF) and a length, then the payload.
        assert_eq!(transmit.data[0] & 0xC0, 0x40, "ChannelData expected");
        assert_eq!(transmit.data.len(), 4 + p.len());
        d.send(&transmit.data, transmit.to);
    }
    d.drive(|d| d.received.len() >= payloads.len());
    assert_eq!(d.received, payloads, "echoed through ChannelData");
}

#[test]
fn ipv6_allocation_relays_to_an_ipv6_peer_address() {
    let server = Server::start(Conf {
        ipv6: true,
        ..Conf::loopback_peers()
    });
    let udp6 = server.udp6.expect("IPv6 listener");
    let client = Client::new(udp6);
    let (realm, nonce) = challenge(&client, ALLOCATE, &server);
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "judy", unix_now(), 3600);
    let auth = Auth {
        username: cred.username,
        password: cred.password,
        realm,
        nonce,
    };
    // REQUESTED-ADDRESS-FAMILY IPv6 (0x0017, family 0x02).
    let answer = client.transact(
        &request(ALLOCATE, Some(&auth), |m, id| {
            udp_transport(m, id);
            add(
                m,
                &RawAttribute::new(AttributeType::new(0x0017), &[0x02, 0, 0, 0]),
            );
        }),
        &server,
    );
    let msg = expect_success(&answer, ALLOCATE, &auth, &server);
    let relayed = msg
        .attribute::<XorRelayedAddress>()
        .expect("XOR-RELAYED-ADDRESS")
        .addr(msg.transaction_id());
    assert_eq!(relayed.ip(), IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
    assert!(server.relay_ports.contains(&relayed.port()));
    let mapped = msg
        .attribute::<XorMappedAddress>()
        .expect("XOR-MAPPED-ADDRESS")
        .addr(msg.transaction_id());
    assert_eq!(mapped, client.local_addr());
}

#[test]
fn ipv6_loopback_and_ipv4_mapped_loopback_peers_get_403_by_default() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "kim", &server);
    // A dual-stack allocation (RFC 8656 ADDITIONAL-ADDRESS-FAMILY IPv6 next to IPv4).
    let answer = client.transact(
        &request(ALLOCATE, Some(&auth), |m, id| {
            udp_transport(m, id);
            add(
                m,
                &RawAttribute::new(AttributeType::new(0x8000), &[0x02, 0, 0, 0]),
            );
        }),
        &server,
    );
    let msg = expect_success(&answer, ALLOCATE, &auth, &server);
    let mut relayed: Vec<IpAddr> = (0..2)
        .filter_map(|n| msg.nth_attribute::<XorRelayedAddress>(n).ok())
        .map(|a| a.addr(msg.transaction_id()).ip())
        .collect();
    relayed.sort(); // the order of the two is not specified
    assert_eq!(
        relayed,
        vec![LOCALHOST_V4, LOCALHOST_V6],
        "two relayed addresses: {msg}"
    );
    // ::1 is loopback; ::ffff:127.0.0.1 is 127.0.0.1 written as IPv6 and must be judged as it.
    for peer in ["127.0.0.1:9", "[::1]:9", "[::ffff:127.0.0.1]:9"] {
        let peer: SocketAddr = peer.parse().unwrap();
        let answer = client.transact(
            &request(CREATE_PERMISSION, Some(&auth), |m, id| {
                add(m, &XorPeerAddress::new(peer, id))
            }),
            &server,
        );
        let msg = parse(&answer, CREATE_PERMISSION);
        assert_eq!(
            error_code(&msg),
            Some(403),
            "CreatePermission to {peer}: {msg}\n--- server log ---\n{}",
            server.log()
        );
    }
}
