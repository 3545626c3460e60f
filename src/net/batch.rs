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
    /// Control-message room per slot, when kernel receive timestamps are wanted.
    controls: Vec<ControlBuf>,
    /// Kernel receive timestamps (`SO_TIMESTAMPNS`, UNIX time) of the last `recv`.
    stamps: Vec<Option<std::time::Duration>>,
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
        RecvBatch {
            slot_size,
            offset,
            bufs: vec![0; count * slot_size],
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
        let slot = &mut self.bufs[i * self.slot_size..(i + 1) * self.slot_size];
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

/// Datagrams queued for one `sendmmsg` on one socket. Copies each payload into its own
/// preallocated slot.
pub struct SendBatch {
    slot_size: usize,
    bufs: Vec<u8>,
    lens: Vec<usize>,
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    dests: Vec<SocketAddr>,
    queued: usize,
    /// Datagrams the kernel refused since the last [`SendBatch::take_dropped`].
    dropped: u64,
    /// Use UDP GSO (one segmented send for a run of equal-size datagrams to one destination)
    /// until the kernel refuses it once.
    gso: bool,
}

/// `SOL_UDP` / `UDP_SEGMENT` (Linux 4.18+): the segment size of a GSO send.
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
/// Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (an IP datagram's limit, less headers).
const GSO_MAX_BYTES: usize = 65_000;
/// Largest segment sent with GSO: each segment must fit the path MTU (the kernel refuses a
/// larger one rather than fragmenting it), so larger datagrams go one by one.
const GSO_MAX_SEGMENT: usize = 1400;

/// Room for one `cmsghdr` carrying a `u16`, aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegmentCmsg([u8; 24]);

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
            dests: vec![SocketAddr::from(([0, 0, 0, 0], 0)); count],
            queued: 0,
            dropped: 0,
            gso: true,
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
        if self.dests[i] != to || self.addrs[i].1 == 0 {
            self.addrs[i] = to_sockaddr(to);
            self.dests[i] = to;
        }
        self.queued += 1;
        true
    }

    /// Drops everything queued (not counted: nothing was meant to be sent).
    pub fn clear(&mut self) {
        self.queued = 0;
    }

    /// Drops everything queued because it cannot be sent (its socket is gone), counting it
    /// like the kernel's refusals ([`SendBatch::take_dropped`]).
    pub fn discard(&mut self) {
        self.dropped += self.queued as u64;
        self.queued = 0;
    }

    /// Sends everything queued on `fd`. A datagram the kernel refuses (a full buffer, an
    /// unreachable or forbidden destination) is dropped alone, as a single `send_to` would
    /// drop it, and counted ([`SendBatch::take_dropped`]); the ones after it are still sent,
    /// so one destination's error never costs another client its frames. At most one system
    /// call per queued datagram. Returns how many were sent.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        if self.gso && self.queued > 1 {
            if let Some(sent) = self.flush_gso(fd) {
                self.queued = 0;
                return sent;
            }
        }
        let mut done = 0;
        let mut sent = 0;
        while done < self.queued {
            let n = self.queued - done;
            let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] =
                [const { MaybeUninit::uninit() }; MAX_BATCH];
            // SAFETY: all-zero mmsghdr values are valid.
            let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
            for j in 0..n {
                let i = done + j;
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
                // The datagram at the head failed: drop it alone and go on with the rest.
                self.dropped += 1;
                done += 1;
                continue;
            }
            sent += rc as usize;
            done += rc as usize;
        }
        self.queued = 0;
        sent
    }

    /// How many queued datagrams the kernel refused since the last call (and resets it).
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Sends runs of datagrams to the same destination with the same size (the last of a run
    /// may be shorter) as single UDP GSO sends, several runs per `sendmmsg`. Returns `None`
    /// (having sent nothing) when the kernel does not support GSO, which turns it off.
    fn flush_gso(&mut self, fd: RawFd) -> Option<usize> {
        let mut iovs: [MaybeUninit<libc::iovec>; MAX_BATCH] =
            [const { MaybeUninit::uninit() }; MAX_BATCH];
        // SAFETY: all-zero mmsghdr values are valid.
        let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { zeroed() };
        let mut cmsgs = [SegmentCmsg([0; 24]); MAX_BATCH];
        let mut runs = [(0usize, 0usize); MAX_BATCH];
        let mut n_runs = 0;
        let mut i = 0;
        while i < self.queued {
            let seg = self.lens[i];
            let mut j = i + 1;
            let mut bytes = seg;
            while j < self.queued
                && seg <= GSO_MAX_SEGMENT
                && j - i < GSO_MAX_SEGMENTS
                && self.dests[j] == self.dests[i]
                && self.lens[j] <= seg
                && self.lens[j] > 0
                && bytes + self.lens[j] <= GSO_MAX_BYTES
            {
                bytes += self.lens[j];
                j += 1;
                if self.lens[j - 1] < seg {
                    break; // a shorter datagram can only end a run
                }
            }
            for (k, iov) in iovs.iter_mut().enumerate().take(j).skip(i) {
                // SAFETY: slot k lies within bufs.
                let start = unsafe { self.bufs.as_mut_ptr().add(k * self.slot_size) };
                iov.write(libc::iovec {
                    iov_base: start as *mut libc::c_void,
                    iov_len: self.lens[k],
                });
            }
            let h = &mut hdrs[n_runs].msg_hdr;
            h.msg_iov = iovs[i].as_mut_ptr();
            h.msg_iovlen = j - i;
            h.msg_name = &mut self.addrs[i].0 as *mut _ as *mut libc::c_void;
            h.msg_namelen = self.addrs[i].1;
            if j - i > 1 {
                let c = &mut cmsgs[n_runs];
                // SAFETY: c is 8-aligned and large enough for CMSG_SPACE(2) (16 + 8 bytes).
                unsafe {
                    let cm = c.0.as_mut_ptr() as *mut libc::cmsghdr;
                    (*cm).cmsg_level = SOL_UDP;
                    (*cm).cmsg_type = UDP_SEGMENT;
                    (*cm).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cm) as *mut u16, seg as u16);
                    h.msg_control = cm as *mut libc::c_void;
                    h.msg_controllen = libc::CMSG_SPACE(2) as _;
                }
            }
            runs[n_runs] = (i, j);
            n_runs += 1;
            i = j;
        }
        let mut done_runs = 0;
        let mut sent = 0;
        // Each turn sends at least one run or drops one: at most one call per run.
        while done_runs < n_runs {
            // SAFETY: every header points at live buffers owned by self or this frame.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr().add(done_runs),
                    (n_runs - done_runs) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc <= 0 {
                let err = io::Error::last_os_error();
                let (a, b) = runs[done_runs];
                if sent == 0
                    && b - a > 1
                    && matches!(
                        err.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
                    )
                {
                    tracing::debug!(error = %err, "UDP GSO unavailable: sending datagrams one by one");
                    self.gso = false;
                    return None;
                }
                // Drop this run alone (full buffer, unreachable), as send_to would.
                self.dropped += (b - a) as u64;
                done_runs += 1;
                continue;
            }
            for &(a, b) in &runs[done_runs..done_runs + rc as usize] {
                sent += b - a;
            }
            done_runs += rc as usize;
        }
        Some(sent)
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
