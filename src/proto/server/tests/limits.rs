//! Limits in the core: allocation quotas, the per-source limit on unauthenticated answers
//! (shared by every core), the bandwidth cap, bounded tables, and garbage input.

use super::*;

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
