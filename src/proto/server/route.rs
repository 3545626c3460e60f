//! Direct routes between workers for relay-to-relay traffic.
//!
//! When a client sends to a relayed address owned by another core (two browsers on relay-only
//! policy whose allocations landed on different workers), the I/O layer hands each packet to
//! the owning core, which checks the receiving allocation's permission, frames it for its client
//! and sends it. Every such hand-off can cost a wake-up of the other worker. A [`DirectRoute`]
//! lets the sending core frame and send the packet itself: the owning core publishes what the
//! framing needs (the receiving client's 5-tuple and the channel it bound to the sender) and
//! until when it holds (the earlier of the channel's and the permission's expiry). Only UDP
//! clients with a channel bound to the sender and no bandwidth cap get one, so the permission
//! check, the ChannelData framing and the caps stay exactly those of the owning core. Deletion of
//! the receiving allocation is caught by the I/O layer (its relay port changes registration).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::stats::Direction;
use super::{FiveTuple, Server};
use crate::proto::{Transport, channel};

/// How to deliver, without the owning core, packets from one relayed address to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectRoute {
    /// The receiving allocation's client.
    pub five_tuple: FiveTuple,
    /// The channel the receiving allocation bound to the sender's relayed address.
    pub channel: u16,
    /// The route holds until then (the channel or the permission may lapse).
    pub expires: Instant,
}

impl Server {
    /// The route for packets from `from` to this core's relayed address `to`, when they may be
    /// delivered without this core: the receiving allocation's client is on UDP, it has no
    /// bandwidth cap, and it holds a permission for `from`'s IP and a channel bound to `from`.
    pub fn direct_route(
        &self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Option<DirectRoute> {
        let relay = self.by_relay_addr.get(&to)?;
        let slot = *self.by_relay.get(relay)?;
        let alloc = self.allocations.get(slot as usize)?.as_ref()?;
        if alloc.five_tuple.transport != Transport::Udp || alloc.bandwidth.is_some() {
            return None;
        }
        let channel = alloc
            .channels
            .iter()
            .find(|c| c.peer == from && c.expires > now)?;
        let permission = alloc
            .permissions
            .iter()
            .filter(|(ip, expires)| *ip == from.ip() && *expires > now)
            .map(|(_, expires)| *expires)
            .max()?;
        Some(DirectRoute {
            five_tuple: alloc.five_tuple,
            channel: channel.number,
            expires: channel.expires.min(permission).min(alloc.expires),
        })
    }

    /// Frames `payload` of `buf` as ChannelData for `route` in place (the four bytes before the
    /// payload become the header) and counts it as relayed to a client. `None` when the route
    /// expired or the payload has no room for the header.
    pub fn frame_direct(
        &mut self,
        now: Instant,
        route: &DirectRoute,
        buf: &mut [u8],
        payload: Range<usize>,
    ) -> Option<Range<usize>> {
        if now >= route.expires || payload.end > buf.len() {
            return None;
        }
        let start = payload.start.checked_sub(channel::HEADER_LEN)?;
        let len = payload.len();
        channel::write_header(&mut buf[start..payload.start], route.channel, len);
        self.stats
            .relayed(Direction::PeerToClient, Transport::Udp, len as u64);
        Some(start..payload.end)
    }
}
