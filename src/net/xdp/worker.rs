//! One UDP worker's side of the fast path: applies its core's announcements to the kernel maps
//! and brings back what the kernel relayed for its channels.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::FastPath;
use super::maps::{Addresses, Counters, Entry, v4};
use crate::net::relay::RelaySet;
use crate::proto::server::{
    FastPathEntry, FastPathEvent, FastPathTraffic, FiveTuple, RelayId, Server,
};

/// How often the kernel's per-channel counters are read (and expired entries removed).
const POLL_INTERVAL: Duration = Duration::from_millis(500);

struct Installed {
    entry: Entry,
    slot: u32,
    expires: Instant,
    /// The counters as last read.
    seen: Counters,
}

/// The entries one worker installed, by client 5-tuple and channel.
pub struct XdpWorker {
    shared: Arc<FastPath>,
    entries: HashMap<(FiveTuple, u16), Installed>,
    next_poll: Instant,
    warned_full: bool,
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns` and of `Instant` on Linux.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl XdpWorker {
    /// A worker's handle on the shared fast path; turns the core's announcements on.
    pub fn new(shared: Arc<FastPath>, core: &mut Server, now: Instant) -> XdpWorker {
        core.enable_fast_path();
        XdpWorker {
            shared,
            entries: HashMap::new(),
            next_poll: now + POLL_INTERVAL,
            warned_full: false,
        }
    }

    /// Applies the core's pending announcements; about twice a second, also reads the kernel's
    /// counters into the core and removes entries past their expiry. Called once per loop turn.
    pub fn sync(&mut self, core: &mut Server, relays: &RelaySet, now: Instant) {
        self.apply(core, relays, now);
        if now >= self.next_poll {
            self.next_poll = now + POLL_INTERVAL;
            self.poll(core, now);
        }
    }

    /// When the next reading of the kernel's counters is due: the worker's loop sleeps no longer
    /// (with no entry installed, nothing is due).
    pub fn next_poll(&self) -> Option<Instant> {
        (!self.entries.is_empty()).then_some(self.next_poll)
    }

    /// Applies the core's pending announcements to the kernel maps.
    pub fn apply(&mut self, core: &mut Server, relays: &RelaySet, now: Instant) {
        while let Some(event) = core.poll_fast_path() {
            match event {
                FastPathEvent::Install(entry) => self.install(core, relays, &entry, now),
                FastPathEvent::Remove {
                    five_tuple,
                    channel,
                } => self.remove(core, five_tuple, channel),
            }
        }
    }

    /// Removes every entry (the worker stops): what they relayed is counted first.
    pub fn clear(&mut self, core: &mut Server) {
        let keys: Vec<_> = self.entries.keys().copied().collect();
        for (five_tuple, channel) in keys {
            self.remove(core, five_tuple, channel);
        }
    }

    /// The relay socket's bound IPv4 address: the address peers send to. `None` for a relay
    /// bound to the wildcard (behind 1:1 NAT with `external_ip`): the program needs the
    /// address it writes as the source.
    fn relay_addr(relays: &RelaySet, id: RelayId) -> Option<std::net::SocketAddrV4> {
        let bound: SocketAddr = relays.socket(id)?.local_addr().ok()?;
        v4(bound).filter(|a| !a.ip().is_unspecified())
    }

    fn install(&mut self, core: &mut Server, relays: &RelaySet, e: &FastPathEntry, now: Instant) {
        let key = (e.five_tuple, e.channel);
        let addresses = (|| {
            Some(Addresses {
                client: v4(e.five_tuple.client)?,
                server: v4(e.five_tuple.server).filter(|a| !a.ip().is_unspecified())?,
                relay: Self::relay_addr(relays, e.relay)?,
                peer: v4(e.peer)?,
            })
        })();
        let Some(addresses) = addresses else {
            // Not something the program handles (IPv6): the user-space path relays it.
            self.remove(core, e.five_tuple, e.channel);
            return;
        };
        let expires_ns =
            monotonic_ns() + e.expires.saturating_duration_since(now).as_nanos() as u64;
        if let Some(old) = self.entries.get_mut(&key) {
            let entry = Entry::new(&addresses, e.channel, old.slot, expires_ns);
            if entry.same_keys(&old.entry) {
                // A refresh: same slot, so the counters carry on.
                if self.shared.lock().insert(&entry).is_ok() {
                    old.entry = entry;
                    old.expires = e.expires;
                    return;
                }
            }
            self.remove(core, e.five_tuple, e.channel);
        }
        let mut maps = self.shared.lock();
        let Some(slot) = maps.take_slot() else {
            drop(maps);
            self.full();
            return;
        };
        let entry = Entry::new(&addresses, e.channel, slot, expires_ns);
        if maps.insert(&entry).is_err() {
            maps.release_slot(slot);
            drop(maps);
            self.full();
            return;
        }
        drop(maps);
        tracing::debug!(
            client = %addresses.client,
            server = %addresses.server,
            relay = %addresses.relay,
            peer = %addresses.peer,
            channel = e.channel,
            slot,
            "XDP entry installed"
        );
        self.entries.insert(
            key,
            Installed {
                entry,
                slot,
                expires: e.expires,
                seen: Counters::default(),
            },
        );
        self.shared.counters.entries.fetch_add(1, Ordering::Relaxed);
    }

    fn full(&mut self) {
        if !self.warned_full {
            self.warned_full = true;
            tracing::warn!(
                "XDP fast path maps are full: further channels are relayed in user space"
            );
        }
    }

    fn remove(&mut self, core: &mut Server, five_tuple: FiveTuple, channel: u16) {
        let Some(installed) = self.entries.remove(&(five_tuple, channel)) else {
            return;
        };

        let mut maps = self.shared.lock();
        maps.remove(&installed.entry);
        // Read after the removal: nothing counts into the slot any more.
        let last = maps.counters(installed.slot);
        maps.release_slot(installed.slot);
        drop(maps);
        self.shared.counters.entries.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(
            client = %five_tuple.client,
            channel,
            packets = ?last.packets,
            bytes = ?last.bytes,
            "XDP entry removed"
        );
        self.report(core, five_tuple, &installed.seen, &last);
    }

    fn poll(&mut self, core: &mut Server, now: Instant) {
        let mut expired = Vec::new();
        let mut reports = Vec::with_capacity(self.entries.len());
        {
            let maps = self.shared.lock();
            for (key, installed) in self.entries.iter_mut() {
                let current = maps.counters(installed.slot);
                reports.push((key.0, installed.seen, current));
                installed.seen = current;
                if installed.expires <= now {
                    expired.push(*key);
                }
            }
        }
        for (five_tuple, seen, current) in reports {
            self.report(core, five_tuple, &seen, &current);
        }
        for (five_tuple, channel) in expired {
            self.remove(core, five_tuple, channel);
        }
    }

    fn report(&self, core: &mut Server, five_tuple: FiveTuple, seen: &Counters, now: &Counters) {
        let mut traffic = FastPathTraffic::default();
        for d in 0..2 {
            traffic.packets[d] = now.packets[d].wrapping_sub(seen.packets[d]);
            traffic.bytes[d] = now.bytes[d].wrapping_sub(seen.bytes[d]);
        }
        if traffic == FastPathTraffic::default() {
            return;
        }
        self.shared.add_traffic(traffic.packets, traffic.bytes);
        core.fast_path_traffic(five_tuple, traffic);
    }
}
