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

#[test]
fn pairs_across_workers_relay_every_packet_and_stop_when_the_receiver_leaves() {
    let server = Server::start(Conf {
        extra_toml: "[server]\nworkers = 2\n".into(),
        ..Conf::default()
    });
    let ends: Vec<End> = (0..PAIRS * 2)
        .map(|i| {
            let client = Client::new(server.udp);
            let auth = rest_auth(&client, &format!("user{i}"), &server);
            let relayed = allocate(&client, &auth, &server);
            End {
                client,
                auth,
                relayed,
            }
        })
        .collect();
    for pair in ends.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (end, peer) in [(a, b.relayed), (b, a.relayed)] {
            let answer = channel_bind(&end.client, &end.auth, 0x4001, peer, &server);
            expect_success(&answer, CHANNEL_BIND, &end.auth, &server);
        }
    }

    // Ping-pong in every pair: the first packets of a pair on two workers are handed over,
    // the later ones take the direct route; all must arrive, framed on channel 0x4001.
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
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, "newcomer", &server);
    let relayed = allocate(&client, &auth, &server);
    for (end_client, end_auth, peer) in [
        (&first.client, &first.auth, relayed),
        (&client, &auth, first.relayed),
    ] {
        let answer = channel_bind(end_client, end_auth, 0x4002, peer, &server);
        expect_success(&answer, CHANNEL_BIND, end_auth, &server);
    }
    let hello = channel_data(0x4002, b"hello again");
    first.client.send(&hello);
    assert!(receives(&client, &hello, Duration::from_secs(2)));
}
