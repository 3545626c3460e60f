//! The server's own addresses in the peer policy: which relayed addresses are live (the one
//! exception to "never relay to the server itself"), how a peer is judged against the policy
//! and the host's addresses, and revoking what a new policy denies.
//!
//! The host's addresses (interfaces, listeners, relays, external IPs) come in with the
//! [`Settings`](super::Settings), pushed by the service when they change: the core reads no
//! interface itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};

use super::{Server, Settings, TcpEvent};
use crate::proto::policy::{Verdict, embedded_ipv4s};

/// The relayed addresses of every live allocation of the server, by port and family: a peer
/// at one of our relay IPs is permitted only on a port that belongs to a live allocation
/// (relay to relay between two clients of ours), never on another port of the host.
///
/// Written by the cores as allocations come and go, read when a request names a peer at one of
/// our relay IPs (and per packet only for permissions on those IPs). 64 KiB of flags.
pub struct LiveRelays {
    /// Bit 0: an IPv4 relay is live on this port; bit 1: an IPv6 one.
    ports: Box<[AtomicU8]>,
}

impl std::fmt::Debug for LiveRelays {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRelays").finish_non_exhaustive()
    }
}

impl Default for LiveRelays {
    fn default() -> Self {
        LiveRelays {
            ports: (0..=u16::MAX as usize).map(|_| AtomicU8::new(0)).collect(),
        }
    }
}

impl LiveRelays {
    fn bit(addr: SocketAddr) -> u8 {
        if addr.is_ipv4() { 1 } else { 2 }
    }

    /// Records that relayed address `addr` is live (`true`) or gone.
    pub fn set(&self, addr: SocketAddr, live: bool) {
        let slot = &self.ports[addr.port() as usize];
        if live {
            slot.fetch_or(Self::bit(addr), Ordering::Release);
        } else {
            slot.fetch_and(!Self::bit(addr), Ordering::Release);
        }
    }

    /// True when a live allocation has a relay on `addr`'s port and family.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.ports[addr.port() as usize].load(Ordering::Acquire) & Self::bit(addr) != 0
    }
}

/// An IPv4-mapped peer address (`::ffff:a.b.c.d`) is the IPv4 address it maps: permissions,
/// channels and sends act on `a.b.c.d` (RFC 8656 relays IPv4 peers from an IPv4 relay).
pub fn normalize_peer(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => peer,
        },
        v4 => v4,
    }
}

/// Judges peers against the policy, the host's own addresses and the live relays. Borrows the
/// parts of a [`Server`] it needs, so it can be used while an allocation is borrowed.
pub(super) struct PeerJudge<'a> {
    pub settings: &'a Settings,
    pub live: &'a LiveRelays,
}

impl PeerJudge<'_> {
    /// True if `ip` (or an IPv4 address it embeds) is one of `list`.
    fn listed(list: &[IpAddr], ip: IpAddr) -> bool {
        list.contains(&ip)
            || embedded_ipv4s(ip)
                .into_iter()
                .flatten()
                .any(|v4| list.contains(&IpAddr::V4(v4)))
    }

    /// True if `ip` is one of the host's addresses (interfaces, listeners, relays, external).
    pub fn is_own_address(&self, ip: IpAddr) -> bool {
        Self::listed(&self.settings.own_addresses, ip)
            || Self::listed(&self.settings.own_relay_ips, ip)
    }

    /// True if `peer` is the relayed address of a live allocation of ours.
    pub fn is_live_relay(&self, peer: SocketAddr) -> bool {
        let peer = normalize_peer(peer);
        self.settings.own_relay_ips.contains(&peer.ip()) && self.live.contains(peer)
    }

    /// True if a client may relay to `peer`, port included: a live relayed address of ours,
    /// or an address an operator `allow` entry names itself (`/32`, `/128`), or one that is
    /// not the host's own and that the policy permits.
    pub fn allowed(&self, peer: SocketAddr) -> bool {
        let policy = &self.settings.policy;
        if self.is_live_relay(peer) || policy.allows_explicitly(peer) {
            return true;
        }
        !self.is_own_address(peer.ip()) && policy.permits_addr(peer)
    }

    /// Whether a permission for `peer`'s IP may be installed, and if so whether each packet
    /// sent under it must be judged with its port ([`Permission::check_port`]). `None`:
    /// refused. At one of the host's own addresses the port counts even here: only a live
    /// relayed address of ours (or one an `allow` entry names) gets a permission, so asking
    /// for one is no way to learn whether the host relays to itself. Without a port (`None`,
    /// re-judging a permission after new settings) an own relay IP or an allowed own address
    /// keeps its permission, and its packets are judged one by one.
    ///
    /// [`Permission::check_port`]: super::Permission::check_port
    pub fn permission_for(&self, ip: IpAddr, port: Option<u16>) -> Option<bool> {
        let policy = &self.settings.policy;
        if self.is_own_address(ip) {
            let open = match port {
                Some(port) => self.allowed(SocketAddr::new(ip, port)),
                None => Self::listed(&self.settings.own_relay_ips, ip) || policy.allows_ip(ip),
            };
            return open.then_some(true);
        }
        match policy.verdict(ip) {
            Verdict::Permit => Some(false),
            Verdict::DependsOnPort => Some(true),
            Verdict::Deny => None,
        }
    }
}

impl Server {
    /// The judge of peers for the settings in force.
    pub(super) fn judge(&self) -> PeerJudge<'_> {
        PeerJudge {
            settings: &self.settings,
            live: &self.shared.live_relays,
        }
    }

    /// After new settings: drops every permission, channel and RFC 6062 peer connection the
    /// new policy (or a new own address) no longer allows, at once, and voids the direct
    /// routes of the allocations that lost any. Returns how many were revoked.
    pub(super) fn revoke_denied(&mut self) -> usize {
        let judge = PeerJudge {
            settings: &self.settings,
            live: &self.shared.live_relays,
        };
        let mut revoked = 0;
        for alloc in self.allocations.iter_mut().flatten() {
            let before =
                alloc.permissions.len() + alloc.channels.len() + alloc.tcp_connections.len();
            alloc
                .permissions
                .retain_mut(|p| match judge.permission_for(p.ip, None) {
                    Some(check_port) => {
                        p.check_port = check_port;
                        true
                    }
                    None => false,
                });
            alloc.channels.retain(|c| judge.allowed(c.peer));
            let events = &mut self.tcp_events;
            alloc.tcp_connections.retain(|c| {
                let keep = judge.allowed(c.peer);
                if !keep {
                    events.push_back(TcpEvent::Close(c.id));
                }
                keep
            });
            let after =
                alloc.permissions.len() + alloc.channels.len() + alloc.tcp_connections.len();
            if after < before {
                revoked += before - after;
                if let Some(changes) = &alloc.route_changes {
                    changes.fetch_add(1, Ordering::Release);
                }
            }
        }
        revoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_relays_are_kept_by_port_and_family() {
        let live = LiveRelays::default();
        let v4: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:50000".parse().unwrap();
        live.set(v4, true);
        assert!(live.contains(v4));
        assert!(!live.contains(v6));
        assert!(!live.contains("192.0.2.1:50001".parse().unwrap()));
        live.set(v6, true);
        live.set(v4, false);
        assert!(!live.contains(v4));
        assert!(live.contains(v6));
    }

    #[test]
    fn mapped_peers_are_ipv4_peers() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:9".parse().unwrap();
        assert_eq!(normalize_peer(mapped), "192.0.2.7:9".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::7]:9".parse().unwrap();
        assert_eq!(normalize_peer(v6), v6);
    }
}
