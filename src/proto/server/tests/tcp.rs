//! RFC 6062 (TCP allocations) in the core: Connect, ConnectionAttempt, ConnectionBind, their
//! error codes, expiry and bounds.

use super::*;

fn tcp_ft(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        ..ft(client)
    }
}

fn tcp_transport() -> (u16, Vec<u8>) {
    (attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])
}

/// A client with a TCP allocation; returns it and its relayed address.
fn tcp_allocation(h: &mut Harness, client: &str) -> (Client, SocketAddr) {
    let mut c = Client::rest(tcp_ft(client), "tina", b"new-secret", 86400);
    let answer = c.call(h, method::ALLOCATE, &[tcp_transport()]);
    assert_eq!(error_code(&answer), 0, "TCP allocation");
    let relay = relayed(&answer)[0];
    (c, relay)
}

/// Sends a signed request (nonce already learnt) and returns the core's output.
fn request(
    c: &mut Client,
    h: &mut Harness,
    m: u16,
    peer: Option<&str>,
    extra: &[(u16, Vec<u8>)],
) -> (ClientOutput, [u8; 12]) {
    let tid = c.tid();
    let mut attrs = extra.to_vec();
    attrs.extend(peer.map(|p| xor_peer(p, tid)));
    let bytes = c.request(m, tid, &attrs);
    (h.client_out(c.ft, &bytes), tid)
}

fn connection_id(answer: &[u8]) -> Option<u32> {
    let m = Message::parse(answer).unwrap();
    m.get(attr::CONNECTION_ID)
        .map(|v| u32::from_be_bytes(v.try_into().unwrap()))
}

#[test]
fn tcp_allocations_are_refused_unless_turned_on() {
    let mut s = settings(Limits::default(), &[]);
    s.tcp_allocations = false;
    let mut h = Harness::with(s, Shared::new(10, 100));
    let mut c = Client::rest(tcp_ft("198.51.100.7:1"), "off", b"new-secret", 86400);
    let answer = c.call(&mut h, method::ALLOCATE, &[tcp_transport()]);
    assert_eq!(error_code(&answer), 442);
    // A UDP allocation over the same connection gets no Connect either.
    assert_eq!(error_code(&c.allocate(&mut h)), 0);
    let answer = call_with_peers(&mut c, &mut h, method::CONNECT, &["198.51.100.9:80"], &[]);
    assert_eq!(error_code(&answer), 403);
}

#[test]
fn turning_tcp_allocations_off_refuses_connect_and_revokes_denied_connections() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h, "198.51.100.7:1");
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.9:1"]), 0);
    let now = h.now();
    let id = h
        .server
        .peer_connected(
            now,
            RelayId(relay.port() as u32),
            "198.51.100.9:5000".parse().unwrap(),
        )
        .expect("a permitted peer connects");
    // A reload that denies the peer closes its connection at once.
    let mut s = settings(Limits::default(), &[]);
    s.policy = PeerPolicy::new(vec![], vec!["198.51.100.9".parse().unwrap()]);
    h.server.set_settings(Arc::new(s));
    assert_eq!(h.server.poll_tcp_event(), Some(TcpEvent::Close(id)));
    assert_eq!(h.server.tcp_connection_count(), 0);
    // With TCP allocations turned off, Connect is refused on the allocation that stays.
    let mut s = settings(Limits::default(), &[]);
    s.tcp_allocations = false;
    h.server.set_settings(Arc::new(s));
    let answer = call_with_peers(&mut c, &mut h, method::CONNECT, &["198.51.100.10:80"], &[]);
    assert_eq!(error_code(&answer), 403);
}

#[test]
fn tcp_allocations_only_over_streams_and_without_udp_attributes() {
    let mut h = Harness::new();
    let mut udp_client = Client::rest(ft("198.51.100.1:1"), "u", b"new-secret", 86400);
    assert_eq!(
        error_code(&udp_client.call(&mut h, method::ALLOCATE, &[tcp_transport()])),
        400
    );
    let mut c = Client::rest(tcp_ft("198.51.100.2:1"), "t", b"new-secret", 86400);
    for extra in [
        (attr::EVEN_PORT, vec![0]),
        (attr::DONT_FRAGMENT, vec![]),
        (attr::RESERVATION_TOKEN, vec![1; 8]),
        (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
    ] {
        let answer = c.call(&mut h, method::ALLOCATE, &[tcp_transport(), extra.clone()]);
        assert_eq!(error_code(&answer), 400, "{extra:?}");
    }
    assert_eq!(h.server.allocation_count(), 0);
    let (mut c, _) = tcp_allocation(&mut h, "198.51.100.3:1");
    // No channels and no Send indications on a TCP allocation.
    assert_eq!(bind(&mut c, &mut h, 0x4000, "192.0.2.9:5000"), 400);
}

#[test]
fn connect_checks_then_answers_when_the_connection_is_made() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h, "198.51.100.4:1");
    let (out, _) = request(&mut c, &mut h, method::CONNECT, None, &[]);
    assert_eq!(out, ClientOutput::Reply);
    assert_eq!(error_code(h.server.reply()), 400, "no XOR-PEER-ADDRESS");
    let (out, _) = request(&mut c, &mut h, method::CONNECT, Some("10.0.0.1:80"), &[]);
    assert_eq!(out, ClientOutput::Reply);
    assert_eq!(
        error_code(h.server.reply()),
        403,
        "private peers are denied"
    );
    let (out, tid) = request(&mut c, &mut h, method::CONNECT, Some("192.0.2.9:80"), &[]);
    let ClientOutput::Connect {
        id,
        relay: rid,
        peer,
    } = out
    else {
        panic!("{out:?}");
    };
    assert_eq!(rid, RelayId(relay.port() as u32));
    assert_eq!(peer, "192.0.2.9:80".parse().unwrap());
    // A second Connect to the same peer while the first is under way: 446.
    let (out, _) = request(&mut c, &mut h, method::CONNECT, Some("192.0.2.9:80"), &[]);
    assert_eq!(out, ClientOutput::Reply);
    assert_eq!(error_code(h.server.reply()), 446);
    let now = h.now();
    assert!(h.server.connect_finished(now, id, true));
    let answer = h.server.reply().to_vec();
    let msg = Message::parse(&answer).unwrap();
    assert_eq!(msg.class(), Class::Success);
    assert_eq!(msg.method(), method::CONNECT);
    assert_eq!(msg.transaction_id(), tid);
    assert_eq!(connection_id(&answer), Some(id.0));
    assert!(
        msg.verify_integrity(&c.key).is_some(),
        "signed with the allocation's key"
    );
    // A failed connection attempt is 447, and forgotten.
    let (out, _) = request(&mut c, &mut h, method::CONNECT, Some("192.0.2.10:80"), &[]);
    let ClientOutput::Connect { id: id2, .. } = out else {
        panic!("{out:?}");
    };
    assert!(h.server.connect_finished(now, id2, false));
    assert_eq!(error_code(h.server.reply()), 447);
    assert_eq!(h.server.tcp_connection_count(), 1);
    assert!(
        !h.server.connect_finished(now, id2, true),
        "nothing to answer twice"
    );
}

#[test]
fn connection_bind_on_a_new_connection_binds_a_pending_id_once() {
    let mut h = Harness::new();
    let (mut c, _) = tcp_allocation(&mut h, "198.51.100.5:1");
    let (out, _) = request(&mut c, &mut h, method::CONNECT, Some("192.0.2.9:80"), &[]);
    let ClientOutput::Connect { id, .. } = out else {
        panic!("{out:?}");
    };
    let now = h.now();
    assert!(h.server.connect_finished(now, id, true));

    // The data connection: a new TCP connection with a core of its own.
    let mut d = Harness::new();
    let mut data = Client::with_password(tcp_ft("198.51.100.5:2"), &c.username, "unused");
    data.key = c.key;
    let cid = (attr::CONNECTION_ID, id.0.to_be_bytes().to_vec());
    let first = data.call(&mut d, method::REFRESH, &[]);
    assert_eq!(error_code(&first), 437, "learns the nonce");
    let (out, tid) = request(
        &mut data,
        &mut d,
        method::CONNECTION_BIND,
        None,
        std::slice::from_ref(&cid),
    );
    assert_eq!(
        out,
        ClientOutput::ConnectionBind {
            id,
            username: c.username.clone()
        }
    );
    // The owner checks the id and the username.
    assert_eq!(
        h.server.bind_connection(now, id, "1:someone-else").err(),
        Some((441, "Wrong Credentials"))
    );
    assert!(
        matches!(h.server.bind_connection(now, id, &c.username), Ok(None)),
        "bound, with no bandwidth cap configured"
    );
    assert_eq!(
        h.server.bind_connection(now, id, &c.username).err(),
        Some((400, "Connection Not Pending"))
    );
    assert!(d.server.finish_connection_bind(Ok(())));
    let answer = Message::parse(d.server.reply()).unwrap();
    assert_eq!(
        (answer.class(), answer.method(), answer.transaction_id()),
        (Class::Success, method::CONNECTION_BIND, tid)
    );
    assert!(answer.verify_integrity(&c.key).is_some());
    assert!(!d.server.finish_connection_bind(Ok(())), "answered once");

    // Bad ConnectionBinds: no id, a malformed id, over UDP, on a connection with an allocation.
    let (out, _) = request(&mut data, &mut d, method::CONNECTION_BIND, None, &[]);
    assert_eq!(out, ClientOutput::Reply);
    assert_eq!(error_code(d.server.reply()), 400);
    let bad = (attr::CONNECTION_ID, vec![1, 2]);
    let (_, _) = request(&mut data, &mut d, method::CONNECTION_BIND, None, &[bad]);
    assert_eq!(error_code(d.server.reply()), 400);
    let mut over_udp = Client::rest(ft("198.51.100.5:3"), "tina", b"new-secret", 86400);
    let answer = over_udp.call(&mut d, method::CONNECTION_BIND, std::slice::from_ref(&cid));
    assert_eq!(error_code(&answer), 400);
    let (out, _) = request(&mut c, &mut h, method::CONNECTION_BIND, None, &[cid]);
    assert_eq!(out, ClientOutput::Reply);
    assert_eq!(
        error_code(h.server.reply()),
        400,
        "the control connection has an allocation"
    );
    // A refusal from the owner is answered as such.
    let mut other = Client::with_password(tcp_ft("198.51.100.5:4"), &c.username, "unused");
    other.key = c.key;
    other.nonce = data.nonce.clone();
    let mut e = Harness::new();
    let unknown = (attr::CONNECTION_ID, 77u32.to_be_bytes().to_vec());
    let first = other.call(&mut e, method::REFRESH, &[]);
    assert_eq!(error_code(&first), 437);
    let (out, _) = request(
        &mut other,
        &mut e,
        method::CONNECTION_BIND,
        None,
        &[unknown],
    );
    assert!(matches!(out, ClientOutput::ConnectionBind { .. }));
    assert!(
        e.server
            .finish_connection_bind(Err((400, "Unknown CONNECTION-ID")))
    );
    assert_eq!(error_code(e.server.reply()), 400);
}

#[test]
fn peers_connecting_in_need_a_permission_and_expire_unbound() {
    let mut h = Harness::new();
    let (mut c, relay) = tcp_allocation(&mut h, "198.51.100.6:1");
    let rid = RelayId(relay.port() as u32);
    let peer: SocketAddr = "192.0.2.20:40000".parse().unwrap();
    let now = h.now();
    assert_eq!(
        h.server.peer_connected(now, rid, peer),
        None,
        "no permission"
    );
    assert_eq!(permit(&mut c, &mut h, &["192.0.2.20:1"]), 0);
    let now = h.now();
    let id = h.server.peer_connected(now, rid, peer).expect("permitted");
    let indication = Message::parse(h.server.reply()).unwrap();
    assert_eq!(
        (indication.class(), indication.method()),
        (Class::Indication, method::CONNECTION_ATTEMPT)
    );
    let xor = indication.get(attr::XOR_PEER_ADDRESS).unwrap();
    assert_eq!(indication.xor_address(xor), Some(peer));
    assert_eq!(connection_id(h.server.reply()), Some(id.0));
    assert_eq!(
        h.server.peer_connected(now, rid, peer),
        None,
        "one connection per peer address"
    );
    assert_eq!(h.server.poll_tcp_event(), None);
    // Not bound within 30 s: closed.
    h.advance(29);
    assert_eq!(h.server.poll_tcp_event(), None);
    h.advance(2);
    assert_eq!(h.server.poll_tcp_event(), Some(TcpEvent::Close(id)));
    assert_eq!(h.server.tcp_connection_count(), 0);
    let now = h.now();
    assert_eq!(
        h.server.bind_connection(now, id, &c.username).err(),
        Some((400, "Unknown CONNECTION-ID"))
    );
}

#[test]
fn connections_are_bounded_and_end_with_their_allocation() {
    let limits = Limits {
        permissions_per_allocation: 2,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let (mut c, _) = tcp_allocation(&mut h, "198.51.100.7:1");
    let mut ids = Vec::new();
    for peer in ["192.0.2.1:1", "192.0.2.2:1"] {
        let (out, _) = request(&mut c, &mut h, method::CONNECT, Some(peer), &[]);
        let ClientOutput::Connect { id, .. } = out else {
            panic!("{out:?}");
        };
        let now = h.now();
        assert!(h.server.connect_finished(now, id, true));
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "ids are unique");
    let (out, _) = request(&mut c, &mut h, method::CONNECT, Some("192.0.2.3:1"), &[]);
    assert_eq!(out, ClientOutput::Reply);
    assert_eq!(error_code(h.server.reply()), 508);
    let now = h.now();
    assert!(matches!(
        h.server.bind_connection(now, ids[0], &c.username),
        Ok(None)
    ));
    // The bound pair closing frees its place.
    h.server.tcp_connection_closed(ids[0]);
    assert_eq!(h.server.tcp_connection_count(), 1);
    // Deleting the allocation closes every connection it still has.
    let lifetime0 = (attr::LIFETIME, vec![0, 0, 0, 0]);
    assert_eq!(
        error_code(&c.call(&mut h, method::REFRESH, &[lifetime0])),
        0
    );
    assert_eq!(h.server.poll_tcp_event(), Some(TcpEvent::Close(ids[1])));
    assert_eq!(h.server.poll_tcp_event(), None);
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn data_connections_of_one_allocation_share_its_bandwidth_cap_per_direction() {
    let limits = Limits {
        bandwidth_bps: 1000,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let mut caps = Vec::new();
    for (client, peers) in [
        ("198.51.100.8:1", ["192.0.2.1:1", "192.0.2.2:1"]),
        ("198.51.100.9:1", ["192.0.2.1:1", "192.0.2.2:1"]),
    ] {
        let (mut c, _) = tcp_allocation(&mut h, client);
        for peer in peers {
            let (out, _) = request(&mut c, &mut h, method::CONNECT, Some(peer), &[]);
            let ClientOutput::Connect { id, .. } = out else {
                panic!("{out:?}");
            };
            let now = h.now();
            assert!(h.server.connect_finished(now, id, true));
            let cap = h.server.bind_connection(now, id, &c.username).unwrap();
            caps.push(cap.expect("a cap when limits.bandwidth_bps is set"));
        }
    }
    assert!(Arc::ptr_eq(&caps[0], &caps[1]), "one cap per allocation");
    assert!(!Arc::ptr_eq(&caps[0], &caps[2]), "each allocation its own");
    let t = h.now().instant;
    let (up, down) = (Direction::ClientToPeer, Direction::PeerToClient);
    assert_eq!(caps[0].max_read(), 1000);
    // One data connection runs the allocation's client → peer budget 500 bytes into debt: the
    // other pauses too, the other direction and the other allocation do not.
    caps[0].charge(up, t, 1500);
    assert_eq!(caps[1].pause(up, t), Duration::from_millis(500));
    assert_eq!(caps[1].pause(down, t), Duration::ZERO);
    assert_eq!(caps[2].pause(up, t), Duration::ZERO);
    assert_eq!(
        caps[0].pause(up, t + Duration::from_millis(500)),
        Duration::ZERO
    );
}
