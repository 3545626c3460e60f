//! Fast-path announcements (`Server::enable_fast_path`): what the core tells the I/O layer's
//! kernel program to install and remove, and the traffic it reports back.

use super::*;
use crate::proto::server::{FastPathEvent, FastPathTraffic};

const PEER: &str = "198.51.100.9:7000";

fn drain(h: &mut Harness) -> Vec<FastPathEvent> {
    std::iter::from_fn(|| h.server.poll_fast_path()).collect()
}

fn installed(events: &[FastPathEvent]) -> Vec<(u16, Instant)> {
    events
        .iter()
        .filter_map(|e| match e {
            FastPathEvent::Install(entry) => Some((entry.channel, entry.expires)),
            _ => None,
        })
        .collect()
}

fn removed(events: &[FastPathEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            FastPathEvent::Remove { channel, .. } => Some(*channel),
            _ => None,
        })
        .collect()
}

#[test]
fn nothing_is_announced_unless_the_fast_path_is_on() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    a.allocate(&mut h);
    assert_eq!(bind(&mut a, &mut h, 0x4000, PEER), 0);
    assert_eq!(h.server.poll_fast_path(), None);
}

#[test]
fn a_bound_channel_is_installed_until_its_earliest_lifetime_and_refreshes_move_it() {
    let mut h = Harness::new();
    h.server.enable_fast_path();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    let relay = relayed(&a.allocate(&mut h))[0];
    assert_eq!(bind(&mut a, &mut h, 0x4000, PEER), 0);
    let events = drain(&mut h);
    let t0 = h.now().instant;
    // The permission (300 s) ends before the channel (600 s) and the allocation (600 s).
    assert_eq!(installed(&events), vec![(0x4000, t0 + PERMISSION_LIFETIME)]);
    let FastPathEvent::Install(entry) = events[0] else {
        unreachable!()
    };
    assert_eq!(entry.peer, PEER.parse().unwrap());
    assert_eq!(entry.relay_addr, relay);
    assert_eq!(entry.five_tuple, a.ft);
    // A CreatePermission 100 s later moves it; so does a Refresh.
    h.advance(100);
    assert_eq!(permit(&mut a, &mut h, &["198.51.100.9:1"]), 0);
    let t1 = h.now().instant;
    assert_eq!(
        installed(&drain(&mut h)),
        vec![(
            0x4000,
            (t1 + PERMISSION_LIFETIME).min(t0 + CHANNEL_LIFETIME)
        )]
    );
}

#[test]
fn the_end_of_the_allocation_and_a_denying_reload_remove_entries() {
    let mut h = Harness::with(
        settings(Limits::default(), &["198.51.100.0/24"]),
        Shared::new(10, 100),
    );
    h.server.enable_fast_path();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    a.allocate(&mut h);
    assert_eq!(bind(&mut a, &mut h, 0x4000, PEER), 0);
    assert_eq!(installed(&drain(&mut h)).len(), 1);
    // A reload that denies the peer: removed before the core revokes it.
    let mut denying = settings(Limits::default(), &[]);
    denying.policy = PeerPolicy::new(vec![], vec!["198.51.100.9/32".parse().unwrap()]);
    h.server.set_settings(Arc::new(denying));
    assert_eq!(removed(&drain(&mut h)), vec![0x4000]);

    let mut b = Client::rest(ft("198.51.100.7:2"), "bob", b"new-secret", 3600);
    b.allocate(&mut h);
    assert_eq!(bind(&mut b, &mut h, 0x4001, "198.51.100.10:7000"), 0);
    assert_eq!(installed(&drain(&mut h)).len(), 1);
    // Refresh with LIFETIME 0 ends the allocation.
    b.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, vec![0, 0, 0, 0])],
    );
    assert_eq!(removed(&drain(&mut h)), vec![0x4001]);
}

#[test]
fn capped_allocations_stay_in_user_space() {
    let limits = Limits {
        bandwidth_bps: 1_000_000,
        ..Limits::default()
    };
    let mut h = Harness::with(settings(limits, &[]), Shared::new(10, 100));
    h.server.enable_fast_path();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    a.allocate(&mut h);
    assert_eq!(bind(&mut a, &mut h, 0x4000, PEER), 0);
    let events = drain(&mut h);
    assert!(installed(&events).is_empty(), "{events:?}");
}

#[test]
fn kernel_traffic_is_counted_like_relayed_packets() {
    let mut h = Harness::new();
    h.server.enable_fast_path();
    let mut a = Client::rest(ft("198.51.100.7:1"), "ann", b"new-secret", 3600);
    a.allocate(&mut h);
    let before = h.server.stats().snapshot();
    h.server.fast_path_traffic(
        a.ft,
        FastPathTraffic {
            packets: [3, 2],
            bytes: [3000, 2000],
        },
    );
    let after = h.server.stats().snapshot();
    let t = transport_index(Transport::Udp);
    assert_eq!(after.relayed_bytes[0][t] - before.relayed_bytes[0][t], 3000);
    assert_eq!(after.relayed_bytes[1][t] - before.relayed_bytes[1][t], 2000);
    assert_eq!(
        after.relayed_packets[0][t] - before.relayed_packets[0][t],
        3
    );
}
