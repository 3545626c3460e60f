//! The fleet task: once per period it measures this node's load, publishes it to Redis with a
//! TTL, reads the other nodes' records, and hands the drain alternates to the cores. Every
//! Redis exchange has a timeout; a failure leaves this node alone in its view until Redis
//! answers again (redis-rs' `ConnectionManager` reconnects by itself).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::load::NodeLoad;
use super::view::Fleet;
use crate::metrics::Metrics;
use crate::net::live::CoreUpdates;
use crate::proto::Transport;

/// Key prefix of every fleet key.
pub const PREFIX: &str = "turnpike:fleet:";
/// Most node records read per period.
pub const MAX_NODES: usize = 256;
/// How long one Redis exchange (a publication, or a read) may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);

/// The key of a node's record.
pub fn node_key(node: &str) -> String {
    format!("{PREFIX}node:{node}")
}

/// The sorted set of node ids, scored by the UNIX time their record expires.
pub fn nodes_key() -> String {
    format!("{PREFIX}nodes")
}

/// How often a node publishes for a record TTL of `ttl`: a quarter of it, at least a second,
/// so three publications in a row can be lost before the others see the node as dead.
pub fn period(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_secs(1))
}

/// What the task needs from the running server.
pub struct Sources {
    /// Counters of every core (allocations, relayed bytes).
    pub metrics: Arc<Metrics>,
    /// The draining flag, and where the alternates go.
    pub updates: Arc<CoreUpdates>,
}

/// Runs the fleet task until `stop` turns true: publishes with `redis_url` (when given) every
/// [`period`] of `ttl`, and keeps the cores' alternates current (also without Redis, for
/// `fleet.alternate_servers`).
pub async fn run(
    fleet: Arc<Fleet>,
    redis_url: Option<String>,
    ttl: Duration,
    sources: Sources,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut redis = match redis_url.as_deref().map(connect).transpose() {
        Ok(r) => r,
        Err(error) => {
            // The URL was validated at start; a client that cannot even be built is logged once.
            tracing::error!(%error, "fleet: cannot create the Redis client; running alone");
            None
        }
    };
    let mut tick = tokio::time::interval(period(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut meter = Meter::default();
    let mut was_draining = false;
    // A drain is published at once, not at the next period: checked this often.
    let mut drain_watch = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = drain_watch.tick() => {
                if sources.updates.is_draining() == was_draining {
                    continue;
                }
            }
            _ = stop.changed() => return,
        }
        was_draining = sources.updates.is_draining();
        let mut local = NodeLoad::clone(&fleet.local());
        let (allocations, bytes_per_sec) = meter.measure(&sources.metrics, Instant::now());
        local.allocations = allocations;
        local.relayed_bytes_per_sec = bytes_per_sec;
        local.draining = was_draining;
        fleet.set_local(local.clone());
        if let Some(manager) = redis.as_mut() {
            let exchange = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange(manager, &local, ttl));
            match exchange.await {
                Ok(Ok(others)) => fleet.redis_ok(others),
                Ok(Err(error)) => fleet.redis_failed(&error.to_string()),
                Err(_) => fleet.redis_failed("timed out"),
            }
        }
        sources.updates.publish_alternates(fleet.alternates());
    }
}

fn connect(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(EXCHANGE_TIMEOUT))
        .set_response_timeout(Some(EXCHANGE_TIMEOUT))
        .set_max_delay(Duration::from_secs(5));
    // Lazy: the first exchange connects, so a node starts while Redis is down.
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Publishes `local` (record with a TTL, its id in the sorted set, expired ids pruned) in one
/// MULTI, then reads the live records (ids whose expiry is in the future, at most
/// [`MAX_NODES`], then their records: an id whose record expired reads as nothing).
async fn exchange(
    redis: &mut ConnectionManager,
    local: &NodeLoad,
    ttl: Duration,
) -> redis::RedisResult<Vec<NodeLoad>> {
    let now = unix_now();
    let ttl_secs = ttl.as_secs().max(1);
    let _: () = redis::pipe()
        .atomic()
        .set_ex(node_key(&local.node), local.encode(), ttl_secs)
        .ignore()
        .zadd(nodes_key(), &local.node, now + ttl_secs)
        .ignore()
        .zrembyscore(nodes_key(), "-inf", format!("({now}"))
        .ignore()
        .query_async(redis)
        .await?;
    let ids: Vec<String> = redis
        .zrangebyscore_limit(nodes_key(), now, "+inf", 0, MAX_NODES as isize)
        .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| node_key(id)).collect();
    let records: Vec<Option<Vec<u8>>> = redis.mget(keys).await?;
    Ok(records
        .into_iter()
        .flatten()
        .filter_map(|r| NodeLoad::decode(&r))
        .collect())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Turns the cores' cumulative counters into live allocations and a relayed byte rate.
#[derive(Default)]
struct Meter {
    last: Option<(Instant, u64)>,
}

impl Meter {
    fn measure(&mut self, metrics: &Metrics, now: Instant) -> (u64, u64) {
        let totals = metrics.totals();
        let allocations = [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .map(|t| totals.allocations_active(t))
            .sum();
        let bytes: u64 = totals.relayed_bytes.iter().flatten().sum();
        let rate = match self.last {
            Some((then, before)) => {
                let secs = now.duration_since(then).as_secs_f64();
                if secs > 0.0 {
                    (bytes.saturating_sub(before) as f64 / secs) as u64
                } else {
                    0
                }
            }
            None => 0,
        };
        self.last = Some((now, bytes));
        (allocations, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_several_times_per_ttl() {
        assert_eq!(period(Duration::from_secs(10)), Duration::from_millis(2500));
        assert_eq!(period(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(node_key("a"), "turnpike:fleet:node:a");
    }
}
