//! The UDP worker: one thread, one mio event loop, its listener sockets, its relay sockets and
//! its core. Packets are read into one reused buffer and sent from it: no allocation and no
//! lock per relayed packet.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use super::relay::{RELAY_TOKEN_BASE, RelaySet};
use crate::proto::Transport;
use crate::proto::server::{
    ClientOutput, FiveTuple, Now, PEER_HEADROOM, PEER_TAILROOM, PeerOutput, RelayId, Server,
};

/// Token of the waker that interrupts the loop (shutdown).
const WAKER_TOKEN: Token = Token(RELAY_TOKEN_BASE - 1);
/// At most this many datagrams are read from one socket per readiness event before the loop
/// serves the others; the socket is then revisited without waiting for a new event.
const READ_BUDGET: usize = 256;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65535;

/// Shared between a worker and the service.
#[derive(Debug, Default)]
pub struct WorkerHandle {
    /// Set to stop the worker.
    pub stop: AtomicBool,
    /// Milliseconds since the UNIX epoch of the worker's last loop turn (watchdog).
    pub heartbeat_ms: AtomicU64,
    /// Live allocations in this worker.
    pub allocations: AtomicU64,
}

/// Reads the wall clock and the monotonic clock together (the I/O layer's job, not the core's).
pub fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    }
}

/// One worker's sockets and core, ready to run on its own thread.
pub struct UdpWorker {
    poll: Poll,
    listeners: Vec<(SocketAddr, UdpSocket)>,
    relays: RelaySet,
    core: Server,
    handle: Arc<WorkerHandle>,
    buf: Box<[u8]>,
    /// Sockets whose read budget ran out with data possibly left: revisited next turn.
    pending: Vec<Token>,
    /// Reused list of sockets to serve this turn.
    ready: Vec<Token>,
}

impl UdpWorker {
    /// Assembles a worker. `listeners` are already bound; `relays` registers with `poll`.
    pub fn new(
        poll: Poll,
        listeners: Vec<std::net::UdpSocket>,
        relays: RelaySet,
        core: Server,
        handle: Arc<WorkerHandle>,
    ) -> io::Result<(Self, Arc<Waker>)> {
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let mut registered = Vec::with_capacity(listeners.len());
        for (i, socket) in listeners.into_iter().enumerate() {
            let addr = socket.local_addr()?;
            let mut socket = UdpSocket::from_std(socket);
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)?;
            registered.push((addr, socket));
        }
        let worker = UdpWorker {
            poll,
            listeners: registered,
            relays,
            core,
            handle,
            buf: vec![0u8; PEER_HEADROOM + MAX_DATAGRAM + PEER_TAILROOM].into_boxed_slice(),
            pending: Vec::new(),
            ready: Vec::new(),
        };
        Ok((worker, waker))
    }

    /// Runs until the handle's `stop` is set, then ends every allocation.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.handle.stop.load(Ordering::Relaxed) {
            let t = now();
            self.handle
                .heartbeat_ms
                .store(t.unix * 1000, Ordering::Relaxed);
            let timeout = if self.pending.is_empty() {
                self.core
                    .poll_timeout()
                    .saturating_duration_since(t.instant)
                    .min(Duration::from_secs(1))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "event loop failed");
                    break;
                }
            }
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            ready.append(&mut self.pending);
            ready.extend(
                events
                    .iter()
                    .map(|e| e.token())
                    .filter(|t| *t != WAKER_TOKEN),
            );
            ready.sort_unstable();
            ready.dedup();
            for &token in &ready {
                let more = if token.0 >= RELAY_TOKEN_BASE {
                    self.drain_relay(RelayId((token.0 - RELAY_TOKEN_BASE) as u32))
                } else {
                    self.drain_listener(token.0)
                };
                if more {
                    self.pending.push(token);
                }
            }
            self.ready = ready;
            let t = now();
            self.core.handle_timeout(t, &mut self.relays);
            self.handle
                .allocations
                .store(self.core.allocation_count() as u64, Ordering::Relaxed);
        }
        self.core.close_all(&mut self.relays);
        self.handle.allocations.store(0, Ordering::Relaxed);
    }

    /// Reads from a listener until it would block or the budget is spent. Returns true when the
    /// budget ran out (data may be left).
    fn drain_listener(&mut self, index: usize) -> bool {
        let Some((local, _)) = self.listeners.get(index) else {
            return false;
        };
        let local = *local;
        for _ in 0..READ_BUDGET {
            let (len, client) = match self.listeners[index]
                .1
                .recv_from(&mut self.buf[..MAX_DATAGRAM])
            {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors surface here on Linux (ECONNREFUSED): not fatal for a listener.
                    tracing::trace!(error = %e, "listener receive error");
                    continue;
                }
            };
            let ft = FiveTuple {
                transport: Transport::Udp,
                client,
                server: local,
            };
            let data = &self.buf[..len];
            match self.core.handle_client(now(), ft, data, &mut self.relays) {
                // RFC 6062 requests are refused over UDP before they get this far.
                ClientOutput::Nothing
                | ClientOutput::Connect { .. }
                | ClientOutput::ConnectionBind { .. } => {}
                ClientOutput::Reply => {
                    let _ = self.listeners[index].1.send_to(self.core.reply(), client);
                }
                ClientOutput::Relay {
                    relay,
                    peer,
                    payload,
                } => {
                    if let Some(socket) = self.relays.socket(relay) {
                        let _ = socket.send_to(&self.buf[payload], peer);
                    }
                }
            }
        }
        true
    }

    /// Reads from a relay socket until it would block or the budget is spent.
    fn drain_relay(&mut self, id: RelayId) -> bool {
        for _ in 0..READ_BUDGET {
            let Some(socket) = self.relays.socket(id) else {
                return false;
            };
            let (len, peer) = match socket
                .recv_from(&mut self.buf[PEER_HEADROOM..PEER_HEADROOM + MAX_DATAGRAM])
            {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => continue,
            };
            let t = Instant::now();
            if let PeerOutput::ToClient { five_tuple, frame } =
                self.core.handle_peer(t, id, peer, &mut self.buf, len)
            {
                if let Some((_, listener)) =
                    self.listeners.iter().find(|(a, _)| *a == five_tuple.server)
                {
                    let _ = listener.send_to(&self.buf[frame], five_tuple.client);
                }
            }
        }
        true
    }
}
