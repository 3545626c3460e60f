//! What the admin API asks of the core: listing with per-allocation traffic, ending by user,
//! username or id, and revoked credentials refused with 403 on Allocate and Refresh only.

use super::*;

fn lifetime(secs: u32) -> (u16, Vec<u8>) {
    (attr::LIFETIME, secs.to_be_bytes().to_vec())
}

#[test]
fn listing_counts_traffic_and_pages_by_id() {
    let mut h = Harness::with(
        settings(Limits::default(), &["198.51.100.0/24"]),
        Shared::new(10, 100),
    );
    let mut a = Client::rest(ft("192.0.2.1:1"), "ann", b"new-secret", 86400);
    let mut b = Client::rest(ft("192.0.2.2:1"), "bob", b"new-secret", 86400);
    let relay_a = relayed(&a.allocate(&mut h))[0];
    let relay_b = relayed(&b.allocate(&mut h))[0];
    assert_eq!(bind(&mut a, &mut h, 0x4000, "198.51.100.9:9"), 0);
    // Two packets to the peer (ChannelData), one back.
    for _ in 0..2 {
        let frame = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
        assert!(matches!(
            h.client_out(a.ft, &frame),
            ClientOutput::Relay { .. }
        ));
    }
    assert!(
        h.peer_sends(relay_a, "198.51.100.9:9".parse().unwrap(), b"hello")
            .is_some()
    );
    h.elapsed += Duration::from_secs(5);

    let now = h.now().instant;
    let all = h.server.list_allocations(now, None, None, 10);
    assert_eq!(all.total, 2);
    let ids: Vec<AllocationId> = all.allocations.iter().map(|i| i.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let info = all
        .allocations
        .iter()
        .find(|i| i.relays[0] == relay_a)
        .unwrap();
    assert_eq!(info.user, "ann");
    assert_eq!(info.age_secs, 5);
    assert_eq!(info.traffic.packets, [2, 1]);
    assert_eq!(info.traffic.bytes, [6, 5]);
    assert_eq!(info.channels.len(), 1);
    assert_eq!(info.permissions.len(), 1);
    // Filter, and pages after a cursor.
    let only = h.server.list_allocations(now, Some("bob"), None, 10);
    assert_eq!((only.total, only.allocations[0].relays[0]), (1, relay_b));
    let first = h.server.list_allocations(now, None, None, 1);
    assert_eq!((first.total, first.allocations.len()), (2, 1));
    let second = h
        .server
        .list_allocations(now, None, Some(first.allocations[0].id), 1);
    assert_eq!(second.allocations.len(), 1);
    assert_ne!(second.allocations[0].id, first.allocations[0].id);
    let done = h
        .server
        .list_allocations(now, None, Some(second.allocations[0].id), 1);
    assert!(done.allocations.is_empty());
}

#[test]
fn ending_by_user_and_by_id_closes_relays_and_releases_the_quota() {
    let mut h = Harness::with(settings(Limits::default(), &[]), Shared::new(1, 100));
    let mut a = Client::rest(ft("192.0.2.1:1"), "ann", b"new-secret", 86400);
    let mut b = Client::with_password(ft("192.0.2.2:1"), "alice", "wonderland");
    let relay_a = relayed(&a.allocate(&mut h))[0];
    let relay_b = relayed(&b.allocate(&mut h))[0];
    assert_eq!(h.io.open.len(), 2);
    let ended = h
        .server
        .end_allocations(&End::Subject(Subject::User("nobody".into())), &mut h.io);
    assert_eq!(ended, 0);
    let ended = h
        .server
        .end_allocations(&End::Subject(Subject::User("ann".into())), &mut h.io);
    assert_eq!(ended, 1);
    assert!(!h.io.open.contains(&(relay_a.port() as u32)));
    assert!(
        h.peer_sends(relay_a, "198.51.100.9:9".parse().unwrap(), b"x")
            .is_none()
    );
    // The quota (1 per user) is free again: ann allocates anew from another port.
    let mut again = Client::rest(ft("192.0.2.1:2"), "ann", b"new-secret", 86400);
    assert_eq!(error_code(&again.allocate(&mut h)), 0);
    let id = AllocationId {
        tcp: false,
        addr: relay_b,
    };
    assert_eq!(h.server.end_allocations(&End::Allocation(id), &mut h.io), 1);
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn revoked_credentials_get_403_on_allocate_and_refresh_and_others_do_not() {
    let shared = Shared::new(10, 100);
    let revoked = shared.revoked.clone();
    let mut h = Harness::with(settings(Limits::default(), &[]), shared);
    let mut a = Client::rest(ft("192.0.2.1:1"), "ann", b"new-secret", 86400);
    assert_eq!(error_code(&a.allocate(&mut h)), 0);
    let unix = h.now().unix;
    revoked.replace(
        RevocationList::default()
            .with(Subject::User("ann".into()), Some(unix + 60), unix)
            .unwrap(),
    );
    let answer = a.call(&mut h, method::REFRESH, &[lifetime(600)]);
    assert_eq!(error_code(&answer), 403);
    // The 403 is signed with the credentials (they verified).
    let msg = Message::parse(&answer).unwrap();
    assert!(msg.has_integrity());
    let mut fresh = Client::rest(ft("192.0.2.1:2"), "ann", b"new-secret", 3600);
    assert_eq!(error_code(&fresh.allocate(&mut h)), 403);
    // Another user, and a wrong password for ann, are not affected / still 401.
    let mut other = Client::rest(ft("192.0.2.3:1"), "bob", b"new-secret", 86400);
    assert_eq!(error_code(&other.allocate(&mut h)), 0);
    let mut wrong = Client::rest(ft("192.0.2.1:3"), "ann", b"not-the-secret", 3600);
    assert_eq!(error_code(&wrong.allocate(&mut h)), 401);
    assert_eq!(
        h.server
            .stats()
            .snapshot()
            .auth_failures(AuthFailure::Revoked),
        2
    );
    // After the end time, ann is back.
    h.advance(61);
    let mut later = Client::rest(ft("192.0.2.1:4"), "ann", b"new-secret", 3600);
    later.nonce = Vec::new();
    let answer = later.allocate(&mut h);
    assert_eq!(error_code(&answer), 0);
    // Ending what the list covers (after a cluster update): nothing, it has expired.
    let unix = h.now().unix;
    assert_eq!(h.server.end_allocations(&End::Revoked(unix), &mut h.io), 0);
    revoked.replace(
        RevocationList::default()
            .with(Subject::Username(later.username.clone()), None, unix)
            .unwrap(),
    );
    assert_eq!(h.server.end_allocations(&End::Revoked(unix), &mut h.io), 1);
}
