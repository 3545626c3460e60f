//! Expiry: allocations, permissions, channels (and the end of their cooldown) and RFC 6062
//! peer connections waiting for ConnectionBind end through the [`TimerQueue`], so a call of
//! [`Server::handle_timeout`] costs what is due, not what exists. Each allocation slot has one
//! entry at its earliest deadline ([`Allocation::next_deadline`]); when it fires, the slot's
//! allocation is pruned (or ended) and scheduled again at its next deadline. Changes that
//! bring a deadline forward (a new allocation, a request that shortened a lifetime or added a
//! permission, channel or peer connection) reschedule the slot; refreshes that push deadlines
//! back cost nothing here (the early entry fires and finds nothing due).
//!
//! EVEN-PORT reservations live in a table every core shares, bounded by its own limit; they
//! are swept once a second.

use std::time::Instant;

use super::tcp::{TcpEvent, TcpState};
use super::{Now, RelayIo, SWEEP_INTERVAL, Server};

/// Most allocation slots handled by one [`Server::handle_timeout`]: when more are due (many
/// allocations made in the same second expire together), the rest wait for the next call,
/// which [`Server::poll_timeout`] asks for at once. This bounds the pause of the packet loop.
pub const EXPIRY_BUDGET: usize = 1024;

impl Server {
    /// When [`Server::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        match self.timers.next() {
            Some(t) => t.min(self.next_reservation_sweep),
            None => self.next_reservation_sweep,
        }
    }

    /// Expires what is due at `now`: allocations, permissions, channels, RFC 6062 peer
    /// connections that were never bound (queued as [`TcpEvent::Close`]) and EVEN-PORT
    /// reservations. At most [`EXPIRY_BUDGET`] allocations are looked at per call.
    pub fn handle_timeout(&mut self, now: Now, io: &mut impl RelayIo) {
        self.last_seen = now.instant;
        for _ in 0..EXPIRY_BUDGET {
            let Some(slot) = self.timers.pop_due(now.instant) else {
                break;
            };
            self.expire_slot(slot, now.instant, io);
        }
        if now.instant >= self.next_reservation_sweep {
            self.next_reservation_sweep = now.instant + SWEEP_INTERVAL;
            for addr in self.shared.reservations.expire(now.instant) {
                io.release_reserved(addr);
            }
        }
    }

    /// Entries in the expiry queue, live and stale (bounded by about twice the number of
    /// allocations; exposed for tests and benchmarks).
    pub fn timer_entries(&self) -> usize {
        self.timers.entries()
    }

    /// Slot `slot`'s entry fired: ends its allocation, or drops what expired and schedules
    /// the next deadline.
    fn expire_slot(&mut self, slot: u32, now: Instant, io: &mut impl RelayIo) {
        let Some(alloc) = self.allocations[slot as usize].as_mut() else {
            return;
        };
        if alloc.expires <= now {
            self.remove_allocation(slot, io);
            return;
        }
        alloc.prune(now);
        let events = &mut self.tcp_events;
        alloc.tcp_connections.retain(|c| match c.state {
            TcpState::Pending { expires } if expires <= now => {
                events.push_back(TcpEvent::Close(c.id));
                false
            }
            _ => true,
        });
        let next = alloc.next_deadline(now);
        self.timers.schedule(slot, next);
    }

    /// Makes sure `slot`'s allocation is looked at by its earliest deadline (after anything
    /// that may have brought one forward).
    pub(super) fn reschedule(&mut self, slot: u32, now: Instant) {
        if let Some(alloc) = self.allocations.get(slot as usize).and_then(Option::as_ref) {
            self.timers.schedule(slot, alloc.next_deadline(now));
        }
    }

    /// The expiry this queue replaced, kept only to measure against it (`cargo bench --bench
    /// core --features bench-baseline`): every allocation walked at every sweep.
    #[cfg(feature = "bench-baseline")]
    #[doc(hidden)]
    pub fn handle_timeout_by_scan(&mut self, now: Now, io: &mut impl RelayIo) {
        self.last_seen = now.instant;
        let expired: Vec<u32> = self
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                a.as_ref()
                    .filter(|a| a.expires <= now.instant)
                    .map(|_| i as u32)
            })
            .collect();
        for slot in expired {
            self.remove_allocation(slot, io);
        }
        for alloc in self.allocations.iter_mut().flatten() {
            alloc.prune(now.instant);
        }
        for alloc in self.allocations.iter_mut().flatten() {
            alloc.tcp_connections.retain(|c| match c.state {
                TcpState::Pending { expires } if expires <= now.instant => {
                    self.tcp_events.push_back(TcpEvent::Close(c.id));
                    false
                }
                _ => true,
            });
        }
        for addr in self.shared.reservations.expire(now.instant) {
            io.release_reserved(addr);
        }
    }
}
