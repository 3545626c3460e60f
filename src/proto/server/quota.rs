//! Allocation quotas shared by every worker: per user and in total.
//!
//! Touched only when an allocation is created or ends, never per packet, so a mutex is fine.
//! The per-user table only holds users with at least one allocation, so it is bounded by the
//! total quota.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::tcp::ConnectionId;
use crate::proto::ratelimit::SourceLimiter;

/// Which quota refused an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// The user has `allocations_per_user` already (486).
    #[error("allocation quota reached for this user")]
    User,
    /// The server has `allocations_total` already (508).
    #[error("server allocation capacity reached")]
    Total,
}

/// Shared allocation counters. The two limits can be changed while allocations exist
/// ([`Quota::set_limits`], a configuration reload).
#[derive(Debug)]
pub struct Quota {
    per_user: AtomicU32,
    total: AtomicU32,
    used: Mutex<(u32, HashMap<String, u32>)>,
}

impl Quota {
    /// Quotas of `per_user` (0 = unlimited) and `total` allocations.
    pub fn new(per_user: u32, total: u32) -> Self {
        Quota {
            per_user: AtomicU32::new(per_user),
            total: AtomicU32::new(total),
            used: Mutex::new((0, HashMap::new())),
        }
    }

    /// Changes the limits. Allocations already above a lowered limit are kept; new ones are
    /// refused until enough have ended.
    pub fn set_limits(&self, per_user: u32, total: u32) {
        self.per_user.store(per_user, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Takes one allocation for `user`.
    pub fn acquire(&self, user: &str) -> Result<(), QuotaError> {
        let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *guard;
        if *total >= self.total.load(Ordering::Relaxed) {
            return Err(QuotaError::Total);
        }
        let n = users.get(user).copied().unwrap_or(0);
        let per_user = self.per_user.load(Ordering::Relaxed);
        if per_user != 0 && n >= per_user {
            return Err(QuotaError::User);
        }
        *total += 1;
        users.insert(user.to_owned(), n + 1);
        Ok(())
    }

    /// Gives back one allocation of `user`.
    pub fn release(&self, user: &str) {
        let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let (total, users) = &mut *guard;
        if let Some(n) = users.get_mut(user) {
            *n -= 1;
            *total = total.saturating_sub(1);
            if *n == 0 {
                users.remove(user);
            }
        }
    }

    /// Allocations in use across all workers.
    pub fn in_use(&self) -> u32 {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// EVEN-PORT reservations (RFC 8656 §7.2), shared by every worker: the Allocate that claims a
/// token may reach another worker than the one that made it. A reservation holds a port of the
/// pool (not a socket); the claiming worker binds it.
#[derive(Debug)]
pub struct Reservations {
    max: usize,
    held: Mutex<HashMap<[u8; 8], (std::net::SocketAddr, std::time::Instant)>>,
}

impl Reservations {
    /// A table of at most `max` reservations.
    pub fn new(max: usize) -> Self {
        Reservations {
            max,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Records a reservation; false when the table is full.
    pub fn insert(
        &self,
        token: [u8; 8],
        addr: std::net::SocketAddr,
        expires: std::time::Instant,
    ) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= self.max {
            return false;
        }
        held.insert(token, (addr, expires));
        true
    }

    /// Claims a reservation (once).
    pub fn claim(&self, token: &[u8; 8], now: std::time::Instant) -> Option<std::net::SocketAddr> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match held.remove(token) {
            Some((addr, exp)) if exp > now => Some(addr),
            Some((addr, _)) => {
                held.insert(*token, (addr, now)); // expired: left for the sweep to release
                None
            }
            None => None,
        }
    }

    /// Removes and returns expired reservations (their ports must be given back).
    pub fn expire(&self, now: std::time::Instant) -> Vec<std::net::SocketAddr> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut gone = Vec::new();
        held.retain(|_, (addr, exp)| {
            let keep = *exp > now;
            if !keep {
                gone.push(*addr);
            }
            keep
        });
        gone
    }
}

/// State every worker's core shares: quotas, reservations and the limit on unauthenticated
/// answers.
#[derive(Debug)]
pub struct Shared {
    /// Allocation quotas.
    pub quota: Quota,
    /// EVEN-PORT reservations.
    pub reservations: Reservations,
    /// The last RFC 6062 CONNECTION-ID handed out (ids are unique across workers and
    /// connections until the counter wraps after 2^32 connections).
    connection_ids: AtomicU32,
    /// The per-source limit on unauthenticated answers and failed authentications of every
    /// core, made by the first ([`Shared::source_limiter`]).
    source_limiter: Mutex<Option<SharedLimiter>>,
    /// The relayed addresses of every live allocation, kept by the cores.
    pub live_relays: super::LiveRelays,
    /// Revoked users and usernames, consulted on Allocate and Refresh (`crate::admin` keeps it).
    pub revoked: Arc<super::Revoked>,
}

/// The shared limiter and the figures it was made with.
#[derive(Debug)]
struct SharedLimiter {
    rate: u32,
    credit_cap: u32,
    size: usize,
    limiter: Arc<SourceLimiter>,
}

impl Shared {
    /// Shared state for the given quotas.
    pub fn new(per_user: u32, total: u32) -> Self {
        Shared {
            quota: Quota::new(per_user, total),
            reservations: Reservations::new(total.max(1) as usize),
            connection_ids: AtomicU32::new(0),
            source_limiter: Mutex::new(None),
            live_relays: super::LiveRelays::default(),
            revoked: Arc::default(),
        }
    }

    /// Consults `revoked` (the list the admin API keeps) instead of an empty list of its own.
    pub fn with_revoked(mut self, revoked: Arc<super::Revoked>) -> Self {
        self.revoked = revoked;
        self
    }

    /// The unauthenticated-answer limiter every core built on this `Shared` uses (UDP workers
    /// and TCP/TLS connections), so that a source gets `rate` answers per second across all of
    /// them. The first call for a `rate`, `credit_cap` and table `size` makes it (with `now` as
    /// its epoch); later calls with the same figures get the same table. A configuration reload that changes them makes a new table, which
    /// every core takes when it applies the same settings. Called when a core is made or its
    /// settings change, never per packet.
    pub fn source_limiter(&self, limits: &super::Limits, now: Instant) -> Arc<SourceLimiter> {
        let (rate, credit_cap, size) = (
            limits.unauthenticated_rate,
            limits.verified_credit,
            limits.rate_limit_table_size,
        );
        let mut slot = self
            .source_limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(current)
                if current.rate == rate
                    && current.credit_cap == credit_cap
                    && current.size == size =>
            {
                current.limiter.clone()
            }
            _ => {
                let limiter = Arc::new(SourceLimiter::new(rate, credit_cap, size, now));
                *slot = Some(SharedLimiter {
                    rate,
                    credit_cap,
                    size,
                    limiter: limiter.clone(),
                });
                limiter
            }
        }
    }

    /// A fresh RFC 6062 connection id (never 0).
    pub fn next_connection_id(&self) -> ConnectionId {
        loop {
            let id = self
                .connection_ids
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if id != 0 {
                return ConnectionId(id);
            }
        }
    }
}
