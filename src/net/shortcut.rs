//! The relay-to-relay short-circuit. When a client sends to a relayed address of this server
//! (two browsers on relay-only policy), the packet does not need to leave through one relay
//! socket and come back in through another: the worker delivers it in memory to the receiving
//! allocation, on its own core directly, or through a bounded lock-free hand-off to the worker
//! that owns it. Permissions are checked on both allocations, exactly as on the kernel path,
//! and anything that does not fit (a full queue, a large datagram) takes the kernel path.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::proto::server::DirectRoute;

/// Which worker owns each relay port, and which IPs are our advertised relay addresses. Written
/// when relay sockets open and close, read per packet. Each port's entry is a registration
/// word: the owner in the low 8 bits (0 = none, else worker index + 1) and, above, a count of
/// the changes, so a [`DirectRoute`] learnt for one registration is not used for the next.
pub struct RelayDirectory {
    owners: Box<[AtomicU32]>,
    ips: Vec<IpAddr>,
}

impl RelayDirectory {
    /// A directory for relays advertised on `ips`.
    pub fn new(ips: Vec<IpAddr>) -> Self {
        RelayDirectory {
            owners: (0..=u16::MAX as usize).map(|_| AtomicU32::new(0)).collect(),
            ips,
        }
    }

    /// Records that `worker` (< 255) owns `port`, or nobody (`None`).
    pub fn set(&self, port: u16, worker: Option<usize>) {
        let owner = worker.map_or(0, |w| (w.min(254) + 1) as u32);
        let _ =
            self.owners[port as usize].fetch_update(Ordering::Release, Ordering::Relaxed, |old| {
                Some(((old >> 8).wrapping_add(1) << 8) | owner)
            });
    }

    /// The worker that owns relayed address `addr`, if it is one of ours.
    pub fn owner(&self, addr: SocketAddr) -> Option<usize> {
        self.entry(addr).map(|(owner, _)| owner)
    }

    /// The owner of relayed address `addr` and its registration word, if it is one of ours.
    pub fn entry(&self, addr: SocketAddr) -> Option<(usize, u32)> {
        let word = self.owners[addr.port() as usize].load(Ordering::Acquire);
        if word & 0xff == 0 || !self.ips.contains(&addr.ip()) {
            return None;
        }
        Some(((word & 0xff) as usize - 1, word))
    }
}

/// A direct route published by the worker owning its receiving address, for the worker owning
/// its sending address (see [`DirectRoute`]).
#[derive(Clone, Debug)]
pub struct RouteNotice {
    /// The sending allocation's relayed address.
    pub from: SocketAddr,
    /// The receiving relayed address.
    pub to: SocketAddr,
    /// How to deliver.
    pub route: DirectRoute,
    /// The directory's registration word of `to` when the route was made.
    pub registration: u32,
}

/// Routes a worker keeps at most (then it forgets them all and learns again).
pub const MAX_ROUTES: usize = 4096;

/// Size of a hand-off buffer: headroom for the core's headers, a full-size Ethernet payload,
/// and padding. Larger datagrams take the kernel path.
pub const HANDOFF_SLOT: usize = 2048;

/// A packet handed from one worker to another.
pub struct Handoff {
    /// The receiving relayed address.
    pub to: SocketAddr,
    /// The sending allocation's relayed address.
    pub from: SocketAddr,
    /// Payload length (the payload is at `PEER_HEADROOM` in `buf`).
    pub len: usize,
    /// Pooled buffer.
    pub buf: Box<[u8; HANDOFF_SLOT]>,
}

/// Every worker's inbox plus the shared buffer pool.
pub struct Handoffs {
    inboxes: Vec<Inbox>,
    pool: ArrayQueue<Box<[u8; HANDOFF_SLOT]>>,
}

/// A worker's inbox and whether it needs waking to read it: a busy worker drains its inbox
/// every loop turn, so only one that sleeps in `epoll_wait` is woken, once.
struct Inbox {
    queue: ArrayQueue<Handoff>,
    /// Direct routes published for this worker (no wake-up: read at the next loop turn).
    notices: ArrayQueue<RouteNotice>,
    sleeping: AtomicBool,
    notified: AtomicBool,
}

impl Handoffs {
    /// Inboxes of `depth` packets for `workers` workers, with the buffers preallocated.
    pub fn new(workers: usize, depth: usize) -> Self {
        let pool = ArrayQueue::new(workers * depth);
        for _ in 0..workers * depth {
            let _ = pool.push(Box::new([0u8; HANDOFF_SLOT]));
        }
        let inboxes = (0..workers)
            .map(|_| Inbox {
                queue: ArrayQueue::new(depth),
                notices: ArrayQueue::new(depth),
                sleeping: AtomicBool::new(false),
                notified: AtomicBool::new(false),
            })
            .collect();
        Handoffs { inboxes, pool }
    }

    /// Takes a buffer from the pool (none when the pool is drained: use the kernel path).
    pub fn buffer(&self) -> Option<Box<[u8; HANDOFF_SLOT]>> {
        self.pool.pop()
    }

    /// Returns a buffer to the pool.
    pub fn recycle(&self, buf: Box<[u8; HANDOFF_SLOT]>) {
        let _ = self.pool.push(buf);
    }

    /// Queues a packet for `worker`; gives it back when the inbox is full. `Ok(true)` means the
    /// worker sleeps and must be woken (once; later senders get `Ok(false)`).
    pub fn send(&self, worker: usize, item: Handoff) -> Result<bool, Handoff> {
        let Some(inbox) = self.inboxes.get(worker) else {
            return Err(item);
        };
        inbox.queue.push(item)?;
        // SeqCst pairs with `going_to_sleep`: either the sleeper sees the packet, or we see
        // that it sleeps.
        Ok(inbox.sleeping.load(Ordering::SeqCst) && !inbox.notified.swap(true, Ordering::SeqCst))
    }

    /// Publishes a direct route to `worker` (dropped when its notice queue is full: the
    /// owner publishes again on a later hand-off).
    pub fn announce(&self, worker: usize, notice: RouteNotice) {
        if let Some(inbox) = self.inboxes.get(worker) {
            let _ = inbox.notices.push(notice);
        }
    }

    /// The next route published for `worker`.
    pub fn notice(&self, worker: usize) -> Option<RouteNotice> {
        self.inboxes.get(worker)?.notices.pop()
    }

    /// The next packet for `worker`.
    pub fn receive(&self, worker: usize) -> Option<Handoff> {
        self.inboxes.get(worker)?.queue.pop()
    }

    /// Called by `worker` before it blocks: returns false when packets already wait (then it
    /// must not block).
    pub fn going_to_sleep(&self, worker: usize) -> bool {
        let Some(inbox) = self.inboxes.get(worker) else {
            return true;
        };
        inbox.sleeping.store(true, Ordering::SeqCst);
        inbox.queue.is_empty()
    }

    /// Called by `worker` after it wakes.
    pub fn woke_up(&self, worker: usize) {
        if let Some(inbox) = self.inboxes.get(worker) {
            inbox.sleeping.store(false, Ordering::SeqCst);
            inbox.notified.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_knows_only_our_addresses() {
        let d = RelayDirectory::new(vec!["198.51.100.1".parse().unwrap()]);
        d.set(50000, Some(1));
        assert_eq!(d.owner("198.51.100.1:50000".parse().unwrap()), Some(1));
        assert_eq!(
            d.owner("198.51.100.2:50000".parse().unwrap()),
            None,
            "another host"
        );
        assert_eq!(d.owner("198.51.100.1:50001".parse().unwrap()), None);
        let (_, first) = d.entry("198.51.100.1:50000".parse().unwrap()).unwrap();
        d.set(50000, None);
        assert_eq!(d.owner("198.51.100.1:50000".parse().unwrap()), None);
        d.set(50000, Some(1));
        let (owner, again) = d.entry("198.51.100.1:50000".parse().unwrap()).unwrap();
        assert_eq!(owner, 1);
        assert_ne!(
            first, again,
            "a new registration of the port has a new word"
        );
    }

    #[test]
    fn handoffs_are_bounded_and_pooled() {
        let h = Handoffs::new(2, 2);
        let item = |h: &Handoffs| Handoff {
            to: "198.51.100.1:1".parse().unwrap(),
            from: "198.51.100.1:2".parse().unwrap(),
            len: 0,
            buf: h.buffer().unwrap(),
        };
        assert!(h.send(1, item(&h)).is_ok());
        assert!(h.send(1, item(&h)).is_ok());
        let third = item(&h);
        assert!(h.send(1, third).is_err(), "inbox full");
        let _fourth = h.buffer().unwrap();
        assert!(h.buffer().is_none(), "pool of 4 drained");
        let got = h.receive(1).unwrap();
        h.recycle(got.buf);
        assert!(h.buffer().is_some());
        assert!(h.receive(0).is_none());
    }
}
