//! Load on loopback: 1,000 peers connected at once (10 projects of 100), one of them flooding.
//! The flood is rate-limited and every flooded message is either delivered or answered; every
//! other peer's message arrives; the server holds no connection and no peer once all have
//! left, and a second round costs no more memory than the first (nothing a round held stays).
//! No timing is asserted, only counts and memory.

mod common;
mod registry_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use registry_support::*;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use turnpike::client::{Event, KeyPair, RegistryClient};
use turnpike::registry::messages::SignalKind;

const PROJECTS: usize = 10;
const PER_PROJECT: usize = 100;
const FLOOD: u64 = 2_000;

/// 1,000 client sockets plus the server's: raise the soft limit on open files to the hard one
/// (the server inherits it, and raises its own too).
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 2_500,
        "the hard limit on open files ({}) is too low for 1,000 connections",
        limit.rlim_max
    );
}

fn name(project: usize, index: usize) -> String {
    format!("peer-{project}-{index}")
}

/// Connects the peers of one project, in order.
async fn connect_project(url: String, project: usize) -> Vec<RegistryClient> {
    let mut clients = Vec::with_capacity(PER_PROJECT);
    for index in 0..PER_PROJECT {
        let (client, _) = join_client(
            &url,
            &name(project, index),
            &format!("project-{project}"),
            KeyPair::generate(),
        )
        .await;
        clients.push(client);
    }
    clients
}

/// Connects every project concurrently (one task per project).
async fn connect_all(registry: &TestRegistry) -> Vec<Vec<RegistryClient>> {
    let mut tasks = JoinSet::new();
    for project in 0..PROJECTS {
        let url = registry.url();
        tasks.spawn(async move { (project, connect_project(url, project).await) });
    }
    let mut projects: Vec<Option<Vec<RegistryClient>>> = (0..PROJECTS).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (project, clients) = joined.expect("a connecting task");
        projects[project] = Some(clients);
    }
    projects.into_iter().map(Option::unwrap).collect()
}

/// One round: 1,000 peers join (10 projects of 100), one floods a neighbour while every other
/// sends one candidate to the next, everything is checked delivered or answered, and all leave.
/// Returns the server's RSS (KiB) while the 1,000 were connected.
async fn join_flood_leave(registry: &TestRegistry) -> u64 {
    let started = Instant::now();
    let mut projects = connect_all(registry).await;
    eprintln!("1,000 peers joined in {:?}", started.elapsed());
    let connected = registry.rss_kib();

    // Drain the join announcements: peer i of a project saw the 99 - i that joined after it.
    for clients in projects.iter_mut() {
        for (index, client) in clients.iter_mut().enumerate() {
            for _ in 0..(PER_PROJECT - 1 - index) {
                assert!(matches!(next(client).await, Event::PeerJoined { .. }));
            }
        }
    }

    // The flood: peer-0-0 sends FLOOD offers to peer-0-1 as fast as it can, while every peer
    // sends one candidate to the next peer of its project.
    // The flooder writes and reads on a raw socket, in two tasks, so it never stops reading.
    projects[0].remove(0).close().await;
    let (flooder, _) = raw_join(
        &registry.url(),
        &registry.token(&name(0, 0), "project-0"),
        &KeyPair::generate(),
    )
    .await;
    let (mut flood_sink, mut flood_stream) = flooder.split();
    let writer = tokio::spawn(async move {
        for seq in 0..FLOOD {
            let offer = json!({"type": "webrtc_offer", "to_peer_id": name(0, 1),
                               "payload": {"flood": seq}, "id": seq});
            flood_sink
                .send(Message::text(offer.to_string()))
                .await
                .unwrap();
        }
        flood_sink
    });
    let reader = tokio::spawn(async move {
        // Every flooded message is delivered or answered: count the answers.
        let mut limited = 0u64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while limited < FLOOD && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), flood_stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let answer: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    match answer["code"].as_str() {
                        Some("rate_limited") => limited += 1,
                        _ if answer["type"] == "peer_left" || answer["type"] == "peer_joined" => {}
                        _ => panic!("the flooder got {answer}"),
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        (flood_stream, limited)
    });
    for (project, clients) in projects.iter().enumerate() {
        let offset = usize::from(project == 0); // peer-0-0 is flooding
        for (i, client) in clients.iter().enumerate() {
            let index = i + offset;
            let to = name(project, (index + 1) % PER_PROJECT);
            if project == 0 && (index + 1) % PER_PROJECT == 0 {
                continue; // the flooder is not a receiver
            }
            client
                .signal(SignalKind::IceCandidate, &to, &json!({"from": index}), None)
                .await
                .unwrap();
        }
    }
    // Every ordinary message arrives, exactly once, from the right peer.
    let mut flood_delivered = 0u64;
    for (project, clients) in projects.iter_mut().enumerate() {
        let offset = usize::from(project == 0);
        for (i, client) in clients.iter_mut().enumerate() {
            let index = i + offset;
            let sender = (index + PER_PROJECT - 1) % PER_PROJECT;
            let mut got: HashMap<String, u64> = HashMap::new();
            let expect_flood = project == 0 && index == 1;
            for _ in 0..FLOOD + 100 {
                if got.contains_key(&name(project, sender)) && !expect_flood {
                    break;
                }
                let event = if expect_flood {
                    match tokio::time::timeout(Duration::from_secs(5), client.next_event()).await {
                        Ok(Some(event)) => event,
                        _ => break,
                    }
                } else {
                    next(client).await
                };
                match event {
                    Event::Signal {
                        kind: SignalKind::Offer,
                        from,
                        ..
                    } if from == name(0, 0) => {
                        flood_delivered += 1;
                    }
                    Event::Signal { from, payload, .. } => {
                        assert_eq!(payload, format!(r#"{{"from":{sender}}}"#));
                        *got.entry(from).or_default() += 1;
                    }
                    Event::PeerLeft { .. } | Event::PeerJoined { .. } => {} // the flooder's rejoin
                    other => panic!("{} got {other:?}", name(project, index)),
                }
            }
            if !(project == 0 && sender == 0) {
                assert_eq!(
                    got.get(&name(project, sender)),
                    Some(&1),
                    "{}",
                    name(project, index)
                );
            }
        }
    }
    let flood_sink = writer.await.expect("the flooding writer");
    let (flood_stream, limited) = reader.await.expect("the flooding reader");
    assert!(limited > 0, "the flood was rate-limited");
    assert_eq!(
        flood_delivered + limited,
        FLOOD,
        "nothing of the flood was lost silently"
    );
    eprintln!("flood: {flood_delivered} delivered, {limited} answered rate_limited");

    // Everyone leaves.
    drop(flood_sink.reunite(flood_stream).expect("one socket"));
    for clients in &projects {
        for client in clients {
            client.close().await;
        }
    }
    drop(projects);
    connected
}

/// Waits (at most 20 s) until the server holds no registry connection and no peer, then a
/// moment for the freed memory to settle; returns its RSS (KiB).
async fn settled_rss(registry: &TestRegistry) -> u64 {
    for _ in 0..100 {
        let metrics = registry.metrics();
        let gauge = |name: &str| {
            metrics.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        if gauge("turnpike_registry_connections") == Some(0.0)
            && gauge("turnpike_registry_peers") == Some(0.0)
        {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return registry.rss_kib();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "the server still holds connections or peers 20 s after all left:\n{}",
        registry.metrics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_peers_a_flood_and_no_memory_kept_from_round_to_round() {
    raise_fd_limit();
    let registry = TestRegistry::start(
        "max_connections = 2000\nmax_connections_per_ip = 2000\nmessages_per_sec = 20",
    );

    // A warm-up round (1,000 peers join, one floods, all leave), so that runtime threads, the
    // allocator's arenas and the tables sized for the peak exist; then two measured rounds.
    // What a round leaks stays allocated through the next one, so the next round's peak is
    // higher by it. What the allocator merely keeps after a round (freed, still resident: it
    // happened in a CI run, 2.6 of 2.9 MiB once, and returned the round after) is reused by
    // the next round and raises nothing: RSS after a round is a figure, not a verdict.
    join_flood_leave(&registry).await;
    let baseline = settled_rss(&registry).await;
    let mut peaks = Vec::new();
    for round in 1..=2 {
        let peak = join_flood_leave(&registry).await;
        let after = settled_rss(&registry).await;
        eprintln!(
            "round {round}: RSS baseline {baseline} KiB, with 1,000 peers {peak} KiB, after all left {after} KiB"
        );
        peaks.push(peak);
    }
    // The measurement means something only if 1,000 peers cost memory (about 3 MiB above the
    // warmed baseline); then the second round's peak may exceed the first's by at most a
    // quarter of that (at least 1.5 MiB: the rounds' peaks differ by up to 0.5 MiB).
    let growth = peaks[0].saturating_sub(baseline);
    assert!(
        growth >= 1024,
        "1,000 peers cost only {growth} KiB: nothing to measure"
    );
    let tolerance = (growth / 4).max(1536);
    assert!(
        peaks[1] <= peaks[0] + tolerance,
        "the second round of 1,000 peers peaked at {} KiB, above the first's {} KiB (+{tolerance}): what a round held was not released",
        peaks[1],
        peaks[0]
    );
    // The server still serves, and the projects are empty.
    let (_late, peers) = registry.client("late", "project-0").await;
    assert!(peers.is_empty(), "{peers:?}");
}
