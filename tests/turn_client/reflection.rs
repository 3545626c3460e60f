//! Reflection and amplification: answers to unauthenticated requests are small, and 401s are
//! rate-limited per source address across all workers.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use stun_types::attribute::{Nonce, Realm, Software};
use stun_types::message::{BINDING, MessageClass};
use turn_client_proto::types::message::ALLOCATE;

use crate::common::stun::*;
use crate::common::turn::*;
use crate::common::*;

#[test]
fn minimal_binding_gets_a_small_answer_with_the_mapped_address() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let request = binding_request(1);
    assert_eq!(request.len(), 20);
    let answer = client.transact(&request, &server);
    assert!(
        answer.len() <= 40,
        "a 20-byte Binding got {} bytes back: {answer:02x?}",
        answer.len()
    );
    let msg = parse(&answer, BINDING);
    assert!(msg.has_class(MessageClass::Success), "{msg}");
    let mapped = mapped_address(&msg);
    assert_eq!(mapped, client.local_addr());
}

#[test]
fn minimal_allocate_gets_a_small_401_with_realm_and_nonce_only() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    // Header + REQUESTED-TRANSPORT (UDP): 28 bytes, the smallest valid Allocate.
    let request = request(ALLOCATE, None, udp_transport);
    assert_eq!(request.len(), 28);
    let answer = client.transact(&request, &server);
    assert!(
        answer.len() <= 70,
        "a 28-byte Allocate got {} bytes back: {answer:02x?}",
        answer.len()
    );
    let msg = expect_error(&answer, ALLOCATE, 401, &server);
    assert_eq!(msg.attribute::<Realm>().expect("REALM").realm(), REALM);
    assert!(!msg.attribute::<Nonce>().expect("NONCE").nonce().is_empty());
    assert!(
        msg.attribute::<Software>().is_err(),
        "SOFTWARE in an answer to an unauthenticated request: {msg}"
    );
}

#[test]
fn unauthenticated_401s_are_rate_limited_per_source() {
    const RATE: u32 = 5;
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        ..Conf::default()
    });
    let client = Client::new(server.udp);
    let started = Instant::now();
    for _ in 0..50 {
        client.send(&request(ALLOCATE, None, udp_transport));
    }
    // Count the 401s until the socket stays quiet for 300 ms (at most 60 reads).
    let mut answers: u32 = 0;
    let mut last_answer = started;
    for _ in 0..60 {
        let Some(answer) = client.recv(Duration::from_millis(300)) else {
            break;
        };
        last_answer = Instant::now();
        expect_error(&answer, ALLOCATE, 401, &server);
        answers += 1;
    }
    // A bucket of 2 x RATE (the documented burst) plus what refills while the server works
    // through the 50 requests: no time limit is asserted, the bound follows the time taken.
    let refill = (f64::from(RATE) * (last_answer - started).as_secs_f64()).ceil() as u32;
    let most = 2 * RATE + refill;
    assert!(
        (RATE..=most).contains(&answers),
        "50 unauthenticated Allocates got {answers} 401s with unauthenticated_rate = {RATE} \
         (expected {RATE}..={most})\n--- server log ---\n{}",
        server.log()
    );
    // Binding is not subject to the 401 limit.
    let answer = client.transact(&binding_request(7), &server);
    let msg = parse(&answer, BINDING);
    assert!(msg.has_class(MessageClass::Success), "{msg}");
    // The limit is per source address: another loopback address is answered at once.
    let other = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    other.connect(server.udp).unwrap();
    let other = Client {
        socket: other,
        server: server.udp,
    };
    let answer = other.transact(&request(ALLOCATE, None, udp_transport), &server);
    expect_error(&answer, ALLOCATE, 401, &server);
}

#[test]
fn the_401_limit_holds_across_workers() {
    // Four workers; one source address sending from 16 ports, so SO_REUSEPORT spreads its
    // datagrams over the workers. The limit is the source's, not each worker's.
    const RATE: u32 = 5;
    let server = Server::start(Conf {
        unauthenticated_rate: RATE,
        extra_toml: "[server]\nworkers = 4\n".into(),
        ..Conf::default()
    });
    let clients: Vec<Client> = (0..16).map(|_| Client::new(server.udp)).collect();
    let started = Instant::now();
    for _ in 0..10 {
        for client in &clients {
            client.send(&request(ALLOCATE, None, udp_transport));
        }
    }
    // Count the 401s until every socket stays quiet for 300 ms (at most 100 passes).
    let mut answers: u32 = 0;
    let mut last_answer = started;
    for _ in 0..100 {
        for client in &clients {
            while let Some(answer) = client.recv(Duration::from_millis(5)) {
                expect_error(&answer, ALLOCATE, 401, &server);
                answers += 1;
                last_answer = Instant::now();
            }
        }
        if last_answer.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let refill = (f64::from(RATE) * (last_answer - started).as_secs_f64()).ceil() as u32;
    let most = 2 * RATE + refill;
    assert!(
        (RATE..=most).contains(&answers),
        "160 unauthenticated Allocates from one address over 4 workers got {answers} 401s \
         with unauthenticated_rate = {RATE} (expected {RATE}..={most}; a limit per worker \
         would allow up to {})\n--- server log ---\n{}",
        4 * 2 * RATE,
        server.log()
    );
}
