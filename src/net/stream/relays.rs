//! The relay sockets of one TCP/TLS client connection: UDP relays (tokio sockets) and, for
//! RFC 6062 allocations, TCP relays (a listening socket that outgoing connections to peers
//! also bind to). Implements [`RelayIo`] for the connection's core; ports come from the
//! [`PortPool`] the UDP workers share.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use tokio::io::ReadBuf;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

use crate::net::ports::{PortPool, open_from_pool, open_reserved_port};
use crate::net::relay::RelayAddresses;
use crate::net::socket::{UdpOptions, bind_udp};
use crate::proto::server::{Family, OpenedRelay, RelayId, RelayIo, RelayOpenError, RelayRequest};

/// Backlog of a TCP relay's listening socket.
const TCP_RELAY_BACKLOG: u32 = 16;

struct UdpRelay {
    id: RelayId,
    socket: UdpSocket,
    port: u16,
}

struct TcpRelay {
    id: RelayId,
    listener: TcpListener,
    local: SocketAddr,
    port: u16,
}

/// The relay sockets of one connection (at most one allocation: a few sockets).
pub struct StreamRelays {
    pool: Arc<PortPool>,
    addrs: RelayAddresses,
    buffer_bytes: usize,
    udp: Vec<UdpRelay>,
    tcp: Vec<TcpRelay>,
    next_id: u32,
    /// Which UDP relay is polled first next time (fairness between families).
    turn: AtomicUsize,
}

impl StreamRelays {
    /// No relays yet.
    pub fn new(pool: Arc<PortPool>, addrs: RelayAddresses, buffer_bytes: usize) -> Self {
        StreamRelays {
            pool,
            addrs,
            buffer_bytes,
            udp: Vec::new(),
            tcp: Vec::new(),
            next_id: 0,
            turn: AtomicUsize::new(0),
        }
    }

    /// True when a UDP relay is open.
    pub fn has_udp(&self) -> bool {
        !self.udp.is_empty()
    }

    /// True when a TCP relay is open.
    pub fn has_tcp(&self) -> bool {
        !self.tcp.is_empty()
    }

    /// Receives one datagram on any UDP relay into `buf`. Pending forever when there is none.
    pub async fn recv(&self, buf: &mut [u8]) -> (RelayId, io::Result<(usize, SocketAddr)>) {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let udp = &self.udp;
        poll_fn(|cx| {
            let n = udp.len();
            for k in 0..n {
                let relay = &udp[(turn + k) % n];
                let mut read = ReadBuf::new(buf);
                match relay.socket.poll_recv_from(cx, &mut read) {
                    Poll::Ready(Ok(from)) => {
                        return Poll::Ready((relay.id, Ok((read.filled().len(), from))));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready((relay.id, Err(e))),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Accepts one peer connection on any TCP relay. Pending forever when there is none.
    pub async fn accept(&self) -> (RelayId, io::Result<(TcpStream, SocketAddr)>) {
        poll_fn(|cx| {
            for relay in &self.tcp {
                if let Poll::Ready(r) = relay.listener.poll_accept(cx) {
                    return Poll::Ready((relay.id, r));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Sends a datagram from UDP relay `id` without waiting: a full socket buffer drops it, as
    /// UDP would. False when it was not sent (the kernel refused it, or the relay is gone), so
    /// the caller counts it (`turnpike_dropped_packets_total{reason="send_failed"}`).
    #[must_use]
    pub fn send(&self, id: RelayId, data: &[u8], peer: SocketAddr) -> bool {
        let Some(relay) = self.udp.iter().find(|r| r.id == id) else {
            return false;
        };
        // Straight to the kernel: tokio's `try_send_to` would first consult its cached write
        // readiness, which a socket that never waited for writability lacks.
        socket2::SockRef::from(&relay.socket)
            .send_to(data, &peer.into())
            .is_ok()
    }

    /// A socket bound to TCP relay `id`'s address, ready to connect to a peer (RFC 6062
    /// §5.2: the local end of a peer connection is the relayed address).
    pub fn connector(&self, id: RelayId) -> io::Result<TcpSocket> {
        let relay = self
            .tcp
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such TCP relay"))?;
        let socket = tcp_socket(relay.local)?;
        socket.bind(relay.local)?;
        Ok(socket)
    }

    fn next_id(&mut self) -> RelayId {
        self.next_id = self.next_id.wrapping_add(1);
        RelayId(self.next_id)
    }

    fn bind_udp(&mut self, ip: IpAddr, port: u16, dont_fragment: bool) -> io::Result<RelayId> {
        let opts = UdpOptions {
            reuse_port: false,
            buffer_bytes: self.buffer_bytes,
            dont_fragment,
        };
        let std_socket = bind_udp(SocketAddr::new(ip, port), opts)?;
        let socket = UdpSocket::from_std(std_socket)?;
        let id = self.next_id();
        self.udp.push(UdpRelay { id, socket, port });
        Ok(id)
    }
}

/// A TCP socket that may share its address with the relay's listener (SO_REUSEADDR and
/// SO_REUSEPORT on both, as Linux requires for a connect from a listening address).
fn tcp_socket(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    Ok(socket)
}

impl RelayIo for StreamRelays {
    fn open(&mut self, request: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        let (bind, advertised) = self
            .addrs
            .pick(request.family == Family::V6, request.near)?;
        let pool = self.pool.clone();
        let (id, addr, reserved) = open_from_pool(&pool, &request, advertised, |port| {
            self.bind_udp(bind, port, request.dont_fragment)
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
            self.bind_udp(bind, port, dont_fragment)
        })?;
        Ok(OpenedRelay {
            id,
            addr,
            reserved: None,
        })
    }

    fn open_tcp(&mut self, family: Family) -> Result<OpenedRelay, RelayOpenError> {
        let (bind, advertised) = self.addrs.for_family(family == Family::V6)?;
        let plain = RelayRequest {
            family,
            even: false,
            reserve_next: false,
            dont_fragment: false,
            near: None,
        };
        let pool = self.pool.clone();
        let (id, addr, _) = open_from_pool(&pool, &plain, advertised, |port| {
            let local = SocketAddr::new(bind, port);
            let listener = tcp_socket(local).and_then(|s| {
                s.bind(local)?;
                s.listen(TCP_RELAY_BACKLOG)
            })?;
            let id = self.next_id();
            self.tcp.push(TcpRelay {
                id,
                listener,
                local,
                port,
            });
            Ok(id)
        })?;
        Ok(OpenedRelay {
            id,
            addr,
            reserved: None,
        })
    }

    fn close(&mut self, id: RelayId) {
        if let Some(i) = self.udp.iter().position(|r| r.id == id) {
            let relay = self.udp.swap_remove(i);
            self.pool.give_back(relay.port);
        } else if let Some(i) = self.tcp.iter().position(|r| r.id == id) {
            let relay = self.tcp.swap_remove(i);
            self.pool.give_back(relay.port);
        }
    }

    fn release_reserved(&mut self, addr: SocketAddr) {
        self.pool.give_back(addr.port());
    }
}
