//! The registry's link to the cluster's Redis: one task per node that keeps this node's
//! presence in Redis, follows the other nodes' presence, and carries messages between the
//! registry core and the other nodes' inboxes.
//!
//! A *session* is one connected stretch: a pub/sub connection (the presence channel and this
//! node's inbox) and a command connection. It starts by rewriting this node's presence as a
//! whole and announcing it (`hello`), then reads every live node's presence. Any failure ends
//! the session: the core's link goes down (signaling for remote peers is answered
//! `undelivered`, local peers carry on), and the task retries with back-off. After
//! `presence_ttl` without Redis, the remote peers are forgotten (`peer_left`), as the other
//! nodes forget this node's.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, watch};

use super::wire::{self, Event};
use crate::http::Health;
use crate::registry::{ClusterOutput, Presence, RegistryState};

/// How long one Redis exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Outputs sent to Redis in one pipeline, at most.
const BATCH: usize = 256;
/// Every this many refreshes, every live node's presence is read again (pub/sub loses what
/// is published while a subscriber reconnects).
const RESYNC_EVERY: u32 = 20;
/// Nodes whose presence must be read again, at most (hellos beyond are dropped; the
/// periodic resync covers them).
const MAX_PENDING_READS: usize = 1024;

/// What the link needs.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The Redis URL (`cluster.redis_url`).
    pub redis_url: String,
    /// This node's id.
    pub node: String,
    /// `cluster.presence_ttl_secs`.
    pub ttl: Duration,
}

/// How often a node refreshes its presence: a quarter of the TTL, at least 250 ms.
pub fn refresh_period(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(250))
}

/// Runs the link until `stop` turns true.
pub async fn run(
    state: RegistryState,
    config: LinkConfig,
    notify: Arc<Notify>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let client = match redis::Client::open(config.redis_url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "registry cluster: cannot create the Redis client");
            return;
        }
    };
    health.set_cluster(Some(false));
    let mut backoff = Duration::from_millis(200);
    let mut down_since = Instant::now();
    let mut forgotten = false;
    let mut logged = false;
    // When each local peer joined (UNIX ms), by session: the version of its records.
    let mut stamps: HashMap<u64, u64> = HashMap::new();
    loop {
        let mut linked = false;
        let outcome = tokio::select! {
            outcome = session(&client, &state, &config, &notify, &health, &mut linked, &mut stamps) => outcome,
            _ = stop.changed() => Ok(()),
        };
        if *stop.borrow() {
            goodbye(&client, &config).await;
            return;
        }
        state.with(|core| core.cluster_link(false));
        health.set_cluster(Some(false));
        if linked {
            backoff = Duration::from_millis(200);
            down_since = Instant::now();
            forgotten = false;
            logged = false;
        }
        if let Err(error) = outcome {
            if !logged {
                tracing::warn!(%error, "registry cluster: Redis unreachable; serving local peers only, retrying");
                logged = true;
            }
        }
        let deadline = tokio::time::sleep(backoff);
        tokio::pin!(deadline);
        loop {
            if !forgotten && down_since.elapsed() >= config.ttl {
                // The other nodes forget this node's peers after the TTL: do the same.
                state.with(|core| {
                    for node in core.cluster_nodes() {
                        core.cluster_node_view(&node, Vec::new());
                    }
                });
                forgotten = true;
            }
            tokio::select! {
                () = &mut deadline => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => return,
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A clean stop: this node's presence is removed and the others told at once.
async fn goodbye(client: &redis::Client, config: &LinkConfig) {
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::pipe()
            .del(wire::presence_key(&config.node))
            .ignore()
            .zrem(wire::nodes_key(), &config.node)
            .ignore()
            .publish(
                wire::presence_channel(),
                Event::Bye {
                    n: config.node.clone(),
                }
                .encode(),
            )
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    };
    let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, attempt).await;
}

fn unix_ms() -> u64 {
    crate::registry::unix_time().as_millis() as u64
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out"))
}

/// Bounds one exchange in time.
async fn bounded<T>(
    exchange: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// Nodes whose presence the writer must read (hellos the reader saw).
#[derive(Default)]
struct Reads {
    nodes: Mutex<BTreeSet<String>>,
    wake: Notify,
}

impl Reads {
    fn push(&self, node: String) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if nodes.len() < MAX_PENDING_READS {
            nodes.insert(node);
        }
        drop(nodes);
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.nodes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One connected stretch; returns when Redis fails.
async fn session(
    client: &redis::Client,
    state: &RegistryState,
    config: &LinkConfig,
    notify: &Notify,
    health: &Health,
    linked: &mut bool,
    stamps: &mut HashMap<u64, u64>,
) -> redis::RedisResult<()> {
    let connection = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(EXCHANGE_TIMEOUT))
        .set_response_timeout(Some(EXCHANGE_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&connection)
        .await?;
    let mut pubsub = bounded(client.get_async_pubsub()).await?;
    bounded(pubsub.subscribe(wire::presence_channel())).await?;
    bounded(pubsub.subscribe(wire::inbox_channel(&config.node))).await?;
    let mut messages = pubsub.into_on_message();
    // From here on, changes are queued for Redis; the rewrite below covers the ones before.
    state.with(|core| core.cluster_link(true));
    state
        .cluster_metrics()
        .connects
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut live: BTreeSet<String> = BTreeSet::new();
    flush(&mut conn, state, config, stamps).await?;
    refresh(&mut conn, state, config, &mut live, true).await?;
    health.set_cluster(Some(true));
    *linked = true;
    tracing::info!(node = %config.node, "registry cluster: linked to Redis");
    let reads = Reads::default();
    // The reader never awaits anything but the next message, so that what redis-rs buffers
    // is handed to the core (whose queues are bounded) as fast as it arrives.
    let reader = async {
        while let Some(message) = messages.next().await {
            let payload = message.get_payload_bytes();
            if message.get_channel_name() == wire::presence_channel() {
                on_event(state, config, &reads, payload);
            } else if let Some((node, forward)) = wire::decode_forward(payload) {
                state.with(|core| core.cluster_receive(&node, forward));
            }
        }
        Err::<(), _>(redis::RedisError::from((
            redis::ErrorKind::Io,
            "the pub/sub connection closed",
        )))
    };
    let writer = async {
        let mut tick = tokio::time::interval(refresh_period(config.ttl));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                () = notify.notified() => flush(&mut conn, state, config, stamps).await?,
                () = reads.wake.notified() => {
                    for node in reads.take() {
                        read_node(&mut conn, state, &node).await?;
                    }
                }
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    let all = ticks % RESYNC_EVERY == 0;
                    refresh(&mut conn, state, config, &mut live, all).await?;
                }
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), redis::RedisError>(())
    };
    tokio::select! {
        outcome = reader => outcome,
        outcome = writer => outcome,
    }
}

/// A presence event from the channel.
fn on_event(state: &RegistryState, config: &LinkConfig, reads: &Reads, payload: &[u8]) {
    let Some(event) = Event::decode(payload) else {
        return;
    };
    tracing::debug!(?event, "registry cluster: presence event");
    match event {
        Event::Join {
            n,
            p,
            i,
            s,
            v,
            k,
            a,
        } if n != config.node => {
            let peer = Presence {
                project: p,
                peer_id: i,
                session: s,
                public_key: k,
                attestation: a,
                version: v,
            };
            if crate::registry::messages::valid_id(&peer.project)
                && crate::registry::messages::valid_id(&peer.peer_id)
            {
                state.with(|core| core.cluster_presence(&n, peer));
            }
        }
        Event::Leave { n, p, i, s } if n != config.node => {
            state.with(|core| core.cluster_leave(&n, &p, &i, s));
        }
        Event::Hello { n } if n != config.node => reads.push(n),
        Event::Bye { n } if n != config.node => {
            state.with(|core| core.cluster_node_view(&n, Vec::new()));
        }
        _ => {}
    }
}

/// Reads `node`'s presence hash into the core.
async fn read_node(
    conn: &mut MultiplexedConnection,
    state: &RegistryState,
    node: &str,
) -> redis::RedisResult<()> {
    let hash: HashMap<String, String> = bounded(conn.hgetall(wire::presence_key(node))).await?;
    let peers: Vec<Presence> = hash
        .iter()
        .filter_map(|(f, v)| wire::decode_record(f, v))
        .collect();
    tracing::debug!(
        node,
        peers = peers.len(),
        "registry cluster: read a node's presence"
    );
    state.with(|core| core.cluster_node_view(node, peers));
    Ok(())
}

/// Keeps this node alive in Redis, and follows which nodes are: a node that left the live
/// set is forgotten, a new one (or every one, with `all`) is read.
async fn refresh(
    conn: &mut MultiplexedConnection,
    state: &RegistryState,
    config: &LinkConfig,
    live: &mut BTreeSet<String>,
    all: bool,
) -> redis::RedisResult<()> {
    let now = unix_ms();
    let ttl_ms = config.ttl.as_millis() as u64;
    let ids: Vec<String> = bounded(
        redis::pipe()
            .zadd(wire::nodes_key(), &config.node, now + ttl_ms)
            .ignore()
            .pexpire(wire::presence_key(&config.node), ttl_ms as i64)
            .ignore()
            .zrembyscore(wire::nodes_key(), "-inf", format!("({now}"))
            .ignore()
            .zrangebyscore(wire::nodes_key(), now, "+inf")
            .query_async::<(Vec<String>,)>(conn),
    )
    .await?
    .0;
    let now_live: BTreeSet<String> = ids.into_iter().filter(|n| *n != config.node).collect();
    let known: BTreeSet<String> = state
        .with(|core| core.cluster_nodes())
        .into_iter()
        .collect();
    for gone in known.difference(&now_live) {
        tracing::debug!(node = %gone, "registry cluster: a node left the live set");
        state.with(|core| core.cluster_node_view(gone, Vec::new()));
    }
    for node in &now_live {
        if all || !live.contains(node) {
            read_node(conn, state, node).await?;
        }
    }
    *live = now_live;
    Ok(())
}

/// Sends what the core queued: a presence rewrite first if one is due, then the outputs in
/// order, in pipelines of at most [`BATCH`]. Outputs of a pipeline that fails are handed back
/// to the core (their senders are answered `undelivered`).
async fn flush(
    conn: &mut MultiplexedConnection,
    state: &RegistryState,
    config: &LinkConfig,
    stamps: &mut HashMap<u64, u64>,
) -> redis::RedisResult<()> {
    loop {
        let (mut rewrite, mut batch) = state.with(|core| {
            let rewrite = core.take_cluster_rewrite();
            let mut batch = Vec::new();
            while batch.len() < BATCH {
                match core.poll_cluster() {
                    Some(output) => batch.push(output),
                    None => break,
                }
            }
            (rewrite, batch)
        });
        if rewrite.is_none() && batch.is_empty() {
            return Ok(());
        }
        let now = unix_ms();
        if let Some(peers) = &mut rewrite {
            let mut kept = HashMap::with_capacity(peers.len());
            for peer in peers.iter_mut() {
                peer.version = stamps.get(&peer.session).copied().unwrap_or(now);
                kept.insert(peer.session, peer.version);
            }
            *stamps = kept;
        }
        for output in &mut batch {
            match output {
                ClusterOutput::Joined(peer) => {
                    peer.version = now;
                    stamps.insert(peer.session, now);
                }
                ClusterOutput::Left { session, .. } => {
                    stamps.remove(session);
                }
                ClusterOutput::Send { .. } => {}
            }
        }
        let mut pipe = redis::pipe();
        let key = wire::presence_key(&config.node);
        let ttl_ms = config.ttl.as_millis() as i64;
        if let Some(peers) = &rewrite {
            pipe.atomic().del(&key).ignore();
            for peer in peers {
                pipe.hset(
                    &key,
                    wire::field(&peer.project, &peer.peer_id),
                    wire::encode_record(peer),
                )
                .ignore();
            }
            pipe.pexpire(&key, ttl_ms)
                .ignore()
                .zadd(wire::nodes_key(), &config.node, unix_ms() + ttl_ms as u64)
                .ignore()
                .publish(
                    wire::presence_channel(),
                    Event::Hello {
                        n: config.node.clone(),
                    }
                    .encode(),
                )
                .ignore();
        }
        for output in &batch {
            match output {
                ClusterOutput::Joined(peer) => {
                    let event = Event::Join {
                        n: config.node.clone(),
                        p: peer.project.clone(),
                        i: peer.peer_id.clone(),
                        s: peer.session,
                        v: peer.version,
                        k: peer.public_key.clone(),
                        a: peer.attestation.clone(),
                    };
                    pipe.hset(
                        &key,
                        wire::field(&peer.project, &peer.peer_id),
                        wire::encode_record(peer),
                    )
                    .ignore()
                    .pexpire(&key, ttl_ms)
                    .ignore()
                    .publish(wire::presence_channel(), event.encode())
                    .ignore();
                }
                ClusterOutput::Left {
                    project,
                    peer_id,
                    session,
                } => {
                    let event = Event::Leave {
                        n: config.node.clone(),
                        p: project.clone(),
                        i: peer_id.clone(),
                        s: *session,
                    };
                    // Only this session's record: a newer one of the same peer id stays.
                    pipe.hdel(&key, wire::field(project, peer_id))
                        .ignore()
                        .publish(wire::presence_channel(), event.encode())
                        .ignore();
                }
                ClusterOutput::Send { node, message } => {
                    pipe.publish(
                        wire::inbox_channel(node),
                        wire::encode_forward(&config.node, message),
                    )
                    .ignore();
                }
            }
        }
        if let Err(error) = bounded(pipe.query_async::<()>(conn)).await {
            // A lost rewrite is redone when the link comes back (it always rewrites).
            state.with(|core| core.cluster_undeliverable(batch));
            return Err(error);
        }
    }
}
