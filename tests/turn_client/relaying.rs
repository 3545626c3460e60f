//! An independent TURN client end to end (`turn-client-proto`), and IPv6 relays.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use stun_types::attribute::{AttributeType, RawAttribute};
use stun_types::message::{Message, MessageClass};
use turn_client_proto::types::attribute::XorRelayedAddress;
use turn_client_proto::types::message::{ALLOCATE, CREATE_PERMISSION};
use turnpike::proto::credentials;

use crate::common::stun::*;
use crate::common::turn::*;
use crate::common::*;

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

/// RFC 8656 REQUESTED-ADDRESS-FAMILY: a relay of that family instead of IPv4.
const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
/// RFC 8656 ADDITIONAL-ADDRESS-FAMILY: a relay of that family next to the IPv4 one.
const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;

/// An Allocate (UDP) asking for an IPv6 relay (family 0x02) with the attribute `family_attr`.
fn allocate_ipv6(auth: &Auth, family_attr: u16) -> Vec<u8> {
    request(ALLOCATE, Some(auth), |m, id| {
        udp_transport(m, id);
        add(
            m,
            &RawAttribute::new(AttributeType::new(family_attr), &[0x02, 0, 0, 0]),
        );
    })
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
    let answer = client.transact(&allocate_ipv6(&auth, REQUESTED_ADDRESS_FAMILY), &server);
    let msg = expect_success(&answer, ALLOCATE, &auth, &server);
    let relayed = relayed_address(&msg);
    assert_eq!(relayed.ip(), IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
    assert!(server.relay_ports.contains(&relayed.port()));
    let mapped = mapped_address(&msg);
    assert_eq!(mapped, client.local_addr());
}

#[test]
fn ipv6_loopback_and_ipv4_mapped_loopback_peers_get_403_by_default() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "kim", &server);
    // A dual-stack allocation: IPv6 next to IPv4.
    let answer = client.transact(&allocate_ipv6(&auth, ADDITIONAL_ADDRESS_FAMILY), &server);
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
        let answer = create_permission(&client, &auth, peer, &server);
        let msg = parse(&answer, CREATE_PERMISSION);
        assert_eq!(
            error_code(&msg),
            Some(403),
            "CreatePermission to {peer}: {msg}\n--- server log ---\n{}",
            server.log()
        );
    }
}
