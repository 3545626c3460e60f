//! A real failure, not a flag: two Chromium peers, each in a network namespace of its own
//! behind its own NAT router, reach each other only through turnpike's TURN in a server
//! namespace. A firewall rule that drops TURN (not the registry's port) mid-session moves the
//! link to the registry's relay; removing it brings the link back to p2p; every message
//! arrives once, in order. Root only (the namespaces, veths and iptables rules are made by the
//! test and removed on drop): without the rights, the test fails, it does not skip.

mod common;
mod link_support;
mod registry_support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use common::netns::{NatLab, Netns, SERVER_IP};
use link_support::calls::{assert_exactly_once_in_order, texts};
use link_support::ns_server::{NsServer, RELAY_PORTS, TURN_PORT};
use link_support::pages::{BrowserSpec, Pages};
use link_support::*;
use serde_json::{Value, json};

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

/// How often each side sends a message while the path fails and comes back.
const PUMP_EVERY_MS: u64 = 50;

/// Both directions: (page, the peer it hears from, the prefix that peer's pump uses).
const SIDES: [(&str, &str, &str); 2] = [("alice", "bob", "b"), ("bob", "alice", "a")];

/// When `page`'s link to `peer` last entered `mode` (page clock, ms since 1970).
fn entered(summary: &Value, mode: &str) -> u64 {
    summary["modes"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["mode"] == mode)
        .and_then(|m| m["t"].as_u64())
        .unwrap_or_else(|| panic!("never in {mode}: {summary}"))
}

#[test]
fn link_moves_to_the_relay_when_turn_is_blocked_and_back_when_it_returns() {
    let lab = NatLab::build();
    let server = NsServer::start(&lab.server, SERVER_IP.into(), registry_conf(""));
    let wrappers = tempfile::tempdir().unwrap();
    let chromium = Path::new("/usr/bin/chromium");
    let browsers: Vec<BrowserSpec> = (0..2)
        .map(|i| BrowserSpec {
            name: format!("b{i}"),
            executable: lab.peers[i].wrapper(wrappers.path(), &format!("chromium{i}"), chromium),
        })
        .collect();
    let mut pages = Pages::start(&browsers, &[("alice", "b0"), ("bob", "b1")], 170);
    let ice = ice_servers(&format!("turn:{}?transport=udp", server.turn));
    for peer in ["alice", "bob"] {
        pages.connect(
            peer,
            json!({"url": server.registry_url(), "token": peer_token(peer), "iceServers": ice}),
        );
    }
    pages.open_link("alice", "bob");
    for (page, from, _) in SIDES {
        let s = pages.wait_mode(page, from, "p2p", 30_000);
        assert_eq!(s["mode"], "p2p", "{page} did not reach p2p: {s}");
        // The peers cannot reach each other: the DataChannel runs through turnpike's TURN.
        assert_eq!(s["stats"]["localCandidateType"], "relay", "{page}: {s}");
        assert_eq!(s["stats"]["remoteCandidateType"], "relay", "{page}: {s}");
    }
    pages.start_pump("alice", "bob", "a", PUMP_EVERY_MS);
    pages.start_pump("bob", "alice", "b", PUMP_EVERY_MS);
    for (page, from, _) in SIDES {
        let s = pages.wait_received(page, from, 20, 10_000);
        assert!(s["received"].as_u64() >= Some(20), "{page} on p2p: {s}");
    }

    // The failure: TURN (its listener and relay ports) dropped in the server's namespace; the
    // registry's TCP port stays open.
    let relay_range = format!("{}:{}", RELAY_PORTS.start(), RELAY_PORTS.end());
    let turn_port = TURN_PORT.to_string();
    let block = [
        lab.server.iptables_insert(
            "filter",
            &["INPUT", "-p", "udp", "--dport", &turn_port, "-j", "DROP"],
        ),
        lab.server.iptables_insert(
            "filter",
            &["INPUT", "-p", "udp", "--dport", &relay_range, "-j", "DROP"],
        ),
    ];
    let blocked_at = now_ms();
    let (mut to_relay, mut first_relayed) = (Vec::new(), Vec::new());
    for (page, from, _) in SIDES {
        let s = pages.wait_mode(page, from, "relay", 60_000);
        assert_eq!(
            s["mode"], "relay",
            "{page} did not fall back to the relay: {s}"
        );
        to_relay.push(entered(&s, "relay").saturating_sub(blocked_at));
    }
    for (page, from, _) in SIDES {
        // Messages keep flowing on the relay: 20 more each way.
        let before = pages.summary(page, from)["received"].as_u64().unwrap();
        let s = pages.wait_received(page, from, before + 20, 20_000);
        assert!(
            s["received"].as_u64() >= Some(before + 20),
            "{page} on the relay: {s}"
        );
        let messages = pages.messages(page, from);
        let first = messages
            .iter()
            .find(|m| m["t"].as_u64().unwrap() > blocked_at)
            .unwrap_or_else(|| panic!("{page}: nothing arrived after the block"));
        // Nothing crosses TURN any more: what arrived came over the registry's relay.
        assert!(first["relayBytes"].as_u64() > Some(0), "{page}: {first}");
        first_relayed.push(first["t"].as_u64().unwrap() - blocked_at);
    }

    // The repair: the rules go; both ends return to p2p (ICE restarts with back-off).
    for rule in block {
        rule.remove();
    }
    let unblocked_at = now_ms();
    let mut to_p2p = Vec::new();
    for (page, from, _) in SIDES {
        let s = pages.wait_mode(page, from, "p2p", 90_000);
        assert_eq!(s["mode"], "p2p", "{page} did not return to p2p: {s}");
        to_p2p.push(entered(&s, "p2p").saturating_sub(unblocked_at));
    }
    for (page, from, _) in SIDES {
        // Messages flow on p2p again.
        let before = pages.summary(page, from)["stats"]["p2pBytes"].clone();
        let grew = pages.call(
            page,
            "(H, a) => H.waitFor((H) => H.summary(a[0]).stats.p2pBytes > a[1] + 2000, 10000)",
            json!([from, before]),
            SHORT + SHORT,
        );
        assert_eq!(grew, true, "{page}: nothing more on p2p after the return");
    }
    // The pumps stop; everything sent arrives, each message once, in order.
    let sent_a = pages.stop_pump("alice", "bob");
    let sent_b = pages.stop_pump("bob", "alice");
    for ((page, from, prefix), sent) in SIDES.into_iter().zip([sent_b, sent_a]) {
        let s = pages.wait_received(page, from, sent, 20_000);
        assert_eq!(s["sendFailures"], json!([]), "{page}: {s}");
        assert_eq!(s["errors"], json!([]), "{page}: {s}");
        let got = texts(&pages.messages(page, from));
        assert_exactly_once_in_order(&format!("{page} from {from}"), &got, prefix, sent);
    }
    println!(
        "link over NAT: block -> relay mode {to_relay:?} ms (alice, bob); block -> first relayed \
         message delivered {first_relayed:?} ms; unblock -> p2p {to_p2p:?} ms; {sent_a} + \
         {sent_b} messages, each delivered once in order"
    );
}
