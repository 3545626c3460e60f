//! A worker's relay sockets: opened and closed for the core through [`RelayIo`], polled by the
//! worker's event loop.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::ports::{PortPool, open_from_pool, open_reserved_port};
use super::shortcut::RelayDirectory;
use super::socket::{UdpOptions, bind_udp};
use crate::proto::server::{Family, OpenedRelay, RelayId, RelayIo, RelayOpenError, RelayRequest};

/// Tokens at and above this belong to relay sockets (`RELAY_TOKEN_BASE + slab key`).
pub const RELAY_TOKEN_BASE: usize = 1 << 20;

/// Where relay sockets bind, and what is advertised for them.
#[derive(Clone, Debug)]
pub struct RelayAddresses {
    /// Local IPv4 address to bind (None: no IPv4 relays).
    pub bind_v4: Option<IpAddr>,
    /// Local IPv6 address to bind (None: no IPv6 relays).
    pub bind_v6: Option<IpAddr>,
    /// Advertised IPv4 relay address.
    pub advertised_v4: Option<IpAddr>,
    /// Advertised IPv6 relay address.
    pub advertised_v6: Option<IpAddr>,
}

impl RelayAddresses {
    /// The bind and advertised addresses for one family (`v6`), or `FamilyUnsupported`.
    pub fn for_family(&self, v6: bool) -> Result<(IpAddr, IpAddr), RelayOpenError> {
        let (bind, advertised) = if v6 {
            (self.bind_v6, self.advertised_v6)
        } else {
            (self.bind_v4, self.advertised_v4)
        };
        match (bind, advertised) {
            (Some(b), Some(a)) => Ok((b, a)),
            _ => Err(RelayOpenError::FamilyUnsupported),
        }
    }
}

struct RelaySocket {
    socket: UdpSocket,
    port: u16,
    advertised: SocketAddr,
}

/// The relay sockets of one worker.
pub struct RelaySet {
    sockets: Slab<RelaySocket>,
    registry: Registry,
    pool: Arc<PortPool>,
    addrs: RelayAddresses,
    buffer_bytes: usize,
    directory: Arc<RelayDirectory>,
    worker: usize,
}

impl RelaySet {
    /// A set registering its sockets with `registry`, recording them in `directory` as
    /// owned by `worker`.
    pub fn new(
        registry: Registry,
        pool: Arc<PortPool>,
        addrs: RelayAddresses,
        buffer_bytes: usize,
        directory: Arc<RelayDirectory>,
        worker: usize,
    ) -> Self {
        RelaySet {
            sockets: Slab::new(),
            registry,
            pool,
            addrs,
            buffer_bytes,
            directory,
            worker,
        }
    }

    /// The advertised address of relay `id`.
    pub fn advertised(&self, id: RelayId) -> Option<SocketAddr> {
        self.sockets.get(id.0 as usize).map(|r| r.advertised)
    }

    /// The socket of relay `id`.
    pub fn socket(&self, id: RelayId) -> Option<&UdpSocket> {
        self.sockets.get(id.0 as usize).map(|r| &r.socket)
    }

    /// Number of open relay sockets.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when no relay socket is open.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    fn bind_one(
        &mut self,
        ip: IpAddr,
        advertised: IpAddr,
        port: u16,
        dont_fragment: bool,
    ) -> io::Result<RelayId> {
        let opts = UdpOptions {
            reuse_port: false,
            buffer_bytes: self.buffer_bytes,
            dont_fragment,
        };
        let std_socket = bind_udp(SocketAddr::new(ip, port), opts)?;
        let mut socket = UdpSocket::from_std(std_socket);
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        self.registry.register(
            &mut socket,
            Token(RELAY_TOKEN_BASE + key),
            Interest::READABLE,
        )?;
        entry.insert(RelaySocket {
            socket,
            port,
            advertised: SocketAddr::new(advertised, port),
        });
        self.directory.set(port, Some(self.worker));
        Ok(RelayId(key as u32))
    }
}

impl RelayIo for RelaySet {
    fn open(&mut self, request: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        let (bind, advertised) = self.addrs.for_family(request.family == Family::V6)?;
        let pool = self.pool.clone();
        let (id, addr, reserved) = open_from_pool(&pool, &request, advertised, |port| {
            self.bind_one(bind, advertised, port, request.dont_fragment)
        })?;
        Ok(OpenedRelay { id, addr, reserved })
    }

    fn open_reserved(
        &mut self,
        addr: SocketAddr,
        dont_fragment: bool,
    ) -> Result<OpenedRelay, RelayOpenError> {
        let (bind, advertised) = self.addrs.for_family(addr.is_ipv6())?;
        let pool = self.pool.clone();
        let (id, addr) = open_reserved_port(&pool, addr, advertised, |port| {
            self.bind_one(bind, advertised, port, dont_fragment)
        })?;
        Ok(OpenedRelay {
            id,
            addr,
            reserved: None,
        })
    }

    fn close(&mut self, id: RelayId) {
        if let Some(mut relay) = self.sockets.try_remove(id.0 as usize) {
            let _ = self.registry.deregister(&mut relay.socket);
            self.directory.set(relay.port, None);
            self.pool.give_back(relay.port);
        }
    }

    fn release_reserved(&mut self, addr: SocketAddr) {
        self.pool.give_back(addr.port());
    }
}
