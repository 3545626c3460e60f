//! What the admin API asks of a core: a page of its allocations, and ending some of them.
//!
//! The I/O layer asks every core (each UDP worker's, each TCP/TLS connection's) between two
//! batches of packets and merges the answers (`crate::net::admin`). Here the core only reads
//! its own table, or removes entries from it like an expiry would: the relay sockets close,
//! the quota is released, and the client gets nothing more relayed.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;

use super::{Allocation, RelayIo, Server, Subject, Traffic, Transport};

/// An allocation's identity at this node: its first relayed address, and whether it is an
/// RFC 6062 TCP allocation (whose relayed address is a TCP port, so may equal a UDP one).
/// Written `203.0.113.7:50000` or `tcp/203.0.113.7:50000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AllocationId {
    /// An RFC 6062 TCP allocation.
    pub tcp: bool,
    /// Its first relayed address (IPv4 when it has both).
    pub addr: SocketAddr,
}

impl fmt::Display for AllocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tcp {
            write!(f, "tcp/{}", self.addr)
        } else {
            write!(f, "{}", self.addr)
        }
    }
}

impl FromStr for AllocationId {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("tcp/") {
            Some(rest) => Ok(AllocationId {
                tcp: true,
                addr: rest.parse()?,
            }),
            None => Ok(AllocationId {
                tcp: false,
                addr: s.parse()?,
            }),
        }
    }
}

/// One allocation as the admin API lists it. Times are relative to the moment of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocationInfo {
    /// Its identity ([`AllocationId`]).
    pub id: AllocationId,
    /// The USERNAME that made it.
    pub username: String,
    /// The user: the REST user part, or the static user's name.
    pub user: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The server address the client talks to.
    pub server: SocketAddr,
    /// The client transport.
    pub transport: Transport,
    /// An RFC 6062 TCP allocation.
    pub tcp_relay: bool,
    /// Its relayed addresses (one or two families).
    pub relays: Vec<SocketAddr>,
    /// Seconds since it was made.
    pub age_secs: u64,
    /// Seconds until it expires unless refreshed.
    pub expires_in_secs: u64,
    /// What it relayed (datagrams; an RFC 6062 data connection's bytes are not counted here).
    pub traffic: Traffic,
    /// Live permissions.
    pub permissions: Vec<PermissionInfo>,
    /// Live channel bindings.
    pub channels: Vec<ChannelInfo>,
}

/// A live permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermissionInfo {
    /// The peer IP.
    pub ip: IpAddr,
    /// Seconds until it expires unless refreshed.
    pub expires_in_secs: u64,
}

/// A live channel binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel number.
    pub number: u16,
    /// The peer it is bound to.
    pub peer: SocketAddr,
    /// Seconds until it expires unless refreshed.
    pub expires_in_secs: u64,
}

/// A page of allocations: at most `limit` of them after a cursor, in [`AllocationId`] order,
/// and how many match the filter in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Allocations that match the filter (all of them, not only this page).
    pub total: usize,
    /// The page, sorted by id.
    pub allocations: Vec<AllocationInfo>,
}

impl Listing {
    /// Adds `other` (another core's page) and keeps the first `limit` by id.
    pub fn merge(&mut self, other: Listing, limit: usize) {
        self.total += other.total;
        self.allocations.extend(other.allocations);
        self.allocations.sort_by_key(|a| a.id);
        self.allocations.truncate(limit);
    }
}

/// Which allocations to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Those a revocation subject covers (a user, or one username).
    Subject(Subject),
    /// One allocation.
    Allocation(AllocationId),
    /// Every allocation the revocation list covers at this UNIX time (after the list was
    /// replaced from elsewhere, e.g. the cluster).
    Revoked(u64),
}

impl Allocation {
    /// Its identity, when it has a relayed address (always, once made).
    pub fn id(&self) -> Option<AllocationId> {
        let relay = self.relays.iter().flatten().next()?;
        Some(AllocationId {
            tcp: self.tcp,
            addr: relay.addr,
        })
    }

    fn matches_user(&self, user: &str) -> bool {
        self.quota_user == user || self.username == user
    }

    fn info(&self, id: AllocationId, now: Instant) -> AllocationInfo {
        let secs = |t: Instant| t.saturating_duration_since(now).as_secs();
        AllocationInfo {
            id,
            username: self.username.clone(),
            user: self.quota_user.clone(),
            client: self.five_tuple.client,
            server: self.five_tuple.server,
            transport: self.five_tuple.transport,
            tcp_relay: self.tcp,
            relays: self.relays.iter().flatten().map(|r| r.addr).collect(),
            age_secs: now.saturating_duration_since(self.created).as_secs(),
            expires_in_secs: secs(self.expires),
            traffic: self.traffic,
            permissions: self
                .permissions
                .iter()
                .filter(|p| p.expires > now)
                .map(|p| PermissionInfo {
                    ip: p.ip,
                    expires_in_secs: secs(p.expires),
                })
                .collect(),
            channels: self
                .channels
                .iter()
                .filter(|c| c.expires > now)
                .map(|c| ChannelInfo {
                    number: c.number,
                    peer: c.peer,
                    expires_in_secs: secs(c.expires),
                })
                .collect(),
        }
    }
}

impl Server {
    /// This core's allocations of `user` (its REST user part or whole username; all when
    /// `None`), the first `limit` whose id comes after `after`, and how many match in all.
    /// Copies only the page: the rest is compared by id.
    pub fn list_allocations(
        &self,
        now: Instant,
        user: Option<&str>,
        after: Option<AllocationId>,
        limit: usize,
    ) -> Listing {
        let mut total = 0;
        let mut page: Vec<(AllocationId, &Allocation)> = Vec::new();
        for alloc in self.allocations.iter().flatten() {
            if user.is_some_and(|u| !alloc.matches_user(u)) {
                continue;
            }
            let Some(id) = alloc.id() else { continue };
            total += 1;
            if after.is_some_and(|a| id.cmp(&a) != Ordering::Greater) {
                continue;
            }
            page.push((id, alloc));
            // Bounded: keep twice the page at most, trimming as it fills.
            if page.len() >= limit.saturating_mul(2).max(1) {
                page.sort_by_key(|(id, _)| *id);
                page.truncate(limit);
            }
        }
        page.sort_by_key(|(id, _)| *id);
        page.truncate(limit);
        Listing {
            total,
            allocations: page.into_iter().map(|(id, a)| a.info(id, now)).collect(),
        }
    }

    /// Ends the allocations `which` selects, as an expiry would (relays closed, quota
    /// released); returns how many ended.
    pub fn end_allocations(&mut self, which: &End, io: &mut impl RelayIo) -> usize {
        let slots: Vec<u32> = self
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let a = a.as_ref()?;
                let hit = match which {
                    End::Subject(s) => s.covers(&a.username, &a.quota_user),
                    End::Allocation(id) => a.id() == Some(*id),
                    End::Revoked(now) => {
                        self.shared
                            .revoked
                            .is_revoked(&a.username, &a.quota_user, *now)
                    }
                };
                hit.then_some(i as u32)
            })
            .collect();
        for &slot in &slots {
            self.remove_allocation(slot, io);
        }
        if !slots.is_empty() {
            tracing::info!(
                ended = slots.len(),
                ?which,
                "allocations ended by the admin API"
            );
        }
        slots.len()
    }
}
