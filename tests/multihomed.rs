//! A server on a host with several addresses (issue #12): in a network namespace whose one
//! interface holds two server addresses (and the client's and the peer's), turnpike listens on the wildcard `0.0.0.0`. A client
//! whose socket is connected to the second address (so it only receives what comes from that
//! address) gets its answers, and its relayed packets, from there; a peer whose socket is
//! connected to the relayed address gets the client's packets from there.

mod common;

use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns::Netns;
use common::{Conf, KillOnDrop, REALM, SECRET_ONE, turnpike_bin, unix_now};
use turnpike::proto::credentials;
use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

const FIRST: &str = "10.77.0.1";
/// A global (documentation) address: the server binds and advertises its relays there, the
/// global address before the private one. It is not the interface's primary address, which a
/// wildcard socket would send from.
const SECOND: &str = "198.51.100.2";
const CLIENT: &str = "10.77.0.10";
const PEER: &str = "10.77.0.20";
const PORT: u16 = 3478;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The namespace: one interface (a veth whose other end stays in the namespace too; this
/// kernel has no dummy interfaces) with the server's two addresses, the client's and the
/// peer's.
fn lab() -> Netns {
    let ns = Netns::create("mhome");
    ns.run(&[
        "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    ns.run(&["ip", "link", "set", "v0", "up"]);
    ns.run(&["ip", "link", "set", "v1", "up"]);
    for a in [FIRST, SECOND, CLIENT, PEER] {
        ns.run(&["ip", "addr", "add", &format!("{a}/24"), "dev", "v0"]);
    }
    ns
}

/// A UDP socket in `ns` on `local`, connected to `remote`: it receives only what `remote`
/// sends. Reads wait at most 2 s.
fn connected(ns: &Netns, local: &str, remote: SocketAddr) -> UdpSocket {
    let local = SocketAddr::new(ip(local), 0);
    let s = ns.enter(move || {
        let s = UdpSocket::bind(local).unwrap();
        s.connect(remote).unwrap();
        s
    });
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `req` and returns the answer with its transaction id (at most 3 sends).
fn transact(s: &UdpSocket, req: &[u8]) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        s.send(req).unwrap();
        let until = Instant::now() + Duration::from_millis(700);
        while Instant::now() < until {
            match s.recv(&mut buf) {
                Ok(n) if n >= 20 && buf[8..20] == req[8..20] => return Some(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
}

/// Starts turnpike in `ns` listening on the wildcard, relays on `relay_ip`, with `relay_extra`
/// lines added to its `[relay]` section.
fn start_server(
    ns: &Netns,
    dir: &std::path::Path,
    relay_ip: &str,
    relay_extra: &str,
) -> KillOnDrop {
    let conf = Conf {
        relay_ip: relay_ip.into(),
        peers_allow: vec![format!("{PEER}/32")],
        ..Conf::default()
    };
    let listen: SocketAddr = format!("0.0.0.0:{PORT}").parse().unwrap();
    let http = SocketAddr::new(ip(SECOND), 8080);
    let config = dir.join("turnpike.toml");
    fs::write(
        &config,
        conf.to_toml(&[listen], &[], &(40000..=40100), http)
            .replacen("[relay]\n", &format!("[relay]\n{relay_extra}\n"), 1),
    )
    .unwrap();
    let log = File::create(dir.join("turnpike.log")).unwrap();
    let child = ns
        .command(&turnpike_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn turnpike in the namespace");
    KillOnDrop(child)
}

fn binding(tid: u8) -> Vec<u8> {
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::BINDING, [tid; 12]);
    req
}

/// Waits (bounded) until the server answers a Binding on `client`, a socket connected to one
/// of its addresses: a wildcard socket would answer from the route's source address, which a
/// connected socket never receives.
fn wait_ready(client: &UdpSocket, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(answer) = transact(client, &binding(1)) {
            assert_eq!(Message::parse(&answer).unwrap().class(), Class::Success);
            return;
        }
    }
    panic!(
        "no Binding answer from {} on a connected socket\n{}",
        client.peer_addr().unwrap(),
        log()
    );
}

/// A client's allocation: its 401, its signed requests, its relayed address.
struct Allocation<'a> {
    client: &'a UdpSocket,
    nonce: Vec<u8>,
    username: String,
    key: [u8; 16],
    relayed: SocketAddr,
}

impl<'a> Allocation<'a> {
    fn make(client: &'a UdpSocket, log: &dyn Fn() -> String) -> Allocation<'a> {
        let mut req = Vec::new();
        Writer::new(&mut req, Class::Request, method::ALLOCATE, [3; 12])
            .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        let challenge = transact(client, &req).expect("a 401");
        let nonce = Message::parse(&challenge)
            .unwrap()
            .get(attr::NONCE)
            .expect("NONCE")
            .to_vec();
        let cred = credentials::mint(SECRET_ONE.as_bytes(), "mh", unix_now(), 3600);
        let mut a = Allocation {
            client,
            nonce,
            key: long_term_key(&cred.username, REALM, &cred.password),
            username: cred.username,
            relayed: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let answer = a.call(method::ALLOCATE, 4, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        let msg = Message::parse(&answer).unwrap();
        assert_eq!(msg.class(), Class::Success, "{}", log());
        a.relayed = msg
            .get(attr::XOR_RELAYED_ADDRESS)
            .and_then(|v| msg.xor_address(v))
            .expect("XOR-RELAYED-ADDRESS");
        a
    }

    fn call(&self, m: u16, tid: u8, body: &dyn Fn(&mut Writer<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, Class::Request, m, [tid; 12]);
        body(&mut w);
        w.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &self.nonce)
            .integrity(Integrity::Sha1, &self.key);
        transact(self.client, &out).expect("an answer")
    }

    /// A peer on `PEER` whose socket is connected to the relayed address exchanges a packet
    /// each way with the client (through a permission, a Send and a Data indication).
    fn relays_both_ways(&self, ns: &Netns, log: &dyn Fn() -> String) {
        let relayed = self.relayed;
        let peer = connected(ns, PEER, relayed);
        let peer_addr = peer.local_addr().unwrap();
        let answer = self.call(method::CREATE_PERMISSION, 5, &|w| {
            w.xor_addr(attr::XOR_PEER_ADDRESS, peer_addr);
        });
        assert_eq!(Message::parse(&answer).unwrap().class(), Class::Success);
        let mut send = Vec::new();
        Writer::new(&mut send, Class::Indication, method::SEND, [6; 12])
            .xor_addr(attr::XOR_PEER_ADDRESS, peer_addr)
            .attr(attr::DATA, b"to the peer");
        self.client.send(&send).unwrap();
        let mut buf = [0u8; 1500];
        let n = peer
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("the peer got nothing from {relayed}: {e}\n{}", log()));
        assert_eq!(&buf[..n], b"to the peer");
        peer.send(b"to the client").unwrap();
        let n = self.client.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "the client got nothing from {}: {e}\n{}",
                self.client.peer_addr().unwrap(),
                log()
            )
        });
        let data = Message::parse(&buf[..n]).unwrap();
        assert_eq!(data.method(), method::DATA);
        assert_eq!(data.get(attr::DATA), Some(&b"to the client"[..]));
    }
}

#[test]
fn answers_and_relayed_packets_leave_from_the_address_they_were_sent_to() {
    let ns = lab();
    let dir = tempfile::tempdir().unwrap();
    // Wildcard relays: the server picks one of its addresses, binds and advertises it.
    let _server = start_server(&ns, dir.path(), "0.0.0.0", "");
    let log = || fs::read_to_string(dir.path().join("turnpike.log")).unwrap_or_default();
    let second = SocketAddr::new(ip(SECOND), PORT);
    let first = SocketAddr::new(ip(FIRST), PORT);
    let client = connected(&ns, CLIENT, second);
    wait_ready(&client, &log);
    let other = connected(&ns, CLIENT, first);
    assert!(
        transact(&other, &binding(2)).is_some(),
        "the first address answers from itself too\n{}",
        log()
    );
    let a = Allocation::make(&client, &log);
    assert_eq!(
        a.relayed.ip(),
        ip(SECOND),
        "the host's global address, not a wildcard, loopback or private one"
    );
    a.relays_both_ways(&ns, &log);
}

#[test]
fn several_relay_addresses_each_with_its_external_mapping() {
    let ns = lab();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("bind_ips = [\"{SECOND}\"]\nexternal_ips = [\"203.0.113.9/{FIRST}\"]");
    let _server = start_server(&ns, dir.path(), FIRST, &extra);
    let log = || fs::read_to_string(dir.path().join("turnpike.log")).unwrap_or_default();
    let via_second = connected(&ns, CLIENT, SocketAddr::new(ip(SECOND), PORT));
    wait_ready(&via_second, &log);
    let a = Allocation::make(&via_second, &log);
    assert_eq!(a.relayed.ip(), ip(SECOND), "relayed where it came in");
    a.relays_both_ways(&ns, &log);
    let via_first = connected(&ns, CLIENT, SocketAddr::new(ip(FIRST), PORT));
    let b = Allocation::make(&via_first, &log);
    assert_eq!(
        b.relayed.ip(),
        ip("203.0.113.9"),
        "the first address's relays are advertised as their public mapping"
    );
}

/// An address added to the host after the start (a DHCP lease, a VPN, a failover IP) is
/// served by the wildcard listener within the interface refresh (every 10 s): a client whose
/// socket is connected to the new address, so that it hears only answers from there, gets its
/// Binding answered.
#[test]
fn an_address_added_after_the_start_is_answered_from_that_address() {
    const LATE: &str = "10.77.0.3";
    let ns = lab();
    let dir = tempfile::tempdir().unwrap();
    let _server = start_server(&ns, dir.path(), FIRST, "");
    let log = || fs::read_to_string(dir.path().join("turnpike.log")).unwrap_or_default();
    let first = connected(&ns, CLIENT, SocketAddr::new(ip(FIRST), PORT));
    wait_ready(&first, &log);
    let late = connected(&ns, CLIENT, SocketAddr::new(ip(LATE), PORT));
    ns.run(&["ip", "addr", "add", &format!("{LATE}/24"), "dev", "v0"]);
    // The refresh runs every 10 s: wait up to 15 s for an answer from the new address.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut answered = false;
    while !answered && Instant::now() < deadline {
        answered = transact(&late, &binding(2)).is_some();
    }
    assert!(
        answered,
        "no Binding answer from {LATE}, added after the start\n{}",
        log()
    );
}
