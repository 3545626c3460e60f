//! Replays the test vectors of docs/link-protocol.md §9, read from the document itself (the
//! ```json link-vectors``` block): frames, malformed frames, fragmentation, sealing,
//! attestations and receiver scenarios. A change to the document the code does not follow
//! fails here (and in the browser SDK's replay of the same block).

use std::num::NonZeroU32;
use std::time::Instant;

use serde_json::Value;
use turnpike::client::KeyPair;
use turnpike::client::seal::{Sealer, public_key_from_base64, seal_with_nonce};
use turnpike::link::attest::TrustedIssuers;
use turnpike::link::frame::{self, Frame, FrameKind};
use turnpike::link::send::SendBuffer;
use turnpike::link::{Event, Link, LinkConfig, Path};
use turnpike::registry::messages::build_relay;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/link-protocol.md");
    let doc = std::fs::read_to_string(path).expect("read docs/link-protocol.md");
    let start = doc
        .find("```json link-vectors\n")
        .expect("a ```json link-vectors block");
    let body = &doc[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("\n```").expect("the block ends");
    serde_json::from_str(&body[..end]).expect("the vectors are JSON")
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn u64_of(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

/// A frame of the vectors as bytes (its payload stored in `payload`).
fn encode(frame: &Value, payload: &mut Vec<u8>) -> Vec<u8> {
    let src = u64_of(frame, "src_epoch") as u32;
    let dst = u64_of(frame, "dst_epoch") as u32;
    let kind = frame["kind"].as_str().unwrap();
    let (kind, number_key) = match kind {
        "data" => (FrameKind::Data, "seq"),
        "ack" => (FrameKind::Ack, "ack"),
        "probe" => (FrameKind::Probe, "nonce"),
        "probe_ack" => (FrameKind::ProbeAck, "nonce"),
        "close" => (FrameKind::Close, "last_seq"),
        other => panic!("unknown kind {other}"),
    };
    let number = u64_of(frame, number_key);
    if kind == FrameKind::Data {
        *payload = hex(frame["payload_hex"].as_str().unwrap());
        let end = frame["end"].as_bool().unwrap();
        let binary = frame["binary"].as_bool().unwrap();
        Frame::data(src, dst, number, end, binary, payload).encode()
    } else {
        Frame::control(kind, src, dst, number).encode()
    }
}

#[test]
fn frames_encode_and_decode() {
    let vectors = vectors();
    let frames = vectors["frames"].as_object().unwrap();
    assert!(frames.len() >= 7);
    for (name, case) in frames {
        let mut payload = Vec::new();
        let bytes = encode(&case["frame"], &mut payload);
        assert_eq!(to_hex(&bytes), case["hex"].as_str().unwrap(), "{name}");
        let wire = hex(case["hex"].as_str().unwrap());
        let decoded = Frame::decode(&wire).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.encode(), wire, "{name}");
        assert_eq!(decoded.kind.name(), case["frame"]["kind"].as_str().unwrap());
    }
}

#[test]
fn malformed_frames_are_refused() {
    let vectors = vectors();
    let bad = vectors["bad"].as_array().unwrap();
    assert!(bad.len() >= 9);
    for case in bad {
        let name = case[0].as_str().unwrap();
        let bytes = hex(case[1].as_str().unwrap());
        assert!(Frame::decode(&bytes).is_err(), "{name} must be refused");
        // And a link end reports it as a protocol error, without a crash.
        let now = Instant::now();
        let mut link = Link::new(LinkConfig::default(), now, NonZeroU32::new(2).unwrap(), 0);
        link.handle_frame(now, Path::Relay, &bytes);
        assert!(
            matches!(link.poll_event(), Some(Event::Error(e)) if e.code.as_str() == "protocol_error"),
            "{name}"
        );
    }
}

#[test]
fn limits_and_fragments() {
    let vectors = vectors();
    let limits = &vectors["limits"];
    assert_eq!(u64_of(limits, "header_bytes"), frame::HEADER_BYTES as u64);
    assert_eq!(
        u64_of(limits, "max_frame_bytes"),
        frame::MAX_FRAME_BYTES as u64
    );
    assert_eq!(
        u64_of(limits, "max_fragment_payload"),
        frame::MAX_FRAGMENT_PAYLOAD as u64
    );
    assert_eq!(
        u64_of(limits, "max_message_bytes"),
        frame::MAX_MESSAGE_BYTES as u64
    );
    assert_eq!(u64_of(limits, "max_number"), frame::MAX_NUMBER);
    for case in vectors["fragments"].as_array().unwrap() {
        let size = u64_of(case, "message_bytes") as usize;
        let mut buffer = SendBuffer::new(2 << 20);
        buffer.push(vec![0x5a; size], true).unwrap();
        let mut fragments = 0;
        let mut last = None;
        while let Some(fragment) = buffer.peek() {
            fragments += 1;
            last = Some((fragment.payload.len(), fragment.end));
            buffer.advance();
        }
        assert_eq!(fragments, u64_of(case, "fragments"), "{case}");
        let (last_len, end) = last.unwrap();
        assert!(end);
        assert_eq!(
            last_len as u64,
            u64_of(case, "last_fragment_payload"),
            "{case}"
        );
    }
}

#[test]
fn a_sealed_frame_opens_and_seals_byte_for_byte() {
    let vectors = vectors();
    let seal = &vectors["seal"];
    let text = |key: &str| seal[key].as_str().unwrap();
    let sender = KeyPair::from_secret_base64(text("sender_secret_key")).unwrap();
    let recipient = KeyPair::from_secret_base64(text("recipient_secret_key")).unwrap();
    assert_eq!(sender.public_base64(), text("sender_public_key"));
    assert_eq!(recipient.public_base64(), text("recipient_public_key"));
    let plaintext = hex(text("plaintext_hex"));
    let mut expected = u64_of(seal, "counter").to_be_bytes().to_vec();
    expected.extend_from_slice(&hex(text("frame_hex")));
    assert_eq!(plaintext, expected, "plaintext = counter || frame");
    let nonce: [u8; 24] = hex(text("nonce_hex")).try_into().unwrap();
    let sealed = seal_with_nonce(&sender, &recipient.public_key(), &nonce, &plaintext);
    assert_eq!(to_hex(&sealed), text("box_hex"));
    assert_eq!(
        to_hex(&build_relay("bob", &sealed)),
        text("relay_frame_to_bob_hex")
    );
    let mut opener = Sealer::new(recipient, 0);
    let sender_key = public_key_from_base64(text("sender_public_key")).unwrap();
    let frame = opener.open(&sender_key, &hex(text("box_hex"))).unwrap();
    assert_eq!(to_hex(&frame), text("frame_hex"));
    assert!(Frame::decode(&frame).is_ok());
    assert!(
        opener.open(&sender_key, &hex(text("box_hex"))).is_err(),
        "a replay"
    );
}

#[test]
fn attestations_verify_and_refusals_name_their_reason() {
    let vectors = vectors();
    let attest = &vectors["attest"];
    let text = |v: &Value, key: &str| v[key].as_str().unwrap().to_owned();
    let issuers = TrustedIssuers::from_base64(&[text(attest, "issuer_public_key")]).unwrap();
    let now = u64_of(attest, "now");
    let (sub, project) = (text(attest, "sub"), text(attest, "project"));
    issuers
        .verify(
            Some(&text(attest, "attestation")),
            &sub,
            &project,
            &text(attest, "pk"),
            now,
        )
        .expect("the attestation verifies");
    let refused = attest["refused"].as_array().unwrap();
    assert!(refused.len() >= 5);
    for case in refused {
        let result = issuers.verify(
            Some(&text(case, "attestation")),
            case["sub"].as_str().unwrap_or(&sub),
            &project,
            &text(case, "pk"),
            case["now"].as_u64().unwrap_or(now),
        );
        let error = result.expect_err(case["why"].as_str().unwrap());
        assert_eq!(error.as_str(), text(case, "error"), "{}", case["why"]);
    }
    let other = TrustedIssuers::from_base64(&[text(attest, "pk")]).unwrap();
    let wrong_issuer = other.verify(
        Some(&text(attest, "attestation")),
        &sub,
        &project,
        &text(attest, "pk"),
        now,
    );
    assert_eq!(wrong_issuer.unwrap_err().as_str(), "bad_signature");
    let missing = issuers.verify(None, &sub, &project, &text(attest, "pk"), now);
    assert_eq!(missing.unwrap_err().as_str(), "missing");
}

#[test]
fn receive_scenarios() {
    let vectors = vectors();
    let scenarios = vectors["receive"].as_array().unwrap();
    assert!(scenarios.len() >= 6);
    for scenario in scenarios {
        let name = scenario["name"].as_str().unwrap();
        let epoch = NonZeroU32::new(u64_of(scenario, "local_epoch") as u32).unwrap();
        let now = Instant::now();
        let mut link = Link::new(LinkConfig::default(), now, epoch, 0);
        for (index, step) in scenario["steps"].as_array().unwrap().iter().enumerate() {
            let path = match step["path"].as_str().unwrap() {
                "p2p" => Path::P2p,
                _ => Path::Relay,
            };
            let mut payload = Vec::new();
            let bytes = encode(&step["frame"], &mut payload);
            link.handle_frame(now, path, &bytes);
            let mut delivered = Vec::new();
            while let Some(event) = link.poll_event() {
                if let Event::Message(message) = event {
                    delivered.push(if message.binary {
                        serde_json::json!({"hex": to_hex(&message.data)})
                    } else {
                        serde_json::json!({"text": message.text().unwrap()})
                    });
                }
            }
            assert_eq!(
                Value::Array(delivered),
                step["deliver"],
                "{name}, step {index}"
            );
            assert_eq!(
                link.cumulative_ack(),
                u64_of(step, "ack"),
                "{name}, step {index}"
            );
            let mut sent = Vec::new();
            while let Some(transmit) = link.poll_transmit(now) {
                sent.push(transmit);
            }
            if let Some(reply) = step.get("reply") {
                let mut unused = Vec::new();
                let expected = encode(reply, &mut unused);
                assert!(
                    sent.iter().any(|t| t.path == path && t.bytes == expected),
                    "{name}, step {index}: no reply {reply} in {sent:?}"
                );
            }
        }
    }
}
