//! The registry holds its budget, against the real binary over loopback: a peer that does not
//! read is closed with 4007 (`over_budget`) once what is queued for it reaches its byte budget;
//! errors quote only a short prefix of the input; connections are counted per IPv6 /64 (in a
//! network namespace of the test's own); `registry.listen` drops a client that does not send
//! its headers; binary frames before `join` and malformed ones are rate-limited like text; and
//! a project's peers share a message rate.

mod common;
mod registry_support;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use registry_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use turnpike::client::KeyPair;
use turnpike::registry::messages::build_relay;

/// The value of one line of `/metrics` (`name{labels} value`), 0 when absent.
fn metric(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_is_closed_over_budget() {
    // A 64 KiB budget per peer; limits loose enough that only the budget stops the flood.
    let registry = TestRegistry::start(
        "peer_budget_bytes = 65536\nmax_payload_bytes = 16384\nmessages_per_sec = 100000\n\
         signal_queue_messages = 100000\nsignal_queue_bytes = 100000000\n\
         project_messages_per_sec = 0",
    );
    let (mut slow, _) = raw_join(
        &registry.url(),
        &registry.token("slow", "p"),
        &KeyPair::generate(),
    )
    .await;
    let (mut fast, _) = raw_join(
        &registry.url(),
        &registry.token("fast", "p"),
        &KeyPair::generate(),
    )
    .await;
    let _ = recv_json(&mut slow).await; // peer_joined fast
    // 16 KB offers to a peer that reads nothing: the kernel's buffers fill first (a few MB on
    // loopback), then the 64 KiB the server may queue for it, then the offers are refused.
    let payload = json!({"sdp": "x".repeat(16_000)});
    let mut refused = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in 0..5000u64 {
        send_json(
            &mut fast,
            &json!({"type": "webrtc_offer", "to_peer_id": "slow", "payload": payload, "id": id}),
        )
        .await;
        // Errors come back as they happen; read what is there without waiting.
        while let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(1), fast.next()).await
        {
            let error: Value = serde_json::from_str(text.as_str()).unwrap();
            refused = Some(error);
        }
        if refused.is_some() || Instant::now() > deadline {
            break;
        }
    }
    let refused = refused.expect("an offer beyond the budget is refused");
    assert_eq!(refused["code"], "over_budget", "{refused}");
    assert_eq!(refused["to_peer_id"], "slow", "{refused}");
    let metrics = registry.metrics();
    let queued = metric(&metrics, "turnpike_registry_queued_bytes");
    assert!(
        queued <= 65_536,
        "what is queued for the slow peer stays within its budget: {queued}"
    );
    // Control messages for the slow peer (the errors answering its own offers to nobody,
    // about 150 bytes each) soon no longer fit: it is closed with 4007, after what the kernel
    // already holds (long before the 2064 control messages of slow_consumer).
    for id in 0..1500 {
        send_json(
            &mut slow,
            &json!({"type": "webrtc_offer", "to_peer_id": "nobody", "payload": {}, "id": id}),
        )
        .await;
    }
    let close = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("closed within 30 s")
    .expect("a close frame");
    assert_eq!(
        (u16::from(close.code), close.reason.as_str()),
        (4007, "over_budget")
    );
    let metrics = registry.metrics();
    assert_eq!(
        metric(
            &metrics,
            "turnpike_registry_closes_total{reason=\"over_budget\"}"
        ),
        1
    );
    assert!(
        metric(
            &metrics,
            "turnpike_registry_errors_total{code=\"over_budget\"}"
        ) >= 1
    );
    // Its queue was given back (what remains for the fast peer drains at once); the other
    // peer is still served.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&registry.metrics(), "turnpike_registry_queued_bytes") != 0 {
        assert!(Instant::now() < deadline, "{}", registry.metrics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_json(&mut fast, &json!({"type": "ping"})).await;
    loop {
        let message = recv_json(&mut fast).await;
        if message["type"] == "pong" {
            break;
        }
        assert!(
            message["code"] == "over_budget"
                || message["code"] == "undelivered"
                || message["type"] == "peer_left",
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_quote_only_a_short_prefix_of_the_input() {
    let registry = TestRegistry::start("");
    let (mut alice, _) = raw_join(
        &registry.url(),
        &registry.token("alice", "p"),
        &KeyPair::generate(),
    )
    .await;
    let long = "A".repeat(10_000);
    for (message, code) in [
        (json!({"type": long}), "unknown_type"),
        (
            json!({"type": "webrtc_offer", "to_peer_id": "bob", "payload": {}, "id": long}),
            "bad_message",
        ),
        (
            json!({"type": "join", "public_key": long}),
            "already_joined",
        ),
        (json!({"type": "reauth", "token": long}), "invalid_token"),
    ] {
        send_json(&mut alice, &message).await;
        let error = recv_json(&mut alice).await;
        assert_eq!(error["code"], code, "{error}");
        let text = error.to_string();
        assert!(
            !text.contains(&"A".repeat(33)),
            "{code}: at most 32 bytes of the input are quoted: {text}"
        );
        assert!(text.len() < 512, "{code}: {} bytes", text.len());
    }
    // The unknown type is still recognisable by its prefix.
    send_json(&mut alice, &json!({"type": format!("teleport{long}")})).await;
    let error = recv_json(&mut alice).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown message type `teleportAAAA"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_before_join_and_malformed_ones_are_rate_limited() {
    // 5 messages per second, a burst of 10.
    let registry = TestRegistry::start("messages_per_sec = 5\nproject_messages_per_sec = 0");
    let mut early = raw_connect(
        &registry.url(),
        Carry::Header(&registry.token("early", "p")),
    )
    .await
    .expect("upgrade");
    for _ in 0..200 {
        send_binary(&mut early, build_relay("bob", &[7; 64])).await;
    }
    let mut answered = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(700), early.next()).await
    {
        if let Message::Text(text) = message {
            let error: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(error["code"], "not_joined", "{error}");
            answered += 1;
        }
    }
    assert!(
        (10..=20).contains(&answered),
        "the burst (10) and what refilled are answered, not 200: {answered}"
    );
    let metrics = registry.metrics();
    let limited = metric(
        &metrics,
        "turnpike_registry_relay_drops_total{reason=\"rate_limited\"}",
    );
    assert_eq!(limited, 200 - answered, "the rest are dropped and counted");

    // Malformed frames after the join: the same.
    let (mut joined, _) = raw_join(
        &registry.url(),
        &registry.token("joined", "p"),
        &KeyPair::generate(),
    )
    .await;
    for _ in 0..200 {
        send_binary(&mut joined, vec![0]).await;
    }
    let mut answered = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_millis(700), joined.next()).await
    {
        if let Message::Text(text) = message {
            let error: Value = serde_json::from_str(text.as_str()).unwrap();
            assert_eq!(error["code"], "bad_frame", "{error}");
            answered += 1;
        }
    }
    assert!(
        (9..=20).contains(&answered),
        "malformed frames: the burst and what refilled are answered, not 200: {answered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_shares_one_message_rate() {
    // 10 messages per second per project, a burst of 20; the peers' own limit is far higher.
    let registry = TestRegistry::start("messages_per_sec = 10000\nproject_messages_per_sec = 10");
    let mut sockets = Vec::new();
    for name in ["a", "b"] {
        let (socket, _) = raw_join(
            &registry.url(),
            &registry.token(name, "busy"),
            &KeyPair::generate(),
        )
        .await;
        sockets.push(socket);
    }
    let (mut other, _) = raw_join(
        &registry.url(),
        &registry.token("c", "calm"),
        &KeyPair::generate(),
    )
    .await;
    for _ in 0..30 {
        for socket in &mut sockets {
            send_json(socket, &json!({"type": "ping"})).await;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    for socket in &mut sockets {
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_millis(500), socket.next()).await
        {
            let Message::Text(text) = message else {
                continue;
            };
            let message: Value = serde_json::from_str(text.as_str()).unwrap();
            match message["type"].as_str() {
                Some("pong") => pongs += 1,
                Some("error") => {
                    assert_eq!(message["code"], "project_rate_limited", "{message}");
                    assert_eq!(message["ref"], "ping");
                    limited += 1;
                }
                _ => {} // peer_joined
            }
        }
    }
    assert_eq!(pongs + limited, 60);
    assert!(
        (20..=30).contains(&pongs),
        "the project's burst (20) and what refilled are served, not 60: {pongs}"
    );
    // Another project is not affected.
    send_json(&mut other, &json!({"type": "ping"})).await;
    assert_eq!(recv_json(&mut other).await["type"], "pong");
    let metrics = registry.metrics();
    assert_eq!(
        metric(
            &metrics,
            "turnpike_registry_errors_total{code=\"project_rate_limited\"}"
        ),
        limited
    );
}

#[test]
fn the_registry_listener_drops_a_client_that_does_not_send_its_headers() {
    let registry = TestRegistry::start_on_own_listener("");
    let mut stream = std::net::TcpStream::connect(registry.addr).expect("connect");
    stream
        .write_all(b"GET /v1/registry HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buffer = [0u8; 256];
    let read = stream.read(&mut buffer);
    let waited = started.elapsed();
    assert!(
        matches!(read, Ok(0))
            || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
            || matches!(read, Ok(n) if n > 0 && buffer.starts_with(b"HTTP/1.1 408")),
        "the server ends the connection: {read:?} after {waited:?}"
    );
    assert!(
        (Duration::from_secs(8)..Duration::from_secs(18)).contains(&waited),
        "after the 10 s header timeout, not before and not never: {waited:?}"
    );
}

/// Opens a registry WebSocket to `server` from the local address `from` (port chosen by the
/// kernel); `Err(status)` when the upgrade is refused.
async fn connect_from(from: IpAddr, server: SocketAddr, token: &str) -> Result<Socket, u16> {
    let socket = match from {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let stream = socket.connect(server).await.expect("connect");
    let mut request = format!("ws://{server}/v1/registry")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    match tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade from {from}: {e}"),
    }
}

#[test]
fn connections_are_counted_per_ipv6_64() {
    let ns = common::netns::Netns::create("v6cap");
    for address in [
        "fd00:1::1/64",
        "fd00:1::2/64",
        "fd00:1::3/64",
        "fd00:2::1/64",
    ] {
        ns.run(&["ip", "-6", "addr", "add", address, "dev", "lo", "nodad"]);
    }
    // Everything below runs inside the namespace: the server (a child of that thread) and
    // the clients.
    ns.enter(|| {
        let registry =
            TestRegistry::start("listen = \"[fd00:1::1]:0\"\nmax_connections_per_ip = 2");
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener: SocketAddr = loop {
            let log = registry.server.log();
            if let Some(rest) = log.split("registry listening on ws://").nth(1) {
                break rest.split("/v1").next().unwrap().parse().unwrap();
            }
            assert!(Instant::now() < deadline, "no registry listener:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let token = |name: &str| registry.token(name, "p");
            let ip = |text: &str| text.parse::<IpAddr>().unwrap();
            let mut held = Vec::new();
            held.push(
                connect_from(ip("fd00:1::2"), listener, &token("a"))
                    .await
                    .expect("first of the /64"),
            );
            held.push(
                connect_from(ip("fd00:1::3"), listener, &token("b"))
                    .await
                    .expect("second of the /64, another address"),
            );
            assert_eq!(
                connect_from(ip("fd00:1::1"), listener, &token("c"))
                    .await
                    .err(),
                Some(429),
                "a third address of the same /64 is refused"
            );
            held.push(
                connect_from(ip("fd00:2::1"), listener, &token("d"))
                    .await
                    .expect("another /64 is counted apart"),
            );
            for socket in &mut held {
                let _ = socket.close(None).await;
            }
        });
        let metrics = registry.metrics();
        assert_eq!(
            metric(
                &metrics,
                "turnpike_registry_connections_refused_total{reason=\"too_many_connections\"}"
            ),
            1
        );
    });
}
