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
use turn_client_proto::types::message::{CHANNEL_BIND, CREATE_PERMISSION, REFRESH};

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

/// A Send indication to `peer` (IPv4) carrying `payload`, built by hand.
fn send_indication(peer: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let SocketAddr::V4(peer) = peer else {
        panic!("IPv4 relays only")
    };
    let padded = payload.len().div_ceil(4) * 4;
    let mut m = Vec::with_capacity(36 + padded);
    m.extend_from_slice(&0x0016u16.to_be_bytes());
    m.extend_from_slice(&((12 + 4 + padded) as u16).to_be_bytes());
    m.extend_from_slice(&MAGIC.to_be_bytes());
    m.extend_from_slice(&rand_tid());
    m.extend_from_slice(&[0x00, 0x12, 0x00, 0x08, 0x00, 0x01]);
    m.extend_from_slice(&(peer.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    m.extend_from_slice(&(u32::from(*peer.ip()) ^ MAGIC).to_be_bytes());
    m.extend_from_slice(&[0x00, 0x13]);
    m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    m.extend_from_slice(payload);
    m.resize(36 + padded, 0);
    m
}

const MAGIC: u32 = 0x2112_A442;

fn rand_tid() -> [u8; 12] {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(Instant::now()).to_be_bytes();
    let b = RandomState::new().hash_one(1u8).to_be_bytes();
    let mut tid = [0u8; 12];
    tid[..8].copy_from_slice(&a);
    tid[8..].copy_from_slice(&b[..4]);
    tid
}

/// What a datagram a client received carries: `Some((Some(peer), data))` for a Data indication,
/// `Some((None, data))` for ChannelData on `channel`.
fn delivered(datagram: &[u8], channel: u16) -> Option<(Option<SocketAddr>, Vec<u8>)> {
    if datagram.len() >= 4 && datagram[..2] == channel.to_be_bytes() {
        let len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
        return Some((None, datagram.get(4..4 + len)?.to_vec()));
    }
    if datagram.len() < 20 || datagram[..2] != [0x00, 0x17] {
        return None;
    }
    let (mut peer, mut data) = (None, None);
    let mut at = 20;
    while at + 4 <= datagram.len() {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]) as usize;
        let value = datagram.get(at + 4..at + 4 + len)?;
        match kind {
            0x0012 if len == 8 && value[1] == 0x01 => {
                let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC >> 16) as u16;
                let ip = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC;
                peer = Some(SocketAddr::from((std::net::Ipv4Addr::from(ip), port)));
            }
            0x0013 => data = Some(value.to_vec()),
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    Some((Some(peer?), data?))
}

/// Waits (at most 2 s) for `payload` on `client`, returning how it came (Data indication from
/// which peer, or ChannelData on `channel`).
fn arrival(client: &Client, channel: u16, payload: &[u8]) -> Option<Option<SocketAddr>> {
    let until = Instant::now() + Duration::from_secs(2);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let datagram = client.recv(left.max(Duration::from_millis(1)))?;
        match delivered(&datagram, channel) {
            Some((how, data)) if data == payload => return Some(how),
            _ => continue,
        }
    }
    None
}

#[test]
fn send_indications_arrive_as_data_indications_then_as_channel_data_once_bound() {
    let server = Server::start(Conf {
        extra_toml: "[server]\nworkers = 2\n".into(),
        ..Conf::default()
    });
    let ends: Vec<End> = (0..PAIRS * 2)
        .map(|i| new_end(&server, &format!("sender{i}")))
        .collect();
    for pair in ends.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (end, peer) in [(a, b.relayed), (b, a.relayed)] {
            let answer = create_permission(&end.client, &end.auth, peer, &server);
            expect_success(&answer, CREATE_PERMISSION, &end.auth, &server);
        }
    }
    for round in 0..ROUNDS {
        for (p, pair) in ends.chunks(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            for (from, to, word) in [(a, b, "ping"), (b, a, "pong")] {
                let payload = format!("{word} {p} {round}");
                from.client
                    .send(&send_indication(to.relayed, payload.as_bytes()));
                assert_eq!(
                    arrival(&to.client, 0x4001, payload.as_bytes()),
                    Some(Some(from.relayed)),
                    "pair {p} round {round}: {word} did not arrive as a Data indication from {}",
                    from.relayed
                );
            }
        }
    }
    // Once the receiver binds a channel to the sender, its packets come as ChannelData, even
    // where the sender's worker had learnt a route for Data indications.
    for pair in ends.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let answer = channel_bind(&b.client, &b.auth, 0x4001, a.relayed, &server);
        expect_success(&answer, CHANNEL_BIND, &b.auth, &server);
    }
    for (p, pair) in ends.chunks(2).enumerate() {
        let (a, b) = (&pair[0], &pair[1]);
        for n in 0..5 {
            let payload = format!("bound {p} {n}");
            a.client
                .send(&send_indication(b.relayed, payload.as_bytes()));
            assert_eq!(
                arrival(&b.client, 0x4001, payload.as_bytes()),
                Some(None),
                "pair {p}: after ChannelBind the packet must come as ChannelData"
            );
        }
    }
}
