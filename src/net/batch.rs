//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)`, so that one system call moves many
//! datagrams. Used by the workers' data path and by the load generator.
//!
//! The buffers are allocated once; each call only rebuilds the small header arrays that point
//! into them, so no heap allocation happens per packet.

use std::io;
use std::mem::{MaybeUninit, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Converts a socket address to a `sockaddr_storage` and its length.
pub fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Converts a `sockaddr_storage` filled by the kernel back to a socket address.
pub fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A set of receive slots for `recvmmsg`.
pub struct RecvBatch {
    slot_size: usize,
    offset: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
}

impl RecvBatch {
    /// `count` slots of `slot_size` bytes; datagrams are received at `offset` into each slot
    /// (room for headers the caller writes in front), so at most `slot_size - offset` bytes.
    pub fn new(count: usize, slot_size: usize, offset: usize) -> Self {
        RecvBatch {
            slot_size,
            offset,
            bufs: vec![0; count * slot_size],
            lens: vec![0; count],
            // SAFETY: all-zero sockaddr_storage values are valid.
            addrs: vec![unsafe { zeroed() }; count],
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Receives up to `capacity` datagrams without blocking. Returns how many arrived
    /// (`Err(WouldBlock)` when none).
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let offset = self.offset;
        self.recv_at(fd, offset)
    }

    /// Like [`RecvBatch::recv`], placing datagrams at `offset` into their slots this time (the
    /// slot is returned whole by [`RecvBatch::slot`]; the datagram starts at `offset`).
    pub fn recv_at(&mut self, fd: RawFd, offset: usize) -> io::Result<usize> {
        let offset = offset.min(self.slot_size);
        let n = self.capacity();
        let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] =
            [const { MaybeUninit::uninit() }; MAX_BATCH];
        // SAFETY: all-zero mmsghdr values are valid (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        let n = n.min(MAX_BATCH);
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: slot i lies within `bufs` (count * slot_size bytes).
            let start = unsafe { base.add(i * self.slot_size + offset) };
            iovs[i].write(libc::iovec {
                iov_base: start as *mut libc::c_void,
                iov_len: self.slot_size - offset,
            });
            hdrs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at live buffers owned by self for the call's duration.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        for (len, hdr) in self.lens.iter_mut().zip(&hdrs[..got as usize]) {
            *len = hdr.msg_len as usize;
        }
        Ok(got as usize)
    }

    /// Slot `i` after a `recv`: the whole slot (the datagram is at `offset..offset + len`), its
    /// length and its source.
    pub fn slot(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let len = self.lens[i];
        let addr = from_sockaddr(&self.addrs[i]);
        let slot = &mut self.bufs[i * self.slot_size..(i + 1) * self.slot_size];
        (slot, len, addr)
    }
}

/// Most datagrams moved by one system call.
pub const MAX_BATCH: usize = 64;

/// Datagrams queued for one `sendmmsg` on one socket. Copies each payload into its own
/// preallocated slot.
pub struct SendBatch {
    slot_size: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    queued: usize,
}

impl SendBatch {
    /// A batch of up to `count` (at most [`MAX_BATCH`]) datagrams of up to `slot_size` bytes.
    pub fn new(count: usize, slot_size: usize) -> Self {
        let count = count.min(MAX_BATCH);
        SendBatch {
            slot_size,
            bufs: vec![0; count * slot_size],
            lens: vec![0; count],
            // SAFETY: all-zero sockaddr_storage values are valid.
            addrs: vec![(unsafe { zeroed() }, 0); count],
            queued: 0,
        }
    }

    /// True when no more datagrams fit.
    pub fn is_full(&self) -> bool {
        self.queued == self.lens.len()
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues `data` for `to`. Returns false (and queues nothing) when full or too large.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) -> bool {
        if self.is_full() || data.len() > self.slot_size {
            return false;
        }
        let i = self.queued;
        self.bufs[i * self.slot_size..i * self.slot_size + data.len()].copy_from_slice(data);
        self.lens[i] = data.len();
        self.addrs[i] = to_sockaddr(to);
        self.queued += 1;
        true
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.queued = 0;
    }

    /// Sends everything queued on `fd`; datagrams the kernel refuses (a full buffer) are
    /// dropped, as a single `send_to` would. Returns how many were sent.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let mut sent = 0;
        let mut attempts = 0;
        while sent < self.queued && attempts < 4 {
            attempts += 1;
            let n = self.queued - sent;
            let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] =
                [const { MaybeUninit::uninit() }; MAX_BATCH];
            // SAFETY: all-zero mmsghdr values are valid.
            let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
            for j in 0..n {
                let i = sent + j;
                // SAFETY: slot i lies within bufs.
                let start = unsafe { self.bufs.as_mut_ptr().add(i * self.slot_size) };
                iovs[j].write(libc::iovec {
                    iov_base: start as *mut libc::c_void,
                    iov_len: self.lens[i],
                });
                hdrs[j].msg_hdr.msg_iov = iovs[j].as_mut_ptr();
                hdrs[j].msg_hdr.msg_iovlen = 1;
                hdrs[j].msg_hdr.msg_name = &mut self.addrs[i].0 as *mut _ as *mut libc::c_void;
                hdrs[j].msg_hdr.msg_namelen = self.addrs[i].1;
            }
            // SAFETY: every header points at live buffers owned by self for the call.
            let rc = unsafe {
                libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT)
            };
            if rc <= 0 {
                // Skip the datagram at the head (unreachable destination, full buffer).
                sent += 1;
                continue;
            }
            sent += rc as usize;
        }
        let done = sent.min(self.queued);
        self.queued = 0;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batches_round_trip_over_loopback() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let mut out = SendBatch::new(8, 100);
        for i in 0..5u8 {
            assert!(out.push(&[i; 10], b.local_addr().unwrap()));
        }
        assert_eq!(out.flush(a.as_raw_fd()), 5);
        let mut inb = RecvBatch::new(8, 64, 16);
        let mut got = 0;
        for _ in 0..100 {
            match inb.recv(b.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (slot, len, from) = inb.slot(i);
                        assert_eq!(len, 10);
                        assert_eq!(&slot[16..26], &[got as u8; 10]);
                        assert_eq!(from, Some(a.local_addr().unwrap()));
                        got += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
            if got == 5 {
                break;
            }
        }
        assert_eq!(got, 5);
    }

    #[test]
    fn sockaddr_round_trips() {
        for a in ["192.0.2.1:5", "[2001:db8::1]:65535"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(from_sockaddr(&to_sockaddr(addr).0), Some(addr));
        }
    }
}
