//! Announcements for a kernel fast path (the I/O layer's XDP program, `net::xdp`): which
//! channels of which allocations may be relayed without the core, and until when.
//!
//! The core stays the owner of all state. When the I/O layer turned the fast path on
//! ([`Server::enable_fast_path`]), the core queues a [`FastPathEvent::Install`] whenever a
//! channel of an eligible allocation is bound or one of the lifetimes it depends on (channel,
//! permission, allocation) is refreshed, and a [`FastPathEvent::Remove`] when the allocation
//! ends or a reload revokes the channel or its permission. An entry carries the moment it
//! expires (the earliest of the three lifetimes); past it the I/O layer removes it and its
//! packets reach the core again, which drops them as it always does. Eligible: UDP clients,
//! no bandwidth cap (the kernel does not enforce it), a live permission whose verdict does not
//! depend on the port, and a peer that is not one of our own relayed addresses (relay to relay
//! is short-circuited in memory).
//!
//! What the kernel relayed comes back through [`Server::fast_path_traffic`], so the counters,
//! the per-allocation traffic and the live bandwidth stay right.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::allocation::Allocation;
use super::{Direction, FiveTuple, RelayId, Server, Transport};

/// At most this many announcements wait for the I/O layer (it takes them every loop turn).
/// Past it, installs are left out (their channels stay on the user-space path); removals are
/// always queued, and there can be no more of them than of installs before.
const MAX_PENDING: usize = 65536;

/// A channel the fast path may relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPathEntry {
    /// The client's 5-tuple (its address and the listener address it uses).
    pub five_tuple: FiveTuple,
    /// The channel number.
    pub channel: u16,
    /// The peer the channel is bound to.
    pub peer: SocketAddr,
    /// The relay socket the peer exchanges datagrams with.
    pub relay: RelayId,
    /// The relay's advertised address.
    pub relay_addr: SocketAddr,
    /// When the entry stops being valid unless announced again: the earliest expiry of the
    /// channel, its permission and the allocation.
    pub expires: Instant,
}

/// What the I/O layer's fast path must change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastPathEvent {
    /// Install the entry, or replace the one for the same 5-tuple and channel.
    Install(FastPathEntry),
    /// Remove the entry of this 5-tuple and channel, if there is one.
    Remove {
        /// The client's 5-tuple.
        five_tuple: FiveTuple,
        /// The channel number.
        channel: u16,
    },
}

/// Packets and payload bytes the fast path relayed for one channel since it last reported,
/// indexed by [`Direction`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastPathTraffic {
    /// Packets per direction.
    pub packets: [u64; 2],
    /// Payload bytes per direction.
    pub bytes: [u64; 2],
}

/// The queue of announcements; `None` while the fast path is off (nothing is queued).
#[derive(Debug, Default)]
pub(super) struct FastPathQueue {
    events: Option<VecDeque<FastPathEvent>>,
}

impl FastPathQueue {
    fn push(&mut self, event: FastPathEvent) {
        if let Some(events) = self.events.as_mut() {
            if matches!(event, FastPathEvent::Install(_)) && events.len() >= MAX_PENDING {
                return;
            }
            events.push_back(event);
        }
    }

    fn enabled(&self) -> bool {
        self.events.is_some()
    }
}

impl Server {
    /// Turns the fast-path announcements on: from now on the core queues them for
    /// [`Server::poll_fast_path`]. The I/O layer calls it once its kernel program is attached.
    pub fn enable_fast_path(&mut self) {
        if self.fast_path.events.is_none() {
            self.fast_path.events = Some(VecDeque::new());
        }
    }

    /// The next announcement for the fast path, if any.
    pub fn poll_fast_path(&mut self) -> Option<FastPathEvent> {
        self.fast_path.events.as_mut()?.pop_front()
    }

    /// Counts what the fast path relayed for a channel of the allocation of `five_tuple`
    /// (the allocation may have ended since: the relayed counters still count it).
    pub fn fast_path_traffic(&mut self, five_tuple: FiveTuple, traffic: FastPathTraffic) {
        for direction in [Direction::ClientToPeer, Direction::PeerToClient] {
            let d = direction as usize;
            self.stats.relayed_many(
                direction,
                five_tuple.transport,
                traffic.packets[d],
                traffic.bytes[d],
            );
        }
        let Some(alloc) = self
            .by_tuple
            .get(&five_tuple)
            .and_then(|&slot| self.allocations[slot as usize].as_mut())
        else {
            return;
        };
        // No bandwidth bucket to charge: capped allocations never get an entry.
        for d in 0..2 {
            alloc.traffic.bytes[d] = alloc.traffic.bytes[d].wrapping_add(traffic.bytes[d]);
            alloc.traffic.packets[d] = alloc.traffic.packets[d].wrapping_add(traffic.packets[d]);
        }
    }

    /// Announces every channel of the allocation in `slot` again: installed with its current
    /// expiry when eligible, removed otherwise. Called after a request changed a lifetime or
    /// bound a channel.
    pub(super) fn announce_channels(&mut self, slot: u32, now: Instant) {
        if !self.fast_path.enabled() {
            return;
        }
        let Some(alloc) = self.allocations[slot as usize].as_ref() else {
            return;
        };
        for channel in &alloc.channels {
            let event = match self.eligible(alloc, channel.number, now) {
                Some(entry) => FastPathEvent::Install(entry),
                None => FastPathEvent::Remove {
                    five_tuple: alloc.five_tuple,
                    channel: channel.number,
                },
            };
            self.fast_path.push(event);
        }
    }

    /// Announces the removal of every channel of `alloc` (it ends).
    pub(super) fn announce_removal(&mut self, alloc: &Allocation) {
        if !self.fast_path.enabled() {
            return;
        }
        for channel in &alloc.channels {
            self.fast_path.push(FastPathEvent::Remove {
                five_tuple: alloc.five_tuple,
                channel: channel.number,
            });
        }
    }

    /// Before a reload revokes what the new settings deny: announces the removal of every
    /// channel whose peer they deny (its channel or its permission is about to go).
    pub(super) fn announce_revocations(&mut self) {
        if !self.fast_path.enabled() {
            return;
        }
        let judge = self.judge();
        let mut removed = Vec::new();
        for alloc in self.allocations.iter().flatten() {
            for channel in &alloc.channels {
                if !judge.allowed(channel.peer)
                    || judge.permission_for(channel.peer.ip(), None).is_none()
                {
                    removed.push(FastPathEvent::Remove {
                        five_tuple: alloc.five_tuple,
                        channel: channel.number,
                    });
                }
            }
        }
        for event in removed {
            self.fast_path.push(event);
        }
    }

    /// The entry for channel `number` of `alloc`, when the fast path may relay it.
    fn eligible(&self, alloc: &Allocation, number: u16, now: Instant) -> Option<FastPathEntry> {
        if alloc.five_tuple.transport != Transport::Udp || alloc.tcp || alloc.bandwidth.is_some() {
            return None;
        }
        let channel = alloc.channel(number, now)?;
        let permission = alloc.permission(channel.peer.ip(), now)?;
        if permission.check_port || self.settings.own_relay_ips.contains(&channel.peer.ip()) {
            return None;
        }
        let relay = alloc.relay_for(channel.peer)?;
        Some(FastPathEntry {
            five_tuple: alloc.five_tuple,
            channel: number,
            peer: channel.peer,
            relay: relay.id,
            relay_addr: relay.addr,
            expires: channel.expires.min(permission.expires).min(alloc.expires),
        })
    }
}
