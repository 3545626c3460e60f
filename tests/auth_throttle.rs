//! Authentication throttling on the real binary (issue #12): over UDP and over TCP, a flood of
//! unauthenticated requests from one address gets at most the configured number of 401s while
//! a client of that address that authenticated keeps allocating; over UDP, many new clients
//! behind one address all allocate; over TCP, a password guesser gets no more credential
//! checks (HMAC and MD5 work) than the configured rate, on one connection or many.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::scrape::Scrape;
use common::{Conf, LOCALHOST_V4, REALM, SECRET_ONE, STATIC_USER, Server, unix_now};
use turnpike::proto::credentials;
use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

/// The configured rate: a burst of 10 answers, then 5 a second.
const RATE: u32 = 5;

fn unauthenticated_allocate(tid: u32) -> Vec<u8> {
    let mut req = Vec::new();
    let mut id = [0u8; 12];
    id[8..].copy_from_slice(&tid.to_be_bytes());
    Writer::new(&mut req, Class::Request, method::ALLOCATE, id)
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    req
}

fn signed_allocate(tid: u32, username: &str, password: &str, nonce: &[u8]) -> Vec<u8> {
    let key = long_term_key(username, REALM, password);
    let mut req = Vec::new();
    let mut id = [1u8; 12];
    id[8..].copy_from_slice(&tid.to_be_bytes());
    Writer::new(&mut req, Class::Request, method::ALLOCATE, id)
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(attr::USERNAME, username.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, nonce)
        .integrity(Integrity::Sha1, &key);
    req
}

fn error_code(answer: &[u8]) -> u16 {
    let m = Message::parse(answer).expect("a STUN answer");
    m.get(attr::ERROR_CODE)
        .map(|v| u16::from(v[2] & 7) * 100 + u16::from(v[3]))
        .unwrap_or(0)
}

fn nonce_of(answer: &[u8]) -> Vec<u8> {
    let m = Message::parse(answer).expect("a STUN answer");
    assert_eq!(error_code(answer), 401);
    m.get(attr::NONCE).expect("NONCE").to_vec()
}

/// A UDP socket on 127.0.0.1 talking to the server.
fn udp(server: &Server) -> UdpSocket {
    let s = UdpSocket::bind((LOCALHOST_V4, 0)).unwrap();
    s.connect(server.udp).unwrap();
    s
}

/// Sends `req` and waits for its answer (at most 3 sends, 500 ms apart).
fn transact(s: &UdpSocket, req: &[u8]) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1500];
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for _ in 0..3 {
        s.send(req).unwrap();
        while let Ok(n) = s.recv(&mut buf) {
            if n >= 20 && buf[8..20] == req[8..20] {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// Counts what arrives on `s` until it stays quiet for 300 ms (at most `max` reads).
fn count_answers(s: &UdpSocket, max: usize) -> usize {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 1500];
    (0..max).take_while(|_| s.recv(&mut buf).is_ok()).count()
}

#[test]
fn a_flood_gets_the_rate_while_an_authenticated_client_keeps_allocating() {
    // No credits: the flood gets exactly the rate, whatever the client does.
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        verified_credit: 0,
        allocations_per_user: 0,
        ..Conf::default()
    });
    let start = Instant::now();
    let first = udp(&server);
    let nonce = nonce_of(&transact(&first, &unauthenticated_allocate(0)).expect("a 401"));
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "kept", unix_now(), 3600);
    let flood = udp(&server);
    let mut held = Vec::new();
    let mut tid = 1;
    for round in 0..5 {
        for _ in 0..100 {
            flood.send(&unauthenticated_allocate(tid)).unwrap();
            tid += 1;
        }
        // The client that authenticated allocates from new sockets between the bursts (its
        // nonce is bound to its address, so it needs no new 401).
        for i in 0..4 {
            let s = udp(&server);
            let req = signed_allocate(round * 10 + i, &cred.username, &cred.password, &nonce);
            let answer = transact(&s, &req).expect("the authenticated client is answered");
            assert_eq!(error_code(&answer), 0, "allocation {round}.{i}");
            held.push(s);
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let answered = count_answers(&flood, 1000);
    let elapsed = start.elapsed().as_secs_f64();
    // The burst, the rate over the elapsed time, less the client's own 401.
    let allowed = (2 * RATE) as f64 + f64::from(RATE) * elapsed - 1.0;
    assert!(
        answered as f64 <= allowed.ceil(),
        "{answered} answers to the flood in {elapsed:.2} s, at most {allowed:.1}"
    );
    assert!(
        answered > 0,
        "the flood is answered at the rate, not cut off"
    );
    assert_eq!(held.len(), 20);
    let scrape = Scrape::take(&server);
    assert!(scrape.dropped("rate_limit") >= 500 - answered as u64);
}

#[test]
fn many_new_clients_behind_one_address_all_allocate() {
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        allocations_per_user: 0,
        ..Conf::default()
    });
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "nat", unix_now(), 3600);
    let start = Instant::now();
    let mut held = Vec::new();
    // Each new client as an ICE agent starts: a 401 first, then the signed Allocate. The rate
    // alone would answer 10 at once and then 5 a second: 150 clients would take half a minute
    // (150 fits in the relay ports the harness gives a server).
    for i in 0..150u32 {
        let s = udp(&server);
        let challenge = transact(&s, &unauthenticated_allocate(i))
            .unwrap_or_else(|| panic!("client {i} got no 401\n{}", server.log()));
        let req = signed_allocate(i, &cred.username, &cred.password, &nonce_of(&challenge));
        let answer = transact(&s, &req).expect("an answer to the signed Allocate");
        assert_eq!(error_code(&answer), 0, "client {i}");
        held.push(s);
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert_eq!(Scrape::take(&server).dropped("rate_limit"), 0);
}

/// Sends `n` signed Allocates with a wrong password on `stream` and counts the answers that
/// come back before it stays quiet for 300 ms.
fn guess_over_tcp(stream: &mut TcpStream, nonce: &[u8], n: u32) -> usize {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(signed_allocate(i, STATIC_USER, "not-the-password", nonce));
    }
    send_and_count(stream, &bytes, n)
}

/// Writes `bytes` (`n` requests) on `stream` and counts the STUN messages that come back
/// before it stays quiet for 300 ms (at most `n`).
fn send_and_count(stream: &mut TcpStream, bytes: &[u8], n: u32) -> usize {
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answers = 0;
    let mut header = [0u8; 20];
    while answers < n as usize && stream.read_exact(&mut header).is_ok() {
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).unwrap();
        answers += 1;
    }
    answers
}

fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads one STUN message from `stream` (at most 5 s).
fn read_message(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut message = vec![0u8; 20];
    stream.read_exact(&mut message).unwrap();
    let len = u16::from_be_bytes([message[2], message[3]]) as usize;
    message.resize(20 + len, 0);
    stream.read_exact(&mut message[20..]).unwrap();
    message
}

#[test]
fn over_tcp_a_flood_gets_the_rate_while_an_authenticated_client_keeps_allocating() {
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        verified_credit: 0,
        allocations_per_user: 0,
        tcp: true,
        ..Conf::default()
    });
    let addr = server.tcp.unwrap();
    let start = Instant::now();
    let mut first = tcp_connect(addr);
    first.write_all(&unauthenticated_allocate(0)).unwrap();
    let nonce = nonce_of(&read_message(&mut first));
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "kept", unix_now(), 3600);
    let mut flooded = 0;
    let mut held = Vec::new();
    for round in 0..5u32 {
        // A flood of 50 unauthenticated Allocates on each of two new connections.
        for _ in 0..2 {
            let bytes: Vec<u8> = (0..50).flat_map(unauthenticated_allocate).collect();
            flooded += send_and_count(&mut tcp_connect(addr), &bytes, 50);
        }
        // The client that authenticated allocates on a new connection each time.
        let mut c = tcp_connect(addr);
        let req = signed_allocate(round, &cred.username, &cred.password, &nonce);
        c.write_all(&req).unwrap();
        let answer = read_message(&mut c);
        assert_eq!(
            error_code(&answer),
            0,
            "allocation {round}\n{}",
            server.log()
        );
        held.push(c);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = (2 * RATE) as f64 + f64::from(RATE) * elapsed - 1.0;
    assert!(
        flooded as f64 <= allowed.ceil(),
        "{flooded} answers to the flood in {elapsed:.2} s, at most {allowed:.1}"
    );
    assert!(
        flooded > 0,
        "the flood is answered at the rate, not cut off"
    );
}

#[test]
fn tcp_guessers_get_no_more_credential_checks_than_the_rate() {
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        tcp: true,
        ..Conf::default()
    });
    let addr = server.tcp.unwrap();
    let start = Instant::now();
    // The nonce, from an unauthenticated Allocate over TCP.
    let mut first = tcp_connect(addr);
    first.write_all(&unauthenticated_allocate(0)).unwrap();
    let mut answer = vec![0u8; 20];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    first.read_exact(&mut answer).unwrap();
    let len = u16::from_be_bytes([answer[2], answer[3]]) as usize;
    answer.resize(20 + len, 0);
    first.read_exact(&mut answer[20..]).unwrap();
    let nonce = nonce_of(&answer);
    // 200 guesses on one connection, then 20 on each of 10 new connections.
    let mut answered = guess_over_tcp(&mut first, &nonce, 200);
    for _ in 0..10 {
        answered += guess_over_tcp(&mut tcp_connect(addr), &nonce, 20);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let scrape = Scrape::take(&server);
    let checked = scrape.auth_failures("bad_integrity");
    let allowed = ((2 * RATE) as f64 + f64::from(RATE) * elapsed).ceil() as u64;
    assert!(
        checked <= allowed,
        "{checked} guesses checked in {elapsed:.2} s, at most {allowed}"
    );
    assert!(checked >= 2 * u64::from(RATE), "the burst is checked");
    assert!(answered as u64 <= checked, "{answered} answers");
    assert!(
        scrape.dropped("rate_limit") >= 400 - checked,
        "the rest dropped before any HMAC"
    );
}

/// Binding answers over IPv6 (::1), with the real binary: every answer to a request with an
/// attribute (FINGERPRINT, or SOFTWARE as padding) is at most twice its size; a bare 20-byte
/// request, whose answer cannot be (44 bytes: 2.2x), is answered only within the source's
/// budget, so a flood of them gets the rate, not an answer each.
#[test]
fn ipv6_binding_answers_stay_within_twice_the_request_or_the_budget() {
    let server = Server::start(Conf {
        ipv6: true,
        unauthenticated_rate: RATE,
        verified_credit: 0,
        ..Conf::default()
    });
    let to = server.udp6.expect("a listener on [::1]");
    let s = UdpSocket::bind("[::1]:0").unwrap();
    s.connect(to).unwrap();
    let binding = |tid: u8, fingerprint: bool, software: usize| {
        let mut req = Vec::new();
        let mut w = Writer::new(&mut req, Class::Request, method::BINDING, [tid; 12]);
        if software > 0 {
            w.attr(attr::SOFTWARE, &vec![b'x'; software]);
        }
        if fingerprint {
            w.fingerprint();
        }
        req
    };
    for (i, (fp, sw)) in [(true, 0), (false, 4), (true, 4), (false, 16)]
        .into_iter()
        .enumerate()
    {
        let req = binding(i as u8 + 1, fp, sw);
        for _ in 0..30 {
            let answer = transact(&s, &req).expect("a Binding within 2x is always answered");
            assert!(
                answer.len() <= 2 * req.len(),
                "{} bytes for {} (FINGERPRINT {fp}, SOFTWARE {sw})",
                answer.len(),
                req.len()
            );
        }
    }
    let bare = binding(9, false, 0);
    assert_eq!(bare.len(), 20);
    let first = transact(&s, &bare).expect("a bare Binding is answered");
    assert_eq!(first.len(), 44);
    let start = Instant::now();
    for _ in 0..200 {
        s.send(&bare).unwrap();
    }
    let answered = count_answers(&s, 1000);
    let allowed = (2 * RATE) as f64 + f64::from(RATE) * start.elapsed().as_secs_f64();
    assert!(
        answered as f64 <= allowed.ceil() && answered > 0,
        "{answered} of 200 bare IPv6 Bindings answered, at most {allowed:.1}"
    );
}
