//! The peer policy's security rules in the core: the host's own addresses, relay to relay only
//! to live allocations, IPv4-mapped peers, port ranges, revocation when settings change, and
//! the small RFC rules (FINGERPRINT on 401, ChannelBind all or nothing).

use super::*;

fn send_indication(peer: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf, Class::Indication, method::SEND, [9; 12]);
    w.xor_addr(attr::XOR_PEER_ADDRESS, peer.parse().unwrap())
        .attr(attr::DATA, payload);
    buf
}

fn relays_to(out: ClientOutput) -> Option<SocketAddr> {
    match out {
        ClientOutput::Relay { peer, .. } => Some(peer),
        _ => None,
    }
}

fn dual(c: &mut Client, h: &mut Harness) -> Vec<u8> {
    c.call(
        h,
        method::ALLOCATE,
        &[udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    )
}

#[test]
fn the_hosts_own_addresses_are_denied_in_every_spelling_unless_allowed() {
    let mut s = settings(Limits::default(), &[]);
    // A public interface address and the (public) listener address.
    s.own_addresses = vec![
        "198.51.100.200".parse().unwrap(),
        "192.0.2.100".parse().unwrap(),
        "2001:db8::200".parse().unwrap(),
    ];
    let mut h = Harness::with(s, Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "own", b"new-secret", 86400);
    dual(&mut c, &mut h);
    for own in [
        "198.51.100.200:22",
        "192.0.2.100:3478",
        "[2001:db8::200]:22",
        "[::ffff:198.51.100.200]:22",
        // 6to4 and NAT64 spellings of 198.51.100.200 (c6.33.64.c8).
        "[2002:c633:64c8::1]:22",
        "[64:ff9b::c633:64c8]:22",
    ] {
        assert_eq!(permit(&mut c, &mut h, &[own]), 403, "{own}");
        assert_eq!(bind(&mut c, &mut h, 0x4001, own), 403, "{own}");
    }
    // A Send indication does not get there either.
    let out = h.client_out(c.ft, &send_indication("198.51.100.200:22", b"x"));
    assert_eq!(out, ClientOutput::Nothing);
    // Public neighbours are fine.
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.201:22"]), 0);

    // An allow range holding the address does not open it...
    let mut s = settings(Limits::default(), &["198.51.100.0/24"]);
    s.own_addresses = vec!["198.51.100.200".parse().unwrap()];
    h.server.set_settings(Arc::new(s));
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.200:22"]), 403);
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.199:22"]), 0);
    // ...an operator allow entry naming the address itself does.
    let mut s = settings(Limits::default(), &["198.51.100.200/32"]);
    s.own_addresses = vec!["198.51.100.200".parse().unwrap()];
    h.server.set_settings(Arc::new(s));
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.200:22"]), 0);
}

#[test]
fn relay_to_relay_reaches_live_allocations_only_never_other_ports() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 86400);
    let mut b = Client::rest(ft("198.51.100.7:2"), "bob", b"new-secret", 86400);
    relayed(&a.allocate(&mut h));
    let b_relay = relayed(&b.allocate(&mut h))[0];
    let b_text = b_relay.to_string();
    let host_port = SocketAddr::new(b_relay.ip(), 22).to_string();
    let free_port = SocketAddr::new(b_relay.ip(), b_relay.port() + 50).to_string();
    assert_eq!(permit(&mut a, &mut h, &[&b_text]), 0, "B's live relay");
    assert_eq!(permit(&mut a, &mut h, &[&host_port]), 403, "the host's SSH");
    assert_eq!(
        permit(&mut a, &mut h, &[&free_port]),
        403,
        "a port of nobody"
    );
    assert_eq!(bind(&mut a, &mut h, 0x4001, &host_port), 403);
    assert_eq!(bind(&mut a, &mut h, 0x4001, &b_text), 0);
    // The permission on the relay IP does not carry data to another port of the host.
    let out = h.client_out(a.ft, &send_indication(&host_port, b"x"));
    assert_eq!(
        out,
        ClientOutput::Nothing,
        "Send to another port of the host"
    );
    let out = h.client_out(a.ft, &send_indication(&b_text, b"x"));
    assert_eq!(relays_to(out), Some(b_relay));
    let channel_data = [0x40, 0x01, 0x00, 0x01, 7, 0, 0, 0];
    assert_eq!(relays_to(h.client_out(a.ft, &channel_data)), Some(b_relay));
    // B leaves: its port is nobody's, and A's channel to it carries nothing more.
    b.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, vec![0, 0, 0, 0])],
    );
    assert!(!h.server.shared.live_relays.contains(b_relay));
    assert_eq!(h.client_out(a.ft, &channel_data), ClientOutput::Nothing);
    assert_eq!(permit(&mut a, &mut h, &[&b_text]), 403);
}

#[test]
fn ipv4_mapped_peers_act_on_the_ipv4_address() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "map", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    assert_eq!(permit(&mut c, &mut h, &["[::ffff:198.51.100.9]:7000"]), 0);
    // The permission is the IPv4 peer's: its packets come through.
    let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    assert!(h.peer_sends(relay, peer, b"in").is_some());
    // A Send to the mapped address goes to the IPv4 address.
    let out = h.client_out(c.ft, &send_indication("[::ffff:198.51.100.9]:7000", b"out"));
    assert_eq!(relays_to(out), Some(peer));
    // A channel to the mapped address is the IPv4 peer's channel.
    assert_eq!(
        bind(&mut c, &mut h, 0x4002, "[::ffff:198.51.100.9]:7000"),
        0
    );
    let frame = h.peer_sends(relay, peer, b"ch").expect("relayed");
    assert_eq!(
        &frame[..2],
        &[0x40, 0x02],
        "ChannelData on the bound channel"
    );
    let out = h.client_out(c.ft, &[0x40, 0x02, 0x00, 0x01, 7, 0, 0, 0]);
    assert_eq!(relays_to(out), Some(peer));
    // And a denied IPv4 address stays denied when mapped.
    assert_eq!(permit(&mut c, &mut h, &["[::ffff:10.0.0.1]:9"]), 403);
}

#[test]
fn entries_with_ports_are_enforced_per_packet() {
    let mut s = settings(Limits::default(), &[]);
    s.policy = PeerPolicy::with_entries(vec!["10.1.0.0/16:443".parse().unwrap()], vec![]);
    let mut h = Harness::with(s, Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "port", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(
        permit(&mut c, &mut h, &["10.1.2.3:9"]),
        0,
        "by IP: port 443 is open"
    );
    assert_eq!(bind(&mut c, &mut h, 0x4001, "10.1.2.3:80"), 403);
    assert_eq!(bind(&mut c, &mut h, 0x4001, "10.1.2.3:443"), 0);
    let out = h.client_out(c.ft, &send_indication("10.1.2.3:80", b"x"));
    assert_eq!(out, ClientOutput::Nothing);
    let out = h.client_out(c.ft, &send_indication("10.1.2.3:443", b"x"));
    assert_eq!(relays_to(out), Some("10.1.2.3:443".parse().unwrap()));
    assert_eq!(permit(&mut c, &mut h, &["10.2.0.1:443"]), 403);
}

#[test]
fn new_settings_revoke_permissions_and_channels_they_deny_at_once() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "rev", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    assert_eq!(bind(&mut c, &mut h, 0x4001, "198.51.100.9:7000"), 0);
    assert_eq!(permit(&mut c, &mut h, &["203.0.113.77:1"]), 0);
    let channel_data = [0x40, 0x01, 0x00, 0x01, 7, 0, 0, 0];
    assert!(relays_to(h.client_out(c.ft, &channel_data)).is_some());

    let mut s = settings(Limits::default(), &[]);
    s.policy = PeerPolicy::new(vec![], vec!["198.51.100.0/24".parse().unwrap()]);
    h.server.set_settings(Arc::new(s));
    assert_eq!(h.client_out(c.ft, &channel_data), ClientOutput::Nothing);
    let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
    assert!(h.peer_sends(relay, peer, b"in").is_none());
    let alloc = h.server.allocations.iter().flatten().next().unwrap();
    assert!(alloc.channels.is_empty());
    assert_eq!(alloc.permissions.len(), 1, "the other permission stays");
    assert!(
        h.peer_sends(relay, "203.0.113.77:5".parse().unwrap(), b"in")
            .is_some()
    );

    // A new address of the host is revoked the same way.
    let mut s = settings(Limits::default(), &[]);
    s.own_addresses = vec!["203.0.113.77".parse().unwrap()];
    h.server.set_settings(Arc::new(s));
    let alloc = h.server.allocations.iter().flatten().next().unwrap();
    assert!(alloc.permissions.is_empty());
}

#[test]
fn unauthenticated_errors_carry_a_fingerprint_when_the_request_did() {
    let mut h = Harness::new();
    for with in [true, false] {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Request, method::ALLOCATE, [with as u8; 12]);
        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        if with {
            w.fingerprint();
        }
        let answer = h.send(ft("198.51.100.7:1"), &buf).expect("a 401");
        assert_eq!(error_code(&answer), 401);
        let m = Message::parse(&answer).unwrap();
        assert_eq!(m.has_fingerprint(), with, "fingerprint requested: {with}");
    }
}

#[test]
fn a_refused_channel_bind_installs_nothing() {
    let limits = Limits {
        permissions_per_allocation: 1,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "half", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(permit(&mut c, &mut h, &["198.51.100.9:1"]), 0);
    assert_eq!(bind(&mut c, &mut h, 0x4001, "198.51.100.10:1"), 508);
    let alloc = h.server.allocations.iter().flatten().next().unwrap();
    assert!(alloc.channels.is_empty(), "no channel left behind");
    // The number is still free for a peer that fits.
    assert_eq!(bind(&mut c, &mut h, 0x4001, "198.51.100.9:1"), 0);
}
