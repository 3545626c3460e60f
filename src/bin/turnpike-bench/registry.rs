//! `turnpike-bench registry`: the registry against what an app developer would write instead,
//! a room relay on Node's `ws` (benches/node-ws-relay/relay.js, run with the system's `node`).
//!
//! Two measures, the servers interleaved round after round (A B A B ...):
//! - signaling: `peers` peers of one project each send `offers` offers (a 400-byte SDP-like
//!   payload) to the others in turn, flat out; every offer must arrive. Reported: wall time
//!   from the first offer sent to the last one received, server CPU time (user + system, from
//!   /proc), and messages delivered per server CPU-second;
//! - idle: `idle` peers connected and joined (projects of `idle_project`, default 100: each
//!   welcome lists up to 99 peers, each peer hears of up to 99 joins), doing nothing; reported: the
//!   server's RSS growth per connection.
//!
//! `turnpike-cluster` runs `--nodes` turnpike nodes sharing a `redis-server` the bench starts
//! (registry_servers.rs); peer `i` joins node `i mod nodes`, so most offers cross nodes through
//! Redis. Its server CPU is that of every node and of redis-server; its RSS per idle
//! connection is each node's growth over the connections it holds (the mean, and each node).
//! Before the offers, every peer waits until it has heard of all the others.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::proc::{cpu_time, rss_bytes};
use crate::registry_servers::Deployment;
pub use crate::registry_servers::RegistryServer;

/// Handshakes in flight at once while connecting peers.
const CONNECT_WINDOW: usize = 200;

/// What to run.
#[derive(Clone, Debug)]
pub struct RegistrySpec {
    pub servers: Vec<RegistryServer>,
    /// Nodes of `turnpike-cluster`.
    pub nodes: usize,
    pub peers: usize,
    pub offers: usize,
    pub idle: usize,
    /// Peers per project in the idle measure (a welcome lists the project's peers).
    pub idle_project: usize,
    pub rounds: usize,
    /// Seconds one measure may take at most.
    pub limit: u64,
}

/// User + system CPU time of each server process so far (the nodes, then Redis).
fn server_cpu(server: &Deployment) -> anyhow::Result<Vec<Duration>> {
    server
        .server_pids()
        .into_iter()
        .map(|pid| cpu_time(pid).context("server CPU time"))
        .collect()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects `peer` of `project` to node `node` and joins; returns the socket once the welcome
/// came, with how many peers the welcome listed.
async fn join(
    server: &Deployment,
    node: usize,
    peer: &str,
    project: &str,
) -> anyhow::Result<(Socket, usize)> {
    // TCP_NODELAY, as browsers and the servers themselves set it.
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(
        server.request(node, peer, project),
        None,
        true,
    )
    .await
    .with_context(|| format!("connecting {peer}"))?;
    // Any 32-byte key: the relay never reads it.
    let join = r#"{"type":"join","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#;
    socket.send(Message::text(join)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"welcome\"") => {
                // Every listed peer has a peer_id, and so has the welcome itself.
                let listed = text
                    .as_str()
                    .matches("\"peer_id\"")
                    .count()
                    .saturating_sub(1);
                return Ok((socket, listed));
            }
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"error\"") => {
                bail!("{peer}: {}", text.as_str())
            }
            Some(Ok(_)) => {}
            other => bail!("{peer}: the connection ended before the welcome: {other:?}"),
        }
    }
}

/// Joins `count` peers (`peer{i}` of `project(i)`, on node `i mod nodes`), at most
/// [`CONNECT_WINDOW`] at once.
async fn join_all(
    server: &Deployment,
    count: usize,
    project: impl Fn(usize) -> String,
) -> anyhow::Result<Vec<(Socket, usize)>> {
    let nodes = server.node_count();
    let names: Vec<(usize, String, String)> = (0..count)
        .map(|i| (i % nodes, format!("peer{i}"), project(i)))
        .collect();
    futures_util::stream::iter(names.iter())
        .map(|(node, peer, project)| join(server, *node, peer, project))
        .buffered(CONNECT_WINDOW)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Reads each socket's `peer_joined` until it knows `others` peers (with a cluster, peers of
/// the other nodes appear once their presence crossed Redis), so that no offer goes to a peer
/// its sender's node does not know yet.
async fn settle(
    sockets: &mut [(Socket, usize)],
    others: usize,
    limit: Duration,
) -> anyhow::Result<()> {
    let all =
        futures_util::future::try_join_all(sockets.iter_mut().map(|(socket, known)| async move {
            while *known < others {
                match socket.next().await {
                    Some(Ok(Message::Text(text)))
                        if text.as_str().starts_with(r#"{"type":"peer_joined""#) =>
                    {
                        *known += 1;
                    }
                    Some(Ok(Message::Text(text))) if text.as_str().contains("\"error\"") => {
                        bail!("while settling: {}", text.as_str())
                    }
                    Some(Ok(_)) => {}
                    other => bail!("the connection ended while settling: {other:?}"),
                }
            }
            anyhow::Ok(())
        }));
    tokio::time::timeout(limit, all)
        .await
        .context("the peers did not all see each other in time")??;
    Ok(())
}

/// The figures of one signaling run.
struct SignalRun {
    wall: Duration,
    /// All server processes together.
    cpu: Duration,
    /// Each server process (the nodes, then Redis).
    cpu_each: Vec<Duration>,
    delivered: usize,
}

async fn signaling(server: &Deployment, spec: &RegistrySpec) -> anyhow::Result<SignalRun> {
    let n = spec.peers;
    if n < 2 {
        bail!("--peers must be at least 2");
    }
    let limit = Duration::from_secs(spec.limit);
    let mut sockets = join_all(server, n, |_| "bench".to_owned()).await?;
    settle(&mut sockets, n - 1, limit).await?;
    let sdp = "a".repeat(384);
    let cpu_before = server_cpu(server)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, (socket, _)) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = socket.split();
        let offers = spec.offers;
        let texts: Vec<String> = (0..offers)
            .map(|k| {
                let to = (i + 1 + k % (n - 1)) % n;
                format!(
                    r#"{{"type":"webrtc_offer","to_peer_id":"peer{to}","payload":{{"type":"offer","sdp":"{sdp}"}}}}"#
                )
            })
            .collect();
        let writer = tokio::spawn(async move {
            for text in texts {
                sink.feed(Message::text(text)).await?;
            }
            sink.flush().await?;
            anyhow::Ok(sink)
        });
        // Each peer receives exactly `offers` offers: peer j gets one from every sender whose
        // turn k has (i + 1 + k mod (n-1)) mod n = j.
        let reader = tokio::spawn(async move {
            let mut received = 0;
            while received < offers {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str();
                        if text.starts_with(r#"{"type":"webrtc_offer""#) {
                            received += 1;
                        } else if text.contains("\"error\"") {
                            bail!("an error: {text}");
                        }
                    }
                    Some(Ok(_)) => {}
                    other => bail!("the connection ended: {other:?}"),
                }
            }
            anyhow::Ok((received, Instant::now(), stream))
        });
        tasks.push((writer, reader));
    }
    let mut delivered = 0;
    let mut last = started;
    let mut keep = Vec::new();
    for (writer, reader) in tasks {
        let sink = tokio::time::timeout(limit, writer)
            .await
            .context("the senders took too long")???;
        let (received, at, stream) = tokio::time::timeout(limit, reader)
            .await
            .context("the offers did not all arrive in time")???;
        delivered += received;
        last = last.max(at);
        keep.push((sink, stream));
    }
    let wall = last - started;
    let cpu_each: Vec<Duration> = server_cpu(server)?
        .into_iter()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before))
        .collect();
    drop(keep);
    Ok(SignalRun {
        wall,
        cpu: cpu_each.iter().sum(),
        cpu_each,
        delivered,
    })
}

/// RSS growth per idle joined connection, in bytes, for each node (peers join the nodes in
/// turn).
async fn idle(server: &Deployment, spec: &RegistrySpec) -> anyhow::Result<Vec<f64>> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let nodes = server.node_count();
    let rss = |node| rss_bytes(server.node_pid(node)).context("server RSS");
    let before = (0..nodes).map(rss).collect::<anyhow::Result<Vec<u64>>>()?;
    let sockets = join_all(server, spec.idle, |i| {
        format!("idle{}", i / spec.idle_project.max(1))
    })
    .await?;
    // Keep answering pings while the server settles.
    let mut readers = Vec::with_capacity(sockets.len());
    for (socket, _) in sockets {
        readers.push(tokio::spawn(async move {
            let mut socket = socket;
            while let Some(Ok(_)) = socket.next().await {}
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = (0..nodes).map(rss).collect::<anyhow::Result<Vec<u64>>>()?;
    for reader in &readers {
        if reader.is_finished() {
            bail!("an idle connection ended before the measure");
        }
    }
    for reader in readers {
        reader.abort();
    }
    Ok((0..nodes)
        .map(|node| {
            // Peers node, node + nodes, ... joined this node.
            let held = (spec.idle + nodes - 1 - node) / nodes;
            after[node].saturating_sub(before[node]) as f64 / held.max(1) as f64
        })
        .collect())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Per server, per round: wall seconds, server CPU seconds, offers per CPU-second, RSS bytes
/// per idle connection.
type Samples = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

/// Runs the bench; prints one line per run and a summary with ratios to the first server.
pub fn run(spec: &RegistrySpec) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results: Vec<Samples> = vec![Default::default(); spec.servers.len()];
    for round in 1..=spec.rounds {
        for (index, &kind) in spec.servers.iter().enumerate() {
            let server = Deployment::start(kind, spec.nodes)?;
            let signal = runtime.block_on(signaling(&server, spec))?;
            let expected = spec.peers * spec.offers;
            if signal.delivered != expected {
                bail!(
                    "{}: {} of {expected} offers delivered",
                    kind.name(),
                    signal.delivered
                );
            }
            let per_cpu = signal.delivered as f64 / signal.cpu.as_secs_f64().max(1e-3);
            drop(server);
            let per_node = if spec.idle > 0 {
                let server = Deployment::start(kind, spec.nodes)?;
                runtime.block_on(idle(&server, spec))?
            } else {
                vec![0.0]
            };
            let per_idle = per_node.iter().sum::<f64>() / per_node.len() as f64;
            let nodes = if signal.cpu_each.len() > 1 {
                let each: Vec<String> = per_node.iter().map(|b| format!("{b:.0}")).collect();
                let cpu: Vec<String> = signal
                    .cpu_each
                    .iter()
                    .map(|c| format!("{:.2}", c.as_secs_f64()))
                    .collect();
                format!(
                    " (per node: {}; CPU s of each node, then redis-server: {})",
                    each.join(", "),
                    cpu.join(", ")
                )
            } else {
                String::new()
            };
            println!(
                "round {round} {:<16} signaling: {} offers, wall {:.2} s, server CPU {:.2} s, \
                 {:.0} msg per CPU-s; idle: {} peers, {:.0} B RSS per connection{nodes}",
                kind.name(),
                signal.delivered,
                signal.wall.as_secs_f64(),
                signal.cpu.as_secs_f64(),
                per_cpu,
                spec.idle,
                per_idle
            );
            let r = &mut results[index];
            r.0.push(signal.wall.as_secs_f64());
            r.1.push(signal.cpu.as_secs_f64());
            r.2.push(per_cpu);
            r.3.push(per_idle);
        }
    }
    let (first_wall, first_rate) = {
        let r = &mut results[0];
        (median(&mut r.0.clone()), median(&mut r.2.clone()))
    };
    println!("median over {} rounds:", spec.rounds);
    for (index, kind) in spec.servers.iter().enumerate() {
        let r = &mut results[index];
        let (wall, cpu, rate, idle) = (
            median(&mut r.0),
            median(&mut r.1),
            median(&mut r.2),
            median(&mut r.3),
        );
        println!(
            "  {:<16} wall {wall:.2} s, server CPU {cpu:.2} s, {rate:.0} msg per CPU-s, \
             {:.1} KiB per idle connection; {} against it: {:.2}x per CPU-s, {:.2}x in wall time",
            kind.name(),
            idle / 1024.0,
            spec.servers[0].name(),
            first_rate / rate,
            wall / first_wall,
        );
    }
    println!("registry bench: ok");
    Ok(())
}
