//! Chromium through the XDP fast path (issue #15), as root, in the namespace lab of
//! tests/xdp_support: browser A in the client namespace uses only turnpike's TURN relay
//! (`iceTransportPolicy: "relay"`, REST credentials), browser B in the peer namespace only its
//! host candidate, so all their traffic runs through A's allocation: client → peer is A → B,
//! peer → client is B → A. tests/browser/xdp_pair.mjs (playwright-core driving Debian's
//! chromium through `ip netns exec` wrappers, the SDP passed between the pages by the script)
//! opens a DataChannel, unordered with maxRetransmits 0 (a lost datagram is a lost message),
//! and sends 1,000 messages of 1,000 bytes each way at once, 4 every 10 ms.
//!
//! It asserts: every message arrives (0 loss, no duplicate, whole), A's selected candidate is
//! a UDP relay candidate and B's a host candidate, and turnpike's `/metrics` counted at least
//! the messages' bytes each way (`turnpike_relayed_bytes_total`), at least 90% of which went
//! through the kernel (`turnpike_xdp_relayed_bytes_total`; in practice all but the first
//! packets, relayed in user space while the channel is being bound).
//!
//! The pace is what a loaded 2-core machine sustains without loss inside the browsers: much
//! faster, datagrams overflowed the browsers' own socket buffers under load (loss before or
//! after the relay, not in it). Like tests/xdp.rs, it needs root and fails, never skips,
//! without it (or without chromium and playwright-core, which scripts/test installs).

mod common;
mod xdp_support;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::{CHROMIUM, browser_dir, require_chromium};
use common::*;
use serde_json::{Value, json};
use turnpike::proto::credentials;
use xdp_support::*;

const MESSAGES: u64 = 1000;
const SIZE: u64 = 1000;
/// The whole browser run's limit (the script's own is 10 s shorter).
const RUN_LIMIT: Duration = Duration::from_secs(100);

/// Runs tests/browser/xdp_pair.mjs with browser A in the client namespace and B in the
/// peer's; returns its JSON line and everything it printed.
fn run_pair(lab: &Lab, server: &NsTurnpike) -> (Value, String) {
    let chromium = Path::new(CHROMIUM);
    require_chromium();
    let wrappers = tempfile::tempdir().unwrap();
    let profiles = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let credential = credentials::mint(SECRET_ONE.as_bytes(), "xdp-browser", unix_now(), 3600);
    let ice = json!([{
        "urls": format!("turn:{SERVER}:{TURN_PORT}?transport=udp"),
        "username": credential.username,
        "credential": credential.password,
    }]);
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("node")
        .arg(browser_dir().join("xdp_pair.mjs"))
        .env(
            "CHROMIUM_A",
            lab.client.wrapper(wrappers.path(), "chromium-a", chromium),
        )
        .env(
            "CHROMIUM_B",
            lab.peer.wrapper(wrappers.path(), "chromium-b", chromium),
        )
        .env("PROFILE_A", profiles[0].path())
        .env("PROFILE_B", profiles[1].path())
        .env("ICE_SERVERS", ice.to_string())
        .env("MESSAGES", MESSAGES.to_string())
        .env("SIZE", SIZE.to_string())
        .env("BURST", "4")
        .env("EVERY_MS", "10")
        .env("MAX_SECS", (RUN_LIMIT.as_secs() - 10).to_string())
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .expect("spawn node (scripts/test installs nodejs)");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + RUN_LIMIT;
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the browser run did not end in {RUN_LIMIT:?}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut output = String::new();
    out.reopen().unwrap().read_to_string(&mut output).unwrap();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the browser run:\n{output}"));
    let v: Value = serde_json::from_str(line).unwrap();
    (v, output)
}

#[test]
fn chromium_relays_through_xdp_with_no_loss() {
    let lab = Lab::new();
    let server = NsTurnpike::start(&lab, &config(&["s1", "s2"], "", ""));
    server.assert_attached();
    let started = Instant::now();
    let (v, output) = run_pair(&lab, &server);
    assert!(v["ok"] == true, "the browser run failed: {v}\n{output}");
    println!(
        "browser run: {:?} (phases in ms: {})",
        started.elapsed(),
        v["ms"]
    );
    for side in ["a", "b"] {
        let s = &v[side];
        assert_eq!(s["sent"], MESSAGES, "{side}: {v}");
        assert_eq!(
            (&s["duplicates"], &s["badSize"]),
            (&json!(0), &json!(0)),
            "{side}: {v}"
        );
    }
    // Each side counts what it received: 0 loss each way.
    assert_eq!(
        (&v["b"]["received"], &v["a"]["received"]),
        (&json!(MESSAGES), &json!(MESSAGES)),
        "messages received A → B, B → A: {v}"
    );
    assert_eq!(v["a"]["local"]["type"], "relay", "A relays: {v}");
    assert_eq!(v["a"]["local"]["relayProtocol"], "udp", "{v}");
    assert_eq!(v["a"]["local"]["address"], RELAY, "{v}");
    assert_eq!(v["b"]["local"]["type"], "host", "B is a host: {v}");
    assert_eq!(v["b"]["local"]["address"], PEER, "{v}");

    // The workers read the kernel's counters every 500 ms: wait (bounded) for the share.
    let need = MESSAGES * SIZE;
    let mut metrics;
    let until = Instant::now() + Duration::from_secs(3);
    let shares = loop {
        metrics = server.metrics(&lab);
        let [xdp_out, xdp_back] = ["client_to_peer", "peer_to_client"].map(|d| {
            sample(
                &metrics,
                &format!("turnpike_xdp_relayed_bytes_total{{direction=\"{d}\"}}"),
            )
        });
        let [all_out, all_back] =
            ["client_to_peer", "peer_to_client"].map(|d| relayed_bytes(&metrics, d));
        let shares = [(xdp_out, all_out), (xdp_back, all_back)];
        let done = shares
            .iter()
            .all(|&(xdp, all)| all >= need && xdp * 10 >= all * 9);
        if done || Instant::now() >= until {
            break shares;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for ((xdp, all), direction) in shares.into_iter().zip(["A → B", "B → A"]) {
        println!(
            "{direction}: {all} bytes relayed, {xdp} by XDP ({:.2}%)",
            100.0 * xdp as f64 / all.max(1) as f64
        );
        assert!(
            all >= need,
            "{direction}: relayed {all} bytes, less than the messages' {need}\n{metrics}"
        );
        assert!(
            xdp * 10 >= all * 9,
            "{direction}: XDP relayed {xdp} of {all} bytes, under 90%\n{metrics}"
        );
    }
}
