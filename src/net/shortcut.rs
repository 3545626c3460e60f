//! The relay-to-relay short-circuit. When a client sends to a relayed address of this server
//! (two browsers on relay-only policy), the packet does not need to leave through one relay
//! socket and come back in through another: the worker delivers it in memory to the receiving
//! allocation, on its own core directly, or through a bounded lock-free hand-off to the worker
//! that owns it. Permissions are checked on both allocations, exactly as on the kernel path,
//! and anything that does not fit (a full queue, a large datagram) takes the kernel path.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crossbeam_queue::ArrayQueue;

/// Which worker owns each relay port (0 = none, else worker index + 1), and which IPs are our
/// advertised relay addresses. Written when relay sockets open and close, read per packet.
pub struct RelayDirectory {
    owners: Box<[AtomicU8]>,
    ips: Vec<IpAddr>,
}

impl RelayDirectory {
    /// A directory for relays advertised on `ips`.
    pub fn new(ips: Vec<IpAddr>) -> Self {
        RelayDirectory {
            owners: (0..=u16::MAX as usize).map(|_| AtomicU8::new(0)).collect(),
            ips,
        }
    }

    /// Records that `worker` (< 255) owns `port`, or nobody (`None`).
    pub fn set(&self, port: u16, worker: Option<usize>) {
        let v = worker.map_or(0, |w| (w.min(254) + 1) as u8);
        self.owners[port as usize].store(v, Ordering::Relaxed);
    }

    /// The worker that owns relayed address `addr`, if it is one of ours.
    pub fn owner(&self, addr: SocketAddr) -> Option<usize> {
        let v = self.owners[addr.port() as usize].load(Ordering::Relaxed);
        if v == 0 || !self.ips.contains(&addr.ip()) {
            return None;
        }
        Some(v as usize - 1)
    }
}

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
        d.set(50000, None);
        assert_eq!(d.owner("198.51.100.1:50000".parse().unwrap()), None);
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
