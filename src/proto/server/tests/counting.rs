//! What the core counts into its [`Stats`]: relayed bytes by direction and transport as they
//! are relayed, requests by method and result, drops by reason, and allocation lifetimes.

use super::*;

fn snapshot(h: &Harness) -> StatsSnapshot {
    h.server.stats().snapshot()
}

fn send_indication(peer: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf, Class::Indication, method::SEND, [9; 12]);
    w.xor_addr(attr::XOR_PEER_ADDRESS, peer.parse().unwrap())
        .attr(attr::DATA, payload);
    buf
}

#[test]
fn relayed_bytes_count_per_packet_by_direction() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    assert_eq!(bind(&mut c, &mut h, 0x4000, "198.51.100.9:7000"), 0);
    let frame = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
    for n in 1..=3u64 {
        assert!(matches!(
            h.client_out(c.ft, &frame),
            ClientOutput::Relay { .. }
        ));
        let s = snapshot(&h);
        assert_eq!(s.relayed_bytes[Direction::ClientToPeer as usize][0], 5 * n);
        assert_eq!(s.relayed_packets[Direction::ClientToPeer as usize][0], n);
    }
    let peer = "198.51.100.9:7000".parse().unwrap();
    assert!(h.peer_sends(relay, peer, &[0u8; 33]).is_some());
    let s = snapshot(&h);
    assert_eq!(
        s.relayed_bytes[Direction::PeerToClient as usize],
        [33, 0, 0]
    );
    assert_eq!(
        s.relayed_packets[Direction::PeerToClient as usize],
        [1, 0, 0]
    );
    assert_eq!(s.allocations_active(Transport::Udp), 1);
    assert_eq!(s.requests(RequestMethod::Allocate, Ok(())), 1);
    // The harness's first leg carries an empty NONCE: 438, counted as a stale nonce.
    assert_eq!(
        s.requests(RequestMethod::Allocate, Err(438)),
        1,
        "the nonce leg"
    );
    assert_eq!(s.auth_failures(AuthFailure::StaleNonce), 1);
    assert_eq!(s.requests(RequestMethod::ChannelBind, Ok(())), 1);
}

#[test]
fn drops_are_counted_by_reason() {
    let limits = Limits {
        unauthenticated_rate: 1,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(1, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "bea", b"new-secret", 86400);
    let relay = relayed(&c.allocate(&mut h))[0];
    // A Send indication to a private peer (denied by policy), then to an allowed peer without
    // a permission.
    assert_eq!(
        h.client_out(c.ft, &send_indication("10.0.0.1:7000", b"x")),
        ClientOutput::Nothing
    );
    assert_eq!(
        h.client_out(c.ft, &send_indication("198.51.100.9:7000", b"x")),
        ClientOutput::Nothing
    );
    // CreatePermission for a denied peer: 403, counted as peer_denied too.
    assert_eq!(permit(&mut c, &mut h, &["192.168.1.1:1"]), 403);
    // A peer without permission sends to the relay.
    assert_eq!(
        h.peer_sends(relay, "198.51.100.10:1".parse().unwrap(), b"hi"),
        None
    );
    // ChannelData on an unbound channel; a second allocation over the per-user quota.
    assert_eq!(
        h.client_out(c.ft, &[0x40, 0x09, 0x00, 0x01, 7, 0, 0, 0]),
        ClientOutput::Nothing
    );
    let mut again = Client::rest(ft("198.51.100.7:2"), "bea", b"new-secret", 86400);
    assert_eq!(error_code(&again.allocate(&mut h)), 486);
    let s = snapshot(&h);
    assert_eq!(s.dropped(DropReason::PeerDenied), 2);
    assert_eq!(s.dropped(DropReason::NoPermission), 2);
    assert_eq!(s.dropped(DropReason::NoAllocation), 1);
    assert_eq!(s.dropped(DropReason::Quota), 1);
    assert_eq!(s.requests(RequestMethod::CreatePermission, Err(403)), 1);
    assert_eq!(s.requests(RequestMethod::Allocate, Err(486)), 1);

    // One unauthenticated answer per second from a source: the rest are rate-limit drops.
    let before = snapshot(&h).dropped(DropReason::RateLimit);
    let mut unauth = Vec::new();
    Writer::new(&mut unauth, Class::Request, method::ALLOCATE, [3; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let answered = (0..5)
        .filter(|_| h.send(ft("198.51.100.8:1"), &unauth).is_some())
        .count() as u64;
    assert!((1..5).contains(&answered), "{answered}");
    assert_eq!(
        snapshot(&h).dropped(DropReason::RateLimit) - before,
        5 - answered
    );
}

#[test]
fn allocation_lifetimes_are_recorded_when_they_end() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "cid", b"new-secret", 86400);
    c.allocate(&mut h);
    h.advance(45);
    let zero = (attr::LIFETIME, 0u32.to_be_bytes().to_vec());
    assert_eq!(error_code(&c.call(&mut h, method::REFRESH, &[zero])), 0);
    // A second one expires after the default 600 s lifetime.
    let mut d = Client::rest(ft("198.51.100.7:2"), "dee", b"new-secret", 86400);
    d.allocate(&mut h);
    for _ in 0..601 {
        h.advance(1);
    }
    let s = snapshot(&h);
    assert_eq!(s.allocations_active(Transport::Udp), 0);
    assert_eq!(s.allocations_ended, [2, 0, 0]);
    let mut buckets = [0u64; LIFETIME_BUCKETS.len() + 1];
    buckets[2] = 1; // 45 s: le=60
    buckets[4] = 1; // 600 s (swept at its expiry): le=600
    assert_eq!(s.lifetime_buckets, buckets);
    assert!(
        (645_000..=647_000).contains(&s.lifetime_sum_ms),
        "{}",
        s.lifetime_sum_ms
    );
    assert_eq!(s.requests(RequestMethod::Refresh, Ok(())), 1);
}

#[test]
fn cores_can_share_one_stats() {
    let stats = Arc::new(Stats::shared());
    let make = || {
        Server::with_stats(
            settings(Limits::default(), &[]),
            Arc::new(Shared::new(10, 100)),
            Instant::now(),
            stats.clone(),
        )
    };
    let (mut a, mut b) = (make(), make());
    let mut io = FakeIo::default();
    let now = Now {
        instant: Instant::now(),
        unix: UNIX0,
    };
    for server in [&mut a, &mut b] {
        assert_eq!(
            server.handle_client(now, ft("198.51.100.7:1"), &[0xff; 24], &mut io),
            ClientOutput::Nothing
        );
    }
    assert!(Arc::ptr_eq(a.stats(), b.stats()));
    assert_eq!(stats.snapshot().dropped(DropReason::Malformed), 2);
}
