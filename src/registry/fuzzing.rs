//! Entry points for the registry's fuzz targets in `fuzz/`: text frames (`registry_text`) and
//! binary relay frames (`registry_binary`) fed to a real [`Registry`] core holding two
//! authenticated connections, `a` and `b`, plus the client-side parsers of the same frames
//! (events, sealed boxes). Besides "no panic", both check what the core sends back: every text
//! frame is a JSON object with a `type`, every relay frame parses and names a real sender, and
//! nothing sent is larger than the limits allow.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{ConnId, Identity, Lease, NoAuthority, Registry};
use super::messages::{build_relay, parse_relay, parse_text};
use super::queue::Transmit;
use super::{RegistryConfig, RegistryMetrics};
use crate::client::seal::{KeyPair, Sealer};
use crypto_box::PublicKey;

/// The `join` message the harness sends for a peer (a valid 32-byte key).
pub const JOIN: &str =
    r#"{"type":"join","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;

/// Slack allowed on top of `max_payload_bytes` for the JSON around a forwarded payload.
const TEXT_OVERHEAD: usize = 4096;

/// A registry with peers `a` and `b` connected (authenticated, not joined).
struct Harness {
    core: Registry,
    config: RegistryConfig,
    conns: [ConnId; 2],
    joined: [bool; 2],
    now: Instant,
}

impl Harness {
    fn new() -> Option<Harness> {
        let config = RegistryConfig::default();
        let now = Instant::now();
        let mut core = Registry::new(config.clone(), Arc::new(RegistryMetrics::default()));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut conns = [0; 2];
        for (slot, peer) in conns.iter_mut().zip(["a", "b"]) {
            let identity = Identity {
                peer_id: peer.into(),
                project: "p".into(),
                pinned_key: None,
                expires_at: 0,
            };
            *slot = core.connect(now, ip, identity, Lease::default()).ok()?;
        }
        Some(Harness {
            core,
            config,
            conns,
            joined: [false; 2],
            now,
        })
    }

    fn text(&mut self, who: usize, text: &str) {
        self.core
            .handle_text(self.now, self.conns[who], text, &NoAuthority);
    }

    fn join(&mut self, who: usize) {
        if !self.joined[who] {
            self.joined[who] = true;
            self.text(who, JOIN);
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.core.handle_timeout(self.now);
    }

    /// Polls everything queued for both connections, checking each frame; relay frames are
    /// opened as the receiving client would.
    fn drain(&mut self, sealer: &mut Opener) {
        while self.core.poll_wake().is_some() {}
        let max_text = self.config.max_payload_bytes as usize + TEXT_OVERHEAD;
        let max_relay = self.config.max_relay_frame_bytes as usize;
        for conn in self.conns {
            // The queues are bounded, so draining them ends: the bound below is a check.
            for _ in 0..100_000 {
                match self.core.poll_transmit(conn) {
                    None => break,
                    Some(Transmit::Text(text)) => check_text(&text, max_text),
                    Some(Transmit::Binary(frame)) => {
                        assert!(frame.len() <= max_relay, "relay frame of {}", frame.len());
                        let relay = parse_relay(&frame, max_relay)
                            .unwrap_or_else(|e| panic!("forwarded relay frame: {e:?}"));
                        assert!(
                            ["a", "b"].contains(&relay.peer_id),
                            "forwarded from {:?}",
                            relay.peer_id
                        );
                        sealer.open(relay.sealed);
                    }
                    Some(Transmit::Ping | Transmit::Close { .. }) => {}
                }
            }
        }
    }

    fn finish(mut self, sealer: &mut Opener) {
        self.drain(sealer);
        self.advance(Duration::from_secs(61));
        self.drain(sealer);
        for conn in self.conns {
            self.core.disconnect(conn);
        }
        while self.core.poll_wake().is_some() {}
        assert_eq!(self.core.connection_count(), 0);
        assert_eq!(self.core.project_count(), 0);
    }
}

/// A text frame the server sends: a JSON object with a string `type`, of bounded size.
fn check_text(text: &str, max: usize) {
    assert!(text.len() <= max, "text frame of {} bytes", text.len());
    let value: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("server sent bad JSON {text:?}: {e}"));
    assert!(
        value.get("type").is_some_and(serde_json::Value::is_string),
        "no type in {text}"
    );
    // The client's event parser reads every server message.
    let _ = crate::client::events::parse_event(text);
}

/// The receiving client's box opener (its own key as the sender's: any box fails to open
/// unless the fuzzer forges one, which exercises the checks before decryption).
/// Opening costs a key agreement, so only the first few boxes of an input are opened.
struct Opener {
    sealer: Sealer,
    from: PublicKey,
    left: u8,
}

impl Opener {
    fn open(&mut self, sealed: &[u8]) {
        if self.left > 0 {
            self.left -= 1;
            let _ = self.sealer.open(&self.from, sealed);
        }
    }
}

fn sealer() -> Opener {
    let keys = KeyPair::from_secret_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
        .expect("a fixed key");
    Opener {
        from: keys.public_key(),
        sealer: Sealer::new(keys, 0),
        left: 2,
    }
}

/// `registry_text`: the input is lines, each a text frame from `a`, or from `b` when it
/// starts with `b:`; a line `+` lets 11 seconds pass (timers fire). Nobody has joined at the
/// start, so `join` itself is fuzzed. Must never panic.
pub fn registry_text(data: &[u8]) {
    let Some(mut h) = Harness::new() else { return };
    let mut sealer = sealer();
    let max_payload = h.config.max_payload_bytes as usize;
    for line in data.split(|&b| b == b'\n').take(1000) {
        // WebSocket text frames are UTF-8 (the server refuses others before the core).
        let text = String::from_utf8_lossy(line);
        let _ = parse_text(&text, max_payload);
        let _ = crate::client::events::parse_event(&text);
        if text == "+" {
            h.advance(Duration::from_secs(11));
        } else if let Some(rest) = text.strip_prefix("b:") {
            h.text(1, rest);
        } else {
            h.text(0, &text);
        }
        // 50 messages per second are allowed: 20 ms apart, only bursts are limited.
        h.now += Duration::from_millis(20);
        h.drain(&mut sealer);
    }
    h.finish(&mut sealer);
}

/// `registry_binary`: the input is chunks `[control][length: u16 BE][frame]`, each a binary
/// frame from `a` (or `b` when control bit 0 is set). Control bit 1: the sender joins first
/// (frames before a join are refused as not joined); bit 2: a second passes first. Every
/// frame also goes through the relay frame parser (whose encoding must round-trip) and the
/// client's box opener. Must never panic.
pub fn registry_binary(data: &[u8]) {
    let Some(mut h) = Harness::new() else { return };
    let mut sealer = sealer();
    let max = h.config.max_relay_frame_bytes as usize;
    let mut rest = data;
    let mut steps = 0;
    while rest.len() >= 3 && steps < 1000 {
        steps += 1;
        let control = rest[0];
        let length = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let (frame, tail) = rest[3..].split_at(length.min(rest.len() - 3));
        rest = tail;
        if let Ok(relay) = parse_relay(frame, max) {
            assert_eq!(
                build_relay(relay.peer_id, relay.sealed),
                frame,
                "round trip"
            );
            sealer.open(relay.sealed);
        }
        let who = usize::from(control & 1);
        if control & 2 != 0 {
            h.join(who);
        }
        if control & 4 != 0 {
            h.advance(Duration::from_secs(1));
        }
        h.core.handle_binary(h.now, h.conns[who], frame);
        h.drain(&mut sealer);
    }
    h.finish(&mut sealer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary chunk for [`registry_binary`].
    fn chunk(control: u8, frame: &[u8]) -> Vec<u8> {
        let mut out = vec![control];
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
        out
    }

    #[test]
    fn the_harness_joins_and_relays() {
        // The fuzzer must reach the routing paths, not only "not joined".
        let mut h = Harness::new().expect("two connections");
        let mut sealer = sealer();
        h.join(0);
        h.join(1);
        h.drain(&mut sealer);
        h.core
            .handle_binary(h.now, h.conns[0], &build_relay("b", &[7; 60]));
        let got = h.core.poll_transmit(h.conns[1]);
        assert_eq!(got, Some(Transmit::Binary(build_relay("a", &[7; 60]))));
    }

    #[test]
    fn the_entry_points_survive_samples() {
        let join_b = format!("b:{JOIN}");
        for sample in [
            &b""[..],
            b"{",
            b"+\n+\n+\n+\n+\n+\n+",
            format!("{JOIN}\n{join_b}\n{{\"type\":\"webrtc_offer\",\"to_peer_id\":\"b\",\"payload\":{{}}}}")
                .as_bytes(),
            &[0xff; 300],
        ] {
            registry_text(sample);
            registry_binary(sample);
        }
        let mut both = chunk(0, &build_relay("b", &[1; 50]));
        both.extend(chunk(2, &build_relay("b", &[1; 50])));
        both.extend(chunk(3, &build_relay("a", &[2; 50])));
        both.extend(chunk(6, &[0xff; 10]));
        registry_binary(&both);
    }
}
