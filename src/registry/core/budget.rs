//! The registry's budgets: bytes queued per peer and in all (`peer_budget_bytes`,
//! `budget_bytes`), a project's shared message rate (`project_messages_per_sec`), and the
//! key connections are counted under per client address.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::super::queue::TokenBucket;
use super::{ConnId, Registry};

/// The key a client address is counted under for `max_connections_per_ip`: the IPv4 address
/// (IPv4-mapped addresses included), or the /64 of an IPv6 address (one host commonly holds a
/// whole /64), as the TCP listeners count (`net::stream::limits`).
pub(super) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

impl Registry {
    /// True when `len` more bytes queued for `target` stay within its budget and the
    /// registry's.
    pub(super) fn fits(&self, target: ConnId, len: usize) -> bool {
        let queued = self.conns.get(&target).map_or(0, |t| t.queue.bytes());
        (queued + len) as u64 <= self.config.peer_budget_bytes
            && (self.queued_bytes + len) as u64 <= self.config.budget_bytes
    }

    pub(super) fn account_add(&mut self, len: usize) {
        self.queued_bytes += len;
        self.metrics
            .queued_bytes
            .store(self.queued_bytes as i64, Ordering::Relaxed);
    }

    pub(super) fn account_sub(&mut self, len: usize) {
        self.queued_bytes = self.queued_bytes.saturating_sub(len);
        self.metrics
            .queued_bytes
            .store(self.queued_bytes as i64, Ordering::Relaxed);
    }

    /// Takes one message from `project`'s `project_messages_per_sec` bucket; true when
    /// allowed (always, with no project limit).
    pub(super) fn project_allows(&mut self, now: Instant, project: &str) -> bool {
        let per_sec = self.config.project_messages_per_sec;
        if per_sec == 0 {
            return true;
        }
        let Some(p) = self.projects.get_mut(project) else {
            return true;
        };
        let rate = f64::from(per_sec);
        p.messages
            .get_or_insert_with(|| TokenBucket::new(rate, 2.0 * rate, now))
            .take(now, 1.0)
    }
}
