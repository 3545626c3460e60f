//! Large messages leave the registry in fragments (RFC 6455 §5.4) so that a connection's write
//! buffer never keeps a large message's size (src/registry/ws.rs), and clients reassemble
//! them: a welcome listing many peers, and a relay blob larger than a fragment, read on the
//! wire by a hand-written client (frame by frame) and by the Rust SDK (tokio-tungstenite).
//! The browser SDK and Python's `websockets` read them in tests/link_browser.rs and
//! tests/registry_interop.rs.

mod common;
mod registry_support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use registry_support::*;
use turnpike::client::{Event, KeyPair};
use turnpike::registry::ws::FRAGMENT_BYTES;

/// Peers joined before the observers: their long ids make a welcome of several fragments.
const FILLERS: usize = 30;

fn filler(i: usize) -> String {
    format!("filler-{i:02}-{}", "x".repeat(50))
}

/// One frame as read from the socket: FIN, opcode, payload.
type Frame = (bool, u8, Vec<u8>);

/// A minimal WebSocket client on a blocking socket, to see the frames themselves.
struct Wire(TcpStream);

impl Wire {
    fn connect(addr: SocketAddr, token: &str) -> Wire {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /v1/registry HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < 4096, "an endless response head");
            stream.read_exact(&mut byte).expect("the response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455 §1.3's example key and its accept value.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        Wire(stream)
    }

    /// Sends one masked text frame (clients mask, RFC 6455 §5.3).
    fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        assert!(payload.len() < 126);
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.0.write_all(&frame).unwrap();
    }

    fn frame(&mut self) -> Frame {
        let mut head = [0u8; 2];
        self.0.read_exact(&mut head).expect("a frame header");
        assert_eq!(head[1] & 0x80, 0, "a server never masks");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                self.0.read_exact(&mut n).unwrap();
                u16::from_be_bytes(n) as usize
            }
            127 => {
                let mut n = [0u8; 8];
                self.0.read_exact(&mut n).unwrap();
                u64::from_be_bytes(n) as usize
            }
            n => n as usize,
        };
        assert!(len <= 1 << 20, "a frame of {len} bytes");
        let mut payload = vec![0; len];
        self.0.read_exact(&mut payload).expect("a frame payload");
        (head[0] & 0x80 != 0, head[0] & 0x0f, payload)
    }

    /// The frames of the next data message (pings skipped).
    fn message(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.frame();
            if frame.1 == 0x9 {
                continue;
            }
            let fin = frame.0;
            frames.push(frame);
            if fin {
                return frames;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_welcome_and_a_large_relay_blob_arrive_in_fragments_and_intact() {
    let registry = TestRegistry::start("");
    let mut fillers = Vec::new();
    for i in 0..FILLERS {
        fillers.push(registry.client(&filler(i), "big").await.0);
    }

    // On the wire: a text frame without FIN, continuations, the last with FIN, none larger
    // than a fragment; together, the welcome.
    let addr = registry.addr;
    let token = registry.token("wire", "big");
    let keys = KeyPair::generate();
    let join = serde_json::json!({"type": "join", "public_key": keys.public_base64()}).to_string();
    let frames = tokio::task::spawn_blocking(move || {
        let mut wire = Wire::connect(addr, &token);
        wire.send_text(&join);
        (wire.message(), wire)
    });
    let (frames, wire) = frames.await.unwrap();
    assert!(frames.len() >= 3, "{} frames", frames.len());
    assert_eq!(frames[0].1, 0x1, "the first is a text frame");
    assert!(frames[1..].iter().all(|f| f.1 == 0x0), "then continuations");
    assert!(frames[..frames.len() - 1].iter().all(|f| !f.0));
    assert!(frames.iter().all(|f| f.2.len() <= FRAGMENT_BYTES));
    let welcome: Vec<u8> = frames.into_iter().flat_map(|f| f.2).collect();
    let welcome: serde_json::Value = serde_json::from_slice(&welcome).expect("the whole JSON");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let mut listed: Vec<&str> = welcome["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    let expected: Vec<String> = (0..FILLERS).map(filler).collect();
    assert_eq!(listed, expected);

    // The Rust SDK reassembles the welcome (now listing `wire` too) ...
    let (mut rust, peers) = registry.client("rust", "big").await;
    assert_eq!(peers.len(), FILLERS + 1, "{peers:?}");
    assert!(expected.iter().all(|id| peers.contains(id)), "{peers:?}");
    // ... and a relay blob of several fragments, sealed and opened end to end.
    let (mut other, _) = registry.client("other", "big").await;
    match next(&mut rust).await {
        Event::PeerJoined { peer_id, .. } => assert_eq!(peer_id, "other"),
        event => panic!("{event:?}"),
    }
    let blob: Vec<u8> = (0..5 * FRAGMENT_BYTES).map(|i| (i % 251) as u8).collect();
    rust.relay("other", &blob).await.expect("relay");
    match next(&mut other).await {
        Event::Relay { from, message } => {
            assert_eq!(from, "rust");
            assert!(message == blob, "the blob arrived altered");
        }
        event => panic!("{event:?}"),
    }
    drop(wire);
    drop(fillers);
}

/// The handshake the registry now checks itself (src/registry/ws.rs): a request with a valid
/// token but no WebSocket upgrade, or a wrong version, is refused with a JSON error.
#[test]
fn a_request_that_is_not_a_websocket_upgrade_is_refused() {
    let registry = TestRegistry::start("");
    let bearer = format!("Bearer {}", registry.token("plain", "big"));
    let ask = |headers: &[(&str, &str)]| {
        let mut all = vec![("Authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        common::http::request(registry.addr, "GET", "/v1/registry", &all, None).expect("answer")
    };
    let plain = ask(&[]);
    assert_eq!(plain.status, 400, "{plain:?}");
    assert_eq!(plain.error_code(), "not_a_websocket");
    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let old = ask(&[upgrade.as_slice(), &[("Sec-WebSocket-Version", "8")]].concat());
    assert_eq!(old.status, 400, "{old:?}");
    assert!(old.body.contains("Version must be 13"), "{old:?}");
    // The same request with version 13 is upgraded (`Connection` lists several tokens).
    let mut stream = TcpStream::connect(registry.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = format!("GET /v1/registry HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n");
    for (name, value) in upgrade {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Sec-WebSocket-Version: 13\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).expect("an answer");
    assert_eq!(&answer, b"HTTP/1.1 101");
}
