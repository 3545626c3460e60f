//! RFC 6062 TCP relays driven by a Rust client (tests/common/turn_tcp.rs) over loopback: what a
//! data connection relays is counted in `/metrics` as it is relayed, in both directions, and
//! the allocation's bandwidth cap paces each direction without losing a byte.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::scrape::Scrape;
use common::turn_tcp::{TcpRelay, read_exactly};
use common::*;

/// `len` bytes of a pattern that a lost, repeated or reordered chunk would change.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Scrapes until `done` holds, at most 3 s: the pipe counts a read once it has written it, so
/// the peer may see the bytes a moment before the counter moves.
fn scrape_until(server: &Server, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let scrape = Scrape::take(server);
        if done(&scrape) || Instant::now() >= deadline {
            return scrape;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tcp_bytes(s: &Scrape, direction: &str) -> u64 {
    s.relayed_on("bytes", direction, "tcp")
}

#[test]
fn bytes_on_a_tcp_relay_are_counted_both_ways_as_they_are_relayed() {
    let server = Server::start(Conf {
        tcp: true,
        tcp_allocations: true,
        ..Conf::loopback_peers()
    });
    let before = Scrape::take(&server);
    assert_eq!(tcp_bytes(&before, "client_to_peer"), 0);
    let early = pattern(100, 1);
    let mut relay = TcpRelay::open(&server, "tess", &early);
    // The bytes sent in the same write as the ConnectionBind reach the peer first.
    assert_eq!(read_exactly(&mut relay.peer, early.len()), early);
    let s = scrape_until(&server, |s| tcp_bytes(s, "client_to_peer") == 100);
    assert_eq!(tcp_bytes(&s, "client_to_peer"), 100, "{}", s.text);
    assert_eq!(s.relayed_on("packets", "client_to_peer", "tcp"), 1);

    let up = pattern(30_000, 2);
    relay.data.write_all(&up).unwrap();
    assert_eq!(read_exactly(&mut relay.peer, up.len()), up);
    let down = pattern(50_000, 3);
    relay.peer.write_all(&down).unwrap();
    assert_eq!(read_exactly(&mut relay.data, down.len()), down);

    let s = scrape_until(&server, |s| {
        tcp_bytes(s, "client_to_peer") == 30_100 && tcp_bytes(s, "peer_to_client") == 50_000
    });
    assert_eq!(
        (
            tcp_bytes(&s, "client_to_peer"),
            tcp_bytes(&s, "peer_to_client")
        ),
        (30_100, 50_000),
        "{}",
        s.text
    );
    // A byte stream has no packets: each read forwarded counts one, at most 8 KiB.
    let up_reads = s.relayed_on("packets", "client_to_peer", "tcp");
    let down_reads = s.relayed_on("packets", "peer_to_client", "tcp");
    assert!((1 + 4..=1 + 30_000).contains(&up_reads), "{up_reads}");
    assert!((7..=50_000).contains(&down_reads), "{down_reads}");
    // Counted once, under the data connection's transport, and the allocation lives on.
    for transport in ["udp", "tls"] {
        for direction in ["client_to_peer", "peer_to_client"] {
            assert_eq!(s.relayed_on("bytes", direction, transport), 0);
        }
    }
    assert_eq!(s.get("turnpike_allocations_active", "transport=\"tcp\""), 1);
    assert_eq!(s.dropped("bandwidth_cap"), 0);
    drop(relay);
}

#[test]
fn the_bandwidth_cap_paces_each_direction_of_a_tcp_relay_and_loses_nothing() {
    const BPS: u64 = 20_000;
    const LEN: usize = 60_000;
    let server = Server::start(Conf {
        tcp: true,
        tcp_allocations: true,
        bandwidth_bps: BPS,
        ..Conf::loopback_peers()
    });
    let TcpRelay {
        control: _control,
        data,
        peer,
        ..
    } = TcpRelay::open(&server, "tess", &[]);
    let started = Instant::now();
    // Both directions at once: a writer and a reader thread for each.
    let relay_one_way = |mut from: TcpStream, mut to: TcpStream, seed: u8| {
        let sent = pattern(LEN, seed);
        from.set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let writer = std::thread::spawn(move || from.write_all(&sent).map(|()| from));
        std::thread::spawn(move || {
            let got = read_exactly(&mut to, LEN);
            (
                got,
                started.elapsed(),
                writer.join().unwrap().expect("write"),
            )
        })
    };
    let up = relay_one_way(data.try_clone().unwrap(), peer.try_clone().unwrap(), 4);
    let down = relay_one_way(peer, data, 5);
    let (up_got, up_took, _) = up.join().unwrap();
    let (down_got, down_took, _) = down.join().unwrap();
    assert!(up_got == pattern(LEN, 4), "client → peer bytes differ");
    assert!(down_got == pattern(LEN, 5), "peer → client bytes differ");
    // A burst of one second's worth plus one read of at most 8 KiB, then BPS: LEN bytes take
    // at least (LEN - BPS - 8192) / BPS = 1.59 s in each direction.
    let least = Duration::from_secs_f64((LEN as f64 - BPS as f64 - 8192.0) / BPS as f64);
    for (direction, took) in [("client → peer", up_took), ("peer → client", down_took)] {
        assert!(
            took >= least.mul_f64(0.9),
            "{direction}: {LEN} bytes in {took:?} with a cap of {BPS} B/s"
        );
        // One budget for both directions would need (2 × LEN - BPS - 2 × 8192) / BPS = 4.2 s.
        assert!(
            took < Duration::from_secs(4),
            "{direction}: {took:?}: each direction has a cap of its own\n{}",
            server.log()
        );
    }
    let s = scrape_until(&server, |s| {
        tcp_bytes(s, "client_to_peer") == LEN as u64 && tcp_bytes(s, "peer_to_client") == LEN as u64
    });
    assert_eq!(tcp_bytes(&s, "client_to_peer"), LEN as u64, "{}", s.text);
    assert_eq!(tcp_bytes(&s, "peer_to_client"), LEN as u64, "{}", s.text);
    assert_eq!(
        s.dropped("bandwidth_cap"),
        0,
        "TCP relays pause, never drop"
    );
}

/// RFC 6062 relays are opt-in: with the default `relay.tcp_allocations = false`, an attacker's
/// TCP Allocate gets 442 and a Connect (the port-scanning request) gets 403, even to a peer the
/// policy would permit.
#[test]
fn tcp_allocations_are_refused_by_default() {
    use common::stun::{add, expect_error, expect_success, request, udp_transport};
    use common::turn_tcp::TurnTcp;
    use turn_client_proto::types::attribute::{RequestedTransport, XorPeerAddress};
    use turn_client_proto::types::message::{ALLOCATE, CONNECT};

    let server = Server::start(Conf {
        tcp: true,
        ..Conf::loopback_peers()
    });
    let mut control = TurnTcp::connect(&server);
    let tcp = |m: &mut _, _| add(m, &RequestedTransport::new(RequestedTransport::TCP));
    let auth = control.rest_auth("mallory", ALLOCATE, &request(ALLOCATE, None, tcp), &server);
    let answer = control.transact(&request(ALLOCATE, Some(&auth), tcp), &server);
    expect_error(&answer, ALLOCATE, 442, &server);
    // A UDP allocation on the same connection cannot Connect anywhere either.
    let answer = control.transact(&request(ALLOCATE, Some(&auth), udp_transport), &server);
    expect_success(&answer, ALLOCATE, &auth, &server);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = listener.local_addr().unwrap();
    let connect = request(CONNECT, Some(&auth), |m, id| {
        add(m, &XorPeerAddress::new(peer, id))
    });
    let answer = control.transact(&connect, &server);
    expect_error(&answer, CONNECT, 403, &server);
}
