//! Rust <-> Chromium on the direct path: a page loading /sdk/turnpike.js (the browser SDK in
//! Debian's chromium) and an in-process Rust session (`turnpike::client::Session` with the str0m
//! `WebRtcConnector`) on one link, ICE servers from the registry's welcome and
//! `iceTransportPolicy: relay` on both sides (the DataChannel runs through turnpike's TURN):
//!
//! - both ends reach mode `p2p`: str0m's DTLS and SCTP talk to Chrome's, the negotiated channel
//!   id 0 carries link frames both ways, the probe round trip succeeds on each side;
//! - `forceRelay` / `force_relay` on both: both move to the relay; off: both come back to p2p;
//! - messages both ways throughout, each delivered once, in order.
//!
//! Once with the Rust side opening the link (str0m offers, Chrome answers), once with the page
//! opening it (Chrome offers, str0m answers), and once with both opening it at once (offer
//! glare, resolved by perfect negotiation: the Rust end is the polite one).

mod common;
mod link_support;
mod registry_support;

use std::sync::Arc;
use std::time::Duration;

use common::Server;
use link_support::calls::{assert_exactly_once_in_order, texts};
use link_support::pages::{BrowserSpec, Pages};
use link_support::*;
use serde_json::{Value, json};
use turnpike::client::p2p::IceTransportPolicy;
use turnpike::client::webrtc::WebRtcConnector;
use turnpike::client::{
    Incoming, KeyPair, Link, Session, SessionConfig, SessionEvent, TokenSource,
};
use turnpike::link::Mode;

/// Messages each way in each phase (p2p, forced relay, p2p again).
const PER_PHASE: usize = 30;

fn rust_session(rt: &tokio::runtime::Runtime, server: &Server) -> Session {
    let mut config = SessionConfig::new(
        format!("ws://{}/v1/registry", server.http),
        TokenSource::Fixed(peer_token("rust")),
        KeyPair::generate(),
    );
    config.fallback_after = Duration::from_secs(10);
    config.ice_transport_policy = IceTransportPolicy::Relay;
    config.p2p = Some(Arc::new(WebRtcConnector::new()));
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), Session::connect(config))
            .await
            .expect("connect in time")
            .expect("connect")
    })
}

fn wait_rust_mode(rt: &tokio::runtime::Runtime, link: &Link, want: Mode, limit: Duration) {
    let mut modes = link.mode();
    let reached =
        rt.block_on(async { tokio::time::timeout(limit, modes.wait_for(|m| *m == want)).await });
    assert!(
        matches!(reached, Ok(Ok(_))),
        "the Rust end never reached {want:?} (now {:?}); {:?}",
        *link.mode().borrow(),
        rt.block_on(link.stats())
    );
}

/// Every text the Rust end received so far (bounded waits for `count` of them).
fn rust_receive(rt: &tokio::runtime::Runtime, link: &Link, count: usize, got: &mut Vec<String>) {
    rt.block_on(async {
        while got.len() < count {
            let incoming = tokio::time::timeout(Duration::from_secs(20), link.recv())
                .await
                .unwrap_or_else(|_| panic!("message {} in time: {got:?}", got.len()))
                .expect("open");
            match incoming {
                Incoming::Message(m) => got.push(m.text().expect("text").to_owned()),
                Incoming::Error(e) => panic!("the Rust end reported {e}"),
                Incoming::Closed(r) => panic!("the Rust end closed: {r:?}"),
            }
        }
    });
}

fn page_force_relay(pages: &mut Pages, on: bool) {
    pages.call(
        "web",
        "(H, on) => { H.record('rust').link.forceRelay(on); }",
        json!(on),
        SHORT,
    );
}

/// Which end opens the link.
#[derive(Clone, Copy, Debug)]
enum Opener {
    Rust,
    Page,
    Both,
}

fn run(opener: Opener) {
    // RUST_LOG=turnpike=debug shows the Rust end's WebRTC decisions.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = Server::start(registry_conf(""));
    let mut pages = Pages::start(&[BrowserSpec::chromium("b")], &[("web", "b")], 150);
    pages.connect(
        "web",
        json!({
            "url": format!("ws://{}/v1/registry", server.http), "token": peer_token("web"),
            "iceTransportPolicy": "relay", "fallbackAfterMs": 10000,
        }),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let session = rust_session(&rt, &server);
    let link = match opener {
        Opener::Rust => {
            let link = rt.block_on(session.link("web")).unwrap();
            rt.block_on(link.send_text("r0")).unwrap();
            // The page's end exists once the Rust end's first signal arrived (no glare).
            let there = pages.call(
                "web",
                "(H) => H.waitFor((H) => H.records.has('rust'), 10000)",
                Value::Null,
                SHORT + SHORT,
            );
            assert_eq!(
                there, true,
                "the Rust end's signaling never reached the page"
            );
            assert_eq!(pages.send("web", "rust", json!("w0"))["ok"], true);
            link
        }
        Opener::Page => {
            pages.open_link("web", "rust");
            assert_eq!(pages.send("web", "rust", json!("w0"))["ok"], true);
            let link = rt.block_on(async {
                loop {
                    let event = tokio::time::timeout(Duration::from_secs(10), session.next_event())
                        .await
                        .expect("the page's link arrives")
                        .expect("session open");
                    if let SessionEvent::Link(link) = event {
                        break link;
                    }
                }
            });
            rt.block_on(link.send_text("r0")).unwrap();
            link
        }
        Opener::Both => {
            // Glare: both ends offer before either hears the other. The Rust end ("rust" <
            // "web") is polite: it rolls its offer back and answers; the page ignores ours.
            pages.open_link("web", "rust");
            let link = rt.block_on(session.link("web")).unwrap();
            rt.block_on(link.send_text("r0")).unwrap();
            assert_eq!(pages.send("web", "rust", json!("w0"))["ok"], true);
            link
        }
    };
    let (mut rust_sent, mut web_sent) = (1usize, 1usize);

    // Phase 1: p2p on both sides, through turnpike's TURN.
    let s = pages.wait_mode("web", "rust", "p2p", 30_000);
    assert_eq!(
        s["mode"],
        "p2p",
        "the page did not reach p2p: {s}\n{}",
        pages.log_text()
    );
    wait_rust_mode(&rt, &link, Mode::P2p, Duration::from_secs(30));
    let s = pages.summary("web", "rust");
    assert_eq!(s["stats"]["localCandidateType"], "relay", "{s}");
    let exchange = |pages: &mut Pages, rust_sent: &mut usize, web_sent: &mut usize| {
        for _ in 0..PER_PHASE {
            rt.block_on(link.send_text(format!("r{rust_sent}")))
                .unwrap();
            *rust_sent += 1;
            let r = pages.send("web", "rust", json!(format!("w{web_sent}")));
            assert_eq!(r["ok"], true, "{r}");
            *web_sent += 1;
        }
    };
    exchange(&mut pages, &mut rust_sent, &mut web_sent);
    let p2p_before = pages.summary("web", "rust")["stats"]["p2pBytes"]
        .as_u64()
        .unwrap();
    assert!(p2p_before > 0);

    // Phase 2: forced onto the relay, both ends.
    page_force_relay(&mut pages, true);
    rt.block_on(link.force_relay(true));
    let s = pages.wait_mode("web", "rust", "relay", 10_000);
    assert_eq!(s["mode"], "relay", "{s}");
    wait_rust_mode(&rt, &link, Mode::Relay, Duration::from_secs(10));
    let relay_before = rt.block_on(link.stats()).unwrap().relay_bytes;
    exchange(&mut pages, &mut rust_sent, &mut web_sent);

    // Phase 3: released; both back to p2p (the probe round trip on the open channel).
    page_force_relay(&mut pages, false);
    rt.block_on(link.force_relay(false));
    let s = pages.wait_mode("web", "rust", "p2p", 20_000);
    assert_eq!(s["mode"], "p2p", "{s}");
    wait_rust_mode(&rt, &link, Mode::P2p, Duration::from_secs(20));
    exchange(&mut pages, &mut rust_sent, &mut web_sent);

    // Everything, once, in order, both ways.
    let mut at_rust = Vec::new();
    rust_receive(&rt, &link, web_sent, &mut at_rust);
    assert_exactly_once_in_order("the Rust end", &at_rust, "w", web_sent as u64);
    let s = pages.wait_received("web", "rust", rust_sent as u64, 20_000);
    let got = texts(&pages.messages("web", "rust"));
    assert_exactly_once_in_order("the page", &got, "r", rust_sent as u64);
    assert_eq!(s["errors"], json!([]), "{s}");
    let modes: Vec<&str> = s["modes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mode"].as_str())
        .collect();
    assert!(
        modes.windows(3).any(|w| w == ["p2p", "relay", "p2p"]),
        "the page: {modes:?}"
    );
    let stats = rt.block_on(link.stats()).unwrap();
    assert!(stats.relay_bytes > relay_before, "{stats:?}");
    let p2p_after = s["stats"]["p2pBytes"].as_u64().unwrap();
    assert!(p2p_after > p2p_before, "{s}");
    let summary: Value = s;
    println!(
        "rust<->chromium ({opener:?} opens): {} + {} messages; page {summary}",
        rust_sent, web_sent
    );
    rt.block_on(session.close());
}

#[test]
fn rust_offers_chromium_answers_p2p_then_relay_and_back() {
    run(Opener::Rust);
}

#[test]
fn chromium_offers_rust_answers_p2p_then_relay_and_back() {
    run(Opener::Page);
}

#[test]
fn offer_glare_resolves_to_p2p_then_relay_and_back() {
    run(Opener::Both);
}
