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
        stun: Vec::new(),
        peer: RtcPeerConfig {
            epoch,
            relay_only: true,
            polite: !offer,
            sctp_max_buffered: turnpike::client::webrtc::SCTP_MAX_BUFFERED,
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

/// The SCTP refusal: with a small SCTP buffer (64 KiB), a burst of 150 messages of 16,000
/// bytes is far more than str0m takes at once; what it refuses (`write` returns false) is held
/// by the driver and written as room comes, so every message arrives, once, in order.
#[tokio::test]
async fn a_burst_larger_than_the_sctp_buffer_is_held_and_all_of_it_arrives_in_order() {
    const SMALL: usize = 64 * 1024;
    const COUNT: usize = 150;
    let server = Server::start(Conf::loopback_peers());
    let mut oa = options(&server, "alice", 11, true);
    let mut ob = options(&server, "bob", 22, false);
    oa.peer.sctp_max_buffered = SMALL;
    ob.peer.sctp_max_buffered = SMALL;
    let mut a = WebRtcPeer::start(oa).await.unwrap();
    let mut b = WebRtcPeer::start(ob).await.unwrap();
    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    let message = |i: usize| {
        let mut m = vec![(i % 251) as u8; 16_000];
        m[..8].copy_from_slice(&(i as u64).to_be_bytes());
        m
    };
    let mut sent = false;
    let mut most_buffered = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sb.messages.len() < COUNT {
        tokio::select! {
            e = a.next_event() => note(&mut sa, e.expect("peer a runs"), &b),
            e = b.next_event() => note(&mut sb, e.expect("peer b runs"), &a),
            _ = tokio::time::sleep_until(deadline) => {
                panic!("timed out: {} of {COUNT} arrived", sb.messages.len())
            }
        }
        most_buffered = most_buffered.max(a.buffered_amount());
        if sa.open && sb.open && !sent {
            for i in 0..COUNT {
                a.send(message(i)).unwrap();
            }
            sent = true;
        }
    }
    assert!(
        most_buffered > SMALL,
        "the burst exceeded the SCTP buffer: {most_buffered}"
    );
    for (i, got) in sb.messages.iter().enumerate() {
        assert!(*got == message(i), "message {i} out of order or damaged");
    }
    // Drained: nothing left held once everything arrived.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while a.buffered_amount() > 0 {
            tokio::select! {
                e = a.next_event() => note(&mut sa, e.expect("peer a runs"), &b),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "buffered {}", a.buffered_amount());
}
