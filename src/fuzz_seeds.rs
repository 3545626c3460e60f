//! The fuzz targets' seeds and the check that keeps the corpora true (tests only).
//!
//! Every target in `fuzz/` has hand-made seeds, built here from the real encoders so they stay
//! valid as the protocols change, and committed as `fuzz/corpus/TARGET/seed-NAME` (beside the
//! minimized corpus of the long runs; `docs/reliability.md`, "Fuzzing"). The tests check that
//! the committed seeds are these, that each still says what its name says (a signed request is
//! accepted, a config file loads, a frame parses), and replay every file of every corpus
//! through its target's entry function, so `cargo test` catches a corpus input that panics
//! without building the fuzzers. `TURNPIKE_WRITE_SEEDS=1 cargo test --lib fuzz_seeds` rewrites
//! the seed files.

use std::path::{Path, PathBuf};

use crate::registry::fuzzing::JOIN;
use crate::registry::messages::build_relay;

/// A fuzz target's entry function.
type Entry = fn(&[u8]);

/// Every fuzz target and its entry function (the names of `fuzz/Cargo.toml`'s binaries).
pub const TARGETS: [(&str, Entry); 6] = [
    ("datagram", crate::proto::fuzzing::datagram),
    ("stream", crate::proto::fuzzing::stream),
    ("registry_text", crate::registry::fuzzing::registry_text),
    ("registry_binary", crate::registry::fuzzing::registry_binary),
    ("link_frames", crate::link::fuzzing::link_frames),
    ("config", crate::config::fuzzing::config),
];

/// One seed: target, name (the file is `seed-NAME`), bytes.
type Seed = (&'static str, String, Vec<u8>);

/// The hand-made seeds of every target but `link_frames` (whose seeds are hand-written files).
pub fn seeds() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let datagrams = crate::proto::fuzzing::seeds();
    for (name, bytes) in &datagrams {
        out.push(("datagram", (*name).to_owned(), bytes.clone()));
    }
    // A stream: the first two bytes seed the chunk sizes (byte 0 % 64 * 64 + 1 at most).
    let all: Vec<u8> = datagrams.iter().flat_map(|(_, b)| b.clone()).collect();
    for (name, seed) in [
        ("one-byte-reads", [0, 1]),
        ("large-reads", [63, 7]),
        ("reads", [3, 9]),
    ] {
        let mut stream = seed.to_vec();
        stream.extend_from_slice(&all);
        out.push(("stream", name.to_owned(), stream));
    }
    out.push((
        "stream",
        "then-garbage".into(),
        [&[1, 2][..], &all[..40], b"GET / HTTP/1.1\r\n"].concat(),
    ));

    let offer = r#"{"type":"webrtc_offer","to_peer_id":"b","payload":{"type":"offer","sdp":"v=0\r\n"},"id":1}"#;
    let answer = r#"b:{"type":"webrtc_answer","to_peer_id":"a","payload":{"type":"answer","sdp":"v=0\r\n"}}"#;
    let candidate = r#"{"type":"webrtc_ice_candidate","to_peer_id":"b","payload":{"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host","sdpMid":"0","sdpMLineIndex":0}}"#;
    for (name, lines) in [
        ("join", vec![JOIN.to_owned()]),
        (
            "signaling",
            vec![
                JOIN.to_owned(),
                format!("b:{JOIN}"),
                offer.into(),
                answer.into(),
                candidate.into(),
            ],
        ),
        (
            "ping-reauth",
            vec![
                r#"{"type":"ping"}"#.into(),
                JOIN.into(),
                r#"{"type":"reauth","token":"a.b.c"}"#.into(),
            ],
        ),
        (
            "unknown-peer",
            vec![
                JOIN.into(),
                r#"{"type":"webrtc_offer","to_peer_id":"mallory","payload":{},"id":7}"#.into(),
            ],
        ),
        (
            "timers",
            vec![
                JOIN.into(),
                "+".into(),
                "+".into(),
                r#"{"type":"ping"}"#.into(),
                "+".into(),
                "+".into(),
                "+".into(),
                "+".into(),
                "+".into(),
            ],
        ),
        (
            "bad-messages",
            vec![
                "{".into(),
                r#"{"type":"teleport","to_peer_id":"b"}"#.into(),
                r#"{"type":"join","public_key":"AAAA"}"#.into(),
                JOIN.into(),
                JOIN.into(),
            ],
        ),
    ] {
        out.push(("registry_text", name.into(), lines.join("\n").into_bytes()));
    }

    // A relay frame to `to` with a box of `len` bytes (24-byte nonce and ciphertext).
    let relay = |to: &str, len: usize| build_relay(to, &vec![0x5a; 24 + len]);
    let chunk = |control: u8, frame: Vec<u8>| {
        let mut out = vec![control];
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend(frame);
        out
    };
    for (name, chunks) in [
        ("before-join", vec![chunk(0, relay("b", 32))]),
        (
            "relay-both-ways",
            vec![
                chunk(2, relay("b", 32)),
                chunk(3, relay("a", 48)),
                chunk(0, relay("b", 100)),
            ],
        ),
        ("unknown-peer", vec![chunk(2, relay("zed", 16))]),
        ("too-short", vec![chunk(2, build_relay("b", &[1; 20]))]),
        (
            "after-a-second",
            vec![
                chunk(2, relay("b", 16)),
                chunk(4, relay("b", 16)),
                chunk(1, relay("a", 16)),
            ],
        ),
    ] {
        out.push(("registry_binary", name.into(), chunks.concat()));
    }

    for (name, text) in [
        ("documented-defaults", documented_defaults()),
        ("secrets", "realm = \"example.org\"\n[auth]\nsecrets = [\"0123456789abcdef0123\"]\nnonce_lifetime_secs = 300\n".into()),
        ("listeners-and-peers", "[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:3478\"\n\n[[listen]]\ntransport = \"udp\"\naddress = \"[::1]:3478\"\n\n[relay]\nports = \"50000-50100\"\nexternal_ip = \"198.51.100.7\"\n\n[peers]\nallow = [\"10.0.0.0/8\"]\ndeny = [\"203.0.113.0/24\"]\n".into()),
        ("users-and-limits", "[auth.users]\nalice = \"correct horse\"\n\n[limits]\nallocations_per_user = 4\nbandwidth_bps = 1000000\n\n[log]\nlevel = \"debug,turnpike=trace\"\nformat = \"json\"\n".into()),
        ("bad-port-range", "[relay]\nports = \"9-1\"\n".into()),
        ("bad-unknown-key", "[auth]\nsecret = 1\n".into()),
    ] {
        out.push(("config", name.into(), text.into_bytes()));
    }
    out
}

/// `config/turnpike.toml` without its comments and blank lines: every section, small.
fn documented_defaults() -> String {
    include_str!("../config/turnpike.toml")
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// `fuzz/corpus/TARGET`.
fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stun::Message;

    #[test]
    fn the_committed_seeds_are_the_generated_ones() {
        let write = std::env::var_os("TURNPIKE_WRITE_SEEDS").is_some();
        for (target, name, bytes) in seeds() {
            let path = corpus(target).join(format!("seed-{name}"));
            if write {
                std::fs::create_dir_all(corpus(target)).expect("corpus directory");
                std::fs::write(&path, &bytes).expect("seed written");
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (TURNPIKE_WRITE_SEEDS=1 writes it)", path.display())
            });
            assert!(
                committed == bytes,
                "{} is stale (TURNPIKE_WRITE_SEEDS=1 rewrites it)",
                path.display()
            );
        }
    }

    #[test]
    fn the_seeds_say_what_their_names_say() {
        for (target, name, bytes) in seeds() {
            match target {
                "datagram" if name == "channel-data" => assert_eq!(bytes[0] >> 6, 1),
                "datagram" => {
                    assert!(Message::parse(&bytes).is_ok(), "{name}");
                }
                "config" => {
                    let text = std::str::from_utf8(&bytes).expect("UTF-8");
                    let loaded = crate::config::Config::from_toml_str(text, &name);
                    assert_eq!(
                        loaded.is_ok(),
                        !name.starts_with("bad-"),
                        "{name}: {loaded:?}"
                    );
                }
                "registry_text" if name != "bad-messages" => {
                    for line in std::str::from_utf8(&bytes).expect("UTF-8").lines() {
                        let line = line.strip_prefix("b:").unwrap_or(line);
                        if line != "+" {
                            let parsed = crate::registry::messages::parse_text(line, 32_768);
                            assert!(parsed.is_ok(), "{name}: {line}");
                        }
                    }
                }
                _ => {}
            }
        }
        // The signed requests are accepted by the harness's core (no 401, no 438).
        for (name, code) in crate::proto::fuzzing::seed_answers() {
            let expected = match name {
                "allocate-unauthenticated" => Some(401),
                "allocate-again" => Some(437),
                "unknown-required" => Some(420),
                "allocate-tcp" => Some(437),
                "connect" => Some(400),
                _ => None,
            };
            assert_eq!(code, expected, "{name}");
        }
    }

    #[test]
    fn every_corpus_file_replays_through_its_target() {
        let listed = include_str!("../fuzz/Cargo.toml");
        for (target, run) in TARGETS {
            assert!(
                listed.contains(&format!("name = \"{target}\"")),
                "{target} in fuzz/Cargo.toml"
            );
            let files: Vec<_> = std::fs::read_dir(corpus(target))
                .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
                .map(|entry| entry.expect("a corpus entry").path())
                .collect();
            assert!(!files.is_empty(), "fuzz/corpus/{target} has seeds");
            for file in files {
                run(&std::fs::read(&file).expect("a corpus file"));
            }
        }
    }
}
