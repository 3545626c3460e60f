//! Ports for test servers and peers: exclusive blocks shared safely between concurrent tests
//! and processes, and free ports for clients.

use std::fs::{self, File, OpenOptions};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// A free UDP port on `ip`: the kernel picks one for a socket bound to port 0, which is then
/// closed. For clients only: servers take their ports from a [`PortBlock`].
pub fn free_udp_port(ip: IpAddr) -> u16 {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind an ephemeral UDP port");
    socket.local_addr().expect("local address").port()
}

/// First port of the first block, block size and number of blocks: ports 10000-31999, below
/// the Linux ephemeral range (32768-60999), so no `bind(0)` on the machine lands in a block.
const BLOCK_BASE: u16 = 10_000;
pub const BLOCK_SIZE: u16 = 200;
const BLOCKS: u16 = 110;

/// An exclusive block of 200 ports (starting at an even port) for one test server or peer,
/// held by an advisory file lock (`flock`) until dropped, so that concurrent tests in this
/// process and in other processes (cargo-nextest runs every test in a process of its own)
/// never get the same ports.
///
/// Why not `bind(0)` for server ports: turnpike binds with SO_REUSEPORT, and two servers that
/// both set it on the same port would share it silently (the kernel splits the datagrams).
/// Ports from a locked block are never handed to a second test.
pub struct PortBlock {
    pub first: u16,
    _lock: File,
}

impl PortBlock {
    pub fn claim() -> PortBlock {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join("turnpike-test-ports");
        fs::create_dir_all(&dir).expect("create the port lock directory");
        // Start at a different block in each process so that processes rarely contend.
        let start = std::process::id().wrapping_add(NEXT.fetch_add(7, Ordering::Relaxed));
        for i in 0..u32::from(BLOCKS) {
            let block = (start.wrapping_add(i) % u32::from(BLOCKS)) as u16;
            let path = dir.join(format!("block-{block}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .expect("open a port lock file");
            // SAFETY: flock on a file descriptor we own; it does not touch memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return PortBlock {
                    first: BLOCK_BASE + block * BLOCK_SIZE,
                    _lock: file,
                };
            }
        }
        panic!("all {BLOCKS} port blocks are taken");
    }

    /// The `i`-th port of the block.
    pub fn port(&self, i: u16) -> u16 {
        assert!(i < BLOCK_SIZE);
        self.first + i
    }

    /// The block's ports from the `i`-th on.
    pub fn from(&self, i: u16) -> RangeInclusive<u16> {
        self.port(i)..=self.first + BLOCK_SIZE - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_blocks_are_exclusive() {
        let a = PortBlock::claim();
        let b = PortBlock::claim();
        assert_ne!(a.first, b.first);
        assert!(a.from(0).end() < b.from(0).start() || b.from(0).end() < a.from(0).start());
        assert!(*a.from(0).end() < 32768 && *b.from(0).end() < 32768);
        assert_eq!(a.first % 2, 0, "turnutils_peer wants an even port");
    }
}
