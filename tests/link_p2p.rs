//! The Rust SDK's direct path end to end: two in-process sessions (`turnpike::client::Session`
//! with the str0m `WebRtcConnector`) against the real turnpike binary, ICE servers from the
//! registry's `welcome.ice_servers`, `iceTransportPolicy: relay` (so the DataChannel runs
//! through turnpike's own TURN, relay candidate to relay candidate):
//!
//! 1. both ends reach mode `p2p` (a probe round trip on the DataChannel) and messages flow
//!    there, both ways, in order; `stats()` names the selected pair's candidate types
//!    (`relay` on both sides);
//! 2. 2,000 numbered messages while the link goes p2p -> relay -> p2p (`force_relay` on, then
//!    off, on both ends): each delivered exactly once, in order, and bytes went on both paths;
//! 3. ICE servers that cannot be reached: the link falls back to the relay and carries on.
//!
//! Every wait is bounded.

mod common;
mod registry_support;

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use std::time::Duration;

use registry_support::TestRegistry;
use tokio::time::timeout;
use turnpike::client::p2p::IceTransportPolicy;
use turnpike::client::webrtc::WebRtcConnector;
use turnpike::client::{
    IceServer, Incoming, KeyPair, Link, Session, SessionConfig, SessionEvent, TokenSource,
};
use turnpike::link::Mode;

const PROJECT: &str = "p2p";

async fn session(registry: &TestRegistry, me: &str, ice: Option<Vec<IceServer>>) -> Session {
    let mut config = SessionConfig::new(
        registry.url(),
        TokenSource::Fixed(registry.token(me, PROJECT)),
        KeyPair::generate(),
    );
    config.fallback_after = Duration::from_secs(3);
    config.ice_transport_policy = IceTransportPolicy::Relay;
    config.ice_servers = ice;
    config.p2p = Some(Arc::new(WebRtcConnector::new()));
    timeout(Duration::from_secs(10), Session::connect(config))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// The link the peer opened, as a session event.
async fn accepted(session: &Session) -> Link {
    loop {
        let event = timeout(Duration::from_secs(10), session.next_event())
            .await
            .expect("a link event in time")
            .expect("session open");
        if let SessionEvent::Link(link) = event {
            return link;
        }
    }
}

async fn wait_mode(link: &Link, want: Mode, limit: Duration) {
    let mut modes = link.mode();
    let reached = timeout(limit, modes.wait_for(|m| *m == want)).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "{} never reached {want:?} (now {:?}); stats {:?}",
        link.peer(),
        *link.mode().borrow(),
        link.stats().await
    );
}

async fn next_text(link: &Link) -> String {
    let incoming = timeout(Duration::from_secs(20), link.recv())
        .await
        .expect("a message in time")
        .expect("link open");
    match incoming {
        Incoming::Message(m) => m.text().expect("text").to_owned(),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Alice opens the link, sends "hello"; bob's end arrives with it. Both reach p2p.
async fn p2p_pair(registry: &TestRegistry) -> (Session, Session, Link, Link) {
    let alice = session(registry, "alice", None).await;
    let bob = session(registry, "bob", None).await;
    let to_bob = alice.link("bob").await.unwrap();
    to_bob.send_text("hello").await.unwrap();
    let to_alice = accepted(&bob).await;
    assert_eq!(next_text(&to_alice).await, "hello");
    wait_mode(&to_bob, Mode::P2p, Duration::from_secs(20)).await;
    wait_mode(&to_alice, Mode::P2p, Duration::from_secs(20)).await;
    (alice, bob, to_bob, to_alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_sessions_go_p2p_through_turnpikes_turn() {
    let registry = TestRegistry::start("");
    let (_alice, _bob, to_bob, to_alice) = p2p_pair(&registry).await;
    let before = to_bob.stats().await.unwrap();
    for i in 0..100 {
        to_bob.send_text(format!("a{i}")).await.unwrap();
        to_alice.send_text(format!("b{i}")).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(next_text(&to_alice).await, format!("a{i}"));
        assert_eq!(next_text(&to_bob).await, format!("b{i}"));
    }
    timeout(Duration::from_secs(10), to_bob.flush())
        .await
        .expect("flushed in time")
        .unwrap();
    let after = to_bob.stats().await.unwrap();
    assert_eq!(*to_bob.mode().borrow(), Mode::P2p);
    assert!(
        after.p2p_bytes >= before.p2p_bytes + 100 * 20,
        "the messages went on the DataChannel: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.relay_bytes, before.relay_bytes,
        "nothing more on the relay once p2p: {before:?} -> {after:?}"
    );
    // `stats()` names the selected pair's candidate types, as the browser SDK's does: with
    // the relay policy, TURN relay candidates on both sides.
    for stats in [after, to_alice.stats().await.unwrap()] {
        assert_eq!(
            stats.local_candidate_type.as_deref(),
            Some("relay"),
            "{stats:?}"
        );
        assert_eq!(
            stats.remote_candidate_type.as_deref(),
            Some("relay"),
            "{stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_exactly_once_in_order_across_forced_switches() {
    const COUNT: usize = 2000;
    let registry = TestRegistry::start("");
    let (_alice, _bob, to_bob, to_alice) = p2p_pair(&registry).await;
    let start = to_bob.stats().await.unwrap();
    let sender = to_bob.clone();
    let other = to_alice.clone();
    let pump = tokio::spawn(async move {
        for i in 0..COUNT {
            if i == 500 {
                sender.force_relay(true).await;
                other.force_relay(true).await;
            }
            if i == 1200 {
                sender.force_relay(false).await;
                other.force_relay(false).await;
            }
            sender.send_text(format!("m{i}")).await.expect("send");
            if i % 10 == 0 {
                // Traffic spread over about a second: each path carries a good share.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let mut modes = to_bob.mode();
    let mut seen = vec![*modes.borrow_and_update()];
    for i in 0..COUNT {
        let got = timeout(Duration::from_secs(30), to_alice.recv())
            .await
            .unwrap_or_else(|_| panic!("message {i} in time; modes {seen:?}"))
            .expect("open");
        match got {
            Incoming::Message(m) => assert_eq!(m.text(), Some(format!("m{i}").as_str())),
            other => panic!("message {i}: {other:?}"),
        }
        if modes.has_changed().unwrap_or(false) {
            seen.push(*modes.borrow_and_update());
        }
    }
    pump.await.unwrap();
    wait_mode(&to_bob, Mode::P2p, Duration::from_secs(20)).await;
    seen.push(*to_bob.mode().borrow());
    seen.dedup();
    assert!(
        seen.windows(3)
            .any(|w| w == [Mode::P2p, Mode::Relay, Mode::P2p]),
        "p2p -> relay -> p2p: {seen:?}"
    );
    timeout(Duration::from_secs(20), to_bob.flush())
        .await
        .expect("flushed in time")
        .unwrap();
    let end = to_bob.stats().await.unwrap();
    assert!(
        end.relay_bytes > start.relay_bytes + 3_000,
        "{start:?} -> {end:?}"
    );
    assert!(
        end.p2p_bytes > start.p2p_bytes + 10_000,
        "{start:?} -> {end:?}"
    );
    let none = timeout(Duration::from_millis(300), to_alice.recv()).await;
    assert!(none.is_err(), "nothing after the last message: {none:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ice_servers_fall_back_to_the_relay() {
    let registry = TestRegistry::start("");
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let ice = vec![IceServer {
        urls: vec![format!("turn:127.0.0.1:{port}?transport=udp")],
        username: "1:x".into(),
        credential: "x".into(),
    }];
    let alice = session(&registry, "alice", Some(ice.clone())).await;
    let bob = session(&registry, "bob", Some(ice)).await;
    let to_bob = alice.link("bob").await.unwrap();
    to_bob.send_text("over the relay").await.unwrap();
    let to_alice = accepted(&bob).await;
    assert_eq!(next_text(&to_alice).await, "over the relay");
    assert_eq!(*to_bob.mode().borrow(), Mode::Relay);
    // Bob's end was created by that frame: it falls back on its own timer (or sooner, when
    // its TURN allocation fails), and answers on the relay.
    wait_mode(&to_alice, Mode::Relay, Duration::from_secs(10)).await;
    to_alice.send_text("and back").await.unwrap();
    assert_eq!(next_text(&to_bob).await, "and back");
}

/// `turns:` only: the registry's `welcome.ice_servers`, kept to its one `turns:` URL (the TLS
/// listener shared with HTTPS, the port-443 set-up for networks that let nothing else out),
/// with the welcome's own credentials. Both agents allocate over TLS, reach p2p through it
/// (relay policy), and messages flow there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_sessions_go_p2p_through_turns_on_the_shared_https_port() {
    use common::pki::Pki;
    let pki = Pki::temporary();
    let leaf = pki.leaf("turnpike");
    let server = common::Server::start(common::Conf {
        tls_http: true,
        tls_files: leaf.tls_files(),
        extra_toml: format!(
            "[registry]\nenabled = true\njwt_secrets = [\"{}\"]\n",
            registry_support::JWT_SECRET
        ),
        ..common::Conf::default()
    });
    let shared = server.tls_http.expect("the shared TLS listener");
    let registry = TestRegistry {
        addr: server.http,
        server,
    };
    // The welcome's ice_servers, only the `turns:` URL of the shared port.
    let (probe, _) = registry.client("probe", PROJECT).await;
    let mut ice = probe.ice_servers().expect("welcome.ice_servers");
    for server in &mut ice {
        server
            .urls
            .retain(|u| u.starts_with("turns:") && u.contains(&format!(":{}", shared.port())));
    }
    ice.retain(|s| !s.urls.is_empty());
    assert_eq!(ice.len(), 1, "one turns: URL: {ice:?}");
    drop(probe);
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca_pem).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = turnpike::client::turn::tls_client_config(roots);
    let session = |me: &'static str| {
        let mut config = SessionConfig::new(
            registry.url(),
            TokenSource::Fixed(registry.token(me, PROJECT)),
            KeyPair::generate(),
        );
        config.fallback_after = Duration::from_secs(5);
        config.ice_transport_policy = IceTransportPolicy::Relay;
        config.ice_servers = Some(ice.clone());
        config.p2p = Some(Arc::new(WebRtcConnector::new().with_tls(tls.clone())));
        async move {
            timeout(Duration::from_secs(10), Session::connect(config))
                .await
                .expect("connect in time")
                .expect("connect")
        }
    };
    let (_alice, bob) = (session("alice").await, session("bob").await);
    let to_bob = _alice.link("bob").await.unwrap();
    to_bob.send_text("hello").await.unwrap();
    let to_alice = accepted(&bob).await;
    assert_eq!(next_text(&to_alice).await, "hello");
    wait_mode(&to_bob, Mode::P2p, Duration::from_secs(20)).await;
    wait_mode(&to_alice, Mode::P2p, Duration::from_secs(20)).await;
    for i in 0..20 {
        to_bob.send_text(format!("a{i}")).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(next_text(&to_alice).await, format!("a{i}"));
    }
    let stats = to_bob.stats().await.unwrap();
    assert_eq!(
        stats.local_candidate_type.as_deref(),
        Some("relay"),
        "{stats:?}"
    );
    assert!(stats.p2p_bytes > 0, "{stats:?}");
    // Both allocations were made over TLS.
    let metrics = registry.metrics();
    let tls_allocations: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("turnpike_allocations_created_total") && l.contains("transport=\"tls\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        tls_allocations >= 2.0,
        "TLS allocations: {tls_allocations}\n{metrics}"
    );
}
