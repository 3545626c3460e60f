//! Relaying in the core: the peer policy, permissions (by IP, expiring), Send and Data
//! indications, and channels (binding rules, data both ways).

use super::*;

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
fn own_relay_addresses_are_allowed_even_when_private_but_only_live_ones() {
    let mut s = settings(Limits::default(), &[]);
    s.own_relay_ips = vec!["10.0.0.5".parse().unwrap()];
    let h = Harness::with(s, Shared::new(10, 100));
    h.server
        .shared
        .live_relays
        .set("10.0.0.5:50001".parse().unwrap(), true);
    let mut h = h;
    let mut c = Client::rest(ft("198.51.100.7:1"), "lee", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(
        permit(&mut c, &mut h, &["10.0.0.5:50001"]),
        0,
        "a live relay of ours"
    );
    assert_eq!(
        permit(&mut c, &mut h, &["10.0.0.5:50002"]),
        403,
        "a port of the relay range that no allocation holds"
    );
    assert_eq!(
        permit(&mut c, &mut h, &["10.0.0.5:22"]),
        403,
        "another port"
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
