//! Relay to relay through one turnpike with two UDP workers: pairs of clients whose peers are
//! each other's relayed addresses (two browsers on relay-only policy). The kernel hashes each
//! client to a worker, so some pairs span both workers and their packets go through the
//! hand-off and then the direct routes between workers; every packet must arrive as ChannelData
//! on the receiver's channel, and nothing may arrive once the receiver deleted its allocation.

mod common;

use common::turn::*;
use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use turn_client_proto::types::message::{CHANNEL_BIND, REFRESH};

const PAIRS: usize = 6;
const ROUNDS: usize = 40;

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = channel.to_be_bytes().to_vec();
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Waits (at most `within`) for `expected` on `client`, skipping other datagrams.
fn receives(client: &Client, expected: &[u8], within: Duration) -> bool {
    let until = Instant::now() + within;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match client.recv(left.max(Duration::from_millis(1))) {
            Some(got) if got == expected => return true,
            Some(_) => continue,
            None => return false,
        }
    }
    false
}

struct End {
    client: Client,
    auth: Auth,
    relayed: SocketAddr,
}

/// A server with two UDP workers, and `PAIRS` pairs of clients whose channel 0x4001 is bound
/// to each other's relayed address, after `ROUNDS` ping-pongs in every pair (the first packets
/// of a pair on two workers are handed over, the later ones take the direct route; all must
/// arrive, framed on channel 0x4001).
fn paired() -> (Server, Vec<End>) {
    let server = Server::start(Conf {
        extra_toml: "[server]\nworkers = 2\n".into(),
        ..Conf::default()
    });
    let ends: Vec<End> = (0..PAIRS * 2)
        .map(|i| new_end(&server, &format!("user{i}")))
        .collect();
    for pair in ends.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (end, peer) in [(a, b.relayed), (b, a.relayed)] {
            let answer = channel_bind(&end.client, &end.auth, 0x4001, peer, &server);
            expect_success(&answer, CHANNEL_BIND, &end.auth, &server);
        }
    }
    for round in 0..ROUNDS {
        for (p, pair) in ends.chunks(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            let ping = channel_data(0x4001, format!("ping {p} {round}").as_bytes());
            a.client.send(&ping);
            assert!(
                receives(&b.client, &ping, Duration::from_secs(2)),
                "pair {p} round {round}: the ping did not arrive"
            );
            let pong = channel_data(0x4001, format!("pong {p} {round}").as_bytes());
            b.client.send(&pong);
            assert!(
                receives(&a.client, &pong, Duration::from_secs(2)),
                "pair {p} round {round}: the pong did not arrive"
            );
        }
    }
    (server, ends)
}

fn new_end(server: &Server, user: &str) -> End {
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, user, server);
    let relayed = allocate(&client, &auth, server);
    End {
        client,
        auth,
        relayed,
    }
}

#[test]
fn pairs_across_workers_relay_every_packet_and_stop_when_the_receiver_leaves() {
    let (server, ends) = paired();

    // Every receiver leaves; what its partner sends afterwards must reach nobody.
    for pair in ends.chunks(2) {
        let b = &pair[1];
        let answer = refresh(&b.client, &b.auth, 0, &server);
        expect_success(&answer, REFRESH, &b.auth, &server);
    }
    for (p, pair) in ends.chunks(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        let late = channel_data(0x4001, format!("late {p}").as_bytes());
        for _ in 0..5 {
            a.client.send(&late);
        }
        assert!(
            !receives(&b.client, &late, Duration::from_millis(300)),
            "pair {p}: a packet reached a client whose allocation is gone"
        );
    }
    // The senders' allocations still work: a new pair partner on a fresh allocation relays.
    let first = &ends[0];
    let newcomer = new_end(&server, "newcomer");
    for (end, peer) in [(first, newcomer.relayed), (&newcomer, first.relayed)] {
        let answer = channel_bind(&end.client, &end.auth, 0x4002, peer, &server);
        expect_success(&answer, CHANNEL_BIND, &end.auth, &server);
    }
    let hello = channel_data(0x4002, b"hello again");
    first.client.send(&hello);
    assert!(receives(&newcomer.client, &hello, Duration::from_secs(2)));
}

#[test]
fn a_route_dies_with_its_allocation_even_when_the_port_is_taken_again() {
    let (server, ends) = paired();
    for pair in ends.chunks(2) {
        let b = &pair[1];
        let answer = refresh(&b.client, &b.auth, 0, &server);
        expect_success(&answer, REFRESH, &b.auth, &server);
    }
    // Allocate until every receiver's old relay port is someone's again (the pool goes round
    // the whole range, so at most its size plus a few), keeping only those newcomers.
    let mut wanted: Vec<SocketAddr> = ends.chunks(2).map(|pair| pair[1].relayed).collect();
    let mut newcomers: Vec<(usize, End)> = Vec::new();
    // Kept open: a closed client's port could come back to the next client, whose Allocate
    // would then meet the allocation still held for that 5-tuple (437).
    let mut others: Vec<End> = Vec::new();
    let bound = server.relay_ports.clone().count() + PAIRS * 2;
    for i in 0..bound {
        if wanted.is_empty() {
            break;
        }
        let end = new_end(&server, &format!("newcomer{i}"));
        if let Some(k) = wanted.iter().position(|a| *a == end.relayed) {
            let pair = ends
                .chunks(2)
                .position(|pair| pair[1].relayed == end.relayed)
                .expect("a receiver's address");
            wanted.swap_remove(k);
            newcomers.push((pair, end));
        } else {
            others.push(end);
        }
    }
    assert!(
        wanted.is_empty(),
        "the pool never gave back the ports {wanted:?} ({} other allocations made)",
        others.len()
    );
    // The sender still has its channel to that address: what it sends now belongs to the
    // newcomer holding the port (once it binds a channel to the sender), never to the old
    // receiver, whatever route the sender's worker learnt.
    for (p, newcomer) in &newcomers {
        let (a, b) = (&ends[p * 2], &ends[p * 2 + 1]);
        let answer = channel_bind(&newcomer.client, &newcomer.auth, 0x4003, a.relayed, &server);
        expect_success(&answer, CHANNEL_BIND, &newcomer.auth, &server);
        let sent = channel_data(0x4001, format!("for the newcomer {p}").as_bytes());
        let expected = channel_data(0x4003, format!("for the newcomer {p}").as_bytes());
        a.client.send(&sent);
        assert!(
            receives(&newcomer.client, &expected, Duration::from_secs(2)),
            "pair {p}: the port's new allocation did not get the packet"
        );
        assert!(
            !receives(&b.client, &sent, Duration::from_millis(200)),
            "pair {p}: the old receiver got a packet for its port's new allocation"
        );
    }
}
