//! TURN error codes: the peer policy (403), missing allocations (437), quotas (486), bad
//! transports (400, 442), unknown attributes (420), and Refresh with lifetime 0.

use std::net::SocketAddr;

use stun_types::attribute::{AttributeType, RawAttribute, UnknownAttributes};
use turn_client_proto::types::attribute::{
    ChannelNumber, Lifetime, RequestedTransport, XorPeerAddress,
};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};

use crate::common::stun::*;
use crate::common::turn::*;
use crate::common::*;

#[test]
fn loopback_permission_and_channel_get_403_by_default() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "alice", &server);
    allocate(&client, &auth, &server);
    // No packet is sent to a peer by these requests; the port is the discard port.
    let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let answer = create_permission(&client, &auth, peer, &server);
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
    let answer = create_permission(&client, &auth, peer, &server);
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
    let server = Server::start(Conf {
        tcp_allocations: true,
        ..Conf::default()
    });
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
