//! The sans-IO TURN client state machine: one allocation on one server, its permissions and
//! channels, and the transactions that make and keep them.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub use super::config::TurnConfig;
use super::{Method, TurnError};

mod answers;
use crate::proto::channel;
use crate::proto::stun::{Class, Integrity, Writer, attr, method};

/// The most application bytes one Send indication or ChannelData message carries (a UDP
/// datagram with the STUN header and attributes stays below 65,507 bytes).
pub const MAX_PAYLOAD: usize = 65_400;
/// Requests in flight at once (each holds its encoded bytes for retransmission).
const MAX_TRANSACTIONS: usize = 64;
/// 401/438 rounds one request may go through before the client gives up.
const MAX_AUTH_ROUNDS: u8 = 3;
/// The lifetime RFC 8656 gives an allocation when the server does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// Refresh a permission this long after it was installed (they last 300 s).
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Rebind a channel this long after it was bound (bindings last 600 s).
const CHANNEL_REBIND: Duration = Duration::from_secs(540);
/// Longest reason phrase kept from an error response.
const MAX_REASON: usize = 128;

/// What happened, for the application (polled with [`TurnClient::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists: peers reach us at `relayed`; the server saw us at `mapped`.
    Allocated {
        /// The relayed transport address (XOR-RELAYED-ADDRESS).
        relayed: SocketAddr,
        /// Our address as the server saw it (XOR-MAPPED-ADDRESS), when it said.
        mapped: Option<SocketAddr>,
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// A permission for a peer's IP address is installed (sent once per installation).
    PermissionCreated(IpAddr),
    /// A CreatePermission failed; the permission is gone.
    PermissionFailed {
        /// The peer's IP address.
        ip: IpAddr,
        /// Why.
        error: TurnError,
    },
    /// A channel is bound to a peer: data to it now travels as ChannelData.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// The channel number (0x4000-0x4FFF).
        channel: u16,
    },
    /// A ChannelBind failed; data to the peer goes in Send indications (if permitted).
    ChannelFailed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        error: TurnError,
    },
    /// Data from a peer, relayed by the server.
    Data {
        /// The peer's transport address.
        peer: SocketAddr,
        /// The application bytes.
        data: Vec<u8>,
    },
    /// The allocation failed or was lost (Allocate refused, a Refresh failed, or it expired).
    Failed(TurnError),
    /// The allocation was released by [`TurnClient::close`].
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Allocating,
    Allocated {
        relayed: SocketAddr,
        expires: Instant,
        refresh_at: Instant,
    },
    Closing,
    Done,
}

#[derive(Clone, Debug)]
enum Kind {
    Allocate,
    Refresh { lifetime: u32 },
    Permission { ip: IpAddr },
    ChannelBind { peer: SocketAddr, channel: u16 },
}

impl Kind {
    fn method(&self) -> Method {
        match self {
            Kind::Allocate => Method::Allocate,
            Kind::Refresh { .. } => Method::Refresh,
            Kind::Permission { .. } => Method::CreatePermission,
            Kind::ChannelBind { .. } => Method::ChannelBind,
        }
    }
}

struct Transaction {
    tid: [u8; 12],
    kind: Kind,
    request: Vec<u8>,
    authenticated: bool,
    auth_rounds: u8,
    transmits: u32,
    rto: Duration,
    deadline: Instant,
}

#[derive(Clone, Copy, Debug, Default)]
struct Permission {
    installed: bool,
    in_flight: bool,
    refresh_at: Option<Instant>,
}

#[derive(Clone, Copy, Debug)]
struct Channel {
    number: u16,
    bound: bool,
    in_flight: bool,
    rebind_at: Option<Instant>,
}

/// Long-term credential state learnt from the server's 401.
#[derive(Clone, Debug)]
struct Auth {
    realm: Vec<u8>,
    nonce: Vec<u8>,
    key: [u8; 16],
}

/// Counters for diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TurnStats {
    /// Messages from the server that were not valid STUN/ChannelData, or answered nothing we
    /// asked, or failed their integrity check: ignored.
    pub ignored: u64,
    /// Received data dropped because the application did not poll it in time.
    pub dropped: u64,
    /// Request retransmissions.
    pub retransmits: u64,
}

/// A TURN client for one allocation on one server, sans-IO.
///
/// Feed it every message from the server ([`handle_message`](Self::handle_message)) and call
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout); send what
/// [`poll_transmit`](Self::poll_transmit) returns to the server, and act on
/// [`poll_event`](Self::poll_event). Over a stream, frame the input with
/// [`StreamDecoder`](super::StreamDecoder) first.
pub struct TurnClient {
    config: TurnConfig,
    rng: StdRng,
    state: State,
    auth: Option<Auth>,
    transactions: Vec<Transaction>,
    permissions: HashMap<IpAddr, Permission>,
    channels: HashMap<SocketAddr, Channel>,
    by_channel: HashMap<u16, SocketAddr>,
    next_channel: u16,
    transmits: VecDeque<Vec<u8>>,
    transmit_bytes: usize,
    events: VecDeque<TurnEvent>,
    event_bytes: usize,
    stats: TurnStats,
}

impl TurnClient {
    /// A client with no allocation yet. `seed` feeds the transaction ids (draw it from a
    /// cryptographic generator: ids must be unpredictable to off-path attackers).
    pub fn new(config: TurnConfig, seed: [u8; 32]) -> Self {
        TurnClient {
            config,
            rng: StdRng::from_seed(seed),
            state: State::Idle,
            auth: None,
            transactions: Vec::new(),
            permissions: HashMap::new(),
            channels: HashMap::new(),
            by_channel: HashMap::new(),
            next_channel: channel::CHANNEL_MIN,
            transmits: VecDeque::new(),
            transmit_bytes: 0,
            events: VecDeque::new(),
            event_bytes: 0,
            stats: TurnStats::default(),
        }
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        match self.state {
            State::Allocated { relayed, .. } => Some(relayed),
            _ => None,
        }
    }

    /// Diagnostic counters.
    pub fn stats(&self) -> TurnStats {
        self.stats
    }

    /// True while the client is a stream client (padded ChannelData).
    pub fn is_stream(&self) -> bool {
        self.config.stream
    }

    /// Starts the Allocate (UDP relay). The first request goes without credentials; the
    /// server's 401 tells the realm and nonce, and the request is sent again signed.
    pub fn allocate(&mut self, now: Instant) -> Result<(), TurnError> {
        if self.state != State::Idle {
            return Err(TurnError::AlreadyAllocated);
        }
        self.start(now, Kind::Allocate)?;
        self.state = State::Allocating;
        Ok(())
    }

    /// Installs (and keeps refreshed) a permission for `ip`, so the relay accepts its data.
    pub fn create_permission(&mut self, now: Instant, ip: IpAddr) -> Result<(), TurnError> {
        let relayed = self.relayed().ok_or(TurnError::NotAllocated)?;
        if relayed.is_ipv4() != ip.is_ipv4() {
            return Err(TurnError::AddressFamily);
        }
        if let Some(p) = self.permissions.get(&ip) {
            if p.installed || p.in_flight {
                return Ok(());
            }
        } else if self.permissions.len() >= self.config.max_permissions {
            return Err(TurnError::Limit("permissions"));
        }
        self.start(now, Kind::Permission { ip })?;
        let p = self.permissions.entry(ip).or_default();
        p.in_flight = true;
        Ok(())
    }

    /// Binds a channel to `peer` (and with it a permission for its address); data to the peer
    /// goes as ChannelData once bound. Returns the channel number.
    pub fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> Result<u16, TurnError> {
        let relayed = self.relayed().ok_or(TurnError::NotAllocated)?;
        if relayed.is_ipv4() != peer.is_ipv4() {
            return Err(TurnError::AddressFamily);
        }
        if let Some(c) = self.channels.get(&peer) {
            return Ok(c.number);
        }
        if !self.permissions.contains_key(&peer.ip())
            && self.permissions.len() >= self.config.max_permissions
        {
            return Err(TurnError::Limit("permissions"));
        }
        let number = self.free_channel().ok_or(TurnError::Limit("channels"))?;
        self.start(
            now,
            Kind::ChannelBind {
                peer,
                channel: number,
            },
        )?;
        self.channels.insert(
            peer,
            Channel {
                number,
                bound: false,
                in_flight: true,
                rebind_at: None,
            },
        );
        self.by_channel.insert(number, peer);
        // The permission is refreshed alongside (ChannelBind installs it, CreatePermission
        // keeps it past 5 minutes).
        self.permissions.entry(peer.ip()).or_default();
        Ok(number)
    }

    fn free_channel(&mut self) -> Option<u16> {
        let span = u32::from(channel::CHANNEL_MAX_RFC8656 - channel::CHANNEL_MIN) + 1;
        for _ in 0..span {
            let n = self.next_channel;
            self.next_channel = if n >= channel::CHANNEL_MAX_RFC8656 {
                channel::CHANNEL_MIN
            } else {
                n + 1
            };
            if !self.by_channel.contains_key(&n) {
                return Some(n);
            }
        }
        None
    }

    /// Sends `data` to `peer` through the relay: as ChannelData when a channel is bound, else
    /// as a Send indication (which needs a permission).
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), TurnError> {
        if self.relayed().is_none() {
            return Err(TurnError::NotAllocated);
        }
        if data.len() > MAX_PAYLOAD {
            return Err(TurnError::PayloadTooLarge(data.len()));
        }
        let needed = data.len() + 64;
        if self.transmit_bytes + needed > self.config.max_queued_bytes {
            return Err(TurnError::Limit("send queue"));
        }
        let bytes = match self.channels.get(&peer) {
            Some(c) if c.bound => {
                let padded = if self.config.stream {
                    (data.len() + 3) & !3
                } else {
                    data.len()
                };
                let mut out = vec![0u8; channel::HEADER_LEN + padded];
                channel::write_header(&mut out, c.number, data.len());
                out[channel::HEADER_LEN..channel::HEADER_LEN + data.len()].copy_from_slice(data);
                out
            }
            _ => {
                if !self.permissions.contains_key(&peer.ip()) {
                    return Err(TurnError::NoPermission(peer.ip()));
                }
                let mut out = Vec::with_capacity(needed);
                let tid = self.tid();
                Writer::new(&mut out, Class::Indication, method::SEND, tid)
                    .xor_addr(attr::XOR_PEER_ADDRESS, peer)
                    .attr(attr::DATA, data);
                out
            }
        };
        self.push_transmit(bytes);
        Ok(())
    }

    /// Releases the allocation (Refresh with LIFETIME 0); [`TurnEvent::Closed`] follows.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::Allocated { .. } => {
                self.transactions.clear();
                if self.start(now, Kind::Refresh { lifetime: 0 }).is_ok() {
                    self.state = State::Closing;
                } else {
                    self.finish(TurnEvent::Closed);
                }
            }
            State::Closing | State::Done => {}
            State::Idle | State::Allocating => {
                self.transactions.clear();
                self.finish(TurnEvent::Closed);
            }
        }
    }

    /// True once the client is closed or its allocation failed: nothing more will happen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next message to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let t = self.transmits.pop_front()?;
        self.transmit_bytes -= t.len();
        Some(t)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        let e = self.events.pop_front()?;
        if let TurnEvent::Data { data, .. } = &e {
            self.event_bytes -= data.len();
        }
        Some(e)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for t in &self.transactions {
            consider(t.deadline);
        }
        if let State::Allocated {
            expires,
            refresh_at,
            ..
        } = self.state
        {
            consider(expires);
            if !self.refresh_in_flight() {
                consider(refresh_at);
            }
            for p in self.permissions.values() {
                if let (Some(at), false) = (p.refresh_at, p.in_flight) {
                    consider(at);
                }
            }
            for c in self.channels.values() {
                if let (Some(at), false) = (c.rebind_at, c.in_flight) {
                    consider(at);
                }
            }
        }
        next
    }

    fn refresh_in_flight(&self) -> bool {
        self.transactions
            .iter()
            .any(|t| matches!(t.kind, Kind::Refresh { .. }))
    }

    /// Retransmits, times out, and refreshes what is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.transactions.len() {
            let t = &mut self.transactions[i];
            if t.deadline > now {
                i += 1;
                continue;
            }
            if !self.config.stream && t.transmits < self.config.max_transmits {
                t.transmits += 1;
                t.rto = t.rto.saturating_mul(2);
                t.deadline = if t.transmits == self.config.max_transmits {
                    now + self.config.rto.saturating_mul(self.config.last_wait_factor)
                } else {
                    now + t.rto
                };
                let bytes = t.request.clone();
                self.stats.retransmits += 1;
                self.push_transmit(bytes);
                i += 1;
                continue;
            }
            let t = self.transactions.swap_remove(i);
            let method = t.kind.method();
            tracing::debug!(%method, "TURN transaction timed out");
            self.fail_transaction(t.kind, TurnError::Timeout(method));
        }
        let State::Allocated {
            expires,
            refresh_at,
            ..
        } = self.state
        else {
            return;
        };
        if expires <= now {
            self.finish(TurnEvent::Failed(TurnError::NotAllocated));
            return;
        }
        if refresh_at <= now && !self.refresh_in_flight() {
            let lifetime = self.requested_lifetime().unwrap_or(600);
            let _ = self.start(now, Kind::Refresh { lifetime });
        }
        let due: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, p)| !p.in_flight && p.refresh_at.is_some_and(|at| at <= now))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in due {
            if self.start(now, Kind::Permission { ip }).is_ok() {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    p.in_flight = true;
                }
            }
        }
        let due: Vec<(SocketAddr, u16)> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.in_flight && c.rebind_at.is_some_and(|at| at <= now))
            .map(|(peer, c)| (*peer, c.number))
            .collect();
        for (peer, channel) in due {
            if self.start(now, Kind::ChannelBind { peer, channel }).is_ok() {
                if let Some(c) = self.channels.get_mut(&peer) {
                    c.in_flight = true;
                }
            }
        }
    }

    fn requested_lifetime(&self) -> Option<u32> {
        self.config
            .lifetime
            .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32)
    }

    fn tid(&mut self) -> [u8; 12] {
        let mut tid = [0u8; 12];
        self.rng.fill_bytes(&mut tid);
        tid
    }

    /// Encodes and sends a new request of `kind`, tracked for retransmission.
    fn start(&mut self, now: Instant, kind: Kind) -> Result<(), TurnError> {
        if self.transactions.len() >= MAX_TRANSACTIONS {
            return Err(TurnError::Limit("transactions"));
        }
        let tid = self.tid();
        let mut request = Vec::with_capacity(256);
        let mut w = Writer::new(&mut request, Class::Request, message_method(&kind), tid);
        match &kind {
            Kind::Allocate => {
                // REQUESTED-TRANSPORT: UDP (17), then three bytes RFFU.
                w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                if let Some(l) = self.requested_lifetime() {
                    w.u32_attr(attr::LIFETIME, l);
                }
            }
            Kind::Refresh { lifetime } => {
                w.u32_attr(attr::LIFETIME, *lifetime);
            }
            Kind::Permission { ip } => {
                w.xor_addr(attr::XOR_PEER_ADDRESS, SocketAddr::new(*ip, 0));
            }
            Kind::ChannelBind { peer, channel } => {
                w.u32_attr(attr::CHANNEL_NUMBER, u32::from(*channel) << 16);
                w.xor_addr(attr::XOR_PEER_ADDRESS, *peer);
            }
        }
        let authenticated = match &self.auth {
            Some(a) => {
                w.attr(attr::USERNAME, self.config.username.as_bytes());
                w.attr(attr::REALM, &a.realm);
                w.attr(attr::NONCE, &a.nonce);
                w.integrity(Integrity::Sha1, &a.key);
                true
            }
            None => false,
        };
        w.fingerprint();
        let rto = self.config.rto;
        let deadline = now
            + if self.config.stream {
                self.config.stream_timeout
            } else {
                rto
            };
        self.push_transmit(request.clone());
        self.transactions.push(Transaction {
            tid,
            kind,
            request,
            authenticated,
            auth_rounds: 0,
            transmits: 1,
            rto,
            deadline,
        });
        Ok(())
    }

    fn push_transmit(&mut self, bytes: Vec<u8>) {
        self.transmit_bytes += bytes.len();
        self.transmits.push_back(bytes);
    }
}

fn allocated(now: Instant, relayed: SocketAddr, lifetime: Duration) -> State {
    // Refresh a minute before expiry, or at half the lifetime when it is short.
    let margin = (lifetime / 2).min(Duration::from_secs(60));
    State::Allocated {
        relayed,
        expires: now + lifetime,
        refresh_at: now + lifetime - margin,
    }
}

fn message_method(kind: &Kind) -> u16 {
    match kind {
        Kind::Allocate => method::ALLOCATE,
        Kind::Refresh { .. } => method::REFRESH,
        Kind::Permission { .. } => method::CREATE_PERMISSION,
        Kind::ChannelBind { .. } => method::CHANNEL_BIND,
    }
}
