//! Expiry through the timer queue: every kind of state ends when it is due (not before, not a
//! sweep later), refreshes postpone it, deletion cancels it, and the queue stays bounded
//! whatever the clients do.

use super::*;

/// The one allocation of the harness.
fn only(h: &Harness) -> &Allocation {
    h.server
        .allocations
        .iter()
        .flatten()
        .next()
        .expect("an allocation")
}

/// When the queue next looks at the harness's only allocation (slot 0).
fn due(h: &Harness) -> Option<Instant> {
    h.server.timers.scheduled(0)
}

fn lifetime(secs: u32) -> (u16, Vec<u8>) {
    (attr::LIFETIME, secs.to_be_bytes().to_vec())
}

#[test]
fn an_allocation_ends_at_its_lifetime_and_a_refresh_postpones_it() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ada", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(due(&h), Some(h.t0 + Duration::from_secs(600)));
    h.advance(500);
    c.call(&mut h, method::REFRESH, &[lifetime(600)]); // now due at 1100
    h.advance(599); // 1099
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(1); // 1100
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.open.is_empty(), "its relay was closed");
    assert_eq!(h.server.timer_entries(), 0, "nothing left behind");
}

#[test]
fn permissions_expire_at_300_s_and_refreshing_postpones_them() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ada", b"new-secret", 86400);
    c.allocate(&mut h);
    assert_eq!(
        permit(&mut c, &mut h, &["203.0.113.50:1", "203.0.113.51:1"]),
        0
    );
    h.advance(200);
    assert_eq!(permit(&mut c, &mut h, &["203.0.113.51:1"]), 0); // until 500
    h.advance(99); // 299
    assert_eq!(only(&h).permissions.len(), 2);
    h.advance(1); // 300: the first is gone, from the table, not only in effect
    let ips: Vec<_> = only(&h).permissions.iter().map(|p| p.ip).collect();
    assert_eq!(ips, vec!["203.0.113.51".parse::<IpAddr>().unwrap()]);
    h.advance(199); // 499
    assert_eq!(only(&h).permissions.len(), 1);
    h.advance(1); // 500
    assert!(only(&h).permissions.is_empty());
}

#[test]
fn channels_expire_at_600_s_and_leave_after_their_cooldown() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ada", b"new-secret", 86400);
    c.call(&mut h, method::ALLOCATE, &[udp(), lifetime(3600)]);
    assert_eq!(bind(&mut c, &mut h, 0x4000, "203.0.113.50:7"), 0);
    h.advance(100);
    assert_eq!(bind(&mut c, &mut h, 0x4000, "203.0.113.50:7"), 0); // until 700
    // The queue wakes the core when the channel expires (the moment a fast path must drop it).
    h.advance(299); // 399: the permission the first bind made was refreshed too (until 400)
    assert_eq!(due(&h), Some(h.t0 + Duration::from_secs(400)));
    h.advance(300); // 699
    assert!(only(&h).channel(0x4000, h.now().instant).is_some());
    assert_eq!(due(&h), Some(h.t0 + Duration::from_secs(700)));
    h.advance(1); // 700: expired, kept through its cooldown
    assert!(only(&h).channel(0x4000, h.now().instant).is_none());
    assert_eq!(only(&h).channels.len(), 1);
    assert_eq!(due(&h), Some(h.t0 + Duration::from_secs(1000)));
    h.advance(299);
    assert_eq!(only(&h).channels.len(), 1);
    h.advance(1); // 1000
    assert!(only(&h).channels.is_empty());
}

#[test]
fn deleting_an_allocation_cancels_its_expiry() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ada", b"new-secret", 86400);
    c.allocate(&mut h);
    permit(&mut c, &mut h, &["203.0.113.50:1"]);
    c.call(&mut h, method::REFRESH, &[lifetime(0)]);
    assert_eq!(h.server.allocation_count(), 0);
    // A new allocation takes the slot: the old entries must not end it early.
    let mut d = Client::rest(ft("198.51.100.7:2"), "bob", b"new-secret", 86400);
    h.advance(10);
    d.allocate(&mut h);
    h.advance(300); // 310: the old permission's deadline passed
    h.advance(299); // 609: and the old allocation's
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(1); // 600 after its Allocate
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.timer_entries(), 0);
}

#[test]
fn refresh_storms_keep_the_queue_bounded() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ada", b"new-secret", 86400);
    c.allocate(&mut h);
    // Alternate lifetimes: every second Refresh brings the deadline forward (a new entry).
    for i in 0..3000u32 {
        let secs = if i % 2 == 0 { 3600 } else { 600 };
        c.call(&mut h, method::REFRESH, &[lifetime(secs)]);
        assert!(
            h.server.timer_entries() <= 2 + 64 + 1,
            "{}",
            h.server.timer_entries()
        );
    }
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn a_crowd_expiring_together_is_handled_in_bounded_steps() {
    let mut h = Harness::with(settings(Limits::default(), &[]), Shared::new(0, 1_000_000));
    let n = EXPIRY_BUDGET + 100;
    let mut first = Client::rest(ft("198.51.100.7:1"), "crowd", b"new-secret", 86400);
    first.allocate(&mut h);
    for port in 2..=n as u16 {
        let mut c = Client::rest(
            ft(&format!("198.51.100.7:{port}")),
            "crowd",
            b"new-secret",
            86400,
        );
        c.nonce = first.nonce.clone(); // valid for every port of the address: no 401 round
        c.allocate(&mut h);
    }
    assert_eq!(h.server.allocation_count(), n);
    h.elapsed += Duration::from_secs(600);
    let now = h.now();
    h.server.handle_timeout(now, &mut h.io);
    assert_eq!(
        h.server.allocation_count(),
        100,
        "one call ends at most the budget"
    );
    assert!(
        h.server.poll_timeout() <= now.instant,
        "and asks to be called again at once"
    );
    h.server.handle_timeout(now, &mut h.io);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.open.is_empty());
}
