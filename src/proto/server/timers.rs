//! The expiry queue: when each allocation next needs attention, so that the core's timeout
//! handling costs what expires, not what exists.
//!
//! One entry per allocation slot: the earliest of its deadlines (its own expiry, its
//! permissions', its channels' and their cooldowns', its RFC 6062 connections' ConnectionBind
//! timeouts). The queue is a binary heap of `(deadline, slot, generation)` with lazy deletion:
//!
//! - A refresh that *postpones* a deadline changes nothing here: the entry fires at the old
//!   time, the core finds nothing due, and schedules the slot again at its new earliest
//!   deadline. A refresh storm therefore costs no queue work at all.
//! - A change that makes a deadline *earlier* (a shorter lifetime, a new permission expiring
//!   before the allocation) pushes a new entry and bumps the slot's generation, which turns
//!   the old entry stale; [`TimerQueue::cancel`] (an allocation's end) does the same.
//! - Stale entries are discarded when they reach the top, and the heap is compacted whenever
//!   they outnumber the live ones (plus a small constant), so it never holds more than about
//!   twice one entry per live allocation, whatever the clients do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Stale entries tolerated beyond the live ones before the heap is compacted.
const STALE_SLACK: usize = 64;

/// The per-slot state: when its live entry fires, and the generation that entry carries.
#[derive(Clone, Copy, Debug, Default)]
struct Scheduled {
    at: Option<Instant>,
    generation: u32,
}

/// A min-queue of deadlines keyed by allocation slot (see the module documentation).
#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    slots: Vec<Scheduled>,
    live: usize,
}

impl TimerQueue {
    /// Makes sure `slot` is looked at no later than `at`. Keeps an earlier entry (it fires,
    /// and the owner schedules again); replaces a later one.
    pub fn schedule(&mut self, slot: u32, at: Instant) {
        let i = slot as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Scheduled::default());
        }
        let s = &mut self.slots[i];
        match s.at {
            Some(t) if t <= at => return,
            Some(_) => {}
            None => self.live += 1,
        }
        s.generation = s.generation.wrapping_add(1);
        s.at = Some(at);
        self.heap.push(Reverse((at, slot, s.generation)));
        self.compact_if_stale();
    }

    /// Forgets `slot` (its allocation ended): its entry, if any, turns stale.
    pub fn cancel(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.at.take().is_some() {
                s.generation = s.generation.wrapping_add(1);
                self.live -= 1;
                self.compact_if_stale();
            }
        }
    }

    /// The next slot whose entry is due at `now`, removed from the queue (stale entries met
    /// on the way are dropped).
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        while let Some(&Reverse((at, slot, generation))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            let s = &mut self.slots[slot as usize];
            if s.generation == generation && s.at == Some(at) {
                s.at = None;
                self.live -= 1;
                return Some(slot);
            }
        }
        None
    }

    /// When the earliest entry fires (it may be stale: firing early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// When `slot`'s live entry fires.
    #[cfg(test)]
    pub fn scheduled(&self, slot: u32) -> Option<Instant> {
        self.slots.get(slot as usize).and_then(|s| s.at)
    }

    /// Entries in the heap, live and stale.
    pub fn entries(&self) -> usize {
        self.heap.len()
    }

    /// Slots with a live entry.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.live
    }

    fn compact_if_stale(&mut self) {
        if self.heap.len() <= 2 * self.live + STALE_SLACK {
            return;
        }
        let slots = &self.slots;
        self.heap.retain(|Reverse((at, slot, generation))| {
            let s = slots[*slot as usize];
            s.generation == *generation && s.at == Some(*at)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn due_slots_come_out_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(3, secs(t0, 30));
        q.schedule(1, secs(t0, 10));
        q.schedule(2, secs(t0, 20));
        assert_eq!(q.next(), Some(secs(t0, 10)));
        assert_eq!(q.pop_due(secs(t0, 9)), None);
        assert_eq!(q.pop_due(secs(t0, 25)), Some(1));
        assert_eq!(q.pop_due(secs(t0, 25)), Some(2));
        assert_eq!(q.pop_due(secs(t0, 25)), None);
        assert_eq!(q.pop_due(secs(t0, 30)), Some(3));
        assert_eq!(q.entries(), 0);
        assert_eq!(q.live(), 0);
    }

    #[test]
    fn a_later_deadline_keeps_the_earlier_entry_and_an_earlier_one_replaces_it() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(0, secs(t0, 10));
        q.schedule(0, secs(t0, 50)); // postponed: the entry at 10 stays
        assert_eq!((q.entries(), q.scheduled(0)), (1, Some(secs(t0, 10))));
        q.schedule(0, secs(t0, 5)); // earlier: replaces it
        assert_eq!((q.entries(), q.live()), (2, 1));
        assert_eq!(q.pop_due(secs(t0, 5)), Some(0));
        // The stale entry at 10 is dropped, not returned.
        assert_eq!(q.pop_due(secs(t0, 100)), None);
        assert_eq!(q.entries(), 0);
    }

    #[test]
    fn a_cancelled_slot_never_comes_out() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.schedule(7, secs(t0, 1));
        q.cancel(7);
        q.cancel(7); // twice is harmless
        assert_eq!(q.live(), 0);
        assert_eq!(q.pop_due(secs(t0, 10)), None);
    }

    #[test]
    fn a_million_alternating_reschedules_keep_the_heap_bounded() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        for slot in 0..10 {
            q.schedule(slot, secs(t0, 1000));
        }
        // Each turn moves slot 0 later (free) and then earlier (a push and a stale entry): the
        // worst pattern a client can cause with Refresh lifetimes.
        let mut max = 0;
        for i in 0..1_000_000u64 {
            let base = 2_000_000 - 2 * i;
            q.cancel(0);
            q.schedule(0, secs(t0, base));
            q.schedule(0, secs(t0, base - 1));
            max = max.max(q.entries());
        }
        assert!(max <= 2 * 10 + STALE_SLACK + 1, "heap grew to {max}");
        assert_eq!(q.live(), 10);
    }
}
