//! The TURN server state machine (RFC 8656 over RFC 8489), sans-IO.
//!
//! One [`Server`] is owned by one worker. Input goes in with the current time:
//! [`Server::handle_client`] for bytes from a client, [`Server::handle_peer`] for bytes a relay
//! socket received from a peer, [`Server::handle_timeout`] when [`Server::poll_timeout`] is
//! due. Outputs say what to send where, pointing into the caller's buffers so that relayed
//! packets are never copied or allocated. Relay sockets are opened and closed through the
//! [`RelayIo`] trait that the I/O layer implements.

mod admin;
mod allocation;
mod auth;
mod expiry;
mod fast_path;
mod indication;
mod own;
mod permissions;
mod quota;
mod relay_slots;
mod requests;
mod revoked;
mod route;
mod stats;
mod tcp;
#[cfg(test)]
mod tests;
mod timers;
mod types;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::proto::Transport;
pub use admin::{AllocationId, AllocationInfo, ChannelInfo, End, Listing, PermissionInfo};
pub use allocation::{
    Allocation, CHANNEL_LIFETIME, PERMISSION_LIFETIME, Permission, Traffic, family_index,
};
pub use auth::{AuthFailure, Authenticated, Authenticator, long_term_key};
pub use expiry::EXPIRY_BUDGET;
pub use fast_path::{FastPathEntry, FastPathEvent, FastPathTraffic};
pub use own::LiveRelays;
pub use quota::{Quota, QuotaError, Reservations, Shared};
pub use revoked::{MAX_REVOCATIONS, RevocationList, RevokeError, Revoked, Subject};
pub use route::DirectRoute;
pub use stats::{
    AUTH_FAILURES, DIRECTIONS, Direction, DropReason, ERROR_CODES, LIFETIME_BUCKETS, RESULTS,
    RequestMethod, Stats, StatsSnapshot, TRANSPORT_ORDER, TRANSPORTS, result_index, result_label,
    transport_index,
};
pub use tcp::{
    BIND_TIMEOUT, CONNECT_TIMEOUT, ConnectionId, Refusal, TcpBandwidth, TcpConnection, TcpEvent,
};
pub use types::*;

use crate::proto::channel;
use crate::proto::ratelimit::SourceLimit;
use crate::proto::stun::{Class, Message, attr, method};
use indication::{data_indication_header_len, write_data_indication};

/// The TURN server core of one worker.
pub struct Server {
    settings: Arc<Settings>,
    shared: Arc<Shared>,
    /// The per-source limit on unauthenticated answers and failed authentications, shared
    /// with every other core (UDP and TCP/TLS).
    limiter: SourceLimit,
    /// Set while the server drains: new allocations are refused, existing ones carry on.
    draining: bool,
    /// Where a draining server sends new allocations (300 Try Alternate), best first.
    alternates: Arc<crate::proto::alternate::Alternates>,
    allocations: Vec<Option<Allocation>>,
    free_slots: Vec<u32>,
    /// Allocation slots by client 5-tuple: looked up once per relayed packet, so hashed with
    /// foldhash (fast, randomly seeded) rather than SipHash.
    by_tuple: HashMap<FiveTuple, u32, FastHash>,
    /// Allocation slots by relay socket: indexed by the relay id (the I/O layer's slab key).
    by_relay: relay_slots::RelaySlots,
    /// Relay sockets by their advertised address, for the relay-to-relay short-circuit.
    by_relay_addr: HashMap<SocketAddr, RelayId, FastHash>,
    reply: Vec<u8>,
    /// When each allocation next needs its expiry looked at (see `expiry.rs`).
    timers: timers::TimerQueue,
    /// When the shared EVEN-PORT reservations are next swept.
    next_reservation_sweep: Instant,
    indication_counter: u64,
    stats: Arc<Stats>,
    /// The latest time the I/O layer passed in: ends allocations closed without a time
    /// ([`Server::close_all`], [`Server::close_five_tuple`]) for the lifetime histogram.
    last_seen: Instant,
    tcp_events: VecDeque<TcpEvent>,
    pending_bind: Option<tcp::PendingBind>,
    /// Announcements for the I/O layer's kernel fast path (off unless it asked for them).
    fast_path: fast_path::FastPathQueue,
}

/// The hasher of the per-packet lookup tables: foldhash, fast and randomly seeded.
pub type FastHash = foldhash::fast::RandomState;

/// How often expired EVEN-PORT reservations are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How long an EVEN-PORT reservation is held (RFC 8656 §7.2 suggests about 30 s).
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

impl Server {
    /// A server core; `shared` is shared by every worker, and so is the per-source limit on
    /// unauthenticated answers it holds ([`Shared::source_limiter`]). It counts into counters
    /// of its own ([`Stats::single_writer`]), which [`Server::stats`] hands to the metrics
    /// collector.
    pub fn new(settings: Settings, shared: Arc<Shared>, now: Instant) -> Self {
        Server::with_stats(settings, shared, now, Arc::new(Stats::single_writer()))
    }

    /// A server core that counts into `stats`. Cores that run at the same time (one per
    /// TCP/TLS connection task) must share a [`Stats::shared`]; a [`Stats::single_writer`]
    /// must belong to one core only.
    pub fn with_stats(
        settings: Settings,
        shared: Arc<Shared>,
        now: Instant,
        stats: Arc<Stats>,
    ) -> Self {
        Self::with_shared_settings(Arc::new(settings), shared, now, stats)
    }

    /// A datagram core (a UDP worker's) whose settings are shared with other cores and may be
    /// replaced while it runs ([`Server::set_settings`]). Counts into `stats`, like
    /// [`Server::with_stats`].
    pub fn with_shared_settings(
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        now: Instant,
        stats: Arc<Stats>,
    ) -> Self {
        Self::assemble(settings, shared, now, stats)
    }

    /// A core for one TCP or TLS connection, sharing `settings` and `stats` (a
    /// [`Stats::shared`]) with every other connection. Its unauthenticated answers and failed
    /// authentications draw on the same per-source limit as the UDP workers': a stream source
    /// cannot be spoofed, so there is no reflection to limit, but a password guesser must pay
    /// for its guesses over TCP and TLS as over UDP, before the server spends HMAC work on them.
    pub fn for_stream(
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        now: Instant,
        stats: Arc<Stats>,
    ) -> Self {
        Self::assemble(settings, shared, now, stats)
    }

    fn assemble(
        settings: Arc<Settings>,
        shared: Arc<Shared>,
        now: Instant,
        stats: Arc<Stats>,
    ) -> Self {
        let limiter = SourceLimit::shared(shared.source_limiter(&settings.limits, now));
        Server {
            settings,
            shared,
            limiter,
            draining: false,
            alternates: Arc::default(),
            allocations: Vec::new(),
            free_slots: Vec::new(),
            by_tuple: HashMap::default(),
            by_relay: relay_slots::RelaySlots::default(),
            by_relay_addr: HashMap::default(),
            reply: Vec::with_capacity(256),
            timers: timers::TimerQueue::default(),
            next_reservation_sweep: now + SWEEP_INTERVAL,
            indication_counter: 0,
            stats,
            last_seen: now,
            tcp_events: VecDeque::new(),
            pending_bind: None,
            fast_path: Default::default(),
        }
    }

    /// Replaces the settings (a configuration reload). Everything the core consults per
    /// request follows at once: credentials (REST secrets, static users, nonce lifetime),
    /// peer policy, lifetimes, permission and channel limits, SOFTWARE, and the
    /// unauthenticated-answer rate limit (whose table starts afresh when its rate or size
    /// changes). Allocations that exist keep relaying: they were authenticated when they were
    /// made, and their next Refresh is checked against the new credentials. Their bandwidth
    /// cap stays the one they were created with. Permissions, channels and RFC 6062 peer
    /// connections to peers the new settings deny (a new `deny` range, a new address of the
    /// host) are revoked at once. The nonce key should stay the same, or every
    /// client's next request gets a 438 and a fresh nonce.
    pub fn set_settings(&mut self, settings: Arc<Settings>) {
        if Arc::ptr_eq(&self.settings, &settings) {
            return;
        }
        let (old, new) = (&self.settings.limits, &settings.limits);
        if old.unauthenticated_rate != new.unauthenticated_rate
            || old.verified_credit != new.verified_credit
            || old.rate_limit_table_size != new.rate_limit_table_size
        {
            self.limiter = SourceLimit::shared(self.shared.source_limiter(new, self.last_seen));
        }
        self.settings = settings;
        self.announce_revocations();
        let revoked = self.revoke_denied();
        if revoked > 0 {
            tracing::info!(
                revoked,
                "new settings: revoked permissions, channels and TCP peer connections they deny"
            );
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    /// Starts (or ends) draining: while draining, an Allocate is answered 300 Try Alternate
    /// with an ALTERNATE-SERVER when [`Server::set_alternates`] gave one for the request's
    /// transport and family, else refused with 508 Insufficient Capacity; every allocation that exists goes on as before (relaying, Refresh,
    /// CreatePermission, ChannelBind, RFC 6062 Connect and ConnectionBind); Binding is answered
    /// as always.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// The other servers a draining core sends new allocations to (see
    /// [`crate::proto::alternate`]).
    pub fn set_alternates(&mut self, alternates: Arc<crate::proto::alternate::Alternates>) {
        self.alternates = alternates;
    }

    /// True while draining ([`Server::set_draining`]).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The answer written by the last [`ClientOutput::Reply`].
    pub fn reply(&self) -> &[u8] {
        &self.reply
    }

    /// The live counters this core adds to (read them from any thread).
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Number of live allocations in this core.
    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// Handles bytes from a client (one datagram, or one framed message from a stream).
    pub fn handle_client(
        &mut self,
        now: Now,
        five_tuple: FiveTuple,
        data: &[u8],
        io: &mut impl RelayIo,
    ) -> ClientOutput {
        self.last_seen = now.instant;
        if channel::looks_like_channel_data(data) {
            return self.channel_data_from_client(now.instant, five_tuple, data);
        }
        let Ok(msg) = Message::parse(data) else {
            self.stats.dropped(DropReason::Malformed);
            return ClientOutput::Nothing;
        };
        match msg.class() {
            Class::Request => self.request(now, five_tuple, &msg, io),
            Class::Indication if msg.method() == method::SEND => {
                self.send_indication(now.instant, five_tuple, &msg)
            }
            _ => ClientOutput::Nothing,
        }
    }

    fn channel_data_from_client(
        &mut self,
        now: Instant,
        ft: FiveTuple,
        data: &[u8],
    ) -> ClientOutput {
        let Some((number, len)) = channel::parse(data) else {
            self.stats.dropped(DropReason::Malformed);
            return ClientOutput::Nothing;
        };
        let Some(alloc) = self
            .by_tuple
            .get(&ft)
            .and_then(|&i| self.allocations[i as usize].as_mut())
        else {
            self.stats.dropped(DropReason::NoAllocation);
            return ClientOutput::Nothing;
        };
        let Some(peer) = alloc
            .channel(number, now)
            .filter(|_| !alloc.tcp)
            .map(|c| c.peer)
        else {
            self.stats.dropped(DropReason::NoAllocation);
            return ClientOutput::Nothing;
        };
        let judge = own::PeerJudge {
            settings: &self.settings,
            live: &self.shared.live_relays,
        };
        match Self::forward_to_peer(
            &self.stats,
            &judge,
            alloc,
            now,
            peer,
            channel::HEADER_LEN..channel::HEADER_LEN + len,
        ) {
            Ok(out) => out,
            Err(reason) => {
                self.stats.dropped(reason);
                ClientOutput::Nothing
            }
        }
    }

    fn send_indication(&mut self, now: Instant, ft: FiveTuple, msg: &Message<'_>) -> ClientOutput {
        let Some(&slot) = self.by_tuple.get(&ft) else {
            self.stats.dropped(DropReason::NoAllocation);
            return ClientOutput::Nothing;
        };
        let (Some(peer), Some(data)) = (
            msg.get(attr::XOR_PEER_ADDRESS)
                .and_then(|v| msg.xor_address(v))
                .map(own::normalize_peer),
            msg.get(attr::DATA),
        ) else {
            self.stats.dropped(DropReason::Malformed);
            return ClientOutput::Nothing;
        };
        let Some(alloc) = self.allocations[slot as usize].as_mut().filter(|a| !a.tcp) else {
            self.stats.dropped(DropReason::NoAllocation);
            return ClientOutput::Nothing;
        };
        // The payload's position in the message (DATA is a sub-slice of the datagram).
        let start = data.as_ptr() as usize - msg.as_bytes().as_ptr() as usize;
        let judge = own::PeerJudge {
            settings: &self.settings,
            live: &self.shared.live_relays,
        };
        match Self::forward_to_peer(
            &self.stats,
            &judge,
            alloc,
            now,
            peer,
            start..start + data.len(),
        ) {
            Ok(out) => out,
            Err(reason) => {
                // A Send indication names its peer: one the policy refuses never had a
                // permission, and is counted as denied (checked on this drop path only).
                let reason = if reason == DropReason::NoPermission && !self.peer_allowed(peer) {
                    DropReason::PeerDenied
                } else {
                    reason
                };
                self.stats.dropped(reason);
                ClientOutput::Nothing
            }
        }
    }

    /// Shared tail of both client → peer paths: permission (and, for a permission whose
    /// verdict depends on the port, the peer policy with the port), bandwidth, counting. A
    /// drop's reason is returned for the caller to count.
    fn forward_to_peer(
        stats: &Stats,
        judge: &own::PeerJudge<'_>,
        alloc: &mut Allocation,
        now: Instant,
        peer: SocketAddr,
        payload: Range<usize>,
    ) -> Result<ClientOutput, DropReason> {
        let Some(relay) = alloc.relay_for(peer) else {
            return Err(DropReason::NoPermission);
        };
        match alloc.permission(peer.ip(), now) {
            None => return Err(DropReason::NoPermission),
            Some(p) if p.check_port && !judge.allowed(peer) => {
                return Err(DropReason::PeerDenied);
            }
            Some(_) => {}
        }
        let len = payload.len() as u64;
        if let Some(buckets) = alloc.bandwidth.as_mut() {
            if !buckets[Direction::ClientToPeer as usize].take(now, len) {
                return Err(DropReason::BandwidthCap);
            }
        }
        stats.relayed(Direction::ClientToPeer, alloc.five_tuple.transport, len);
        alloc.traffic.add(Direction::ClientToPeer, len);
        Ok(ClientOutput::Relay {
            relay: relay.id,
            peer,
            payload,
        })
    }

    /// Handles a datagram that relay socket `relay` received from `peer`. The payload is
    /// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`, and `buf` has [`PEER_TAILROOM`] bytes after it;
    /// the core writes the ChannelData or Data indication header in front of it.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        peer: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        self.last_seen = now;
        let Some(alloc) = self
            .by_relay
            .get(relay)
            .and_then(|i| self.allocations[i as usize].as_mut())
        else {
            self.stats.dropped(DropReason::NoAllocation);
            return PeerOutput::Nothing;
        };
        if len > u16::MAX as usize - 64 || buf.len() < PEER_HEADROOM + len + PEER_TAILROOM {
            self.stats.dropped(DropReason::Malformed);
            return PeerOutput::Nothing;
        }
        if !alloc.permits(peer.ip(), now) {
            self.stats.dropped(DropReason::NoPermission);
            return PeerOutput::Nothing;
        }
        if let Some(buckets) = alloc.bandwidth.as_mut() {
            if !buckets[Direction::PeerToClient as usize].take(now, len as u64) {
                self.stats.dropped(DropReason::BandwidthCap);
                return PeerOutput::Nothing;
            }
        }
        let stream = alloc.five_tuple.transport.is_stream();
        let end = PEER_HEADROOM + len;
        let frame = if let Some(number) = alloc.channel_to(peer, now) {
            let start = PEER_HEADROOM - channel::HEADER_LEN;
            channel::write_header(&mut buf[start..PEER_HEADROOM], number, len);
            // Over streams ChannelData is padded to 4 bytes (RFC 8656 §12.5).
            let padded = if stream {
                PEER_HEADROOM + ((len + 3) & !3)
            } else {
                end
            };
            buf[end..padded].fill(0);
            start..padded
        } else {
            self.indication_counter = self.indication_counter.wrapping_add(1);
            let mut tid = [0u8; 12];
            tid[4..].copy_from_slice(&self.indication_counter.to_be_bytes());
            write_data_indication(buf, PEER_HEADROOM, peer, len, tid)
        };
        self.stats.relayed(
            Direction::PeerToClient,
            alloc.five_tuple.transport,
            len as u64,
        );
        alloc.traffic.add(Direction::PeerToClient, len as u64);
        PeerOutput::ToClient {
            five_tuple: alloc.five_tuple,
            frame,
        }
    }

    /// The relay-to-relay short-circuit: delivers a packet that one of our allocations sent to
    /// `to`, a relayed address of this core, as if relay socket `to` had received it from `from`
    /// (the sender's relayed address) through the kernel. Same layout and checks as
    /// [`Server::handle_peer`], so the receiving allocation's permissions apply.
    pub fn handle_relayed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        buf: &mut [u8],
        len: usize,
    ) -> PeerOutput {
        match self.by_relay_addr.get(&to) {
            Some(&id) => self.handle_peer(now, id, from, buf, len),
            None => {
                self.stats.dropped(DropReason::NoAllocation);
                PeerOutput::Nothing
            }
        }
    }

    /// The advertised address of relay socket `id`, if it belongs to a live allocation.
    pub fn relay_addr(&self, id: RelayId) -> Option<SocketAddr> {
        let slot = self.by_relay.get(id)?;
        let alloc = self.allocations[slot as usize].as_ref()?;
        alloc
            .relays
            .iter()
            .flatten()
            .find(|r| r.id == id)
            .map(|r| r.addr)
    }

    /// Ends every allocation (on shutdown), closing its relays.
    pub fn close_all(&mut self, io: &mut impl RelayIo) {
        for slot in 0..self.allocations.len() as u32 {
            if self.allocations[slot as usize].is_some() {
                self.remove_allocation(slot, io);
            }
        }
    }

    /// Ends the allocation of a 5-tuple (a TCP/TLS connection closed).
    pub fn close_five_tuple(&mut self, ft: FiveTuple, io: &mut impl RelayIo) {
        if let Some(&slot) = self.by_tuple.get(&ft) {
            self.remove_allocation(slot, io);
        }
    }

    fn insert_allocation(&mut self, alloc: Allocation) -> u32 {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.allocations.push(None);
                (self.allocations.len() - 1) as u32
            }
        };
        self.by_tuple.insert(alloc.five_tuple, slot);
        for relay in alloc.relays.iter().flatten() {
            self.by_relay.insert(relay.id, slot);
            self.by_relay_addr.insert(relay.addr, relay.id);
            self.shared.live_relays.set(relay.addr, true);
        }
        self.stats.allocation_created(alloc.five_tuple.transport);
        self.timers
            .schedule(slot, alloc.next_deadline(self.last_seen));
        self.allocations[slot as usize] = Some(alloc);
        slot
    }

    fn remove_allocation(&mut self, slot: u32, io: &mut impl RelayIo) {
        let Some(alloc) = self.allocations[slot as usize].take() else {
            return;
        };
        self.by_tuple.remove(&alloc.five_tuple);
        self.announce_removal(&alloc);
        for conn in &alloc.tcp_connections {
            self.tcp_events.push_back(TcpEvent::Close(conn.id));
        }
        for relay in alloc.relays.iter().flatten() {
            self.by_relay.remove(relay.id);
            self.by_relay_addr.remove(&relay.addr);
            self.shared.live_relays.set(relay.addr, false);
            io.close(relay.id);
        }
        self.shared.quota.release(&alloc.quota_user);
        self.timers.cancel(slot);
        self.free_slots.push(slot);
        self.stats.allocation_ended(
            alloc.five_tuple.transport,
            self.last_seen.saturating_duration_since(alloc.created),
        );
    }

    /// True if a client may relay to `peer` (port included): see [`own::PeerJudge::allowed`].
    fn peer_allowed(&self, peer: SocketAddr) -> bool {
        self.judge().allowed(peer)
    }
}
