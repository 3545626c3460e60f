//! Requests that name peers: CreatePermission and ChannelBind, and the checks of a peer
//! against the allocation's families and the peer policy (shared with RFC 6062 Connect).

use std::net::SocketAddr;

use super::Server;
use super::allocation::{CHANNEL_LIFETIME, Channel, family_index};
use super::auth::Authenticated;
use super::own::normalize_peer;
use super::stats::DropReason;
use super::{ClientOutput, FiveTuple, Now};
use crate::proto::channel;
use crate::proto::stun::{Message, attr};

use super::requests::Reject;

impl Server {
    /// Checks that a peer (address and port) may be relayed to from this allocation (443,
    /// 403).
    pub(super) fn check_peer(&self, slot: u32, peer: SocketAddr) -> Result<(), Reject> {
        self.check_family(slot, peer)?;
        if !self.peer_allowed(peer) {
            self.stats.dropped(DropReason::PeerDenied);
            return Err((403, "Forbidden"));
        }
        Ok(())
    }

    /// 443 unless the allocation has a relay of `peer`'s family.
    fn check_family(&self, slot: u32, peer: SocketAddr) -> Result<(), Reject> {
        let alloc = self.allocations[slot as usize]
            .as_ref()
            .ok_or((437, "Allocation Mismatch"))?;
        if alloc.relays[family_index(peer.ip())].is_none() {
            return Err((443, "Peer Address Family Mismatch"));
        }
        Ok(())
    }

    /// Checks that a permission for `peer`'s IP may be installed (443, 403); returns whether
    /// each packet under it must be judged with its port.
    fn check_permission(&self, slot: u32, peer: SocketAddr) -> Result<bool, Reject> {
        self.check_family(slot, peer)?;
        match self.judge().permission_for(peer.ip(), Some(peer.port())) {
            Some(check_port) => Ok(check_port),
            None => {
                self.stats.dropped(DropReason::PeerDenied);
                Err((403, "Forbidden"))
            }
        }
    }

    pub(super) fn create_permission(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<ClientOutput, Reject> {
        let slot = self.own_allocation(ft, auth)?;
        let mut peers = Vec::new();
        for (t, v) in msg.attributes() {
            if t == attr::XOR_PEER_ADDRESS {
                let peer = msg
                    .xor_address(v)
                    .map(normalize_peer)
                    .ok_or((400, "Bad XOR-PEER-ADDRESS"))?;
                if peers.len() >= self.settings.limits.permissions_per_allocation {
                    return Err((508, "Insufficient Capacity"));
                }
                peers.push(peer);
            }
        }
        if peers.is_empty() {
            return Err((400, "Missing XOR-PEER-ADDRESS"));
        }
        let mut checks = Vec::with_capacity(peers.len());
        for peer in &peers {
            checks.push(self.check_permission(slot, *peer)?);
        }
        let max = self.settings.limits.permissions_per_allocation;
        let alloc = self.allocations[slot as usize]
            .as_mut()
            .expect("slot is live");
        // All or nothing: check capacity before installing any.
        let ips: Vec<_> = peers.iter().map(|p| p.ip()).collect();
        if !alloc.has_room_for(&ips, now.instant, max) {
            return Err((508, "Insufficient Capacity"));
        }
        for (ip, check_port) in ips.into_iter().zip(checks) {
            alloc.add_permission(ip, now.instant, max, check_port);
        }
        self.announce_channels(slot, now.instant);
        Ok(self.answer(msg, auth, Ok(()), |_| {}))
    }

    pub(super) fn channel_bind(
        &mut self,
        now: Now,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<ClientOutput, Reject> {
        let slot = self.own_allocation(ft, auth)?;
        if self.allocations[slot as usize]
            .as_ref()
            .is_some_and(|a| a.tcp)
        {
            return Err((400, "No Channels on a TCP Allocation"));
        }
        let number = match msg.get(attr::CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return Err((400, "Missing CHANNEL-NUMBER")),
        };
        if !channel::is_valid_channel(number) {
            return Err((400, "Bad Channel Number"));
        }
        let peer = msg
            .get(attr::XOR_PEER_ADDRESS)
            .and_then(|v| msg.xor_address(v))
            .map(normalize_peer)
            .ok_or((400, "Missing XOR-PEER-ADDRESS"))?;
        self.check_peer(slot, peer)?;
        let check_port = self.check_permission(slot, peer)?;
        let limits = &self.settings.limits;
        let (max_channels, max_perms) = (
            limits.channels_per_allocation,
            limits.permissions_per_allocation,
        );
        let alloc = self.allocations[slot as usize]
            .as_mut()
            .expect("slot is live");
        // Rebinding rules (RFC 8656 §12.1): a number stays with its peer and a peer with its
        // number, also during the cooldown after expiry.
        let now_i = now.instant;
        // Every check before anything is installed: a refused ChannelBind leaves neither a
        // channel nor a permission behind.
        if !alloc.has_room_for(&[peer.ip()], now_i, max_perms) {
            return Err((508, "Insufficient Capacity"));
        }
        match alloc
            .channels
            .iter_mut()
            .find(|c| c.number == number || c.peer == peer)
        {
            Some(c) if c.number == number && c.peer == peer => c.expires = now_i + CHANNEL_LIFETIME,
            Some(_) => return Err((400, "Channel Bound Elsewhere")),
            None => {
                alloc.prune(now_i);
                if alloc.channels.len() >= max_channels {
                    return Err((508, "Insufficient Capacity"));
                }
                alloc.channels.push(Channel {
                    number,
                    peer,
                    expires: now_i + CHANNEL_LIFETIME,
                });
                // A route that frames Data indications for this peer must not outlive it.
                if let Some(changes) = &alloc.route_changes {
                    changes.fetch_add(1, std::sync::atomic::Ordering::Release);
                }
            }
        }
        // Room was checked above.
        alloc.add_permission(peer.ip(), now_i, max_perms, check_port);
        self.announce_channels(slot, now_i);
        Ok(self.answer(msg, auth, Ok(()), |_| {}))
    }
}
