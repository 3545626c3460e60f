//! Allocations in the core: retransmissions, Refresh and lifetimes, error codes of malformed
//! or unsupported Allocates, IPv6 and dual-stack relays, relay ports and EVEN-PORT
//! reservations.

use super::*;

#[test]
fn retransmissions_get_the_same_answer_and_a_second_allocate_437() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "frank", b"new-secret", 86400);
    c.allocate(&mut h); // learns the nonce and allocates
    let tid = [0x55; 12];
    let mut c2 = Client::rest(ft("198.51.100.7:2"), "frank", b"new-secret", 86400);
    c2.allocate(&mut h);
    h.send(
        c2.ft,
        &c2.request(
            method::REFRESH,
            [1; 12],
            &[(attr::LIFETIME, vec![0, 0, 0, 0])],
        ),
    );
    // A fresh 5-tuple: first answer, then the same bytes for the retransmission.
    let mut c3 = Client::rest(ft("198.51.100.7:3"), "frank", b"new-secret", 86400);
    c3.nonce = h.server.settings.auth.nonce(UNIX0, c3.ft.client).to_vec();
    let req = c3.request(method::ALLOCATE, tid, &[udp()]);
    let first = h.send(c3.ft, &req).unwrap();
    assert_eq!(error_code(&first), 0);
    h.elapsed += Duration::from_millis(500);
    assert_eq!(
        h.send(c3.ft, &req).unwrap(),
        first,
        "retransmission answered identically"
    );
    assert_eq!(h.server.allocation_count(), 2);
    assert_eq!(error_code(&c3.allocate(&mut h)), 437);
    let _ = c;
}

#[test]
fn refresh_without_allocation_is_437_and_lifetime_zero_deletes() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "gina", b"new-secret", 86400);
    assert_eq!(error_code(&c.call(&mut h, method::REFRESH, &[])), 437);
    assert_eq!(error_code(&c.allocate(&mut h)), 0);
    assert_eq!(h.io.open.len(), 1);
    let answer = c.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, vec![0, 0, 0, 0])],
    );
    assert_eq!(error_code(&answer), 0);
    assert_eq!(
        Message::parse(&answer).unwrap().verify_integrity(&c.key),
        Some(Integrity::Sha1)
    );
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.open.is_empty(), "relay socket closed");
    assert_eq!(error_code(&c.call(&mut h, method::REFRESH, &[])), 437);
}

#[test]
fn lifetimes_are_capped_and_allocations_expire() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "hank", b"new-secret", 86400);
    let answer = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::LIFETIME, 999_999u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&3600u32.to_be_bytes()[..])
    );
    let answer = c.call(
        &mut h,
        method::REFRESH,
        &[(attr::LIFETIME, 30u32.to_be_bytes().to_vec())],
    );
    // RFC 8656 §7.3: a Refresh below the default lifetime (600 s here) is raised to it.
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&600u32.to_be_bytes()[..])
    );
    h.advance(599);
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(2);
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.io.open.is_empty());
    // The quota came back.
    assert_eq!(h.server.shared.quota.in_use(), 0);
}

#[test]
fn a_short_requested_lifetime_gets_the_default_on_allocate() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "ivy", b"new-secret", 86400);
    let answer = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::LIFETIME, 10u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        Message::parse(&answer).unwrap().get(attr::LIFETIME),
        Some(&600u32.to_be_bytes()[..])
    );
}

#[test]
fn error_codes_for_malformed_and_unsupported_allocates() {
    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "quinn", b"new-secret", 86400);
    assert_eq!(error_code(&c.call(&mut h, method::ALLOCATE, &[])), 400);
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[(attr::REQUESTED_TRANSPORT, vec![132, 0, 0, 0])]
        )),
        442,
        "SCTP"
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[(attr::REQUESTED_TRANSPORT, vec![6, 0, 0, 0])]
        )),
        400,
        "TCP relays only over TCP or TLS (RFC 6062 §5.1)"
    );
    let unknown = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (0x0030, vec![1, 2, 3, 4])],
    );
    assert_eq!(error_code(&unknown), 420);
    assert_eq!(
        Message::parse(&unknown)
            .unwrap()
            .get(attr::UNKNOWN_ATTRIBUTES),
        Some(&[0x00, 0x30][..])
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (attr::REQUESTED_ADDRESS_FAMILY, vec![3, 0, 0, 0])]
        )),
        440
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[
                udp(),
                (attr::EVEN_PORT, vec![0]),
                (attr::RESERVATION_TOKEN, vec![0; 8])
            ]
        )),
        400
    );
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (attr::RESERVATION_TOKEN, vec![1; 8])]
        )),
        508
    );
    // An optional unknown attribute (>= 0x8000) is ignored.
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (0x8fff, vec![1, 2, 3, 4])]
        )),
        0
    );
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn ipv6_and_dual_allocations() {
    let mut s = settings(Limits::default(), &[]);
    s.families = [true, false];
    let mut h = Harness::with(s, Shared::new(10, 100));
    let mut c = Client::rest(ft("198.51.100.7:1"), "rae", b"new-secret", 86400);
    let v6 = (attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]);
    assert_eq!(
        error_code(&c.call(&mut h, method::ALLOCATE, &[udp(), v6])),
        440
    );
    let dual = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    assert_eq!(error_code(&dual), 0, "IPv4 is still allocated");
    assert_eq!(relayed(&dual).len(), 1);
    let aec = Message::parse(&dual)
        .unwrap()
        .get(attr::ADDRESS_ERROR_CODE)
        .unwrap()
        .to_vec();
    assert_eq!(
        aec,
        [&[2u8, 0, 4, 40][..], b"Address Family not Supported"].concat()
    );
    assert_eq!(permit(&mut c, &mut h, &["[2001:db8::9]:9"]), 443);

    let mut h = Harness::new();
    let mut c = Client::rest(ft("198.51.100.7:1"), "rae", b"new-secret", 86400);
    let dual = c.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::ADDITIONAL_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    let addrs = relayed(&dual);
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].is_ipv4() && addrs[1].is_ipv6());
    assert_eq!(
        permit(&mut c, &mut h, &["[2001:db8::9]:9", "198.51.100.9:9"]),
        0
    );
    let mut c6 = Client::rest(ft("198.51.100.7:2"), "rae", b"new-secret", 86400);
    let only6 = c6.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0])],
    );
    assert!(relayed(&only6)[0].is_ipv6());
    assert_eq!(permit(&mut c6, &mut h, &["198.51.100.9:9"]), 443);
    let refresh4 = c6.call(
        &mut h,
        method::REFRESH,
        &[(attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0])],
    );
    assert_eq!(error_code(&refresh4), 443);
}

#[test]
fn no_relay_port_is_508() {
    let mut h = Harness::new();
    h.io.no_ports = true;
    let mut c = Client::rest(ft("198.51.100.7:1"), "will", b"new-secret", 86400);
    assert_eq!(error_code(&c.allocate(&mut h)), 508);
    assert_eq!(h.server.shared.quota.in_use(), 0);
}

#[test]
fn even_port_reservations() {
    let mut h = Harness::new();
    let mut a = Client::rest(ft("198.51.100.7:1"), "xena", b"new-secret", 86400);
    let answer = a.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::EVEN_PORT, vec![0x80])],
    );
    let port = relayed(&answer)[0].port();
    assert_eq!(port % 2, 0);
    let token = Message::parse(&answer)
        .unwrap()
        .get(attr::RESERVATION_TOKEN)
        .unwrap()
        .to_vec();
    let mut b = Client::rest(ft("198.51.100.7:2"), "xena", b"new-secret", 86400);
    let second = b.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::RESERVATION_TOKEN, token.clone())],
    );
    assert_eq!(relayed(&second)[0].port(), port + 1);
    let mut c = Client::rest(ft("198.51.100.7:3"), "xena", b"new-secret", 86400);
    assert_eq!(
        error_code(&c.call(
            &mut h,
            method::ALLOCATE,
            &[udp(), (attr::RESERVATION_TOKEN, token)]
        )),
        508,
        "used once"
    );
    // An unclaimed reservation is released after 30 s.
    let mut d = Client::rest(ft("198.51.100.7:4"), "xena", b"new-secret", 86400);
    d.call(
        &mut h,
        method::ALLOCATE,
        &[udp(), (attr::EVEN_PORT, vec![0x80])],
    );
    assert_eq!(h.io.held.len(), 1);
    h.advance(31);
    assert!(h.io.held.is_empty(), "the reserved port went back");
}
