//! A real failure, not a flag: two Chromium peers, each in a network namespace of its own
//! behind its own NAT router, reach each other only through turnpike's TURN in a server
//! namespace. Root only (the namespaces, veths and iptables rules are made by the test and
//! removed on drop): without the rights, the test fails, it does not skip.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::netns::{NatLab, Netns, SERVER_IP};

/// Binds a UDP socket on `addr` inside `ns` (a short read timeout: every wait is bounded).
fn udp_in(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    ns.enter(move || {
        let socket = UdpSocket::bind(addr).expect("bind in the namespace");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        socket
    })
}

/// The next datagram (at most 300 ms).
fn recv(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 64];
    socket
        .recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

/// The harness itself: each peer reaches the server through its NAT (the server sees the
/// router's address), answers come back, and nothing reaches the other side directly (neither
/// the other router's public address nor the other peer's private one). Its namespaces go away
/// on drop, on panic too.
#[test]
fn nat_lab_separates_the_peers_and_cleans_up() {
    let lab = NatLab::build();
    let server = udp_in(&lab.server, SocketAddr::new(SERVER_IP.into(), 4000));
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let peers = [udp_in(&lab.peers[0], any), udp_in(&lab.peers[1], any)];
    for (i, peer) in peers.iter().enumerate() {
        peer.send_to(b"hello", server.local_addr().unwrap())
            .unwrap();
        let (bytes, from) = recv(&server).expect("the server hears the peer");
        assert_eq!(bytes, b"hello");
        assert_eq!(
            from.ip(),
            NatLab::router_wan_ip(i),
            "masqueraded by router {i}"
        );
        server.send_to(b"back", from).unwrap();
        let (bytes, _) = recv(peer).expect("the answer comes back through the NAT");
        assert_eq!(bytes, b"back");
    }
    // Nothing crosses between the two sides: not to the other router's public address, not
    // to the other peer's private one, whatever listens there.
    for (i, peer) in peers.iter().enumerate() {
        let other = 1 - i;
        let on_router = udp_in(&lab.routers[other], SocketAddr::from(([0, 0, 0, 0], 4001)));
        let on_peer = udp_in(&lab.peers[other], SocketAddr::from(([0, 0, 0, 0], 4001)));
        for _ in 0..3 {
            let to_router = SocketAddr::new(NatLab::router_wan_ip(other).into(), 4001);
            let to_peer = SocketAddr::new(NatLab::peer_ip(other).into(), 4001);
            let _ = peer.send_to(b"direct", to_router);
            let _ = peer.send_to(b"direct", to_peer);
        }
        assert_eq!(recv(&on_router), None, "peer {i} reached router {other}");
        assert_eq!(recv(&on_peer), None, "peer {i} reached peer {other}");
    }
    let names: Vec<String> = [&lab.server, &lab.routers[0], &lab.peers[1]]
        .iter()
        .map(|ns| ns.name().to_owned())
        .collect();
    drop((server, peers));
    drop(lab);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for name in &names {
        assert!(!left.contains(name.as_str()), "{name} left behind:\n{left}");
    }
    let panicked = std::panic::catch_unwind(|| {
        let ns = Netns::create("boom");
        let name = ns.name().to_owned();
        std::panic::panic_any(name);
    });
    let name = panicked.unwrap_err().downcast::<String>().unwrap();
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(name.as_str()),
        "{name} left behind after a panic"
    );
}
