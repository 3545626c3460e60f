//! Revocations shared by every node of a cluster through Redis (`[cluster] redis_url`).
//!
//! Redis holds the cluster's list in the hash [`KEY`] (field `user:NAME` or `username:NAME`,
//! value the end in UNIX seconds or `none`), and a change is announced on the pub/sub channel
//! [`CHANNEL`]. Each node:
//!
//! - at start, adds the revocations of its own file that Redis lacks (a node that revoked while
//!   Redis was down, or the first node of a cluster), then adopts the hash;
//! - on a local change, writes the hash and publishes; a write that fails (Redis down) is kept
//!   in a bounded queue and retried before the next adoption, so Redis's older list never
//!   erases it;
//! - adopts the hash on every announcement, and every [`RESYNC`] in case one was missed (pub/sub
//!   does not survive a lost connection). Adopting replaces the local list (and its file) and
//!   ends the allocations that a new revocation covers.
//!
//! Redis down: the node keeps the list it has, logs once per outage, and retries with back-off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use redis::AsyncCommands as _;

use super::Admin;
use crate::proto::server::{RevocationList, Subject};

/// The Redis hash that holds the cluster's revocations.
pub const KEY: &str = "turnpike:revocations";
/// The pub/sub channel that announces a change.
pub const CHANNEL: &str = "turnpike:revocations:changed";
/// How often the hash is adopted even without an announcement.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Local changes waiting for Redis, at most.
const MAX_PENDING: usize = 1024;
/// Longest wait between two attempts while Redis is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A change to push to Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set a revocation.
    Set(Subject, Option<u64>),
    /// Remove one.
    Remove(Subject),
}

fn field(subject: &Subject) -> String {
    format!("{}:{}", subject.kind(), subject.name())
}

fn parse_field(field: &str, value: &str) -> Option<(Subject, Option<u64>)> {
    let (kind, name) = field.split_once(':')?;
    let subject = match kind {
        "user" => Subject::User(name.to_owned()),
        "username" => Subject::Username(name.to_owned()),
        _ => return None,
    };
    let until = match value {
        "none" => None,
        v => Some(v.parse().ok()?),
    };
    Some((subject, until))
}

fn value(until: Option<u64>) -> String {
    until.map_or_else(|| "none".to_owned(), |t| t.to_string())
}

/// The hash's content as a list (malformed and expired fields skipped, bounded).
pub fn decode_hash(hash: &HashMap<String, String>, now: u64) -> RevocationList {
    RevocationList::from_entries(hash.iter().filter_map(|(f, v)| parse_field(f, v)), now)
}

/// The link between a node's [`Admin`] and Redis.
#[derive(Debug)]
pub struct RedisSync {
    client: redis::Client,
    pending: Mutex<Vec<Change>>,
    wake: tokio::sync::Notify,
}

impl RedisSync {
    /// A link to the Redis at `url` (validated by the configuration); nothing is connected yet.
    pub fn new(url: &str) -> redis::RedisResult<RedisSync> {
        Ok(RedisSync {
            client: redis::Client::open(url)?,
            pending: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Queues a local change for Redis and wakes the sync task.
    pub fn push(&self, change: Change) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING {
            // The oldest goes: a later adoption of Redis's list decides for it.
            pending.remove(0);
        }
        pending.push(change);
        drop(pending);
        self.wake.notify_one();
    }

    async fn flush(&self, conn: &mut redis::aio::ConnectionManager) -> redis::RedisResult<()> {
        let changes: Vec<Change> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if changes.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for change in &changes {
            match change {
                Change::Set(s, until) => pipe.hset(KEY, field(s), value(*until)).ignore(),
                Change::Remove(s) => pipe.hdel(KEY, field(s)).ignore(),
            };
        }
        pipe.publish(CHANNEL, "changed").ignore();
        pipe.query_async::<()>(conn).await?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let done = changes.len().min(pending.len());
        pending.drain(..done);
        Ok(())
    }
}

/// Runs the sync for `admin` until the process ends: see the module documentation.
pub async fn run(admin: Arc<Admin>, sync: Arc<RedisSync>) {
    let mut backoff = Duration::from_millis(200);
    let mut down = false;
    loop {
        match session(&admin, &sync).await {
            Ok(()) => return,
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "revocation sync: Redis unreachable; the local list stays in force, retrying");
                    down = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if session_ok_probe(&sync).await {
                    down = false;
                    backoff = Duration::from_millis(200);
                    tracing::info!("revocation sync: Redis reachable again");
                }
            }
        }
    }
}

async fn session_ok_probe(sync: &RedisSync) -> bool {
    sync.client.get_multiplexed_async_connection().await.is_ok()
}

/// One connected stretch: seed, adopt, then follow announcements and local changes.
async fn session(admin: &Arc<Admin>, sync: &Arc<RedisSync>) -> redis::RedisResult<()> {
    let mut conn = redis::aio::ConnectionManager::new(sync.client.clone()).await?;
    let mut pubsub = sync.client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.into_on_message();
    // Seed: what this node has that the cluster lacks.
    let now = crate::net::udp::now().unix;
    let hash: HashMap<String, String> = conn.hgetall(KEY).await?;
    let theirs = decode_hash(&hash, now);
    for (subject, until) in admin.revocations().pruned(now).entries() {
        if theirs.get(&subject).is_none() {
            sync.push(Change::Set(subject, until));
        }
    }
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        sync.flush(&mut conn).await?;
        let hash: HashMap<String, String> = conn.hgetall(KEY).await?;
        let list = decode_hash(&hash, crate::net::udp::now().unix);
        admin.adopt(list).await;
        tokio::select! {
            message = messages.next() => {
                if message.is_none() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "the pub/sub connection closed",
                    )));
                }
            }
            _ = sync.wake.notified() => {}
            _ = resync.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_bad_ones_are_skipped() {
        let mut hash = HashMap::new();
        hash.insert(field(&Subject::User("a:b".into())), value(Some(100)));
        hash.insert(field(&Subject::Username("9:c".into())), value(None));
        hash.insert("group:x".into(), "none".into());
        hash.insert("user:y".into(), "soon".into());
        hash.insert("user:old".into(), "5".into());
        let list = decode_hash(&hash, 10);
        assert_eq!(
            list.entries(),
            vec![
                (Subject::User("a:b".into()), Some(100)),
                (Subject::Username("9:c".into()), None),
            ]
        );
    }
}
