//! While a link runs on the relay, the registry sees only sealed blobs: two Chromium pages
//! reach the registry through a recording TCP proxy (tests/link_support/sniff.rs), and no
//! message's plaintext appears in any frame either way, text or binary, client frames
//! unmasked. The proxy's reading is checked on what must be visible (each page's `join` with
//! its public key, the peer ids of the relay frames), so the test can fail.

mod common;
mod link_support;
mod registry_support;

use common::Server;
use link_support::calls::texts;
use link_support::pages::{BrowserSpec, Pages};
use link_support::sniff::{SniffProxy, WsMessage, contains, ws_frames};
use link_support::*;
use serde_json::json;

/// The reader itself: a masked, fragmented client message is found once unmasked, and only
/// then (the raw bytes do not show it).
#[test]
fn the_frame_reader_unmasks_and_joins_fragments() {
    let mut stream = b"GET /v1/registry HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    for (first, fin, part) in [
        (true, false, &b"hello "[..]),
        (false, true, b"secret words"),
    ] {
        let opcode = if first { 2 } else { 0 };
        stream.push(if fin { 0x80 } else { 0 } | opcode);
        stream.push(0x80 | part.len() as u8);
        stream.extend_from_slice(&key);
        stream.extend(part.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }
    let (head, messages) = ws_frames(&stream).unwrap();
    assert!(head.starts_with("GET /v1/registry"));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].opcode, 2);
    assert_eq!(messages[0].payload, b"hello secret words");
    assert!(contains(&messages[0].payload, b"secret"));
    assert!(
        !contains(&stream, b"secret"),
        "masking hides it in the raw bytes"
    );
}

#[test]
fn relayed_messages_never_cross_the_registry_in_plaintext() {
    let server = Server::start(registry_conf(""));
    let proxy = SniffProxy::start(server.http);
    let mut pages = Pages::start(
        &[BrowserSpec::chromium("b")],
        &[("alice", "b"), ("bob", "b")],
        90,
    );
    let mut keys = Vec::new();
    for peer in ["alice", "bob"] {
        let joined = pages.connect(
            peer,
            json!({
                "url": format!("ws://{}/v1/registry", proxy.addr),
                "token": peer_token(peer),
                "iceServers": [],
                "iceTransportPolicy": "relay",
                "fallbackAfterMs": 500,
            }),
        );
        keys.push(joined["publicKey"].as_str().unwrap().to_owned());
    }
    pages.open_link("alice", "bob");
    let salt = now_ms();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let mut sent = [Vec::new(), Vec::new()];
    for i in 0..10 {
        for (k, (from, to)) in [("alice", "bob"), ("bob", "alice")].into_iter().enumerate() {
            let text = format!("{from} tells {to} secret number {i} ({salt})");
            assert_eq!(pages.send(from, to, json!(text))["ok"], true);
            secrets.push(text.clone().into_bytes());
            sent[k].push(text);
        }
    }
    // Several fragments of text, and bytes: any 48-byte window of them would give them away.
    let long = format!("{salt} the long secret ").repeat(2000);
    assert_eq!(pages.send("alice", "bob", json!(long))["ok"], true);
    secrets.push(long.as_bytes()[20_000..20_048].to_vec());
    sent[0].push(long);
    assert_eq!(
        pages.send("bob", "alice", json!({"bytes": 5000}))["ok"],
        true
    );
    let pattern: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
    secrets.push(pattern[2000..2048].to_vec());

    let got = pages.wait_received("bob", "alice", 11, 20_000);
    assert_eq!(got["mode"], "relay", "{got}");
    assert_eq!(texts(&pages.messages("bob", "alice")), sent[0]);
    let got = pages.wait_received("alice", "bob", 11, 20_000);
    assert_eq!(got["mode"], "relay", "{got}");
    assert_eq!(texts(&pages.messages("alice", "bob"))[..10], sent[1][..]);
    drop(pages); // the pages close their WebSockets: the recordings end on whole frames

    let recorded = proxy.recorded();
    assert_eq!(recorded.len(), 2, "one registry connection per page");
    let mut relay_frames = 0;
    for (i, connection) in recorded.iter().enumerate() {
        let (request, from_client) = ws_frames(&connection.to_server).unwrap();
        let (response, from_server) = ws_frames(&connection.to_client).unwrap();
        assert!(request.starts_with("GET /v1/registry"), "{request}");
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        // Compressed frames would hide plaintext from this search: none were negotiated.
        assert!(
            !response
                .to_ascii_lowercase()
                .contains("sec-websocket-extensions"),
            "{response}"
        );
        // The reading works: the page's join, with its public key, is there in clear.
        let join = from_client
            .iter()
            .find(|m| m.opcode == 1 && contains(&m.payload, b"\"join\""))
            .expect("the join");
        let key = keys
            .iter()
            .find(|k| contains(&join.payload, k.as_bytes()))
            .expect("the join carries the page's public key");
        let (me, peer) = if *key == keys[0] {
            ("alice", "bob")
        } else {
            ("bob", "alice")
        };
        // Relay frames name the peer (to it from the page, from it to the page).
        let relay: Vec<&WsMessage> = from_client.iter().filter(|m| m.opcode == 2).collect();
        assert!(
            relay.len() >= 10,
            "connection {i} ({me}): {} relay frames",
            relay.len()
        );
        for m in relay
            .iter()
            .copied()
            .chain(from_server.iter().filter(|m| m.opcode == 2))
        {
            let n = usize::from(m.payload[0]);
            assert_eq!(&m.payload[1..1 + n], peer.as_bytes(), "{me}");
        }
        relay_frames += relay.len();
        for secret in &secrets {
            let shown = String::from_utf8_lossy(secret);
            for m in from_client.iter().chain(&from_server) {
                assert!(
                    !contains(&m.payload, secret),
                    "{me}'s registry connection carries {shown:?} in clear (opcode {})",
                    m.opcode
                );
            }
            assert!(!contains(&connection.to_server, secret), "{shown:?}");
            assert!(!contains(&connection.to_client, secret), "{shown:?}");
        }
    }
    println!("relay privacy: {relay_frames} relay frames read, no plaintext in any");
}
