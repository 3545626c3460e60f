//! The UDP worker: one thread, one mio event loop, its listener sockets, its relay sockets and
//! its core. Packets are read into a pool of receive slots and sent from the slots they
//! arrived in (the send batches point into them: the core writes a ChannelData or Data
//! indication header into the headroom in front of a peer's datagram, and a client's
//! ChannelData payload leaves as a sub-slice of its frame): no copy, no allocation and no lock
//! per relayed packet.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use super::admin::{AdminHub, CoreTicket};
use super::batch::{RecvBatch, SendBatch};
use super::client_batch::{ClientBatch, flush_relay};
use super::listeners::ListenerInbox;
use super::live::CoreUpdates;
use super::relay::{RELAY_TOKEN_BASE, RelaySet};
use super::shortcut::{HANDOFF_SLOT, Handoff, Handoffs, MAX_ROUTES, RelayDirectory, RouteNotice};
use crate::proto::Transport;
use crate::proto::server::{
    ClientOutput, DirectRoute, FastHash, FiveTuple, Now, PEER_HEADROOM, PEER_TAILROOM, PeerOutput,
    RelayId, Server,
};

/// Token of the waker that interrupts the loop (shutdown, or packets handed over by another
/// worker).
pub const WAKER_TOKEN: Token = Token(RELAY_TOKEN_BASE - 1);
/// At most this many datagrams are read from one socket per readiness event before the loop
/// serves the others; the socket is then revisited without waiting for a new event.
const READ_BUDGET: usize = 256;
/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65535;
/// Datagrams per recvmmsg/sendmmsg.
const BATCH: usize = 32;
/// A receive slot: room for headers in front, the largest datagram, padding after.
const SLOT: usize = PEER_HEADROOM + MAX_DATAGRAM + PEER_TAILROOM;

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
    /// Datagrams from clients (at offset 0) and from peers (at PEER_HEADROOM), in a pool of
    /// slots: the frames `to_clients` holds keep theirs until sent.
    recv: RecvBatch,
    /// Datagrams for one relay socket (to peers), sent with one sendmmsg from the receive
    /// slots of the batch being handled (flushed before the next receive).
    to_peers: SendBatch,
    /// Frames for clients, gathered from the relay sockets served in a loop turn.
    to_clients: ClientBatch,
    /// Sockets whose read budget ran out with data possibly left: revisited next turn.
    pending: Vec<Token>,
    /// Reused list of sockets to serve this turn.
    ready: Vec<Token>,
    /// This worker's index among the workers.
    index: usize,
    /// Who owns which relayed address (relay-to-relay short-circuit).
    directory: Arc<RelayDirectory>,
    /// In-memory hand-off of packets between workers.
    handoffs: Arc<Handoffs>,
    /// Every worker's waker, to announce a hand-off.
    wakers: Arc<Vec<Arc<Waker>>>,
    /// Workers to wake at the end of this turn (bit i = worker i).
    to_wake: u64,
    /// Short-circuited packets for this worker's own allocations, delivered after the batch.
    local: Vec<Handoff>,
    /// Direct routes other workers published: (sending relayed address, receiving relayed
    /// address) → the route and the directory registration of the receiving address it is for.
    routes: std::collections::HashMap<(SocketAddr, SocketAddr), (DirectRoute, u32), FastHash>,
    /// Reloaded settings and the draining flag, and the generation of them the core has.
    updates: Arc<CoreUpdates>,
    updates_seen: u64,
    /// Admin commands (list, end allocations), answered between batches.
    admin: CoreTicket,
    /// Listener sockets to adopt (addresses that appeared after the start).
    new_listeners: Arc<ListenerInbox>,
    /// The XDP fast path's entries of this worker's channels, when `relay.xdp` is on.
    #[cfg(feature = "xdp")]
    xdp: Option<crate::net::xdp::XdpWorker>,
}

/// What a worker shares with the others.
pub struct WorkerShared {
    /// This worker's index.
    pub index: usize,
    /// Relay ownership.
    pub directory: Arc<RelayDirectory>,
    /// Hand-off queues and buffers.
    pub handoffs: Arc<Handoffs>,
    /// All workers' wakers (indexed like the workers).
    pub wakers: Arc<Vec<Arc<Waker>>>,
    /// Reloaded settings and the draining flag (the service wakes the worker after a change).
    pub updates: Arc<CoreUpdates>,
    /// Where admin commands come from (the service wakes the worker when one is posted).
    pub admin: Arc<AdminHub>,
    /// Listener sockets for addresses that appeared after the start (the service wakes the
    /// worker when it posts some).
    pub new_listeners: Arc<ListenerInbox>,
    /// The XDP fast path, when `relay.xdp` is set and it attached.
    #[cfg(feature = "xdp")]
    pub xdp: Option<Arc<crate::net::xdp::FastPath>>,
}

impl UdpWorker {
    /// Assembles a worker. `listeners` are already bound; `relays` registers with `poll`.
    pub fn new(
        poll: Poll,
        listeners: Vec<std::net::UdpSocket>,
        relays: RelaySet,
        #[allow(unused_mut)] mut core: Server,
        handle: Arc<WorkerHandle>,
        shared: WorkerShared,
    ) -> io::Result<Self> {
        #[cfg(feature = "xdp")]
        let xdp = shared
            .xdp
            .map(|fast| crate::net::xdp::XdpWorker::new(fast, &mut core, Instant::now()));
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
            // Spare slots for the frames `to_clients` holds (at most BATCH), so that a full
            // receive is always possible.
            recv: RecvBatch::new(BATCH, SLOT, 0).with_spare(BATCH),
            to_peers: SendBatch::borrowing(BATCH),
            to_clients: ClientBatch {
                send: SendBatch::borrowing(BATCH),
                held: Vec::with_capacity(BATCH),
                listener: None,
                since: None,
            },
            pending: Vec::new(),
            ready: Vec::new(),
            index: shared.index,
            directory: shared.directory,
            handoffs: shared.handoffs,
            wakers: shared.wakers,
            to_wake: 0,
            local: Vec::with_capacity(BATCH),
            routes: Default::default(),
            updates: shared.updates,
            updates_seen: 0,
            admin: shared.admin.register(),
            new_listeners: shared.new_listeners,
            #[cfg(feature = "xdp")]
            xdp,
        };
        Ok(worker)
    }

    /// Runs until the handle's `stop` is set, then ends every allocation.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.handle.stop.load(Ordering::Relaxed) {
            let t = now();
            self.handle
                .heartbeat_ms
                .store(t.unix * 1000, Ordering::Relaxed);
            let timeout = if self.pending.is_empty() && self.handoffs.going_to_sleep(self.index) {
                let wake = self.core.poll_timeout();
                // The fast path's counters and expired entries are read every 500 ms.
                #[cfg(feature = "xdp")]
                let wake = match self.xdp.as_ref().and_then(|xdp| xdp.next_poll()) {
                    Some(poll) => wake.min(poll),
                    None => wake,
                };
                wake.saturating_duration_since(t.instant)
                    .min(Duration::from_secs(1))
            } else {
                Duration::ZERO
            };
            let polled = self.poll.poll(&mut events, Some(timeout));
            self.handoffs.woke_up(self.index);
            // Before anything read in this turn is handled: one atomic load when unchanged.
            self.updates.sync(&mut self.core, &mut self.updates_seen);
            // A reload that denied peers: their fast-path entries go before any packet is read.
            #[cfg(feature = "xdp")]
            if let Some(xdp) = self.xdp.as_mut() {
                xdp.apply(&mut self.core, &self.relays, Instant::now());
            }
            // An admin command, if one is pending: one atomic load when none is.
            self.admin.serve(&mut self.core, &mut self.relays);
            // New listener sockets, if the host gained an address: one atomic load when not.
            self.adopt_listeners();
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "event loop failed");
                    break;
                }
            }
            self.deliver_handoffs();
            self.learn_routes();
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
            self.to_clients.flush(&self.listeners, &mut self.recv);
            self.count_send_failures();
            self.wake_others();
            let t = now();
            self.core.handle_timeout(t, &mut self.relays);
            #[cfg(feature = "xdp")]
            if let Some(xdp) = self.xdp.as_mut() {
                xdp.sync(&mut self.core, &self.relays, t.instant);
            }
            self.handle
                .allocations
                .store(self.core.allocation_count() as u64, Ordering::Relaxed);
        }
        self.core.close_all(&mut self.relays);
        #[cfg(feature = "xdp")]
        if let Some(xdp) = self.xdp.as_mut() {
            xdp.sync(&mut self.core, &self.relays, Instant::now());
            xdp.clear(&mut self.core);
        }
        self.handle.allocations.store(0, Ordering::Relaxed);
    }

    /// Registers the listener sockets the service posted, after the others (listeners are
    /// known by position).
    fn adopt_listeners(&mut self) {
        for socket in self.new_listeners.take() {
            let Ok(addr) = socket.local_addr() else {
                continue;
            };
            let mut socket = UdpSocket::from_std(socket);
            let token = Token(self.listeners.len());
            if let Err(error) =
                self.poll
                    .registry()
                    .register(&mut socket, token, Interest::READABLE)
            {
                tracing::warn!(%addr, %error, "cannot serve a new listener address");
                continue;
            }
            self.listeners.push((addr, socket));
        }
    }

    /// Reads from a listener until it would block or the budget is spent. Returns true when the
    /// budget ran out (data may be left).
    fn drain_listener(&mut self, index: usize) -> bool {
        let Some((local, listener)) = self.listeners.get(index) else {
            return false;
        };
        let (local, listener_fd) = (*local, listener.as_raw_fd());
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let n = match self.recv.recv(listener_fd) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors surface here on Linux (ECONNREFUSED): not fatal for a listener.
                    tracing::trace!(error = %e, "listener receive error");
                    budget -= 1;
                    continue;
                }
            };
            budget = budget.saturating_sub(n);
            let t = now();
            // Client → peer datagrams leave from relay sockets: consecutive ones for the same
            // relay go out in one sendmmsg; answers go back on the listener.
            let mut pending_relay: Option<RelayId> = None;
            for i in 0..n {
                let base = self.recv.slot_start(i);
                let (slot, len, client) = self.recv.slot(i);
                let Some(client) = client else { continue };
                let ft = FiveTuple {
                    transport: Transport::Udp,
                    client,
                    server: local,
                };
                match self
                    .core
                    .handle_client(t, ft, &slot[..len], &mut self.relays)
                {
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
                        // To one of our own relayed addresses: deliver it in memory.
                        let own = self
                            .directory
                            .entry(peer)
                            .zip(self.relays.advertised(relay));
                        if let Some(((owner, registration), from)) = own {
                            // Owned by another worker that published a direct route: frame
                            // and send it from here, as that worker would.
                            let route = self
                                .routes
                                .get(&(from, peer))
                                .filter(|(_, word)| owner != self.index && *word == registration)
                                .map(|(route, _)| route);
                            let listener = route.and_then(|r| {
                                self.listeners
                                    .iter()
                                    .position(|(a, _)| *a == r.five_tuple.server)
                            });
                            if let (Some(route), Some(li)) = (route, listener) {
                                let framed = self.core.frame_direct(
                                    t.instant,
                                    route,
                                    from,
                                    slot,
                                    payload.clone(),
                                );
                                if let Some(frame) = framed {
                                    self.to_clients.push_held(
                                        &self.listeners,
                                        &mut self.recv,
                                        (li, i),
                                        frame,
                                        route.five_tuple.client,
                                    );
                                    continue;
                                }
                            }
                            let len = payload.len();
                            let fits = PEER_HEADROOM + len + PEER_TAILROOM <= HANDOFF_SLOT;
                            if let Some(mut buf) = fits.then(|| self.handoffs.buffer()).flatten() {
                                buf[PEER_HEADROOM..PEER_HEADROOM + len]
                                    .copy_from_slice(&slot[payload.clone()]);
                                let item = Handoff {
                                    to: peer,
                                    from,
                                    len,
                                    buf,
                                };
                                if owner == self.index {
                                    self.local.push(item);
                                    continue;
                                }
                                match self.handoffs.send(owner, item) {
                                    Ok(wake) => {
                                        if wake {
                                            self.to_wake |= 1 << (owner % 64);
                                        }
                                        continue;
                                    }
                                    Err(item) => self.handoffs.recycle(item.buf),
                                }
                            }
                        }
                        if pending_relay.is_some_and(|p| p != relay) || self.to_peers.is_full() {
                            let buf = self.recv.buffer();
                            flush_relay(&mut self.to_peers, &self.relays, pending_relay, buf);
                        }
                        pending_relay = Some(relay);
                        // The payload is sent from the receive slot, after the 4-byte header
                        // (or out of the Send indication).
                        self.to_peers
                            .push_ref(base + payload.start, payload.len(), peer);
                    }
                }
            }
            let buf = self.recv.buffer();
            flush_relay(&mut self.to_peers, &self.relays, pending_relay, buf);
            self.count_send_failures();
            let mut local = std::mem::take(&mut self.local);
            for item in local.drain(..) {
                self.deliver(t.instant, item);
            }
            self.local = local;
            if n < self.recv.capacity() {
                return false;
            }
        }
        true
    }

    /// Counts the datagrams the kernel refused in this turn's batched sends
    /// (`turnpike_dropped_packets_total{reason="send_failed"}`): nothing is lost silently.
    fn count_send_failures(&mut self) {
        let failed = self.to_peers.take_dropped() + self.to_clients.send.take_dropped();
        self.core
            .stats()
            .dropped_many(crate::proto::server::DropReason::SendFailed, failed);
    }

    /// Delivers a short-circuited packet to its allocation here and recycles its buffer.
    fn deliver(&mut self, now: Instant, mut item: Handoff) {
        let out = self
            .core
            .handle_relayed(now, item.from, item.to, &mut item.buf[..], item.len);
        if let PeerOutput::ToClient { five_tuple, frame } = out {
            if let Some(li) = self
                .listeners
                .iter()
                .position(|(a, _)| *a == five_tuple.server)
            {
                // The hand-off buffer goes back at once: the frame is copied (this path only).
                self.to_clients.push_copy(
                    &self.listeners,
                    &mut self.recv,
                    li,
                    &item.buf[frame],
                    five_tuple.client,
                );
            }
            self.publish_route(now, item.from, item.to);
        }
        self.handoffs.recycle(item.buf);
    }

    /// After delivering a packet handed over by another worker: tells that worker how to
    /// deliver the next ones itself, when the receiving allocation allows a direct route.
    fn publish_route(&mut self, now: Instant, from: SocketAddr, to: SocketAddr) {
        let Some((sender, _)) = self.directory.entry(from) else {
            return;
        };
        if sender == self.index {
            return;
        }
        let Some((_, registration)) = self.directory.entry(to) else {
            return;
        };
        if let Some(route) = self.core.direct_route(now, from, to) {
            self.handoffs.announce(
                sender,
                RouteNotice {
                    from,
                    to,
                    route,
                    registration,
                },
            );
        }
    }

    /// Takes the direct routes other workers published for this one.
    fn learn_routes(&mut self) {
        while let Some(notice) = self.handoffs.notice(self.index) {
            if self.routes.len() >= MAX_ROUTES {
                self.routes.clear();
            }
            self.routes.insert(
                (notice.from, notice.to),
                (notice.route, notice.registration),
            );
        }
    }

    /// Delivers what other workers handed over (bounded by the inbox depth per turn).
    fn deliver_handoffs(&mut self) {
        let now = Instant::now();
        while let Some(item) = self.handoffs.receive(self.index) {
            self.deliver(now, item);
        }
    }

    /// Wakes the workers this turn handed packets to.
    fn wake_others(&mut self) {
        let mut mask = std::mem::take(&mut self.to_wake);
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(waker) = self.wakers.get(w) {
                let _ = waker.wake();
            }
        }
    }

    /// Reads from a relay socket until it would block or the budget is spent. Frames for clients
    /// are queued on the listener and sent in batches.
    fn drain_relay(&mut self, id: RelayId) -> bool {
        let mut budget = READ_BUDGET;
        while budget > 0 {
            let Some(fd) = self.relays.socket(id).map(|s| s.as_raw_fd()) else {
                break;
            };
            let n = match self.recv.recv_at(fd, PEER_HEADROOM) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    budget -= 1;
                    continue;
                }
            };
            budget = budget.saturating_sub(n);
            let t = Instant::now();
            for i in 0..n {
                let (slot, len, peer) = self.recv.slot(i);
                let Some(peer) = peer else { continue };
                let PeerOutput::ToClient { five_tuple, frame } =
                    self.core.handle_peer(t, id, peer, slot, len)
                else {
                    continue;
                };
                let Some(li) = self
                    .listeners
                    .iter()
                    .position(|(a, _)| *a == five_tuple.server)
                else {
                    continue;
                };
                self.to_clients.push_held(
                    &self.listeners,
                    &mut self.recv,
                    (li, i),
                    frame,
                    five_tuple.client,
                );
            }
            if n < self.recv.capacity() {
                break;
            }
        }
        self.to_clients
            .flush_if_late(&self.listeners, &mut self.recv);
        budget == 0
    }
}
