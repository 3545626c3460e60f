//! One TURN allocation: its relayed addresses, permissions, channels, lifetime, bandwidth
//! bucket, and the answers it recently sent (for retransmitted requests).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::tcp::{TcpBandwidth, TcpConnection, TcpState};
use super::{DIRECTIONS, FiveTuple, RelayId};
use crate::proto::ratelimit::TokenBucket;
use crate::proto::stun::Integrity;

/// Permission lifetime (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// After a channel expires, neither its number nor its peer may be bound to anything else for
/// this long (RFC 8656 §12).
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);
/// How many recent answers an allocation keeps for retransmitted requests.
const RECENT_ANSWERS: usize = 4;

/// A relayed transport address of an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay {
    /// The I/O layer's handle for the relay socket.
    pub id: RelayId,
    /// The address advertised to the client (XOR-RELAYED-ADDRESS).
    pub addr: SocketAddr,
}

/// A permission (RFC 8656 §9): a peer IP the allocation may exchange data with, until it
/// expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The peer's IP (ports do not matter to a permission).
    pub ip: IpAddr,
    /// When it expires unless refreshed.
    pub expires: Instant,
    /// True when the peer policy's answer for this IP depends on the port (an entry with ports,
    /// or one of the server's own addresses where only live relayed addresses are open): every
    /// packet sent to it is judged with its port. False for the usual IP, at no cost per packet.
    pub check_port: bool,
}

/// A channel binding. Kept through its cooldown after expiry.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    /// Channel number, 0x4000-0x4FFF.
    pub number: u16,
    /// The peer it is bound to.
    pub peer: SocketAddr,
    /// When the binding expires unless refreshed.
    pub expires: Instant,
}

/// A TURN allocation.
#[derive(Debug)]
pub struct Allocation {
    /// The client's 5-tuple.
    pub five_tuple: FiveTuple,
    /// The username that created it; later requests must use the same (441).
    pub username: String,
    /// The quota key (user part of a REST username, or the static user name).
    pub quota_user: String,
    /// The long-term key, to sign answers.
    pub key: [u8; 16],
    /// Relayed addresses: index 0 IPv4, index 1 IPv6.
    pub relays: [Option<Relay>; 2],
    /// When the allocation expires unless refreshed.
    pub expires: Instant,
    /// When it was created (for the lifetime histogram).
    pub created: Instant,
    /// Permissions by peer IP.
    pub permissions: Vec<Permission>,
    /// Channel bindings (including expired ones in cooldown).
    pub channels: Vec<Channel>,
    /// Per-allocation bandwidth cap, when configured: one bucket per direction, indexed by
    /// [`Direction`](super::Direction).
    pub bandwidth: Option<[TokenBucket; DIRECTIONS]>,
    recent: [([u8; 12], Vec<u8>); RECENT_ANSWERS],
    recent_next: usize,
    /// The integrity algorithm the client used last.
    pub integrity: Integrity,
    /// A TCP allocation (RFC 6062): its relays are TCP sockets, it has no channels and takes
    /// no Send indications.
    pub tcp: bool,
    /// The peer connections of a TCP allocation.
    pub tcp_connections: Vec<TcpConnection>,
    /// The bandwidth cap its data connections share, made at the first ConnectionBind.
    pub tcp_bandwidth: Option<std::sync::Arc<TcpBandwidth>>,
    /// Counts the changes that void the direct routes other workers hold to this allocation
    /// (a channel newly bound): made when the first route is published (see `route.rs`).
    pub route_changes: Option<std::sync::Arc<std::sync::atomic::AtomicU32>>,
    /// What it relayed, for the admin API's allocation list: bytes and packets per
    /// [`Direction`](super::Direction). Plain integers: only the owning core writes them.
    pub traffic: Traffic,
}

/// Bytes and packets an allocation relayed, per direction (index: `Direction as usize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Payload bytes relayed.
    pub bytes: [u64; DIRECTIONS],
    /// Packets relayed.
    pub packets: [u64; DIRECTIONS],
}

impl Traffic {
    /// Counts one relayed packet of `len` payload bytes in `direction`.
    #[inline]
    pub fn add(&mut self, direction: super::Direction, len: u64) {
        let d = direction as usize;
        self.bytes[d] = self.bytes[d].wrapping_add(len);
        self.packets[d] = self.packets[d].wrapping_add(1);
    }
}

impl Allocation {
    /// A new allocation; `bandwidth` is the cap's bucket, copied for each direction.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        five_tuple: FiveTuple,
        username: String,
        quota_user: String,
        key: [u8; 16],
        relays: [Option<Relay>; 2],
        now: Instant,
        lifetime: Duration,
        bandwidth: Option<TokenBucket>,
        integrity: Integrity,
    ) -> Self {
        Allocation {
            five_tuple,
            username,
            quota_user,
            key,
            relays,
            expires: now + lifetime,
            created: now,
            permissions: Vec::new(),
            channels: Vec::new(),
            bandwidth: bandwidth.map(|b| [b.clone(), b]),
            recent: Default::default(),
            recent_next: 0,
            integrity,
            tcp: false,
            tcp_connections: Vec::new(),
            tcp_bandwidth: None,
            route_changes: None,
            traffic: Traffic::default(),
        }
    }

    /// The relay for a peer's address family, if the allocation has one.
    pub fn relay_for(&self, peer: SocketAddr) -> Option<Relay> {
        self.relays[family_index(peer.ip())]
    }

    /// True when a live permission covers `ip` (ports do not matter, RFC 8656 §9).
    pub fn permits(&self, ip: IpAddr, now: Instant) -> bool {
        self.permission(ip, now).is_some()
    }

    /// The live permission for `ip`.
    pub fn permission(&self, ip: IpAddr, now: Instant) -> Option<&Permission> {
        self.permissions
            .iter()
            .find(|p| p.ip == ip && p.expires > now)
    }

    /// True when installing permissions for `ips` keeps the table within `max` (live ones
    /// count; the ones already there are refreshed, not added).
    pub fn has_room_for(&self, ips: &[IpAddr], now: Instant, max: usize) -> bool {
        let new = ips
            .iter()
            .filter(|ip| self.permission(**ip, now).is_none())
            .count();
        let live = self.permissions.iter().filter(|p| p.expires > now).count();
        live + new <= max
    }

    /// Installs or refreshes a permission; false when the table is full.
    pub fn add_permission(
        &mut self,
        ip: IpAddr,
        now: Instant,
        max: usize,
        check_port: bool,
    ) -> bool {
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = now + PERMISSION_LIFETIME;
            p.check_port = check_port;
            return true;
        }
        self.permissions.retain(|p| p.expires > now);
        if self.permissions.len() >= max {
            return false;
        }
        self.permissions.push(Permission {
            ip,
            expires: now + PERMISSION_LIFETIME,
            check_port,
        });
        true
    }

    /// The live channel with `number`.
    pub fn channel(&self, number: u16, now: Instant) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
    }

    /// The live channel bound to `peer`.
    pub fn channel_to(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
            .map(|c| c.number)
    }

    /// Remembers the answer to transaction `tid`.
    pub fn remember(&mut self, tid: [u8; 12], answer: &[u8]) {
        let slot = &mut self.recent[self.recent_next];
        slot.0 = tid;
        slot.1.clear();
        slot.1.extend_from_slice(answer);
        self.recent_next = (self.recent_next + 1) % RECENT_ANSWERS;
    }

    /// The answer already sent to transaction `tid`, if any.
    pub fn recalled(&self, tid: &[u8; 12]) -> Option<&[u8]> {
        self.recent
            .iter()
            .find(|(t, a)| t == tid && !a.is_empty())
            .map(|(_, a)| a.as_slice())
    }

    /// Drops expired permissions and channels whose cooldown is over.
    pub fn prune(&mut self, now: Instant) {
        self.permissions.retain(|p| p.expires > now);
        self.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
    }

    /// The earliest moment after `now` when something of this allocation changes state: it
    /// expires, a permission expires, a channel expires or its cooldown ends, or an RFC 6062
    /// peer connection's wait for ConnectionBind ends. Costs one pass over its (bounded)
    /// permissions, channels and connections. Call after [`Allocation::prune`], so that
    /// everything that counts lies after `now`.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let permissions = self.permissions.iter().map(|p| p.expires);
        let channels = self.channels.iter().map(|c| {
            if c.expires > now {
                c.expires
            } else {
                c.expires + CHANNEL_COOLDOWN
            }
        });
        let connections = self.tcp_connections.iter().filter_map(|c| match c.state {
            TcpState::Pending { expires } => Some(expires),
            _ => None,
        });
        permissions
            .chain(channels)
            .chain(connections)
            .fold(self.expires, Instant::min)
    }
}

/// 0 for IPv4 (and IPv4-mapped IPv6), 1 for IPv6.
pub fn family_index(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => 0,
        IpAddr::V6(_) => 1,
    }
}
