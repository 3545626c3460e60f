//! The TURN client's state machine against canned server answers, built with the project's
//! STUN codec: the 401 dance, stale nonces, refreshes, permissions, channels, data, garbage,
//! and a server that never answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use rand::{Rng, SeedableRng};

use super::core::MAX_PAYLOAD;
use super::{Method, TurnClient, TurnConfig, TurnError, TurnEvent};
use crate::proto::stun::{Class, Integrity, Message, Writer, attr, method};

const REALM: &str = "example.org";
const USER: &str = "1900000000:alice";
const PASS: &str = "secret-password";

fn key() -> [u8; 16] {
    Md5::digest(format!("{USER}:{REALM}:{PASS}").as_bytes()).into()
}

fn relayed() -> SocketAddr {
    "192.0.2.15:50000".parse().unwrap()
}

fn mapped() -> SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

fn peer() -> SocketAddr {
    "203.0.113.9:6000".parse().unwrap()
}

fn client(stream: bool) -> TurnClient {
    TurnClient::new(TurnConfig::new(USER, PASS, stream), [7; 32])
}

/// Parses the one request the client sent.
fn sent(c: &mut TurnClient) -> Vec<u8> {
    let t = c.poll_transmit().expect("a request");
    assert!(c.poll_transmit().is_none(), "exactly one message");
    t
}

fn error(req: &[u8], code: u16, nonce: Option<&str>, realm: bool) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, Class::Error, m.method(), m.transaction_id());
    w.error_code(code, "x");
    if realm {
        w.attr(attr::REALM, REALM.as_bytes());
    }
    if let Some(n) = nonce {
        w.attr(attr::NONCE, n.as_bytes());
    }
    out
}

/// A signed success answer; `extra` adds attributes.
fn success(req: &[u8], extra: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    assert_eq!(
        m.verify_integrity(&key()),
        Some(Integrity::Sha1),
        "the request is signed with MD5(user:realm:pass)"
    );
    assert_eq!(m.get(attr::USERNAME), Some(USER.as_bytes()));
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, Class::Success, m.method(), m.transaction_id());
    extra(&mut w);
    w.integrity(Integrity::Sha1, &key());
    out
}

/// Runs the 401 round and the signed Allocate; returns the client, allocated.
fn allocated(stream: bool, now: Instant) -> TurnClient {
    let mut c = client(stream);
    c.allocate(now).unwrap();
    let first = sent(&mut c);
    let m = Message::parse(&first).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Request, method::ALLOCATE));
    assert!(
        !m.has_integrity(),
        "the first Allocate carries no credentials"
    );
    assert_eq!(m.get(attr::REQUESTED_TRANSPORT), Some(&[17, 0, 0, 0][..]));
    c.handle_message(now, &error(&first, 401, Some("nonce-1"), true));
    let second = sent(&mut c);
    let m2 = Message::parse(&second).unwrap();
    assert_ne!(m.transaction_id(), m2.transaction_id(), "a new transaction");
    assert_eq!(m2.get(attr::NONCE), Some(&b"nonce-1"[..]));
    assert_eq!(m2.get(attr::REALM), Some(REALM.as_bytes()));
    c.handle_message(
        now,
        &success(&second, |w| {
            w.xor_addr(attr::XOR_RELAYED_ADDRESS, relayed());
            w.xor_addr(attr::XOR_MAPPED_ADDRESS, mapped());
            w.u32_attr(attr::LIFETIME, 600);
        }),
    );
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Allocated {
            relayed: relayed(),
            mapped: Some(mapped()),
            lifetime: Duration::from_secs(600)
        })
    );
    assert_eq!(c.relayed(), Some(relayed()));
    c
}

#[test]
fn allocate_answers_401_then_refreshes_before_expiry() {
    let t0 = Instant::now();
    let mut c = allocated(false, t0);
    // Refreshed a minute before the 600 s expire, not earlier.
    let at = c.poll_timeout().unwrap();
    assert_eq!(at, t0 + Duration::from_secs(540));
    c.handle_timeout(at - Duration::from_secs(1));
    assert!(c.poll_transmit().is_none());
    c.handle_timeout(at);
    let refresh = sent(&mut c);
    let m = Message::parse(&refresh).unwrap();
    assert_eq!(m.method(), method::REFRESH);
    assert_eq!(m.get(attr::LIFETIME), Some(&600u32.to_be_bytes()[..]));
    c.handle_message(
        at,
        &success(&refresh, |w| {
            w.u32_attr(attr::LIFETIME, 600);
        }),
    );
    assert_eq!(c.poll_timeout(), Some(at + Duration::from_secs(540)));
    assert_eq!(c.poll_event(), None);
}

#[test]
fn stale_nonce_is_retried_with_the_new_nonce_a_bounded_number_of_times() {
    let t0 = Instant::now();
    let mut c = allocated(false, t0);
    c.create_permission(t0, peer().ip()).unwrap();
    let mut req = sent(&mut c);
    for round in 0..3 {
        let nonce = format!("nonce-{}", round + 2);
        c.handle_message(t0, &error(&req, 438, Some(&nonce), true));
        req = sent(&mut c);
        let m = Message::parse(&req).unwrap();
        assert_eq!(m.get(attr::NONCE), Some(nonce.as_bytes()));
        assert_eq!(m.verify_integrity(&key()), Some(Integrity::Sha1));
    }
    c.handle_message(t0, &error(&req, 438, Some("nonce-9"), true));
    assert!(c.poll_transmit().is_none());
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PermissionFailed {
            ip: peer().ip(),
            error: TurnError::AuthLoop(Method::CreatePermission)
        })
    );
}

#[test]
fn a_second_401_means_wrong_credentials() {
    let t0 = Instant::now();
    let mut c = client(false);
    c.allocate(t0).unwrap();
    let first = sent(&mut c);
    c.handle_message(t0, &error(&first, 401, Some("n"), true));
    let second = sent(&mut c);
    c.handle_message(t0, &error(&second, 401, Some("n2"), true));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Unauthorized(Method::Allocate)))
    );
    assert!(c.is_done() && c.poll_timeout().is_none());
}

/// A 300 Try Alternate to `req` with ALTERNATE-SERVER `to`, signed with `key` (or not).
fn try_alternate(req: &[u8], to: SocketAddr, key: Option<&[u8]>) -> Vec<u8> {
    let m = Message::parse(req).unwrap();
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, Class::Error, m.method(), m.transaction_id());
    w.error_code(300, "Try Alternate");
    w.addr(attr::ALTERNATE_SERVER, to);
    if let Some(key) = key {
        w.integrity(Integrity::Sha1, key);
    }
    out
}

#[test]
fn a_signed_300_reports_the_alternate_and_a_forged_one_is_ignored() {
    let t0 = Instant::now();
    let alternate: SocketAddr = "192.0.2.77:3478".parse().unwrap();
    let mut c = client(false);
    c.allocate(t0).unwrap();
    let first = sent(&mut c);
    // Before authentication a 300 cannot be verified: ignored.
    c.handle_message(t0, &try_alternate(&first, alternate, None));
    assert_eq!(c.poll_event(), None);
    c.handle_message(t0, &error(&first, 401, Some("n"), true));
    let second = sent(&mut c);
    // Unsigned, or signed with another key: ignored, the transaction goes on.
    c.handle_message(t0, &try_alternate(&second, alternate, None));
    c.handle_message(t0, &try_alternate(&second, alternate, Some(&[1; 16])));
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.stats().ignored, 3);
    c.handle_message(t0, &try_alternate(&second, alternate, Some(&key())));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::TryAlternate {
            method: Method::Allocate,
            alternate
        }))
    );
    assert!(c.is_done());
}

#[test]
fn a_silent_server_gets_7_transmissions_then_a_timeout_over_udp() {
    let t0 = Instant::now();
    let mut c = client(false);
    c.allocate(t0).unwrap();
    let mut transmissions = 1;
    let mut now = t0;
    let _ = sent(&mut c);
    // Bounded: at most 20 timer turns.
    for _ in 0..20 {
        let Some(at) = c.poll_timeout() else { break };
        now = at;
        c.handle_timeout(now);
        while c.poll_transmit().is_some() {
            transmissions += 1;
        }
    }
    assert_eq!(transmissions, 7);
    // RFC 8489 §6.2.1: 0.5 + 1 + 2 + 4 + 8 + 16 s of RTOs, then 16 × 0.5 s.
    assert_eq!(now - t0, Duration::from_millis(39_500));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Timeout(Method::Allocate)))
    );
    assert!(c.is_done());
}

#[test]
fn a_silent_server_times_out_once_over_a_stream() {
    let t0 = Instant::now();
    let mut c = client(true);
    c.allocate(t0).unwrap();
    let _ = sent(&mut c);
    let at = c.poll_timeout().unwrap();
    assert_eq!(at - t0, Duration::from_millis(39_500));
    c.handle_timeout(at);
    assert!(c.poll_transmit().is_none(), "no retransmission on a stream");
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Failed(TurnError::Timeout(Method::Allocate)))
    );
}

#[test]
fn permissions_are_installed_and_refreshed_before_five_minutes() {
    let t0 = Instant::now();
    let mut c = allocated(false, t0);
    assert_eq!(
        c.send_to(peer(), b"x"),
        Err(TurnError::NoPermission(peer().ip()))
    );
    c.create_permission(t0, peer().ip()).unwrap();
    let req = sent(&mut c);
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method(), method::CREATE_PERMISSION);
    let p = m
        .xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap())
        .unwrap();
    assert_eq!(p.ip(), peer().ip());
    c.handle_message(t0, &success(&req, |_| {}));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PermissionCreated(peer().ip()))
    );
    // A Send indication now.
    c.send_to(peer(), b"hello").unwrap();
    let ind = sent(&mut c);
    let m = Message::parse(&ind).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Indication, method::SEND));
    assert_eq!(m.get(attr::DATA), Some(&b"hello"[..]));
    assert_eq!(
        m.xor_address(m.get(attr::XOR_PEER_ADDRESS).unwrap()),
        Some(peer())
    );
    // Refreshed at 4 minutes.
    let at = c.poll_timeout().unwrap();
    assert_eq!(at, t0 + Duration::from_secs(240));
    c.handle_timeout(at);
    let again = sent(&mut c);
    assert_eq!(
        Message::parse(&again).unwrap().method(),
        method::CREATE_PERMISSION
    );
    c.handle_message(at, &success(&again, |_| {}));
    assert_eq!(c.poll_event(), None, "a refresh is not a new permission");
}

#[test]
fn a_refused_permission_is_reported_with_its_code() {
    let t0 = Instant::now();
    let mut c = allocated(false, t0);
    c.create_permission(t0, peer().ip()).unwrap();
    let req = sent(&mut c);
    c.handle_message(t0, &error(&req, 403, None, false));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::PermissionFailed {
            ip: peer().ip(),
            error: TurnError::Rejected {
                method: Method::CreatePermission,
                code: 403,
                reason: "x".into()
            }
        })
    );
    assert!(c.send_to(peer(), b"x").is_err());
}

fn bound(stream: bool, t0: Instant) -> TurnClient {
    let mut c = allocated(stream, t0);
    assert_eq!(c.bind_channel(t0, peer()), Ok(0x4000));
    let req = sent(&mut c);
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method(), method::CHANNEL_BIND);
    assert_eq!(m.get(attr::CHANNEL_NUMBER), Some(&[0x40, 0x00, 0, 0][..]));
    c.handle_message(t0, &success(&req, |_| {}));
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::ChannelBound {
            peer: peer(),
            channel: 0x4000
        })
    );
    c
}

#[test]
fn channels_frame_channel_data_and_are_rebound_before_ten_minutes() {
    let t0 = Instant::now();
    let mut c = bound(false, t0);
    c.send_to(peer(), b"abcde").unwrap();
    assert_eq!(
        sent(&mut c),
        [0x40, 0x00, 0x00, 0x05, b'a', b'b', b'c', b'd', b'e']
    );
    // Incoming ChannelData (with UDP padding) and a Data indication.
    c.handle_message(t0, &[0x40, 0x00, 0x00, 0x02, 1, 2, 0, 0]);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Data {
            peer: peer(),
            data: vec![1, 2]
        })
    );
    c.handle_message(t0, &[0x40, 0x01, 0x00, 0x01, 9]);
    assert_eq!(c.poll_event(), None, "an unbound channel is ignored");
    let mut ind = Vec::new();
    Writer::new(&mut ind, Class::Indication, method::DATA, [3; 12])
        .xor_addr(attr::XOR_PEER_ADDRESS, peer())
        .attr(attr::DATA, b"via-indication");
    c.handle_message(t0, &ind);
    assert_eq!(
        c.poll_event(),
        Some(TurnEvent::Data {
            peer: peer(),
            data: b"via-indication".to_vec()
        })
    );
    // The permission (4 min) comes due before the channel (9 min); both are renewed.
    let mut methods = Vec::new();
    for _ in 0..10 {
        let at = c.poll_timeout().unwrap();
        if at > t0 + Duration::from_secs(540) {
            break;
        }
        let now = at;
        c.handle_timeout(now);
        while let Some(req) = c.poll_transmit() {
            let m = Message::parse(&req).unwrap();
            methods.push((m.method(), (now - t0).as_secs()));
            let answer = success(&req, |w| {
                if m.method() == method::REFRESH {
                    w.u32_attr(attr::LIFETIME, 600);
                }
            });
            c.handle_message(now, &answer);
        }
    }
    assert!(
        methods.contains(&(method::CREATE_PERMISSION, 240)),
        "{methods:?}"
    );
    assert!(
        methods.contains(&(method::CHANNEL_BIND, 540)),
        "{methods:?}"
    );
}

#[test]
fn channel_data_is_padded_on_streams() {
    let t0 = Instant::now();
    let mut c = bound(true, t0);
    c.send_to(peer(), b"abcde").unwrap();
    assert_eq!(
        sent(&mut c),
        [
            0x40, 0x00, 0x00, 0x05, b'a', b'b', b'c', b'd', b'e', 0, 0, 0
        ]
    );
}

#[test]
fn close_releases_with_lifetime_zero() {
    let t0 = Instant::now();
    let mut c = allocated(false, t0);
    c.close(t0);
    let req = sent(&mut c);
    let m = Message::parse(&req).unwrap();
    assert_eq!(m.method(), method::REFRESH);
    assert_eq!(m.get(attr::LIFETIME), Some(&[0, 0, 0, 0][..]));
    c.handle_message(t0, &success(&req, |_| {}));
    assert_eq!(c.poll_event(), Some(TurnEvent::Closed));
    assert!(c.is_done());
}

#[test]
fn limits_are_errors_not_panics() {
    let t0 = Instant::now();
    let mut c = client(false);
    assert_eq!(c.send_to(peer(), b"x"), Err(TurnError::NotAllocated));
    assert_eq!(
        c.create_permission(t0, peer().ip()),
        Err(TurnError::NotAllocated)
    );
    let mut c = bound(false, t0);
    assert_eq!(
        c.send_to(peer(), &vec![0; MAX_PAYLOAD + 1]),
        Err(TurnError::PayloadTooLarge(MAX_PAYLOAD + 1))
    );
    assert_eq!(
        c.bind_channel(t0, "[2001:db8::1]:5".parse().unwrap()),
        Err(TurnError::AddressFamily)
    );
    // The send queue is bounded in bytes (1 MiB by default).
    let mut queued = 0;
    while c.send_to(peer(), &[0; 60_000]).is_ok() {
        queued += 1;
        assert!(queued < 100);
    }
    assert_eq!(
        c.send_to(peer(), &[0; 60_000]),
        Err(TurnError::Limit("send queue"))
    );
}

#[test]
fn garbage_and_forged_answers_are_ignored() {
    let t0 = Instant::now();
    let mut c = client(false);
    c.allocate(t0).unwrap();
    let first = sent(&mut c);
    c.handle_message(t0, &error(&first, 401, Some("n"), true));
    let second = sent(&mut c);
    // A success without integrity, one signed with another key, one for another transaction,
    // one of the wrong method: none of them allocates.
    let m = Message::parse(&second).unwrap();
    let mut unsigned = Vec::new();
    Writer::new(
        &mut unsigned,
        Class::Success,
        method::ALLOCATE,
        m.transaction_id(),
    )
    .xor_addr(attr::XOR_RELAYED_ADDRESS, relayed());
    let mut forged = Vec::new();
    Writer::new(
        &mut forged,
        Class::Success,
        method::ALLOCATE,
        m.transaction_id(),
    )
    .xor_addr(attr::XOR_RELAYED_ADDRESS, relayed())
    .integrity(Integrity::Sha1, b"not the key");
    let mut other = Vec::new();
    Writer::new(&mut other, Class::Success, method::ALLOCATE, [9; 12])
        .integrity(Integrity::Sha1, &key());
    let mut wrong_method = Vec::new();
    Writer::new(
        &mut wrong_method,
        Class::Success,
        method::REFRESH,
        m.transaction_id(),
    )
    .integrity(Integrity::Sha1, &key());
    for bad in [&unsigned, &forged, &other, &wrong_method] {
        c.handle_message(t0, bad);
    }
    // Random bytes, truncations and bit flips of a valid answer.
    let good = success(&second, |w| {
        w.xor_addr(attr::XOR_RELAYED_ADDRESS, relayed());
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for i in 0..20_000 {
        let bytes: Vec<u8> = match i % 3 {
            0 => (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect(),
            1 => good[..rng.gen_range(0..good.len())].to_vec(),
            _ => {
                let mut b = good.clone();
                let at = rng.gen_range(0..b.len());
                b[at] ^= 1 << rng.gen_range(0..8);
                b
            }
        };
        c.handle_message(t0, &bytes);
    }
    assert_eq!(c.relayed(), None, "nothing forged was taken");
    assert!(c.stats().ignored >= 4);
    // The client still works: the genuine answer allocates.
    c.handle_message(t0, &good);
    assert!(matches!(c.poll_event(), Some(TurnEvent::Allocated { .. })));
    // Error codes out of range, and a 401 without a nonce, are not taken either.
    let mut d = client(false);
    d.allocate(t0).unwrap();
    let first = sent(&mut d);
    d.handle_message(t0, &error(&first, 401, None, true));
    assert!(matches!(
        d.poll_event(),
        Some(TurnEvent::Failed(TurnError::Unauthorized(Method::Allocate)))
    ));
}
