//! The browser SDK (clients/js) in a real browser against the real server: headless Chromium
//! (Debian's package, driven by playwright-core from npm; scripts/test installs both, no
//! browser is ever downloaded) opens two pages of one project, each loading the SDK from the
//! server's `/sdk/turnpike.js` and connecting to its registry, and one link between them:
//!
//! 1. ICE through turnpike's own TURN (`iceTransportPolicy: "relay"`, the ICE servers from the
//!    registry's `welcome.ice_servers`): mode `p2p` over a relay/relay candidate pair, 1,000
//!    messages each way, in order.
//! 2. ICE servers that cannot be reached (a TURN URL to a closed loopback port): mode `relay`
//!    within fallbackAfterMs + 2 s, messages flow through the registry's encrypted relay, and
//!    its relay counters in /metrics grow. Twenty peers with long ids are joined first, so the
//!    pages' welcomes, like their 1 KiB relay blobs, arrive as fragmented WebSocket messages.
//! 3. 2,000 numbered messages while the link goes p2p -> relay -> p2p (`forceRelay` on, then
//!    off): each delivered exactly once, in order.
//!
//! It prints the figures the README quotes: the time from an ICE failure (real or forced) to
//! the first relayed message, and relay-mode throughput between the two pages.

mod common;
mod registry_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{browser_dir, require_chromium};
use common::*;
use registry_support::{JWT_SECRET, claims, join_client, token};
use serde_json::Value;
use turnpike::proto::credentials;

const FALLBACK_MS: u64 = 2000;
/// Peers joined before the relay case's pages (see there).
const FILLERS: usize = 20;

fn start_server() -> Server {
    Server::start(Conf {
        extra_toml: format!("[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n"),
        ..Conf::default()
    })
}

/// Runs tests/browser/link_basic.mjs with `case`; returns its JSON (asserting `ok`).
fn run_case(server: &Server, case: &str, project: &str, extra: &[(&str, String)]) -> Value {
    let script = browser_dir().join("link_basic.mjs");
    require_chromium();
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("node");
    command
        .arg(&script)
        .env("BASE", format!("http://{}", server.http))
        .env("REGISTRY", format!("ws://{}/v1/registry", server.http))
        .env("TOKEN_A", token(&claims("alice", project)))
        .env("TOKEN_B", token(&claims("bob", project)))
        .env("CASE", case)
        .env("FALLBACK_MS", FALLBACK_MS.to_string())
        .env("USER_DATA_DIR", profile.path())
        .stdin(std::process::Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap());
    for (k, v) in extra {
        command.env(k, v);
    }
    let mut child = KillOnDrop(command.spawn().expect("spawn node"));
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the browser run did not end in 180 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = std::fs::read_to_string(out.path()).unwrap();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the browser run:\n{output}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert!(
        v["ok"] == Value::Bool(true),
        "browser case {case} failed: {v}\n{output}\n--- server log ---\n{}",
        server.log()
    );
    v
}

/// The value of an unlabelled counter in /metrics.
fn counter(server: &Server, name: &str) -> u64 {
    let body = common::http::get(server.http, "/metrics").body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn chromium_links_p2p_through_turn_fall_back_to_the_relay_and_switch_back() {
    let server = start_server();

    // (1) p2p through turnpike's TURN, ICE servers from the welcome.
    let v = run_case(&server, "p2p", "link-p2p", &[("MESSAGES", "1000".into())]);
    for side in ["a", "b"] {
        let s = &v[side];
        assert_eq!(s["mode"], "p2p", "{side}: {v}");
        assert_eq!(s["received"], 1000, "{side}: {v}");
        assert_eq!(s["stats"]["localCandidateType"], "relay", "{side}: {v}");
        assert_eq!(s["stats"]["remoteCandidateType"], "relay", "{side}: {v}");
        assert!(
            s["welcomeIce"].as_array().is_some_and(|a| !a.is_empty()),
            "the welcome carried ice_servers: {v}"
        );
        assert_eq!(s["stats"]["relayBytes"], 0, "{side}: {v}");
    }

    // (2) unreachable ICE servers: the registry's relay.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let credential = credentials::mint(SECRET_ONE.as_bytes(), "browser", unix_now(), 3600);
    let ice = serde_json::json!([{
        "urls": format!("turn:127.0.0.1:{closed_port}?transport=udp"),
        "username": credential.username,
        "credential": credential.password,
    }]);
    // Peers with long ids in the project first: the pages' welcomes, like their 1 KiB relay
    // blobs, are larger than a fragment (src/registry/ws.rs), so the SDK reads messages the
    // server sent in fragments.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!("ws://{}/v1/registry", server.http);
    let fillers: Vec<_> = runtime.block_on(async {
        let mut fillers = Vec::new();
        for i in 0..FILLERS {
            let id = format!("filler-{i:02}-{}", "x".repeat(50));
            let keys = turnpike::client::KeyPair::generate();
            fillers.push(join_client(&url, &id, "link-relay", keys).await.0);
        }
        fillers
    });
    let blobs_before = counter(&server, "turnpike_registry_relay_blobs_total");
    let bytes_before = counter(&server, "turnpike_registry_relay_bytes_total");
    let v = run_case(
        &server,
        "fallback",
        "link-relay",
        &[
            ("MESSAGES", "1000".into()),
            ("ICE_SERVERS", ice.to_string()),
        ],
    );
    let fallback_ms = v["fallbackMs"].as_u64().unwrap();
    assert!(
        fallback_ms <= FALLBACK_MS + 2000,
        "relay after {fallback_ms} ms: {v}"
    );
    assert_eq!(v["b"]["received"], 1001, "{v}");
    assert_eq!(v["a"]["mode"], "relay", "{v}");
    // The fillers and the other page.
    assert_eq!(v["a"]["knownPeers"], FILLERS + 1, "{v}");
    assert_eq!(v["b"]["knownPeers"], FILLERS + 1, "{v}");
    drop(fillers);
    let blobs = counter(&server, "turnpike_registry_relay_blobs_total") - blobs_before;
    let bytes = counter(&server, "turnpike_registry_relay_bytes_total") - bytes_before;
    assert!(blobs >= 1001, "relayed blobs grew by {blobs}: {v}");
    assert!(bytes >= 1000 * 1024, "relayed bytes grew by {bytes}: {v}");
    println!(
        "figure: ICE failure (fallback timer, {FALLBACK_MS} ms) to the first relayed message: {} ms",
        v["failureToFirstRelayedMs"]
    );
    println!(
        "figure: relay-mode throughput between two Chromium pages: {} messages/s, {} KB/s (1 KiB messages)",
        v["relayMessagesPerSec"], v["relayKBPerSec"]
    );

    // (3) p2p -> relay -> p2p with 2,000 numbered messages.
    let v = run_case(
        &server,
        "switch",
        "link-switch",
        &[("MESSAGES", "2000".into())],
    );
    assert_eq!(v["b"]["received"], 2000, "{v}");
    assert_eq!(
        v["modes"],
        serde_json::json!(["p2p", "relay", "p2p"]),
        "{v}"
    );
    assert!(v["a"]["stats"]["relayBytes"].as_u64().unwrap() > 0, "{v}");
    println!(
        "figure: forced relay (forceRelay(true)) to the first relayed message: {} ms",
        v["forcedToFirstRelayedMs"]
    );
}
