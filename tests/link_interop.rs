//! Interop through the real registry: the browser SDK in Chromium and the Rust SDK (the
//! `turnpike link` CLI, the real binary) on one link, forced to the relay path. JS seals and
//! Rust opens, Rust seals and JS opens, messages both ways in order; the CLI exits 0 only when
//! the page acknowledged everything it sent.
//!
//! Both sides reach the registry through a recording proxy, and the test knows both secret
//! keys, so it opens every blob of the live exchange itself and checks what each SDK put on
//! the wire against docs/link-protocol.md: the sealing (§5: every blob opens, counters strictly
//! increase per sender), every frame well-formed for the other SDK's codec (the Rust codec
//! re-encodes JS frames byte for byte, the JS codec in the page re-encodes Rust frames), one
//! epoch per side, acks addressed to the other's epoch, and the first message, "hello", framed
//! exactly as the §9 vector `data-text` with the live epochs.

mod common;
mod link_support;
mod registry_support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KillOnDrop, Server, turnpike_bin};
use link_support::calls::texts;
use link_support::pages::{BrowserSpec, Pages};
use link_support::sniff::{Recorded, SniffProxy, ws_frames};
use link_support::*;
use serde_json::{Value, json};
use turnpike::client::{KeyPair, Sealer};
use turnpike::link::{Frame, FrameKind};

/// Messages each way after "hello".
const MESSAGES: usize = 40;

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The §9 vector `data-text` ("hello", seq 1) from docs/link-protocol.md.
fn data_text_vector() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/link-protocol.md"
    ))
    .unwrap();
    let start = doc.find("```json link-vectors\n").expect("the vectors") + 21;
    let end = start + doc[start..].find("```").unwrap();
    let vectors: Value = serde_json::from_str(&doc[start..end]).unwrap();
    let v = &vectors["frames"]["data-text"];
    assert_eq!(v["frame"]["payload_hex"], "68656c6c6f");
    assert_eq!(v["frame"]["seq"], 1);
    v["hex"].as_str().unwrap().to_owned()
}

/// The link frames one side sealed, in the order it sent them: every relay blob in `sent`
/// (a recorded connection) opened with the recipient's keys.
fn opened_frames(sent: &Recorded, recipient: &KeyPair, sender: &KeyPair) -> Vec<Vec<u8>> {
    let (_, messages) = ws_frames(&sent.to_server).unwrap();
    // A receiver's Sealer refuses a counter that does not increase: §5 checked on the way.
    let mut opener = Sealer::new(recipient.clone(), 0);
    messages
        .iter()
        .filter(|m| m.opcode == 2)
        .map(|m| {
            let n = usize::from(m.payload[0]);
            opener
                .open(&sender.public_key(), &m.payload[1 + n..])
                .unwrap_or_else(|e| panic!("a blob does not open: {e}"))
        })
        .collect()
}

#[test]
fn browser_and_rust_sdks_talk_over_the_relay() {
    let server = Server::start(registry_conf(""));
    let proxy = SniffProxy::start(server.http);
    let url = format!("ws://{}/v1/registry", proxy.addr);
    let (web_keys, rust_keys) = (KeyPair::generate(), KeyPair::generate());
    let mut pages = Pages::start(&[BrowserSpec::chromium("b")], &[("web", "b")], 90);
    pages.connect(
        "web",
        json!({
            "url": url, "token": peer_token("web"), "secretKey": web_keys.secret_base64(),
            "iceServers": [], "iceTransportPolicy": "relay", "fallbackAfterMs": 500,
        }),
    );

    // The Rust side: `turnpike link`, one message per input line, one JSON event per line out.
    let mut cli = Command::new(turnpike_bin())
        .args([
            "link",
            "--url",
            &url,
            "--to",
            "web",
            "--fallback-after",
            "0.5",
        ])
        .args(["--ice-transport-policy", "relay", "--flush-timeout", "20"])
        .env("TURNPIKE_TOKEN", peer_token("rust"))
        .env("TURNPIKE_KEY", rust_keys.secret_base64())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn turnpike link");
    let mut stdin = cli.stdin.take().unwrap();
    let (events_tx, events) = mpsc::channel::<Value>();
    let stdout = cli.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let event = serde_json::from_str(&line).unwrap_or(json!({"unparsed": line}));
            let _ = events_tx.send(event);
        }
    });
    let mut cli = KillOnDrop(cli);

    let rust_sent: Vec<String> = std::iter::once("hello".to_owned())
        .chain((0..MESSAGES).map(|i| format!("rust {i}: grüße ✓")))
        .collect();
    for line in &rust_sent {
        writeln!(stdin, "{line}").unwrap();
    }
    stdin.flush().unwrap();
    let web_sent: Vec<String> = std::iter::once("hello".to_owned())
        .chain((0..MESSAGES).map(|i| format!("web {i}: ¡hola! ✓")))
        .collect();
    let s = pages.wait_received("web", "rust", rust_sent.len() as u64, 20_000);
    assert_eq!(texts(&pages.messages("web", "rust")), rust_sent, "{s}");
    for text in &web_sent {
        assert_eq!(pages.send("web", "rust", json!(text))["ok"], true);
    }

    // What the CLI printed: its modes, then the page's messages, in order.
    let mut got = Vec::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < web_sent.len() && Instant::now() < deadline {
        let Ok(event) = events.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if event["event"] == "message" {
            assert_eq!(event["from"], "web", "{event}");
            got.push(event["message"].as_str().unwrap().to_owned());
        }
        seen.push(event);
    }
    assert_eq!(got, web_sent, "the Rust side's events: {seen:?}");
    assert!(
        seen.iter()
            .any(|e| e["event"] == "mode" && e["mode"] == "relay"),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|e| e["event"] == "error"), "{seen:?}");
    // Input closed: the CLI waits until the page acknowledged everything, then exits 0.
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(status) = cli.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "turnpike link did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<Value> = events.try_iter().collect();
    assert!(status.success(), "turnpike link: {status}; {rest:?}");
    // The wire, opened with both keys (the page's connection is idle now: whole frames).
    let recorded = proxy.recorded();
    let connection = |key: &KeyPair| -> &Recorded {
        let key = key.public_base64();
        recorded
            .iter()
            .find(|r| {
                let (_, messages) = ws_frames(&r.to_server).unwrap();
                messages.iter().any(|m| {
                    m.opcode == 1 && link_support::sniff::contains(&m.payload, key.as_bytes())
                })
            })
            .expect("the connection that joined with this key")
    };
    let from_web = opened_frames(connection(&web_keys), &rust_keys, &web_keys);
    let from_rust = opened_frames(connection(&rust_keys), &web_keys, &rust_keys);
    let mut epochs = Vec::new();
    for (who, frames) in [("web", &from_web), ("rust", &from_rust)] {
        let mut datas = Vec::new();
        for bytes in frames.iter() {
            let frame = Frame::decode(bytes)
                .unwrap_or_else(|e| panic!("{who}: malformed for the Rust codec: {e}"));
            assert_eq!(
                &frame.encode(),
                bytes,
                "{who}: the Rust codec re-encodes it"
            );
            if frame.kind == FrameKind::Data {
                datas.push(frame);
            }
        }
        let src: Vec<u32> = datas.iter().map(|f| f.src_epoch).collect();
        assert!(src.windows(2).all(|w| w[0] == w[1]), "{who}: one epoch");
        epochs.push(src[0]);
        assert_eq!(datas[0].number, 1, "{who}: seq starts at 1");
        assert_eq!(datas[0].payload, b"hello", "{who}");
        // The first message, framed exactly as the §9 vector, with the live epochs.
        let vector = data_text_vector();
        let live = format!(
            "{}{:08x}{:08x}{}",
            &vector[..4],
            datas[0].src_epoch,
            datas[0].dst_epoch,
            &vector[20..]
        );
        assert_eq!(
            to_hex(&datas[0].encode()),
            live,
            "{who}: \"hello\" vs the §9 vector"
        );
        // One fragment per message: seqs 1 to 41, each sent (a resend may repeat one).
        let mut seqs: Vec<u64> = datas.iter().map(|f| f.number).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let expected: Vec<u64> = (1..=MESSAGES as u64 + 1).collect();
        assert_eq!(seqs, expected, "{who}: DATA seqs");
    }
    // Acks name the other side's epoch once known.
    for (who, frames, other) in [
        ("web", &from_web, epochs[1]),
        ("rust", &from_rust, epochs[0]),
    ] {
        let acks: Vec<Frame> = frames
            .iter()
            .map(|b| Frame::decode(b).unwrap())
            .filter(|f| f.kind == FrameKind::Ack)
            .collect();
        assert!(!acks.is_empty(), "{who} acknowledged nothing on the relay");
        assert!(acks.iter().all(|f| f.dst_epoch == other), "{who}: {acks:?}");
    }
    pages.call(
        "web",
        "(H) => H.waitFor((H) => H.summary('rust').closed !== null, 5000)",
        Value::Null,
        SHORT,
    );
    let s = pages.summary("web", "rust");
    // The CLI closed its end after the flush: CLOSE went out on the relay, and the page saw it.
    let closes = from_rust
        .iter()
        .filter(|b| Frame::decode(b).unwrap().kind == FrameKind::Close)
        .count();
    assert_eq!(closes, 1, "the Rust side's CLOSE on the wire");
    // The last blobs of a leaving peer may come after its `peer_left` (the registry's relay
    // and control queues are separate): the page must still open them.
    let (_, to_web) = ws_frames(&connection(&web_keys).to_client).unwrap();
    let order: Vec<String> = to_web
        .iter()
        .rev()
        .take(4)
        .map(|m| match m.opcode {
            2 => format!("blob of {} bytes", m.payload.len()),
            _ => String::from_utf8_lossy(&m.payload).into_owned(),
        })
        .collect();
    assert_eq!(
        s["closed"],
        "remote_closed",
        "{s}\nsession: {}\nthe page's last frames, newest first: {order:?}",
        pages.session_state("web"),
    );
    assert!(
        s["modes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mode"] == "relay"),
        "{s}"
    );
    assert_eq!(s["errors"], json!([]), "{s}");

    // The JS codec, in the page, on every frame Rust sealed.
    let rust_hexes: Vec<String> = from_rust.iter().map(|b| to_hex(b)).collect();
    let js_check = pages.call(
        "web",
        "(H, hexes) => hexes.map((h) => { \
           const bytes = Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16)); \
           const { frame, error } = H.tp.decodeFrame(bytes); \
           if (error) return `malformed: ${error}`; \
           return Array.from(H.tp.encodeFrame(frame), (b) => b.toString(16).padStart(2, '0')).join(''); })",
        json!(rust_hexes),
        SHORT,
    );
    assert_eq!(
        js_check,
        json!(rust_hexes),
        "the JS codec re-encodes what Rust sent"
    );
    drop(pages);
    println!(
        "interop: {} frames from the browser, {} from Rust, all opened and re-encoded",
        from_web.len(),
        from_rust.len()
    );
}
