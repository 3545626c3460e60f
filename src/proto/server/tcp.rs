//! TURN TCP allocations (RFC 6062): Connect, ConnectionAttempt and ConnectionBind, sans-IO.
//!
//! A TCP allocation is made over a TCP or TLS control connection with REQUESTED-TRANSPORT TCP.
//! Its relayed address is a TCP socket. Each peer connection (made by a Connect request, or
//! accepted on the relayed address and announced with a ConnectionAttempt indication) gets a
//! CONNECTION-ID and waits, at most [`BIND_TIMEOUT`], for the client to open a new connection
//! to the server and send ConnectionBind with that id; from then on both connections carry raw
//! bytes, which the I/O layer pipes without the core.
//!
//! The core keeps the state of every peer connection of an allocation (bounded by
//! `limits.permissions_per_allocation`), answers the requests, and tells the I/O layer which
//! connections to close ([`TcpEvent`]) when they expire or their allocation ends, and hands each
//! bound data connection the allocation's bandwidth cap ([`TcpBandwidth`]). The sockets, the
//! outgoing connection attempts, the hand-off of a peer connection to the task of the client's
//! data connection, and the piping (which counts the relayed bytes into the same [`Stats`]
//! as UDP relaying) belong to the I/O layer.
//!
//! [`Stats`]: super::Stats

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::Authenticated;
use super::{
    ClientOutput, DIRECTIONS, Direction, DropReason, FiveTuple, Now, RequestMethod, Server,
};
use crate::proto::ratelimit::TokenBucket;
use crate::proto::stun::{Class, Integrity, Message, Writer, attr, method};

/// How long a peer connection waits for its ConnectionBind (RFC 6062 §5.2, §5.3: 30 s).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the I/O layer may try to connect to a peer before answering 447 (RFC 6062 §5.2:
/// at least 30 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Identifies one peer data connection across the server (the CONNECTION-ID attribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u32);

/// What the I/O layer must do for a TCP allocation, polled with [`Server::poll_tcp_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    /// Close the peer connection (and its client data connection, if bound): its
    /// ConnectionBind did not come in time, or its allocation ended.
    Close(ConnectionId),
}

/// Where a peer connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TcpState {
    /// A Connect request is waiting for the outgoing connection: its answer is owed.
    Connecting { tid: [u8; 12], fingerprint: bool },
    /// Connected; waiting for ConnectionBind until `expires`.
    Pending { expires: Instant },
    /// Bound to a client data connection.
    Bound,
}

/// One peer connection of a TCP allocation.
#[derive(Clone, Copy, Debug)]
pub struct TcpConnection {
    /// Its CONNECTION-ID.
    pub id: ConnectionId,
    /// The peer's address.
    pub peer: SocketAddr,
    pub(super) state: TcpState,
}

/// The bandwidth cap (`limits.bandwidth_bps`) of a TCP allocation's data connections: one
/// bucket per direction, shared by every data connection of the allocation (each is piped by a
/// task of its own, hence the lock, taken once per read).
///
/// A byte stream must lose nothing it accepted, so nothing is dropped: a data connection asks
/// [`TcpBandwidth::pause`] before each read and waits that long, reads at most
/// [`TcpBandwidth::max_read`] bytes, relays them and [`TcpBandwidth::charge`]s them. While it
/// waits, TCP flow control slows the sender down. Time is passed in, as everywhere in the core.
#[derive(Debug)]
pub struct TcpBandwidth {
    buckets: [Mutex<TokenBucket>; DIRECTIONS],
    burst: u64,
}

impl TcpBandwidth {
    /// A cap of `bps` bytes per second in each direction, with a burst of one second's worth.
    pub fn new(bps: u64, now: Instant) -> Self {
        let bucket = TokenBucket::new(bps, bps, now);
        TcpBandwidth {
            burst: bucket.burst(),
            buckets: [Mutex::new(bucket.clone()), Mutex::new(bucket)],
        }
    }

    /// The most bytes one read should take: the burst, so that one read never runs the bucket
    /// more than a second into debt.
    pub fn max_read(&self) -> usize {
        usize::try_from(self.burst).unwrap_or(usize::MAX)
    }

    /// How long to wait before the next read in `direction` (zero: read now).
    pub fn pause(&self, direction: Direction, now: Instant) -> Duration {
        self.bucket(direction).pause(now)
    }

    /// Counts `n` bytes read in `direction`; the bucket may go into debt.
    pub fn charge(&self, direction: Direction, now: Instant, n: u64) {
        self.bucket(direction).charge(now, n);
    }

    fn bucket(&self, direction: Direction) -> std::sync::MutexGuard<'_, TokenBucket> {
        self.buckets[direction as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A ConnectionBind whose answer waits for the owner of the connection id.
#[derive(Clone, Debug)]
pub(super) struct PendingBind {
    tid: [u8; 12],
    fingerprint: bool,
    key: [u8; 16],
    integrity: Integrity,
}

/// An error answer: code and reason phrase.
pub type Refusal = (u16, &'static str);

impl Server {
    /// Connect (RFC 6062 §5.2): checks the request; the answer comes with
    /// [`Server::connect_finished`] once the I/O layer's connection attempt ends.
    pub(super) fn connect(
        &mut self,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<ClientOutput, Refusal> {
        let slot = self.own_allocation(ft, auth)?;
        let peer = msg
            .get(attr::XOR_PEER_ADDRESS)
            .map(|v| msg.xor_address(v).ok_or((400, "Bad XOR-PEER-ADDRESS")))
            .ok_or((400, "Missing XOR-PEER-ADDRESS"))??;
        let peer = super::own::normalize_peer(peer);
        let max = self.settings.limits.permissions_per_allocation;
        let alloc = self.allocations[slot as usize]
            .as_ref()
            .expect("slot is live");
        if !self.settings.tcp_allocations {
            // RFC 6062 relays are off (relay.tcp_allocations; perhaps turned off by a reload
            // while this allocation lived): no peer connection. RFC 6062 §5.2: 403 when the
            // server's policy refuses the Connect.
            self.stats.dropped(DropReason::PeerDenied);
            return Err((403, "Forbidden"));
        }
        if !alloc.tcp {
            return Err((400, "Not a TCP Allocation"));
        }
        self.check_peer(slot, peer)?;
        let alloc = self.allocations[slot as usize]
            .as_mut()
            .expect("slot is live");
        if alloc.tcp_connections.iter().any(|c| c.peer == peer) {
            return Err((446, "Connection Already Exists"));
        }
        if alloc.tcp_connections.len() >= max {
            return Err((508, "Insufficient Capacity"));
        }
        let relay = alloc
            .relay_for(peer)
            .ok_or((443, "Peer Address Family Mismatch"))?;
        let id = self.shared.next_connection_id();
        alloc.tcp_connections.push(TcpConnection {
            id,
            peer,
            state: TcpState::Connecting {
                tid: msg.transaction_id(),
                fingerprint: msg.has_fingerprint(),
            },
        });
        Ok(ClientOutput::Connect {
            id,
            relay: relay.id,
            peer,
        })
    }

    /// The I/O layer's connection attempt for [`ClientOutput::Connect`] `id` ended. Writes the
    /// Connect answer ([`Server::reply`]: success with CONNECTION-ID, or 447) and returns true;
    /// false when the allocation is gone (or the answer was given) and nothing is to be sent:
    /// then the I/O layer closes the peer connection.
    pub fn connect_finished(&mut self, now: Now, id: ConnectionId, connected: bool) -> bool {
        let Some((slot, index)) = self.find_tcp(id) else {
            return false;
        };
        let alloc = self.allocations[slot].as_mut().expect("found live");
        let TcpState::Connecting { tid, fingerprint } = alloc.tcp_connections[index].state else {
            return false;
        };
        let (key, integrity) = (alloc.key, alloc.integrity);
        let result = if connected {
            alloc.tcp_connections[index].state = TcpState::Pending {
                expires: now.instant + BIND_TIMEOUT,
            };
            self.reschedule(slot as u32, now.instant);
            Ok(())
        } else {
            alloc.tcp_connections.swap_remove(index);
            Err((447, "Connection Timeout or Failure"))
        };
        let answer = PendingBind {
            tid,
            fingerprint,
            key,
            integrity,
        };
        self.write_deferred(method::CONNECT, &answer, result, |w| {
            w.attr(attr::CONNECTION_ID, &id.0.to_be_bytes());
        });
        true
    }

    /// A peer connected to the TCP relayed address `relay` (RFC 6062 §5.3). When the
    /// allocation permits the peer, returns its new connection id and writes the
    /// ConnectionAttempt indication to send on the control connection ([`Server::reply`]);
    /// `None` means close the peer's connection at once.
    pub fn peer_connected(
        &mut self,
        now: Now,
        relay: super::RelayId,
        peer: SocketAddr,
    ) -> Option<ConnectionId> {
        let slot = self.by_relay.get(relay)?;
        let max = self.settings.limits.permissions_per_allocation;
        let allowed = self.settings.tcp_allocations && self.peer_allowed(peer);
        let alloc = self.allocations[slot as usize].as_mut()?;
        if !allowed {
            self.stats.dropped(DropReason::PeerDenied);
            return None;
        }
        if !alloc.tcp
            || !alloc.permits(peer.ip(), now.instant)
            || alloc.tcp_connections.len() >= max
            || alloc.tcp_connections.iter().any(|c| c.peer == peer)
        {
            self.stats.dropped(DropReason::NoPermission);
            return None;
        }
        let id = self.shared.next_connection_id();
        alloc.tcp_connections.push(TcpConnection {
            id,
            peer,
            state: TcpState::Pending {
                expires: now.instant + BIND_TIMEOUT,
            },
        });
        self.reschedule(slot, now.instant);
        self.indication_counter = self.indication_counter.wrapping_add(1);
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&id.0.to_be_bytes());
        tid[4..].copy_from_slice(&self.indication_counter.to_be_bytes());
        let mut w = Writer::new(
            &mut self.reply,
            Class::Indication,
            method::CONNECTION_ATTEMPT,
            tid,
        );
        w.xor_addr(attr::XOR_PEER_ADDRESS, peer)
            .attr(attr::CONNECTION_ID, &id.0.to_be_bytes());
        Some(id)
    }

    /// ConnectionBind on a new connection (RFC 6062 §5.4): checked here; the I/O layer asks
    /// the owner of the id ([`Server::bind_connection`]) and then writes the answer with
    /// [`Server::finish_connection_bind`].
    pub(super) fn connection_bind(
        &mut self,
        ft: FiveTuple,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Result<ClientOutput, Refusal> {
        if !ft.transport.is_stream() {
            return Err((400, "ConnectionBind Needs TCP or TLS"));
        }
        if self.by_tuple.contains_key(&ft) || self.pending_bind.is_some() {
            return Err((400, "Connection Has an Allocation"));
        }
        let id = match msg.get(attr::CONNECTION_ID) {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            Some(_) => return Err((400, "Bad CONNECTION-ID")),
            None => return Err((400, "Missing CONNECTION-ID")),
        };
        self.pending_bind = Some(PendingBind {
            tid: msg.transaction_id(),
            fingerprint: msg.has_fingerprint(),
            key: auth.key,
            integrity: auth.integrity,
        });
        Ok(ClientOutput::ConnectionBind {
            id: ConnectionId(id),
            username: auth.username.clone(),
        })
    }

    /// Writes the answer to the ConnectionBind that [`ClientOutput::ConnectionBind`] reported
    /// ([`Server::reply`]); returns false when there was none.
    pub fn finish_connection_bind(&mut self, result: Result<(), Refusal>) -> bool {
        let Some(pending) = self.pending_bind.take() else {
            return false;
        };
        self.write_deferred(method::CONNECTION_BIND, &pending, result, |_| {});
        true
    }

    /// On the owner of connection `id`: a client data connection authenticated as `username`
    /// asks to bind it. Marks it bound when it is pending, unexpired and the username is the
    /// allocation's, and returns the allocation's bandwidth cap for the data connection to
    /// apply (`None` when `limits.bandwidth_bps` is 0), the same for all its data connections.
    pub fn bind_connection(
        &mut self,
        now: Now,
        id: ConnectionId,
        username: &str,
    ) -> Result<Option<Arc<TcpBandwidth>>, Refusal> {
        let (slot, index) = self.find_tcp(id).ok_or((400, "Unknown CONNECTION-ID"))?;
        let bps = self.settings.limits.bandwidth_bps;
        let alloc = self.allocations[slot].as_mut().expect("found live");
        if alloc.username != username {
            return Err((441, "Wrong Credentials"));
        }
        let conn = &mut alloc.tcp_connections[index];
        match conn.state {
            TcpState::Pending { expires } if expires > now.instant => {
                conn.state = TcpState::Bound;
            }
            _ => return Err((400, "Connection Not Pending")),
        }
        if bps == 0 {
            return Ok(None);
        }
        let cap = alloc
            .tcp_bandwidth
            .get_or_insert_with(|| Arc::new(TcpBandwidth::new(bps, now.instant)));
        Ok(Some(cap.clone()))
    }

    /// The I/O layer closed connection `id` (either side of a bound pair ended, or the
    /// connection attempt was abandoned): forgets it, so the peer may be connected again.
    pub fn tcp_connection_closed(&mut self, id: ConnectionId) {
        if let Some((slot, index)) = self.find_tcp(id) {
            let alloc = self.allocations[slot].as_mut().expect("found live");
            alloc.tcp_connections.swap_remove(index);
        }
    }

    /// The next thing the I/O layer must do for TCP allocations, if any.
    pub fn poll_tcp_event(&mut self) -> Option<TcpEvent> {
        self.tcp_events.pop_front()
    }

    /// Peer connections of all allocations of this core.
    pub fn tcp_connection_count(&self) -> usize {
        self.allocations
            .iter()
            .flatten()
            .map(|a| a.tcp_connections.len())
            .sum()
    }

    fn find_tcp(&self, id: ConnectionId) -> Option<(usize, usize)> {
        self.allocations.iter().enumerate().find_map(|(slot, a)| {
            let index = a
                .as_ref()?
                .tcp_connections
                .iter()
                .position(|c| c.id == id)?;
            Some((slot, index))
        })
    }

    /// Writes a signed answer to a request answered later than it came.
    fn write_deferred(
        &mut self,
        m: u16,
        to: &PendingBind,
        result: Result<(), Refusal>,
        body: impl FnOnce(&mut Writer<'_>),
    ) {
        let class = if result.is_ok() {
            Class::Success
        } else {
            Class::Error
        };
        self.stats.request(
            RequestMethod::from_method(m),
            result.map_err(|(code, _)| code),
        );
        let mut w = Writer::new(&mut self.reply, class, m, to.tid);
        match result {
            Ok(()) => body(&mut w),
            Err((code, reason)) => {
                w.error_code(code, reason);
            }
        }
        if let Some(sw) = &self.settings.software {
            w.attr(attr::SOFTWARE, sw.as_bytes());
        }
        w.integrity(to.integrity, &to.key);
        if to.fingerprint {
            w.fingerprint();
        }
    }
}
