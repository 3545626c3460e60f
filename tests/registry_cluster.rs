//! The registry cluster with real turnpike nodes and a real `redis-server` (Debian's, on a
//! loopback port of its own), presence TTL 2 s:
//! - three nodes: peers on different nodes see each other (welcome, peer_joined), exchange
//!   offers, answers, candidates (in order) and relay blobs; an unknown peer's error crosses
//!   nodes; the same peer id joining on another node replaces the first (4001) cluster-wide;
//! - kill -9 one node: its peers leave presence within the TTL (peer_left elsewhere), and a
//!   client with a URL list reconnects to a live node and carries on;
//! - Redis stopped and restarted under traffic: local delivery never stops, cross-node
//!   messages are answered `undelivered` meanwhile and `/readyz` says `cluster_unavailable`,
//!   then cluster delivery resumes and presence is rebuilt.

mod common;
mod fleet_support;
mod registry_support;

use std::time::{Duration, Instant};

use common::{Conf, Server};
use fleet_support::Redis;
use registry_support::{JWT_SECRET, claims, token};
use turnpike::client::{ClientConfig, Event, KeyPair, RegistryClient};
use turnpike::registry::messages::SignalKind;

/// The presence TTL of the test nodes, in seconds.
const TTL_SECS: u64 = 2;

/// A node `id` of the cluster on `redis`, with the registry on its HTTP API.
fn node(id: &str, redis: &Redis) -> Server {
    Server::start(Conf {
        extra_toml: format!(
            "[registry]\nenabled = true\njwt_secrets = [{JWT_SECRET:?}]\n\n\
             [cluster]\nredis_url = {:?}\nnode_id = {id:?}\npresence_ttl_secs = {TTL_SECS}\n",
            redis.url()
        ),
        ..Conf::default()
    })
}

fn url(server: &Server) -> String {
    format!("ws://{}/v1/registry", server.http)
}

/// Waits (at most `limit`, polling every 50 ms) until `check` holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gauge of `server`'s `/metrics` (0 when absent).
fn gauge(server: &Server, name: &str) -> i64 {
    let text = common::http::get(server.http, "/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// `/readyz`: the status code and the `cluster` field.
fn readyz(server: &Server, query: &str) -> (u16, String) {
    let r = common::http::get(server.http, &format!("/readyz{query}"));
    let cluster = r.json()["cluster"].as_str().unwrap_or("").to_owned();
    (r.status, cluster)
}

/// Waits until every node is linked and knows `peers` remote peers.
fn converged(nodes: &[&Server], peers: &[i64]) {
    for (server, want) in nodes.iter().zip(peers) {
        let ok = eventually(Duration::from_secs(10), || {
            readyz(server, "").1 == "ok"
                && gauge(server, "turnpike_registry_cluster_remote_peers") == *want
        });
        assert!(
            ok,
            "node {} did not converge to {want} remote peers:\n{}",
            server.http,
            server.log()
        );
    }
}

/// A client of `urls` (the first, then the others on reconnection) as `sub` of `project`.
async fn join(urls: &[String], sub: &str, reconnect: bool) -> (RegistryClient, Vec<String>) {
    let mut config = ClientConfig::new(&urls[0], token(&claims(sub, "proj")), KeyPair::generate());
    config.fallback_urls = urls[1..].to_vec();
    config.reconnect = reconnect;
    let mut client = tokio::time::timeout(Duration::from_secs(5), RegistryClient::connect(config))
        .await
        .expect("connected in time")
        .expect("connect");
    match next(&mut client).await {
        Event::Welcome { peers, .. } => {
            let ids = peers.into_iter().map(|(id, _)| id).collect();
            (client, ids)
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}

async fn next(client: &mut RegistryClient) -> Event {
    tokio::time::timeout(Duration::from_secs(8), client.next_event())
        .await
        .expect("an event within 8 s")
        .expect("the client runs")
}

/// The first event matching `want` (others skipped), within 8 s.
async fn expect(client: &mut RegistryClient, what: &str, want: impl Fn(&Event) -> bool) -> Event {
    let mut skipped = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match client.next_event().await {
                Some(event) if want(&event) => return event,
                Some(event) => skipped.push(event),
                None => panic!("the client stopped; skipped {skipped:?}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within 8 s; skipped {skipped:?}"))
}

fn joined(id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::PeerJoined { peer_id, .. } if peer_id == id)
}

fn left(id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::PeerLeft { peer_id } if peer_id == id)
}

fn signal_from(id: &'static str) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Signal { from, .. } if from == id)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn peers_on_three_nodes_signal_relay_and_replace_across_nodes() {
    let redis = Redis::start();
    let (a, b, c) = (node("a", &redis), node("b", &redis), node("c", &redis));
    converged(&[&a, &b, &c], &[0, 0, 0]);
    let rt = runtime();
    let (mut alice, peers) = rt.block_on(join(&[url(&a)], "alice", false));
    assert!(peers.is_empty(), "{peers:?}");
    converged(&[&b, &c], &[1, 1]);
    let (mut bob, peers) = rt.block_on(join(&[url(&b)], "bob", false));
    assert_eq!(
        peers,
        ["alice"],
        "bob's welcome on node b lists alice of node a"
    );
    converged(&[&a, &c], &[1, 2]);
    let (mut carol, peers) = rt.block_on(join(&[url(&c)], "carol", false));
    assert_eq!(peers, ["alice", "bob"], "carol's welcome on node c");
    rt.block_on(async {
        expect(&mut alice, "peer_joined bob", joined("bob")).await;
        expect(&mut alice, "peer_joined carol", joined("carol")).await;
        expect(&mut bob, "peer_joined carol", joined("carol")).await;

        // Offer (a → b), answer (b → a), then candidates c → a, which arrive in order.
        let offer = serde_json::json!({"sdp": "v=0 offer"});
        alice
            .signal(SignalKind::Offer, "bob", &offer, Some(1))
            .await
            .unwrap();
        match expect(&mut bob, "the offer", signal_from("alice")).await {
            Event::Signal { kind, payload, .. } => {
                assert_eq!(kind, SignalKind::Offer);
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&payload).unwrap(),
                    offer
                );
            }
            _ => unreachable!(),
        }
        let answer = serde_json::json!({"sdp": "v=0 answer"});
        bob.signal(SignalKind::Answer, "alice", &answer, Some(2))
            .await
            .unwrap();
        match expect(&mut alice, "the answer", signal_from("bob")).await {
            Event::Signal { kind, .. } => assert_eq!(kind, SignalKind::Answer),
            _ => unreachable!(),
        }
        for i in 0..20 {
            let candidate = serde_json::json!({"candidate": i});
            carol
                .signal(SignalKind::IceCandidate, "alice", &candidate, None)
                .await
                .unwrap();
        }
        for i in 0..20 {
            match expect(&mut alice, "a candidate", signal_from("carol")).await {
                Event::Signal { kind, payload, .. } => {
                    assert_eq!(kind, SignalKind::IceCandidate);
                    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
                    assert_eq!(value["candidate"], i, "candidates arrive in order");
                }
                _ => unreachable!(),
            }
        }

        // Relay blobs, sealed end to end, across nodes both ways.
        alice.relay("bob", b"hello bob").await.unwrap();
        match expect(&mut bob, "a relay blob", |e| {
            matches!(e, Event::Relay { .. })
        })
        .await
        {
            Event::Relay { from, message } => {
                assert_eq!(
                    (from.as_str(), message.as_slice()),
                    ("alice", &b"hello bob"[..])
                );
            }
            _ => unreachable!(),
        }
        bob.relay("carol", b"hello carol").await.unwrap();
        match expect(&mut carol, "a relay blob", |e| {
            matches!(e, Event::Relay { .. })
        })
        .await
        {
            Event::Relay { from, message } => {
                assert_eq!(
                    (from.as_str(), message.as_slice()),
                    ("bob", &b"hello carol"[..])
                );
            }
            _ => unreachable!(),
        }
    });

    // An unknown peer's error crosses nodes: Redis lists a `ghost` on node b that b does
    // not have; alice's message goes to b, whose `unknown_peer` comes back to alice.
    let ghost_key = KeyPair::generate().public_base64();
    let mut redis_conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let join_event = serde_json::json!({
        "t": "join", "n": "b", "p": "proj", "i": "ghost", "s": 999_999, "k": ghost_key,
    });
    let _: () = redis::cmd("PUBLISH")
        .arg("turnpike:registry:presence")
        .arg(join_event.to_string())
        .query(&mut redis_conn)
        .unwrap();
    rt.block_on(async {
        expect(&mut alice, "peer_joined ghost", joined("ghost")).await;
        alice
            .signal(SignalKind::Offer, "ghost", &serde_json::json!({}), Some(7))
            .await
            .unwrap();
        let error = expect(&mut alice, "an error about ghost", |e| {
            matches!(e, Event::Error { .. })
        })
        .await;
        match error {
            Event::Error {
                code,
                refers_to,
                id,
                to_peer_id,
                ..
            } => {
                assert_eq!(code, "unknown_peer");
                assert_eq!(refers_to.as_deref(), Some("webrtc_offer"));
                assert_eq!(id, Some(7));
                assert_eq!(to_peer_id.as_deref(), Some("ghost"));
            }
            _ => unreachable!(),
        }
        alice.relay("ghost", b"boo").await.unwrap();
        match expect(&mut alice, "a relay error", |e| {
            matches!(e, Event::Error { .. })
        })
        .await
        {
            Event::Error {
                code, refers_to, ..
            } => {
                assert_eq!(code, "unknown_peer");
                assert_eq!(refers_to.as_deref(), Some("relay"));
            }
            _ => unreachable!(),
        }

        // The same peer id on another node replaces the first, cluster-wide.
        let (mut dave_a, _) = join(&[url(&a)], "dave", false).await;
        expect(&mut carol, "peer_joined dave", joined("dave")).await;
        expect(&mut bob, "peer_joined dave", joined("dave")).await;
        let (_dave_c, peers) = join(&[url(&c)], "dave", false).await;
        assert!(!peers.contains(&"dave".to_owned()), "{peers:?}");
        match expect(&mut dave_a, "the close", |e| {
            matches!(e, Event::Closed { .. })
        })
        .await
        {
            Event::Closed { code, .. } => assert_eq!(code, Some(4001), "replaced"),
            _ => unreachable!(),
        }
        expect(&mut bob, "peer_left dave", left("dave")).await;
        expect(&mut bob, "peer_joined dave again", joined("dave")).await;
        expect(&mut alice, "peer_left dave", left("dave")).await;
        expect(&mut alice, "peer_joined dave again", joined("dave")).await;
        // The new dave (node c) is the one reached.
        alice
            .signal(
                SignalKind::Offer,
                "dave",
                &serde_json::json!({"n": 1}),
                None,
            )
            .await
            .unwrap();
    });
    assert!(eventually(Duration::from_secs(5), || {
        gauge(
            &c,
            "turnpike_registry_cluster_received_total{kind=\"signal\"}",
        ) >= 1
    }));
}

#[test]
fn a_dead_node_leaves_presence_and_its_clients_move_on() {
    let redis = Redis::start();
    let (a, b) = (node("a", &redis), node("b", &redis));
    let mut c = node("c", &redis);
    converged(&[&a, &b, &c], &[0, 0, 0]);
    let rt = runtime();
    let (mut alice, _) = rt.block_on(join(&[url(&a)], "alice", false));
    let (mut bob, _) = rt.block_on(join(&[url(&b)], "bob", false));
    // erin stays down with node c; carol has a list of URLs and moves on.
    let (_erin, _) = rt.block_on(join(&[url(&c)], "erin", false));
    let (mut carol, peers) = rt.block_on(join(&[url(&c), url(&a), url(&b)], "carol", true));
    assert!(peers.contains(&"alice".to_owned()), "{peers:?}");
    rt.block_on(async {
        expect(&mut alice, "peer_joined carol", joined("carol")).await;
        expect(&mut bob, "peer_joined carol", joined("carol")).await;
    });
    let killed = Instant::now();
    c.signal(libc::SIGKILL);
    c.wait_exit(Duration::from_secs(5));
    rt.block_on(async {
        expect(&mut alice, "peer_left erin", left("erin")).await;
        let alice_saw = killed.elapsed();
        // bob also sees carol come back through node a, before or after erin leaves.
        let mut carol_back = false;
        loop {
            let event = expect(&mut bob, "peer_left erin", |e| {
                left("erin")(e) || joined("carol")(e)
            })
            .await;
            if joined("carol")(&event) {
                carol_back = true;
            } else {
                break;
            }
        }
        let bob_saw = killed.elapsed();
        eprintln!("peer_left of a dead node's peer after {alice_saw:?} (a) and {bob_saw:?} (b)");
        // The TTL, plus one refresh period of the observer (500 ms), plus 1 s of slack.
        let bound = Duration::from_millis(TTL_SECS * 1000 + 500 + 1000);
        assert!(bob_saw <= bound, "{bob_saw:?} > {bound:?}");

        // carol reconnected to node a (the next URL) and carries on.
        expect(&mut carol, "the disconnection", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
        match expect(&mut carol, "a new welcome", |e| {
            matches!(e, Event::Welcome { .. })
        })
        .await
        {
            Event::Welcome { peers, .. } => {
                let ids: Vec<&str> = peers.iter().map(|(id, _)| id.as_str()).collect();
                assert!(ids.contains(&"alice") && ids.contains(&"bob"), "{ids:?}");
            }
            _ => unreachable!(),
        }
        if !carol_back {
            expect(&mut bob, "carol again", joined("carol")).await;
        }
        carol
            .signal(
                SignalKind::Offer,
                "bob",
                &serde_json::json!({"again": true}),
                None,
            )
            .await
            .unwrap();
        expect(&mut bob, "carol's offer", signal_from("carol")).await;
        bob.relay("carol", b"welcome back").await.unwrap();
        match expect(&mut carol, "a relay blob", |e| {
            matches!(e, Event::Relay { .. })
        })
        .await
        {
            Event::Relay { message, .. } => assert_eq!(message, b"welcome back"),
            _ => unreachable!(),
        }
    });
}

#[test]
fn redis_down_and_back_local_delivery_never_stops_and_presence_is_rebuilt() {
    let mut redis = Redis::start();
    let (a, b) = (node("a", &redis), node("b", &redis));
    converged(&[&a, &b], &[0, 0]);
    let rt = runtime();
    let (mut alice, _) = rt.block_on(join(&[url(&a)], "alice", false));
    let (mut frank, _) = rt.block_on(join(&[url(&a)], "frank", false));
    let (mut bob, _) = rt.block_on(join(&[url(&b)], "bob", false));
    converged(&[&a, &b], &[1, 2]);
    rt.block_on(async {
        expect(&mut alice, "peer_joined bob", joined("bob")).await;
    });

    redis.kill();
    assert!(
        eventually(Duration::from_secs(10), || readyz(&a, "").1
            == "cluster_unavailable"),
        "node a reports the cluster unavailable"
    );
    assert_eq!(readyz(&a, ""), (200, "cluster_unavailable".to_owned()));
    assert_eq!(readyz(&a, "?require=cluster").0, 503);
    assert_eq!(gauge(&a, "turnpike_registry_cluster_up"), 0);
    rt.block_on(async {
        // Across nodes: answered (undelivered while bob is still in the view, unknown_peer
        // once the view forgot node b), never lost silently.
        alice
            .signal(SignalKind::Offer, "bob", &serde_json::json!({}), Some(3))
            .await
            .unwrap();
        match expect(&mut alice, "an error", |e| matches!(e, Event::Error { .. })).await {
            Event::Error { code, id, .. } => {
                assert!(code == "undelivered" || code == "unknown_peer", "{code}");
                assert_eq!(id, Some(3));
            }
            _ => unreachable!(),
        }
    });
    // Local traffic goes on while Redis is down, and after it restarts.
    let restart_after = Instant::now() + Duration::from_secs(TTL_SECS + 1);
    let mut restarted = false;
    let mut sent = 0;
    while sent < 60 {
        if !restarted && Instant::now() >= restart_after {
            redis.restart();
            restarted = true;
        }
        rt.block_on(async {
            let payload = serde_json::json!({"n": sent});
            alice
                .signal(SignalKind::IceCandidate, "frank", &payload, None)
                .await
                .unwrap();
            match expect(&mut frank, "a local candidate", signal_from("alice")).await {
                Event::Signal { payload, .. } => {
                    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
                    assert_eq!(value["n"], sent, "local delivery in order, none lost");
                }
                _ => unreachable!(),
            }
        });
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(restarted);
    // Presence rebuilt: both nodes list each other's peers again, and cross-node delivery
    // resumes.
    converged(&[&a, &b], &[1, 2]);
    assert_eq!(readyz(&a, "?require=cluster"), (200, "ok".to_owned()));
    assert!(gauge(&a, "turnpike_registry_cluster_presence_rebuilds_total") >= 2);
    rt.block_on(async {
        alice
            .signal(
                SignalKind::Offer,
                "bob",
                &serde_json::json!({"back": 1}),
                None,
            )
            .await
            .unwrap();
        expect(
            &mut bob,
            "alice's offer after the restart",
            signal_from("alice"),
        )
        .await;
        bob.relay("frank", b"to frank").await.unwrap();
        expect(&mut frank, "bob's relay blob", |e| {
            matches!(e, Event::Relay { .. })
        })
        .await;
    });
}
