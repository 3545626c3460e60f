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

fn start_server(ns: &Netns, dir: &std::path::Path) -> KillOnDrop {
    let conf = Conf {
        // Wildcard relays: the server picks one of its addresses, binds and advertises it.
        relay_ip: "0.0.0.0".into(),
        peers_allow: vec![format!("{PEER}/32")],
        ..Conf::default()
    };
    let listen: SocketAddr = format!("0.0.0.0:{PORT}").parse().unwrap();
    let http = SocketAddr::new(ip(SECOND), 8080);
    let config = dir.join("turnpike.toml");
    fs::write(
        &config,
        conf.to_toml(&[listen], &[], &(40000..=40100), http),
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

#[test]
fn answers_and_relayed_packets_leave_from_the_address_they_were_sent_to() {
    let ns = lab();
    let dir = tempfile::tempdir().unwrap();
    let _server = start_server(&ns, dir.path());
    let log = || fs::read_to_string(dir.path().join("turnpike.log")).unwrap_or_default();
    let second = SocketAddr::new(ip(SECOND), PORT);
    let first = SocketAddr::new(ip(FIRST), PORT);
    let client = connected(&ns, CLIENT, second);
    // Ready once it answers (bounded); a wildcard socket would answer from the client's own
    // address (the route's source), which the connected socket never receives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answered = None;
    while answered.is_none() && Instant::now() < deadline {
        answered = transact(&client, &binding(1));
    }
    let answer = answered.unwrap_or_else(|| {
        panic!(
            "no Binding answer from {second} on a connected socket\n{}",
            log()
        )
    });
    assert_eq!(Message::parse(&answer).unwrap().class(), Class::Success);
    let other = connected(&ns, CLIENT, first);
    assert!(
        transact(&other, &binding(2)).is_some(),
        "the first address answers from itself too\n{}",
        log()
    );

    // An allocation through the second address.
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [3; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let challenge = transact(&client, &req).expect("a 401");
    let nonce = Message::parse(&challenge)
        .unwrap()
        .get(attr::NONCE)
        .expect("NONCE")
        .to_vec();
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "mh", unix_now(), 3600);
    let key = long_term_key(&cred.username, REALM, &cred.password);
    let signed = |m: u16, tid: u8, body: &dyn Fn(&mut Writer<'_>)| {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, Class::Request, m, [tid; 12]);
        body(&mut w);
        w.attr(attr::USERNAME, cred.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &nonce)
            .integrity(Integrity::Sha1, &key);
        out
    };
    let answer = transact(
        &client,
        &signed(method::ALLOCATE, 4, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        }),
    )
    .expect("an Allocate answer");
    let msg = Message::parse(&answer).unwrap();
    assert_eq!(msg.class(), Class::Success, "{}", log());
    let relayed = msg
        .get(attr::XOR_RELAYED_ADDRESS)
        .and_then(|v| msg.xor_address(v))
        .expect("XOR-RELAYED-ADDRESS");
    assert_eq!(
        relayed.ip(),
        ip(SECOND),
        "the host's global address, not a wildcard, loopback or private one"
    );
    let peer = connected(&ns, PEER, relayed);
    let peer_addr = peer.local_addr().unwrap();
    let answer = transact(
        &client,
        &signed(method::CREATE_PERMISSION, 5, &|w| {
            w.xor_addr(attr::XOR_PEER_ADDRESS, peer_addr);
        }),
    )
    .expect("a CreatePermission answer");
    assert_eq!(Message::parse(&answer).unwrap().class(), Class::Success);

    // Client → peer: the peer's socket, connected to the relayed address, receives it.
    let mut send = Vec::new();
    Writer::new(&mut send, Class::Indication, method::SEND, [6; 12])
        .xor_addr(attr::XOR_PEER_ADDRESS, peer_addr)
        .attr(attr::DATA, b"to the peer");
    client.send(&send).unwrap();
    let mut buf = [0u8; 1500];
    let n = peer
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("the peer got nothing from {relayed}: {e}\n{}", log()));
    assert_eq!(&buf[..n], b"to the peer");
    // Peer → client: a Data indication from the second address.
    peer.send(b"to the client").unwrap();
    let n = client
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("the client got nothing from {second}: {e}\n{}", log()));
    let data = Message::parse(&buf[..n]).unwrap();
    assert_eq!(data.method(), method::DATA);
    assert_eq!(data.get(attr::DATA), Some(&b"to the client"[..]));
}
