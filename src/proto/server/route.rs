//! Direct routes between workers for relay-to-relay traffic.
//!
//! When a client sends to a relayed address owned by another core (two browsers on relay-only
//! policy whose allocations landed on different workers), the I/O layer hands each packet to
//! the owning core, which checks the receiving allocation's permission, frames it for its client
//! and sends it. Every such hand-off can cost a wake-up of the other worker. A [`DirectRoute`]
//! lets the sending core frame and send the packet itself: the owning core publishes what the
//! framing needs (the receiving client's 5-tuple and the channel it bound to the sender, if any)
//! and until when it holds (the earlier of the permission's and the channel's expiry). Only UDP
//! clients without a bandwidth cap get one, so the permission check, the framing and the caps
//! stay exactly those of the owning core. A channel newly bound voids the routes to its
//! allocation (they would frame Data indications where ChannelData is due); the deletion of the
//! receiving allocation is caught by the I/O layer (its relay port changes registration).

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::stats::Direction;
use super::{FiveTuple, PEER_TAILROOM, Server, data_indication_header_len, write_data_indication};
use crate::proto::{Transport, channel};

/// How to deliver, without the owning core, packets from one relayed address to another.
#[derive(Clone, Debug)]
pub struct DirectRoute {
    /// The receiving allocation's client.
    pub five_tuple: FiveTuple,
    /// The channel the receiving allocation bound to the sender's relayed address; `None`:
    /// Data indications.
    pub channel: Option<u16>,
    /// The route holds until then (the permission or the channel may lapse).
    pub expires: Instant,
    /// The receiving allocation's count of route-voiding changes, and its value when the route
    /// was made.
    changes: Arc<AtomicU32>,
    made_at: u32,
}

impl DirectRoute {
    /// False once the receiving allocation changed in a way that voids the route.
    fn current(&self) -> bool {
        self.changes.load(Ordering::Acquire) == self.made_at
    }
}

impl Server {
    /// The route for packets from `from` to this core's relayed address `to`, when they may be
    /// delivered without this core: the receiving allocation's client is on UDP, it has no
    /// bandwidth cap, and it holds a permission for `from`'s IP.
    pub fn direct_route(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Option<DirectRoute> {
        let relay = self.by_relay_addr.get(&to)?;
        let slot = self.by_relay.get(*relay)?;
        let alloc = self.allocations.get_mut(slot as usize)?.as_mut()?;
        if alloc.five_tuple.transport != Transport::Udp || alloc.bandwidth.is_some() {
            return None;
        }
        let permission = alloc
            .permissions
            .iter()
            .filter(|p| p.ip == from.ip() && p.expires > now)
            .map(|p| p.expires)
            .max()?;
        let channel = alloc
            .channels
            .iter()
            .find(|c| c.peer == from && c.expires > now);
        let expires = channel
            .map_or(permission, |c| c.expires.min(permission))
            .min(alloc.expires);
        let channel = channel.map(|c| c.number);
        let changes = alloc
            .route_changes
            .get_or_insert_with(|| Arc::new(AtomicU32::new(0)))
            .clone();
        let made_at = changes.load(Ordering::Acquire);
        Some(DirectRoute {
            five_tuple: alloc.five_tuple,
            channel,
            expires,
            changes,
            made_at,
        })
    }

    /// Frames `payload` of `buf`, sent by `from`, for `route` in place: as ChannelData (the
    /// four bytes before the payload become the header) or as a Data indication (the header
    /// and attributes before the payload, padding after it). Counts it as relayed to a client.
    /// `None` when the route no longer holds or `buf` has no room around the payload.
    pub fn frame_direct(
        &mut self,
        now: Instant,
        route: &DirectRoute,
        from: SocketAddr,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Option<Range<usize>> {
        if now >= route.expires || !route.current() || payload.end > buf.len() {
            return None;
        }
        let len = payload.len();
        let frame = match route.channel {
            Some(number) => {
                let start = payload.start.checked_sub(channel::HEADER_LEN)?;
                channel::write_header(&mut buf[start..payload.start], number, len);
                start..payload.end
            }
            None => {
                payload
                    .start
                    .checked_sub(data_indication_header_len(from))?;
                if payload.start + len + PEER_TAILROOM > buf.len() {
                    return None;
                }
                self.indication_counter = self.indication_counter.wrapping_add(1);
                let mut tid = [0u8; 12];
                tid[4..].copy_from_slice(&self.indication_counter.to_be_bytes());
                write_data_indication(buf, payload.start, from, len, tid)
            }
        };
        self.stats
            .relayed(Direction::PeerToClient, Transport::Udp, len as u64);
        Some(frame)
    }
}
