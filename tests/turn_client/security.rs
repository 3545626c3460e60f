//! The peer policy against an attacker's requests, on the real binary: relay to relay reaches
//! only live relayed addresses (never another port of the host), an IPv4-mapped peer is the
//! IPv4 peer, and a 401 carries FINGERPRINT when the request did.

use std::net::SocketAddr;

use turn_client_proto::types::message::{ALLOCATE, CREATE_PERMISSION};

use crate::common::stun::*;
use crate::common::turn::*;
use crate::common::*;

#[test]
fn relay_to_relay_reaches_live_relayed_addresses_only_never_other_ports_of_the_host() {
    let server = Server::start(Conf::default());
    let a = Client::new(server.udp);
    let a_auth = rest_auth(&a, "ann", &server);
    let a_relay = allocate(&a, &a_auth, &server);
    let b = Client::new(server.udp);
    let b_auth = rest_auth(&b, "bob", &server);
    let b_relay = allocate(&b, &b_auth, &server);
    let answer = create_permission(&a, &a_auth, b_relay, &server);
    expect_success(&answer, CREATE_PERMISSION, &a_auth, &server);
    // The server's own listener, and a port of the relay range that no allocation holds.
    let unused = server
        .relay_ports
        .clone()
        .rev()
        .find(|p| *p != b_relay.port() && *p != a_relay.port())
        .unwrap();
    for host_port in [server.udp, SocketAddr::new(server.udp.ip(), unused)] {
        let answer = create_permission(&a, &a_auth, host_port, &server);
        expect_error(&answer, CREATE_PERMISSION, 403, &server);
    }
    // Once B's allocation ends, its address is nobody's.
    refresh(&b, &b_auth, 0, &server);
    let answer = create_permission(&a, &a_auth, b_relay, &server);
    expect_error(&answer, CREATE_PERMISSION, 403, &server);
}

#[test]
fn an_ipv4_mapped_peer_is_the_ipv4_peer() {
    let server = Server::start(Conf::loopback_peers());
    let peer = EchoPeer::start();
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "map", &server);
    allocate(&client, &auth, &server);
    let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{}", peer.addr.port())
        .parse()
        .unwrap();
    let answer = channel_bind(&client, &auth, 0x4001, mapped, &server);
    assert!(
        parse(&answer, turn_client_proto::types::message::CHANNEL_BIND)
            .has_class(stun_types::message::MessageClass::Success),
        "ChannelBind to {mapped}\n{}",
        server.log()
    );
    assert!(
        channel_echo(&client, 0x4001, b"mapped"),
        "data to {mapped} reaches 127.0.0.1 and comes back\n{}",
        server.log()
    );
    // A mapped address of a denied IPv4 is as denied.
    let answer = create_permission(
        &client,
        &auth,
        "[::ffff:10.0.0.1]:9".parse().unwrap(),
        &server,
    );
    expect_error(&answer, CREATE_PERMISSION, 403, &server);
}

#[test]
fn a_401_carries_a_fingerprint_when_the_request_did() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    for with in [true, false] {
        use turnpike::proto::stun::{Class, Writer, attr, method};
        let mut bytes = Vec::new();
        let mut w = Writer::new(
            &mut bytes,
            Class::Request,
            method::ALLOCATE,
            [with as u8 + 1; 12],
        );
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        if with {
            w.fingerprint();
        }
        let answer = client.transact(&bytes, &server);
        let msg = expect_error(&answer, ALLOCATE, 401, &server);
        let last = &answer[answer.len() - 8..answer.len() - 6];
        assert_eq!(last == [0x80, 0x28], with, "FINGERPRINT last: {msg}");
    }
}

#[test]
fn the_hosts_own_addresses_stay_denied_inside_an_allowed_range() {
    // 127.0.0.0/8 is allowed, but 127.0.0.1 is the server's: its listener, its relays and an
    // address of its loopback interface. 127.0.0.2 is not.
    let server = Server::start(Conf {
        peers_allow: vec!["127.0.0.0/8".into()],
        ..Conf::default()
    });
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "own", &server);
    allocate(&client, &auth, &server);
    for own in [server.udp, "127.0.0.1:22".parse().unwrap()] {
        let answer = create_permission(&client, &auth, own, &server);
        expect_error(&answer, CREATE_PERMISSION, 403, &server);
    }
    let answer = create_permission(&client, &auth, "127.0.0.2:22".parse().unwrap(), &server);
    expect_success(&answer, CREATE_PERMISSION, &auth, &server);
}

#[test]
fn an_interface_address_of_the_host_stays_denied_inside_an_allowed_range() {
    // A non-loopback IPv4 address of this machine (not a listener or relay address of the
    // test server): the server reads its interfaces and refuses it, even inside an allowed
    // range, while its neighbour in the range is permitted.
    let Some(own) = turnpike::net::addr::interface_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified())
    else {
        eprintln!("no non-loopback IPv4 interface address: nothing to check");
        return;
    };
    let std::net::IpAddr::V4(v4) = own else {
        unreachable!()
    };
    let neighbour = std::net::Ipv4Addr::from(u32::from(v4) ^ 1);
    let server = Server::start(Conf {
        peers_allow: vec![format!("{own}/24")],
        ..Conf::default()
    });
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "iface", &server);
    allocate(&client, &auth, &server);
    let answer = create_permission(&client, &auth, SocketAddr::new(own, 22), &server);
    expect_error(&answer, CREATE_PERMISSION, 403, &server);
    let answer = create_permission(
        &client,
        &auth,
        SocketAddr::new(neighbour.into(), 22),
        &server,
    );
    expect_success(&answer, CREATE_PERMISSION, &auth, &server);
}
