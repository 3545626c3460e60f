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
    /// More relay addresses (`relay.bind_ips`), either family: (bound, advertised).
    pub extra: Vec<(IpAddr, IpAddr)>,
}

impl RelayAddresses {
    /// Every relay address, (bound, advertised): the families' first ones, then the others.
    pub fn all(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        let first = [
            self.bind_v4.zip(self.advertised_v4),
            self.bind_v6.zip(self.advertised_v6),
        ];
        first
            .into_iter()
            .flatten()
            .chain(self.extra.iter().copied())
    }

    /// The relay address for a client of `v6`'s family that reached the server at `near`:
    /// the one bound at `near` when there is one (a client that came in on an address relays
    /// on it), else the family's first.
    pub fn pick(&self, v6: bool, near: Option<IpAddr>) -> Result<(IpAddr, IpAddr), RelayOpenError> {
        let first = self.for_family(v6)?;
        Ok(near
            .and_then(|near| self.all().find(|(bind, _)| *bind == near))
            .filter(|(bind, _)| bind.is_ipv6() == v6)
            .unwrap_or(first))
    }

    /// The relay address whose advertised address is `ip` (a reserved port's), else the
    /// family's first.
    pub fn advertising(&self, ip: IpAddr) -> Result<(IpAddr, IpAddr), RelayOpenError> {
        let first = self.for_family(ip.is_ipv6())?;
        Ok(self.all().find(|(_, a)| *a == ip).unwrap_or(first))
    }

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
        let (bind, advertised) = self
            .addrs
            .pick(request.family == Family::V6, request.near)?;
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
        let (bind, advertised) = self.addrs.advertising(addr.ip())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_relays_on_the_address_it_reached_else_on_the_first() {
        let addrs = RelayAddresses {
            bind_v4: Some(ip("10.0.0.1")),
            bind_v6: Some(ip("2001:db8::1")),
            advertised_v4: Some(ip("203.0.113.1")),
            advertised_v6: Some(ip("2001:db8::1")),
            extra: vec![
                (ip("10.0.0.2"), ip("203.0.113.2")),
                (ip("10.0.0.3"), ip("10.0.0.3")),
            ],
        };
        let pick = |v6, near: &str| addrs.pick(v6, Some(ip(near))).unwrap();
        assert_eq!(pick(false, "10.0.0.2"), (ip("10.0.0.2"), ip("203.0.113.2")));
        assert_eq!(pick(false, "10.0.0.3"), (ip("10.0.0.3"), ip("10.0.0.3")));
        assert_eq!(pick(false, "10.0.0.1"), (ip("10.0.0.1"), ip("203.0.113.1")));
        assert_eq!(
            pick(false, "127.0.0.1"),
            (ip("10.0.0.1"), ip("203.0.113.1"))
        );
        assert_eq!(
            pick(true, "10.0.0.2"),
            (ip("2001:db8::1"), ip("2001:db8::1")),
            "an IPv6 relay for a client that came over IPv4"
        );
        assert_eq!(
            addrs.advertising(ip("203.0.113.2")).unwrap(),
            (ip("10.0.0.2"), ip("203.0.113.2")),
            "a reserved port reopens where it was advertised"
        );
        let none = RelayAddresses {
            bind_v6: None,
            advertised_v6: None,
            ..addrs.clone()
        };
        assert_eq!(
            none.pick(true, None),
            Err(RelayOpenError::FamilyUnsupported)
        );
    }
}
