//! Two Rust WebRTC peers (`turnpike::client::webrtc`, str0m) connect through the turnpike
//! binary's TURN relay with the relay-only policy on loopback, and exchange DataChannel
//! messages. Signaling goes in-process, through the link's JSON payloads.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{Conf, SECRET_ONE, Server, unix_now};
use turnpike::client::turn::{TurnConfig, TurnServer};
use turnpike::client::webrtc::{
    IceState, LinkSignal, PeerEvent, RtcPeerConfig, TurnOption, WebRtcOptions, WebRtcPeer,
};

fn options(server: &Server, user: &str, epoch: u32, offer: bool) -> WebRtcOptions {
    WebRtcOptions {
        peer: RtcPeerConfig {
            epoch,
            relay_only: true,
            polite: !offer,
        },
        host: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        turn: vec![TurnOption {
            server: TurnServer::from_url(&format!("turn:{}?transport=udp", server.udp)).unwrap(),
            config: TurnConfig::rest(SECRET_ONE.as_bytes(), user, unix_now(), 600, false),
            tls: None,
        }],
        offer,
    }
}

/// What one side saw.
#[derive(Default, Debug)]
struct Seen {
    signals: Vec<String>,
    connected: bool,
    open: bool,
    messages: Vec<Vec<u8>>,
}

fn note(seen: &mut Seen, event: PeerEvent, other: &WebRtcPeer) {
    match event {
        PeerEvent::Signal(s) => {
            // Through JSON, as the registry would carry it.
            let json = s.to_json();
            let back = LinkSignal::from_json(&json).unwrap().unwrap();
            other.signal(back).unwrap();
            seen.signals.push(json);
        }
        PeerEvent::Ice(IceState::Connected | IceState::Completed) => seen.connected = true,
        PeerEvent::ChannelOpen => seen.open = true,
        PeerEvent::Message(m) => seen.messages.push(m),
        _ => {}
    }
}

#[tokio::test]
async fn two_rust_peers_connect_relay_only_through_turnpike_and_exchange_messages() {
    let server = Server::start(Conf::loopback_peers());
    let mut a = WebRtcPeer::start(options(&server, "alice", 11, true))
        .await
        .unwrap();
    let mut b = WebRtcPeer::start(options(&server, "bob", 22, false))
        .await
        .unwrap();
    let relays = [a.relayed().unwrap(), b.relayed().unwrap()];
    for r in relays {
        assert!(
            server.relay_ports.contains(&r.port()),
            "{r} is a relay port"
        );
    }
    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    let mut sent = false;
    let big = vec![0xA5u8; 16_000];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Bounded by the deadline: every turn waits for an event or the deadline.
    while sa.messages.len() < 2 || sb.messages.is_empty() {
        tokio::select! {
            e = a.next_event() => note(&mut sa, e.expect("peer a runs"), &b),
            e = b.next_event() => note(&mut sb, e.expect("peer b runs"), &a),
            _ = tokio::time::sleep_until(deadline) => {
                panic!("timed out: a {sa:?}\nb {sb:?}\n--- server log ---\n{}", server.log())
            }
        }
        if sa.open && sb.open && !sent {
            a.send(b"hello from a".to_vec()).unwrap();
            b.send(b"hello from b".to_vec()).unwrap();
            b.send(big.clone()).unwrap();
            sent = true;
        }
    }
    assert!(sa.connected && sb.connected);
    assert_eq!(sb.messages, vec![b"hello from a".to_vec()]);
    assert_eq!(sa.messages, vec![b"hello from b".to_vec(), big]);
    // Relay-only: every candidate either side offered is a relay candidate on the server.
    let candidates: Vec<&String> = sa
        .signals
        .iter()
        .chain(&sb.signals)
        .filter(|s| s.contains("\"candidate\":\"candidate:"))
        .collect();
    assert_eq!(candidates.len(), 2, "{candidates:?}");
    for (c, relay) in candidates.iter().zip(relays) {
        assert!(c.contains("typ relay"), "{c}");
        assert!(
            c.contains(&format!(" {} {} ", relay.ip(), relay.port())),
            "{c}"
        );
    }
    for s in sa.signals.iter().chain(&sb.signals) {
        assert!(
            !s.contains("typ host"),
            "no host candidate under relay-only: {s}"
        );
    }
    // The offer is a browser-style JSEP offer with the data section.
    let offer = &sa
        .signals
        .iter()
        .find(|s| s.contains("\"type\":\"offer\""))
        .unwrap();
    assert!(offer.contains("m=application") && offer.contains("webrtc-datachannel"));
}
