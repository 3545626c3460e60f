//! The core's vocabulary: time, 5-tuples, relay handles and the I/O trait, limits, settings,
//! and the outputs of the state machine.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use super::{Authenticator, ConnectionId};
use crate::proto::Transport;
use crate::proto::policy::PeerPolicy;

/// The current time, passed in by the I/O layer (the core never reads a clock).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic time, for lifetimes and rate limits.
    pub instant: Instant,
    /// Wall-clock UNIX seconds, for REST expiry and nonces.
    pub unix: u64,
}

/// A client's 5-tuple: transport, client address and the server address it reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// UDP, TCP or TLS.
    pub transport: Transport,
    /// The client's address as seen by us.
    pub client: SocketAddr,
    /// Our listener address the client sent to.
    pub server: SocketAddr,
}

/// The I/O layer's handle for a relay socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u32);

/// An address family for a relay socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The RFC 8656 family code (0x01 IPv4, 0x02 IPv6).
    pub fn code(self) -> u8 {
        match self {
            Family::V4 => 1,
            Family::V6 => 2,
        }
    }
}

/// What kind of relay port the core asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayRequest {
    /// Address family.
    pub family: Family,
    /// An even port (EVEN-PORT).
    pub even: bool,
    /// Also open and hold port + 1 (EVEN-PORT with the R bit).
    pub reserve_next: bool,
    /// Set the don't-fragment bit on relayed packets (DONT-FRAGMENT).
    pub dont_fragment: bool,
    /// The server address the client reached (its 5-tuple's): on a server with several relay
    /// addresses, the relay opens on the one bound there, else on the family's first.
    pub near: Option<IpAddr>,
}

/// An opened relay socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenedRelay {
    /// Handle of the socket.
    pub id: RelayId,
    /// Address advertised to the client.
    pub addr: SocketAddr,
    /// The next port, held in the pool but not bound, when `reserve_next` was asked.
    pub reserved: Option<SocketAddr>,
}

/// Why a relay socket could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayOpenError {
    /// No port left in the range (or none of the right parity).
    #[error("no relay port available")]
    NoPort,
    /// The family is not served (no relay address of that family configured).
    #[error("address family not served")]
    FamilyUnsupported,
    /// The relay transport is not served by this I/O layer (TCP relays over UDP workers).
    #[error("relay transport not served")]
    TransportUnsupported,
}

/// Opens and closes relay sockets: implemented by the I/O layer, faked in tests.
pub trait RelayIo {
    /// Opens a relay socket.
    fn open(&mut self, request: RelayRequest) -> Result<OpenedRelay, RelayOpenError>;
    /// Opens a relay socket on a port held by a reservation (`OpenedRelay::reserved`).
    fn open_reserved(
        &mut self,
        addr: SocketAddr,
        dont_fragment: bool,
    ) -> Result<OpenedRelay, RelayOpenError>;
    /// Closes a relay socket that `open` returned.
    fn close(&mut self, id: RelayId);
    /// Gives back a reserved port that nobody claimed.
    fn release_reserved(&mut self, addr: SocketAddr);
    /// Opens a TCP relayed address (RFC 6062): a socket listening for peers, from which
    /// outgoing connections to peers are also made. Closed with [`RelayIo::close`].
    fn open_tcp(&mut self, family: Family) -> Result<OpenedRelay, RelayOpenError> {
        let _ = family;
        Err(RelayOpenError::TransportUnsupported)
    }
}

/// Limits and lifetimes the core enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Default allocation lifetime.
    pub default_lifetime: Duration,
    /// Longest lifetime a client may ask for.
    pub max_lifetime: Duration,
    /// Per-allocation bandwidth cap in bytes/s each direction; 0 = none.
    pub bandwidth_bps: u64,
    /// Permissions per allocation.
    pub permissions_per_allocation: usize,
    /// Channels per allocation.
    pub channels_per_allocation: usize,
    /// Unauthenticated answers (and failed authentications) per source per second, over every
    /// transport; 0 = unlimited. See [`SourceLimiter`](crate::proto::ratelimit::SourceLimiter).
    pub unauthenticated_rate: u32,
    /// Answers beyond the rate a source may bank, one per request that authenticated from it.
    pub verified_credit: u32,
    /// Slots in the unauthenticated-answer limiter.
    pub rate_limit_table_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            bandwidth_bps: 0,
            permissions_per_allocation: 64,
            channels_per_allocation: 64,
            unauthenticated_rate: 20,
            verified_credit: 1024,
            rate_limit_table_size: 65536,
        }
    }
}

/// Everything a [`Server`] needs, built once by the service from the configuration.
pub struct Settings {
    /// Credentials.
    pub auth: Authenticator,
    /// Which peers may be relayed to.
    pub policy: PeerPolicy,
    /// Our own relayed addresses (advertised and bound): a peer at one of these IPs is allowed
    /// on a port that belongs to a live allocation (two relay-only clients of this server talk
    /// through it, see [`LiveRelays`](super::LiveRelays)), and on no other port.
    pub own_relay_ips: Vec<IpAddr>,
    /// Every other address of the host: its interfaces' addresses (the service reads them again
    /// periodically and pushes new settings when they change), listener addresses and the
    /// advertised external IPs. Peers there are refused unless an operator `allow` entry names
    /// them.
    pub own_addresses: Vec<IpAddr>,
    /// The relay port range, inclusive.
    pub relay_ports: (u16, u16),
    /// RFC 6062 TCP allocations are offered (`relay.tcp_allocations`). When off, Allocate with
    /// REQUESTED-TRANSPORT TCP gets 442 and Connect gets 403.
    pub tcp_allocations: bool,
    /// Limits and lifetimes.
    pub limits: Limits,
    /// SOFTWARE for authenticated answers (never on unauthenticated ones).
    pub software: Option<String>,
    /// Which relay families the server offers.
    pub families: [bool; 2],
}

/// What to do after [`Server::handle_client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutput {
    /// Nothing to send.
    Nothing,
    /// Send [`Server::reply`] back to the client on the same 5-tuple.
    Reply,
    /// Send `data[payload]` from relay socket `relay` to `peer`.
    Relay {
        /// Relay socket to send from.
        relay: RelayId,
        /// Destination peer.
        peer: SocketAddr,
        /// Range of the input buffer holding the payload.
        payload: Range<usize>,
    },
    /// RFC 6062 Connect: open a TCP connection from TCP relay `relay` to `peer`, at most
    /// [`CONNECT_TIMEOUT`], then report with [`Server::connect_finished`] (which writes the
    /// answer). Nothing is sent now.
    Connect {
        /// The connection id the answer will carry.
        id: ConnectionId,
        /// The TCP relay to connect from.
        relay: RelayId,
        /// The peer to connect to.
        peer: SocketAddr,
    },
    /// RFC 6062 ConnectionBind, authenticated: ask the owner of connection `id` to bind it
    /// ([`Server::bind_connection`] on the owner's core), then write the answer with
    /// [`Server::finish_connection_bind`]. Nothing is sent now.
    ConnectionBind {
        /// The CONNECTION-ID of the request.
        id: ConnectionId,
        /// The authenticated USERNAME, which must be the allocation's.
        username: String,
    },
}

/// What to do after [`Server::handle_peer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOutput {
    /// Drop the packet (counted).
    Nothing,
    /// Send `buf[frame]` to the client of `five_tuple`.
    ToClient {
        /// The allocation's 5-tuple.
        five_tuple: FiveTuple,
        /// Range of the buffer holding the ChannelData message or Data indication.
        frame: Range<usize>,
    },
}

/// Room the I/O layer leaves before a peer's payload so the core can write a ChannelData
/// header or a Data indication header in place (20 + 24 + 4 for IPv6 peers).
pub const PEER_HEADROOM: usize = 48;
/// Room after the payload for padding.
pub const PEER_TAILROOM: usize = 4;
