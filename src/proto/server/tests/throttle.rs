//! Authentication throttling (issue #12): the per-source limit holds spoofed floods and
//! password guessers on every transport, before any HMAC or MD5 work, while the many clients
//! of one NAT, each answered a 401 before it authenticates, are never held to it.

use super::*;

const RATE: u32 = 5;

fn limits(credit: u32) -> Limits {
    Limits {
        unauthenticated_rate: RATE,
        verified_credit: credit,
        ..Limits::default()
    }
}

fn harness(credit: u32) -> Harness {
    Harness::with(settings(limits(credit), &[]), Shared::new(0, 100_000))
}

fn unauthenticated_allocate() -> Vec<u8> {
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [9; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    req
}

fn tcp(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        ..ft(client)
    }
}

/// A new client the way an ICE agent starts: an Allocate without credentials (answered 401
/// with a nonce), then the same Allocate signed. Returns the second answer's error code, or
/// `None` when the 401 never came.
fn new_client_allocates(h: &mut Harness, from: FiveTuple, user: &str) -> Option<u16> {
    let answer = h.send(from, &unauthenticated_allocate())?;
    assert_eq!(error_code(&answer), 401);
    let nonce = Message::parse(&answer)
        .unwrap()
        .get(attr::NONCE)
        .unwrap()
        .to_vec();
    let mut c = Client::rest(from, user, b"new-secret", 86400);
    c.nonce = nonce;
    let tid = c.tid();
    let answer = h.send(from, &c.request(method::ALLOCATE, tid, &[udp()]))?;
    Some(error_code(&answer))
}

#[test]
fn ten_thousand_clients_behind_one_nat_all_allocate_at_once() {
    // No time passes: the rate alone (5/s, a burst of 10) would answer 10 of them.
    let mut h = harness(64);
    for i in 0..10_000u32 {
        let from = ft(&format!("198.51.100.1:{}", 1024 + i));
        assert_eq!(
            new_client_allocates(&mut h, from, &format!("u{i}")),
            Some(0),
            "client {i} allocates"
        );
    }
    assert_eq!(h.server.allocation_count(), 10_000);
    assert_eq!(snapshot_drops(&h), 0);
}

#[test]
fn a_thousand_clients_starting_at_once_behind_one_nat_widen_their_own_way() {
    // All start in the same instant; those whose 401 was dropped retransmit, in rounds (no
    // time passes, so the rate adds nothing). Each handshake earns more than it spends, so the
    // answered share doubles every round: 10, 20, 40, ... rather than 10 a round.
    let mut h = harness(1024);
    let mut waiting: Vec<u32> = (0..1000).collect();
    let mut rounds = 0;
    while !waiting.is_empty() {
        rounds += 1;
        assert!(
            rounds <= 8,
            "{} still waiting after 8 rounds",
            waiting.len()
        );
        // Every waiting client's Allocate arrives before any of their signed ones.
        let challenged: Vec<(u32, Vec<u8>)> = waiting
            .iter()
            .filter_map(|&i| {
                let answer = h.send(nat_client(i), &unauthenticated_allocate())?;
                let m = Message::parse(&answer).unwrap();
                Some((i, m.get(attr::NONCE).unwrap().to_vec()))
            })
            .collect();
        for (i, nonce) in challenged {
            let mut c = Client::rest(nat_client(i), "burst", b"new-secret", 86400);
            c.nonce = nonce;
            let tid = c.tid();
            let answer = h.send(c.ft, &c.request(method::ALLOCATE, tid, &[udp()]));
            assert_eq!(answer.map(|a| error_code(&a)), Some(0));
            waiting.retain(|&w| w != i);
        }
    }
    assert_eq!(h.server.allocation_count(), 1000);
}

fn nat_client(i: u32) -> FiveTuple {
    ft(&format!("198.51.100.1:{}", 1024 + i))
}

fn snapshot_drops(h: &Harness) -> u64 {
    h.server.stats().snapshot().dropped(DropReason::RateLimit)
}

#[test]
fn a_spoofed_flood_from_many_addresses_gets_the_rate_at_each() {
    let mut h = harness(64);
    let req = unauthenticated_allocate();
    for addr in 0..200u32 {
        let ip = std::net::Ipv4Addr::from(0x0A00_0000 + addr);
        let from = ft(&format!("{ip}:4000"));
        let answered = (0..50).filter(|_| h.send(from, &req).is_some()).count();
        // Slots are shared by colliding sources: never more than the burst, maybe fewer.
        assert!(answered <= 2 * RATE as usize, "{ip}: {answered}");
    }
    h.elapsed += Duration::from_secs(1);
    let from = ft("10.0.0.1:4000");
    let answered = (0..50).filter(|_| h.send(from, &req).is_some()).count();
    assert!(
        answered <= RATE as usize,
        "a second later, the rate: {answered}"
    );
}

#[test]
fn a_spoofed_flood_at_a_nat_gets_no_more_than_its_clients_earned() {
    let credit = 64;
    let mut h = harness(credit);
    let nat = "198.51.100.1";
    // 20 clients authenticated: the first 10 were answered from the burst, all 20 earned two.
    for i in 0..20u32 {
        let from = ft(&format!("{nat}:{}", 1024 + i));
        assert_eq!(new_client_allocates(&mut h, from, "nat"), Some(0));
    }
    let req = unauthenticated_allocate();
    let answered = (0..1000u32)
        .filter(|i| h.send(ft(&format!("{nat}:{}", 2000 + i)), &req).is_some())
        .count();
    assert_eq!(
        answered, 30,
        "the 40 credits earned less the 10 the rate did not cover"
    );
    // However long the NAT's clients have been authenticating, the bank holds the cap.
    let mut owner = Client::rest(ft(&format!("{nat}:1024")), "nat", b"new-secret", 86400);
    owner.nonce = h
        .server
        .settings()
        .auth
        .nonce(h.now().unix, owner.ft.client)
        .to_vec();
    for _ in 0..200 {
        assert_eq!(
            error_code(&owner.call(&mut h, method::REFRESH, &[])),
            0,
            "the owner refreshes through the flood"
        );
    }
    let answered = (0..1000u32)
        .filter(|i| h.send(ft(&format!("{nat}:{}", 5000 + i)), &req).is_some())
        .count();
    assert_eq!(answered, credit as usize, "at most the cap");
}

#[test]
fn an_ipv6_64_is_one_source() {
    let mut h = harness(64);
    let req = unauthenticated_allocate();
    let answered = (1..=200u32)
        .filter(|i| {
            h.send(ft(&format!("[2001:db8:0:7::{i:x}]:4000")), &req)
                .is_some()
        })
        .count();
    assert_eq!(answered, 2 * RATE as usize);
    assert!(
        h.send(ft("[2001:db8:0:8::1]:4000"), &req).is_some(),
        "the next /64 is another source"
    );
}

#[test]
fn tcp_guessers_are_throttled_before_any_hmac() {
    let mut h = harness(64);
    let checks = |h: &Harness| h.server.settings().auth.crypto_checks();
    let from = tcp("198.51.100.20:5000");
    let mut guesser = Client::with_password(from, "alice", "not-the-password");
    // Learn a nonce first, then guess with it (each guess is a new request).
    guesser.call(&mut h, method::ALLOCATE, &[udp()]);
    let before = checks(&h);
    let answered = (0..1000u32)
        .filter(|i| {
            guesser.next_tid = (i % 200) as u8;
            let tid = guesser.tid();
            h.send(from, &guesser.request(method::ALLOCATE, tid, &[udp()]))
                .is_some()
        })
        .count();
    let worked = checks(&h) - before;
    assert!(answered < 2 * RATE as usize, "{answered} answers");
    assert_eq!(
        worked, answered as u64,
        "a guess that cannot be answered costs no HMAC"
    );
    assert!(snapshot_drops(&h) >= 990);
    // A second later: the rate, and no more work than that.
    h.elapsed += Duration::from_secs(1);
    let before = checks(&h);
    let answered = (0..1000u32)
        .filter(|i| {
            guesser.next_tid = (i % 200) as u8;
            let tid = guesser.tid();
            h.send(from, &guesser.request(method::ALLOCATE, tid, &[udp()]))
                .is_some()
        })
        .count();
    assert_eq!(answered, RATE as usize);
    assert_eq!(checks(&h) - before, RATE as u64);
}

#[test]
fn stream_cores_share_the_limit_with_udp_cores() {
    let shared = Arc::new(Shared::new(0, 100));
    let t0 = Instant::now();
    let settings = Arc::new(settings(limits(0), &[]));
    let stats = Arc::new(Stats::shared());
    let mut udp_core = Server::new(settings_clone(&settings), shared.clone(), t0);
    let mut io = FakeIo::default();
    let now = Now {
        instant: t0,
        unix: UNIX0,
    };
    let req = unauthenticated_allocate();
    let mut answered = 0;
    for i in 0..25u16 {
        // A new connection each time, each with a core of its own.
        let mut core = Server::for_stream(settings.clone(), shared.clone(), t0, stats.clone());
        let from = tcp(&format!("198.51.100.30:{}", 6000 + i));
        if core.handle_client(now, from, &req, &mut io) == ClientOutput::Reply {
            answered += 1;
        }
        if udp_core.handle_client(
            now,
            ft(&format!("198.51.100.30:{}", 7000 + i)),
            &req,
            &mut io,
        ) == ClientOutput::Reply
        {
            answered += 1;
        }
    }
    assert_eq!(
        answered,
        2 * RATE,
        "one burst across connections and workers"
    );
}

/// The same settings again (cores built by tests each own theirs).
fn settings_clone(s: &Settings) -> Settings {
    settings(s.limits.clone(), &[])
}

#[test]
fn an_allocation_keeps_refreshing_while_its_source_is_out_of_failures() {
    // No credits: only the owner's own standing lets its requests through.
    let mut h = harness(0);
    let nonce_for = |h: &Harness, c: &Client| {
        let unix = h.now().unix;
        h.server.settings().auth.nonce(unix, c.ft.client).to_vec()
    };
    let mut owner = Client::rest(ft("198.51.100.40:1000"), "own", b"new-secret", 86400);
    owner.nonce = nonce_for(&h, &owner);
    assert_eq!(error_code(&owner.allocate(&mut h)), 0);
    let mut guesser = Client::with_password(ft("198.51.100.40:2000"), "alice", "guess");
    guesser.nonce = nonce_for(&h, &guesser);
    for _ in 0..50 {
        let tid = guesser.tid();
        h.send(
            guesser.ft,
            &guesser.request(method::ALLOCATE, tid, &[udp()]),
        );
    }
    let checks = h.server.settings().auth.crypto_checks();
    let tid = guesser.tid();
    let bytes = guesser.request(method::ALLOCATE, tid, &[udp()]);
    assert_eq!(
        h.send(guesser.ft, &bytes),
        None,
        "the source is out of failures"
    );
    assert_eq!(h.server.settings().auth.crypto_checks(), checks);
    let answer = owner.call(&mut h, method::REFRESH, &[]);
    assert_eq!(
        error_code(&answer),
        0,
        "the owner's Refresh is still checked"
    );
    // Another user's name on the owner's 5-tuple is a guess like any other.
    let mut other = Client::with_password(owner.ft, "alice", "guess");
    other.nonce = owner.nonce.clone();
    let tid = other.tid();
    let bytes = other.request(method::REFRESH, tid, &[]);
    assert_eq!(h.send(owner.ft, &bytes), None);
}

/// Binding answers stay within twice their request, except an IPv6 client's bare 20-byte
/// request (its XOR-MAPPED-ADDRESS makes the answer 44 bytes, 2.2x): those answers are held
/// to the source's budget, as 401s are, while a Binding with FINGERPRINT from the same source
/// (28 bytes, answered with 52) and IPv4 Bindings (20, answered with 32) are always answered.
#[test]
fn binding_answers_beyond_twice_the_request_are_held_to_the_source_budget() {
    let mut h = harness(0);
    let mut bare = Vec::new();
    Writer::new(&mut bare, Class::Request, method::BINDING, [1; 12]);
    let mut signed = Vec::new();
    Writer::new(&mut signed, Class::Request, method::BINDING, [2; 12]).fingerprint();
    let v6 = ft("[2001:db8:5::7]:40000");
    let answered = (0..100).filter(|_| h.send(v6, &bare).is_some()).count();
    assert!(
        (1..=2 * RATE as usize + 1).contains(&answered),
        "{answered} of 100 bare IPv6 Bindings answered"
    );
    for _ in 0..100 {
        let answer = h.send(v6, &signed).expect("within 2x: always answered");
        assert!(answer.len() <= 2 * signed.len(), "{} bytes", answer.len());
    }
    let v4 = ft("198.51.100.7:40000");
    for _ in 0..100 {
        let answer = h.send(v4, &bare).expect("IPv4: always answered");
        assert!(answer.len() <= 2 * bare.len(), "{} bytes", answer.len());
    }
}
