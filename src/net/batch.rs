//! Batched UDP I/O: `recvmmsg(2)` and `sendmmsg(2)`, so that one system call moves many
//! datagrams. Used by the workers' data path and by the load generator.
//!
//! The buffers are allocated once; each call only rebuilds the small header arrays that point
//! into them, so no heap allocation happens per packet.

pub use super::send_batch::SendBatch;

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
///
/// The slots form a pool: each `recv` receives into free slots, and a caller that sends a
/// datagram on from where it arrived (no copy) [`holds`](RecvBatch::hold) its slot until the
/// send is done ([`RecvBatch::release`]); slots not held are free again at the next `recv`.
/// Spare slots ([`RecvBatch::with_spare`]) keep a full `recv` possible while others are held.
pub struct RecvBatch {
    slot_size: usize,
    offset: usize,
    bufs: Vec<u8>,
    /// Pool slot of each datagram of the last `recv` (the first `mapped` are in use).
    map: Vec<u16>,
    mapped: usize,
    /// State of each pool slot, and the free ones.
    state: Vec<SlotState>,
    free: Vec<u16>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Control-message room per slot, when kernel receive timestamps are wanted.
    controls: Vec<ControlBuf>,
    /// Kernel receive timestamps (`SO_TIMESTAMPNS`, UNIX time) of the last `recv`.
    stamps: Vec<Option<std::time::Duration>>,
}

/// Where a pool slot of a [`RecvBatch`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Received into by the last `recv`; free again at the next one.
    Mapped,
    /// Held by the caller until [`RecvBatch::release`].
    Held,
}

/// Room for the control messages of one datagram (a `SCM_TIMESTAMPNS` timespec), aligned for
/// `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct ControlBuf([u8; 64]);

impl RecvBatch {
    /// `count` slots of `slot_size` bytes; datagrams are received at `offset` into each slot
    /// (room for headers the caller writes in front), so at most `slot_size - offset` bytes.
    pub fn new(count: usize, slot_size: usize, offset: usize) -> Self {
        let count = count.min(MAX_BATCH);
        RecvBatch {
            slot_size,
            offset,
            bufs: vec![0; count * slot_size],
            map: vec![0; count],
            mapped: 0,
            state: vec![SlotState::Free; count],
            free: (0..count as u16).rev().collect(),
            lens: vec![0; count],
            // SAFETY: all-zero sockaddr_storage values are valid.
            addrs: vec![unsafe { zeroed() }; count],
            controls: Vec::new(),
            stamps: vec![None; count],
        }
    }

    /// Also collects the kernel's receive timestamp of each datagram; the socket must have
    /// `SO_TIMESTAMPNS` set (see [`enable_rx_timestamps`]).
    pub fn with_timestamps(mut self) -> Self {
        self.controls = vec![ControlBuf([0; 64]); self.lens.len()];
        self
    }

    /// The kernel receive timestamp (UNIX time) of slot `i` after a `recv`, when collected.
    pub fn timestamp(&self, i: usize) -> Option<std::time::Duration> {
        self.stamps.get(i).copied().flatten()
    }

    /// Adds `spare` slots to the pool beyond the `count` one `recv` fills, so that up to
    /// `spare` slots can be held while a full `recv` is still possible.
    pub fn with_spare(mut self, spare: usize) -> Self {
        let total = (self.state.len() + spare).min(u16::MAX as usize);
        let old = self.state.len();
        self.bufs.resize(total * self.slot_size, 0);
        self.state.resize(total, SlotState::Free);
        self.free.splice(0..0, (old as u16..total as u16).rev());
        self
    }

    /// Number of datagrams one `recv` takes at most.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Where datagram `i`'s slot starts in [`RecvBatch::buffer`].
    pub fn slot_start(&self, i: usize) -> usize {
        self.pool_start(self.map[i])
    }

    /// Where pool slot `slot` starts in [`RecvBatch::buffer`].
    pub fn pool_start(&self, slot: u16) -> usize {
        slot as usize * self.slot_size
    }

    /// The whole pool, for sends that point into it ([`SendBatch::flush_from`]).
    pub fn buffer(&self) -> &[u8] {
        &self.bufs
    }

    /// Keeps datagram `i`'s slot out of later `recv`s until [`RecvBatch::release`]: its
    /// bytes are to be sent from where they are. Returns the pool slot.
    pub fn hold(&mut self, i: usize) -> u16 {
        let slot = self.map[i];
        self.state[slot as usize] = SlotState::Held;
        slot
    }

    /// A free pool slot, held (to copy a datagram into): its number and its bytes. `None` when
    /// every slot is in use.
    pub fn hold_free(&mut self) -> Option<(u16, &mut [u8])> {
        let slot = self.free.pop()?;
        self.state[slot as usize] = SlotState::Held;
        let start = slot as usize * self.slot_size;
        Some((slot, &mut self.bufs[start..start + self.slot_size]))
    }

    /// Gives back a held pool slot.
    pub fn release(&mut self, slot: u16) {
        if let Some(state) = self.state.get_mut(slot as usize) {
            if *state == SlotState::Held {
                *state = SlotState::Free;
                self.free.push(slot);
            }
        }
    }

    /// Slots of the last `recv` that were not held become free.
    fn recycle_mapped(&mut self) {
        for &slot in &self.map[..self.mapped] {
            if self.state[slot as usize] == SlotState::Mapped {
                self.state[slot as usize] = SlotState::Free;
                self.free.push(slot);
            }
        }
        self.mapped = 0;
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
        self.recycle_mapped();
        let n = self.capacity().min(self.free.len());
        for i in 0..n {
            let slot = self.free.pop().expect("counted");
            self.state[slot as usize] = SlotState::Mapped;
            self.map[i] = slot;
        }
        self.mapped = n;
        if n == 0 {
            // Every slot is held: nothing can be received until some are released.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] =
            [const { MaybeUninit::uninit() }; MAX_BATCH];
        // SAFETY: all-zero mmsghdr values are valid (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        let n = n.min(MAX_BATCH);
        let base = self.bufs.as_mut_ptr();
        for i in 0..n {
            // SAFETY: pool slot map[i] lies within `bufs` (pool size * slot_size bytes).
            let start = unsafe { base.add(self.map[i] as usize * self.slot_size + offset) };
            iovs[i].write(libc::iovec {
                iov_base: start as *mut libc::c_void,
                iov_len: self.slot_size - offset,
            });
            hdrs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            hdrs[i].msg_hdr.msg_iovlen = 1;
            hdrs[i].msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            hdrs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if let Some(control) = self.controls.get_mut(i) {
                hdrs[i].msg_hdr.msg_control = control.0.as_mut_ptr() as *mut libc::c_void;
                hdrs[i].msg_hdr.msg_controllen = control.0.len() as _;
            }
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
        if !self.controls.is_empty() {
            for (stamp, hdr) in self.stamps.iter_mut().zip(&hdrs[..got as usize]) {
                *stamp = rx_timestamp(&hdr.msg_hdr);
            }
        }
        Ok(got as usize)
    }

    /// Slot `i` after a `recv`: the whole slot (the datagram is at `offset..offset + len`), its
    /// length and its source.
    pub fn slot(&mut self, i: usize) -> (&mut [u8], usize, Option<SocketAddr>) {
        let len = self.lens[i];
        let addr = from_sockaddr(&self.addrs[i]);
        let start = self.slot_start(i);
        let slot = &mut self.bufs[start..start + self.slot_size];
        (slot, len, addr)
    }
}

/// Reads a `SCM_TIMESTAMPNS` control message.
fn rx_timestamp(msg: &libc::msghdr) -> Option<std::time::Duration> {
    if msg.msg_control.is_null() {
        return None;
    }
    // SAFETY: the kernel filled msg_control/msg_controllen; the CMSG_* macros walk it within
    // msg_controllen, and the timespec is read unaligned.
    unsafe {
        let mut cm = libc::CMSG_FIRSTHDR(msg);
        while !cm.is_null() {
            if (*cm).cmsg_level == libc::SOL_SOCKET && (*cm).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cm) as *const libc::timespec);
                return Some(std::time::Duration::new(
                    ts.tv_sec as u64,
                    ts.tv_nsec as u32,
                ));
            }
            cm = libc::CMSG_NXTHDR(msg, cm);
        }
    }
    None
}

/// Asks the kernel to timestamp every datagram `fd` receives (`SO_TIMESTAMPNS`, UNIX time).
pub fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to a live c_int of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Most datagrams moved by one system call.
pub const MAX_BATCH: usize = 64;

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
