//! The registry against the real binary over loopback: signaling and relay between three peers
//! in two projects, end-to-end encryption and replay protection, and every kind of bad input.

mod common;
mod registry_support;

use std::time::Duration;

use registry_support::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use turnpike::client::seal::public_key_from_base64;
use turnpike::client::{Event, KeyPair, Sealer};
use turnpike::registry::messages::{SignalKind, build_relay};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_in_two_projects() {
    let registry = TestRegistry::start("");
    let (mut alice, peers) = registry.client("alice", "p1").await;
    assert!(peers.is_empty());
    let (mut bob, peers) = registry.client("bob", "p1").await;
    assert_eq!(peers, vec!["alice"]);
    let (mut carol, peers) = registry.client("carol", "p2").await;
    assert!(peers.is_empty(), "p1's peers are invisible from p2");
    assert!(
        matches!(next(&mut alice).await, Event::PeerJoined { peer_id, .. } if peer_id == "bob")
    );

    // Offers, answers and candidates arrive intact, inside the project only.
    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\n", "ünï": [1, 2.5, null]});
    alice
        .signal(SignalKind::Offer, "bob", &offer, None)
        .await
        .unwrap();
    match next(&mut bob).await {
        Event::Signal {
            kind,
            from,
            payload,
        } => {
            assert_eq!((kind, from.as_str()), (SignalKind::Offer, "alice"));
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
                offer
            );
        }
        other => panic!("{other:?}"),
    }
    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});
    bob.signal(SignalKind::Answer, "alice", &answer, None)
        .await
        .unwrap();
    let candidate = json!({"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    bob.signal(SignalKind::IceCandidate, "alice", &candidate, None)
        .await
        .unwrap();
    for (want_kind, want) in [
        (SignalKind::Answer, &answer),
        (SignalKind::IceCandidate, &candidate),
    ] {
        match next(&mut alice).await {
            Event::Signal {
                kind,
                from,
                payload,
            } => {
                assert_eq!((kind, from.as_str()), (want_kind, "bob"));
                assert_eq!(
                    &serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
                    want
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Across projects: refused with an error, nothing arrives.
    carol
        .signal(SignalKind::Offer, "alice", &offer, Some(42))
        .await
        .unwrap();
    match next(&mut carol).await {
        Event::Error {
            code,
            refers_to,
            id,
            to_peer_id,
            ..
        } => {
            assert_eq!(code, "unknown_peer");
            assert_eq!(refers_to.as_deref(), Some("webrtc_offer"));
            assert_eq!((id, to_peer_id.as_deref()), (Some(42), Some("alice")));
        }
        other => panic!("{other:?}"),
    }
    // A relay blob for another project's peer is refused with an error.
    carol.relay("alice", b"x").await.unwrap_err(); // the client knows no key for alice
    let carol_keys = KeyPair::generate();
    let (mut raw_carol, _) = raw_join(
        &registry.url(),
        &registry.token("carol2", "p2"),
        &carol_keys,
    )
    .await;
    send_binary(&mut raw_carol, build_relay("alice", &[7; 64])).await;
    let error = recv_json(&mut raw_carol).await;
    assert_eq!(
        (
            error["code"].as_str(),
            error["ref"].as_str(),
            error["to_peer_id"].as_str()
        ),
        (Some("unknown_peer"), Some("relay"), Some("alice"))
    );
    assert!(matches!(next(&mut carol).await, Event::PeerJoined { .. }));
    // Relay between the two p1 peers works both ways.
    alice.relay("bob", b"through the relay").await.unwrap();
    match next(&mut bob).await {
        Event::Relay { from, message } => {
            assert_eq!(
                (from.as_str(), message.as_slice()),
                ("alice", &b"through the relay"[..])
            )
        }
        other => panic!("{other:?}"),
    }
    for client in [&mut alice, &mut bob, &mut carol] {
        silent(client, Duration::from_millis(300))
            .await
            .expect("nothing else arrives");
    }
    // The same /metrics as the rest of the server reports the registry.
    let metrics = registry.metrics();
    for line in [
        "turnpike_registry_peers 4",
        "turnpike_registry_projects 2",
        "turnpike_registry_signaling_messages_total{type=\"webrtc_offer\"} 1",
        "turnpike_registry_signaling_messages_total{type=\"webrtc_ice_candidate\"} 1",
        "turnpike_registry_relay_blobs_total 1",
        "turnpike_registry_relay_drops_total{reason=\"unknown_peer\"} 1",
        "turnpike_registry_errors_total{code=\"unknown_peer\"} 2",
        "turnpike_registry_project_relay_blobs_total{project=\"p1\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in /metrics:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_bytes_are_opaque_and_replays_are_rejected() {
    let registry = TestRegistry::start("");
    let url = registry.url();
    // bob is a raw socket: the test sees the exact bytes the server forwards.
    let bob_keys = KeyPair::generate();
    let (mut bob, _) = raw_join(&url, &registry.token("bob", "p1"), &bob_keys).await;
    let (alice, peers) = registry.client("alice", "p1").await;
    assert_eq!(peers, vec!["bob"]);
    let joined = recv_json(&mut bob).await;
    assert_eq!(joined["type"], "peer_joined");
    let alice_key = public_key_from_base64(joined["public_key"].as_str().unwrap()).unwrap();

    let secret = b"the plaintext the server must never see";
    alice.relay("bob", secret).await.unwrap();
    let frame = recv_binary(&mut bob).await;
    assert_eq!(
        &frame[..6],
        b"\x05alice",
        "the source id replaces the destination"
    );
    assert!(
        !frame.windows(8).any(|w| secret.windows(8).any(|s| s == w)),
        "no 8-byte run of the plaintext is on the wire"
    );
    let mut bob_sealer = Sealer::new(bob_keys.clone(), 0);
    assert_eq!(bob_sealer.open(&alice_key, &frame[6..]).unwrap(), secret);

    // A blob replayed through the relay is rejected by the receiving Rust client.
    let (mut carol, _) = registry.client("carol", "p1").await;
    let joined = recv_json(&mut bob).await;
    assert_eq!(joined["peer_id"], "carol");
    let carol_key = public_key_from_base64(joined["public_key"].as_str().unwrap()).unwrap();
    let mut sender = Sealer::new(bob_keys, 1_000);
    let sealed = sender.seal(&carol_key, b"pay 5 euros");
    send_binary(&mut bob, build_relay("carol", &sealed)).await;
    send_binary(&mut bob, build_relay("carol", &sealed)).await; // the replay
    match next(&mut carol).await {
        Event::Relay { from, message } => {
            assert_eq!((from.as_str(), &message[..]), ("bob", &b"pay 5 euros"[..]))
        }
        other => panic!("{other:?}"),
    }
    match next(&mut carol).await {
        Event::RelayRejected { from, reason } => {
            assert_eq!(from, "bob");
            assert!(reason.contains("replay"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    drop(alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_answered_and_the_others_keep_being_served() {
    let registry = TestRegistry::start("");
    let url = registry.url();
    let (mut watcher, _) = registry.client("watcher", "p1").await;
    // A pinned key: the wrong one is refused, the right one joins on the same connection.
    let keys = KeyPair::generate();
    let mut pinned = claims("mallory", "p1");
    pinned.pk = Some(keys.public_base64());
    let mut socket = raw_connect(&url, Carry::Header(&token(&pinned)))
        .await
        .unwrap();
    let wrong = KeyPair::generate().public_base64();
    send_json(&mut socket, &json!({"type": "join", "public_key": wrong})).await;
    let error = recv_json(&mut socket).await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("public_key_mismatch"), Some("join"))
    );
    send_json(
        &mut socket,
        &json!({"type": "join", "public_key": keys.public_base64()}),
    )
    .await;
    assert_eq!(recv_json(&mut socket).await["type"], "welcome");
    assert!(
        matches!(next(&mut watcher).await, Event::PeerJoined { peer_id, .. } if peer_id == "mallory")
    );

    let big = "x".repeat(40_000);
    let cases: Vec<(Message, &str, serde_json::Value)> = vec![
        (Message::text("{not json"), "bad_json", json!(null)),
        (
            Message::text(r#"{"type":"teleport"}"#),
            "unknown_type",
            json!("teleport"),
        ),
        (
            Message::text(
                json!({"type": "webrtc_offer", "to_peer_id": "watcher", "payload": big})
                    .to_string(),
            ),
            "payload_too_large",
            json!("webrtc_offer"),
        ),
        (
            Message::text(r#"{"type":"webrtc_answer","payload":{}}"#),
            "bad_message",
            json!("webrtc_answer"),
        ),
        (
            Message::binary(vec![5, b'a']),
            "frame_too_short",
            json!("relay"),
        ),
        (Message::binary(vec![0; 100]), "bad_frame", json!("relay")),
    ];
    for (message, code, refers_to) in cases {
        socket.send_msg(message).await;
        let error = recv_json(&mut socket).await;
        assert_eq!(error["type"], "error");
        assert_eq!(
            (error["code"].as_str(), &error["ref"]),
            (Some(code), &refers_to),
            "{error}"
        );
        // The same connection still serves, and so does the server.
        send_json(&mut socket, &json!({"type": "ping"})).await;
        assert_eq!(recv_json(&mut socket).await, json!({"type": "pong"}));
    }
    send_json(
        &mut socket,
        &json!({"type": "webrtc_offer", "to_peer_id": "watcher", "payload": {"ok": true}}),
    )
    .await;
    match next(&mut watcher).await {
        Event::Signal { from, payload, .. } => assert_eq!(
            (from.as_str(), payload.as_str()),
            ("mallory", r#"{"ok":true}"#)
        ),
        other => panic!("{other:?}"),
    }
    // A frame over the WebSocket limit (128 KiB) ends that connection only.
    socket.send_msg(Message::binary(vec![1; 200_000])).await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match futures_util::StreamExt::next(&mut socket).await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within the wait");
    assert!(matches!(closed, Some(1009) | None), "{closed:?}");
    assert!(
        matches!(next(&mut watcher).await, Event::PeerLeft { peer_id } if peer_id == "mallory")
    );
    let (_again, peers) = registry.client("late", "p1").await;
    assert_eq!(peers, vec!["watcher"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_replaces_the_first() {
    let registry = TestRegistry::start("");
    let (mut first, _) = registry.client("bob", "p1").await;
    let (mut watcher, _) = registry.client("watcher", "p1").await;
    let (_second, peers) = registry.client("bob", "p1").await;
    assert_eq!(peers, vec!["watcher"]);
    let mut closed = None;
    for _ in 0..10 {
        match next(&mut first).await {
            Event::Closed { code, reason } => {
                closed = Some((code, reason));
                break;
            }
            Event::PeerJoined { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(closed, Some((Some(4001), "replaced".to_owned())));
    assert!(matches!(next(&mut watcher).await, Event::PeerLeft { peer_id } if peer_id == "bob"));
    assert!(
        matches!(next(&mut watcher).await, Event::PeerJoined { peer_id, .. } if peer_id == "bob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_unjoined_connections_are_closed() {
    let registry =
        TestRegistry::start("ping_interval_secs = 1\nidle_timeout_secs = 2\njoin_timeout_secs = 1");
    let url = registry.url();
    let mut unjoined = raw_connect(&url, Carry::Header(&registry.token("a", "p1")))
        .await
        .unwrap();
    match recv(&mut unjoined).await {
        Message::Close(Some(frame)) => assert_eq!(
            (u16::from(frame.code), frame.reason.as_str()),
            (4004, "join_timeout")
        ),
        other => panic!("{other:?}"),
    }
    // A client that answers pings (tungstenite does while it reads) stays; one that never
    // reads anything is closed as idle.
    let (mut alive, _) = registry.client("alive", "p1").await;
    let (mut silent_socket, _) =
        raw_join(&url, &registry.token("quiet", "p1"), &KeyPair::generate()).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut saw_close = None;
    for _ in 0..20 {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut silent_socket)).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                saw_close = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(Some(Ok(_))) => continue,
            _ => break,
        }
    }
    assert_eq!(saw_close, Some(4002));
    let mut left = None;
    for _ in 0..10 {
        match next(&mut alive).await {
            Event::PeerJoined { .. } => {}
            Event::PeerLeft { peer_id } => {
                left = Some(peer_id);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(left.as_deref(), Some("quiet"));
}

/// `send_msg` on a raw socket, panicking on failure.
trait SendMsg {
    async fn send_msg(&mut self, message: Message);
}

impl SendMsg for Socket {
    async fn send_msg(&mut self, message: Message) {
        futures_util::SinkExt::send(self, message)
            .await
            .expect("send");
    }
}

/// A TCP proxy in front of the registry that the test can cut (every open connection) and
/// take down (new connections are dropped at once) and bring back up.
struct Proxy {
    addr: std::net::SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU32>,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (cut, _) = tokio::sync::broadcast::channel(4);
        let (flag, count, cutter) = (down.clone(), accepted.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection fail
                }
                let mut cut = cutter.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            down,
            accepted,
            cut,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_with_back_off_and_rejoins() {
    use std::sync::atomic::Ordering;
    let registry = TestRegistry::start("");
    let proxy = Proxy::start(registry.addr).await;
    let keys = KeyPair::generate();
    let mut config = turnpike::client::ClientConfig::new(
        format!("ws://{}/v1/registry", proxy.addr),
        registry.token("roamer", "p1"),
        keys,
    );
    config.max_backoff = Duration::from_secs(1);
    let mut roamer = turnpike::client::RegistryClient::connect(config)
        .await
        .unwrap();
    assert!(matches!(next(&mut roamer).await, Event::Welcome { .. }));
    let (mut home, _) = registry.client("home", "p1").await;
    assert!(matches!(next(&mut roamer).await, Event::PeerJoined { .. }));

    // The network fails: the connection is cut and new ones fail for a while.
    proxy.down.store(true, Ordering::SeqCst);
    let before = proxy.accepted.load(Ordering::SeqCst);
    proxy.cut.send(()).unwrap();
    assert!(matches!(
        next(&mut roamer).await,
        Event::Disconnected { .. }
    ));
    assert!(matches!(next(&mut home).await, Event::PeerLeft { peer_id } if peer_id == "roamer"));
    assert!(
        roamer.relay("home", b"x").await.is_err(),
        "not connected meanwhile"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let attempts = proxy.accepted.load(Ordering::SeqCst) - before;
    assert!(
        (2..=8).contains(&attempts),
        "{attempts} attempts in 2.5 s: back-off (0.25 s, doubling to 1 s), not a busy loop"
    );

    // The network returns: the client rejoins by itself and relays again.
    proxy.down.store(false, Ordering::SeqCst);
    match next(&mut roamer).await {
        Event::Welcome { peers, .. } => {
            assert_eq!(
                peers.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
                ["home"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(next(&mut home).await, Event::PeerJoined { peer_id, .. } if peer_id == "roamer")
    );
    roamer.relay("home", b"back again").await.unwrap();
    match next(&mut home).await {
        Event::Relay { from, message } => {
            assert_eq!(
                (from.as_str(), &message[..]),
                ("roamer", &b"back again"[..])
            );
        }
        other => panic!("{other:?}"),
    }
}
