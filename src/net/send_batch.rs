//! `sendmmsg(2)` batches, with UDP GSO where the kernel has it (see [`SendBatch`]).

use std::io;
use std::mem::{MaybeUninit, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::batch::{MAX_BATCH, to_sockaddr};

/// Datagrams queued for one `sendmmsg` on one socket. Either copies each payload into its own
/// preallocated slot ([`SendBatch::new`], [`SendBatch::push`], [`SendBatch::flush`]), or only
/// notes where each lies in a buffer the caller keeps unchanged until the send
/// ([`SendBatch::borrowing`], [`SendBatch::push_ref`], [`SendBatch::flush_from`]): the
/// workers send relayed frames from the receive slots they arrived in, without a copy.
pub struct SendBatch {
    slot_size: usize,
    bufs: Vec<u8>,
    /// Where each queued datagram starts (in `bufs`, or in the caller's buffer).
    starts: Vec<usize>,
    lens: Vec<usize>,
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    dests: Vec<SocketAddr>,
    queued: usize,
    /// Datagrams the kernel refused since the last [`SendBatch::take_dropped`].
    dropped: u64,
    /// Use UDP GSO (one segmented send for a run of equal-size datagrams to one destination)
    /// until the kernel refuses it once.
    pub(in crate::net) gso: bool,
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
            starts: vec![0; count],
            lens: vec![0; count],
            // SAFETY: all-zero sockaddr_storage values are valid.
            addrs: vec![(unsafe { zeroed() }, 0); count],
            dests: vec![SocketAddr::from(([0, 0, 0, 0], 0)); count],
            queued: 0,
            dropped: 0,
            gso: true,
        }
    }

    /// A batch of up to `count` (at most [`MAX_BATCH`]) datagrams that stay in the caller's
    /// buffer: queued with [`SendBatch::push_ref`], sent with [`SendBatch::flush_from`].
    pub fn borrowing(count: usize) -> Self {
        Self::new(count, 0)
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
        self.queue(i * self.slot_size, data.len(), to);
        true
    }

    /// Queues the `len` bytes at `start` of the buffer that [`SendBatch::flush_from`] will be
    /// given, for `to`. Returns false (and queues nothing) when full.
    pub fn push_ref(&mut self, start: usize, len: usize, to: SocketAddr) -> bool {
        if self.is_full() {
            return false;
        }
        self.queue(start, len, to);
        true
    }

    fn queue(&mut self, start: usize, len: usize, to: SocketAddr) {
        let i = self.queued;
        self.starts[i] = start;
        self.lens[i] = len;
        if self.dests[i] != to || self.addrs[i].1 == 0 {
            self.addrs[i] = to_sockaddr(to);
            self.dests[i] = to;
        }
        self.queued += 1;
    }

    /// Counts a datagram that could not even be queued (no room to keep it) like the kernel's
    /// refusals ([`SendBatch::take_dropped`]).
    pub fn count_dropped(&mut self) {
        self.dropped += 1;
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
        let bufs = std::mem::take(&mut self.bufs);
        let sent = self.flush_from(fd, &bufs);
        self.bufs = bufs;
        sent
    }

    /// Like [`SendBatch::flush`], for datagrams queued with [`SendBatch::push_ref`]: they are
    /// read from `buf` (one that reaches past a datagram's end drops it, counted).
    pub fn flush_from(&mut self, fd: RawFd, buf: &[u8]) -> usize {
        // Nothing is read out of bounds, whatever was queued.
        let mut kept = 0;
        for i in 0..self.queued {
            if self.starts[i]
                .checked_add(self.lens[i])
                .is_some_and(|end| end <= buf.len())
            {
                self.starts.swap(kept, i);
                self.lens.swap(kept, i);
                self.addrs.swap(kept, i);
                self.dests.swap(kept, i);
                kept += 1;
            } else {
                self.dropped += 1;
            }
        }
        self.queued = kept;
        let base = buf.as_ptr() as *mut u8;
        if self.gso && self.queued > 1 {
            if let Some(sent) = self.flush_gso(fd, base) {
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
                // SAFETY: checked above: starts[i] + lens[i] lies within `buf`, which sendmmsg
                // only reads.
                let start = unsafe { base.add(self.starts[i]) };
                iovs[j].write(libc::iovec {
                    iov_base: start as *mut libc::c_void,
                    iov_len: self.lens[i],
                });
                hdrs[j].msg_hdr.msg_iov = iovs[j].as_mut_ptr();
                hdrs[j].msg_hdr.msg_iovlen = 1;
                hdrs[j].msg_hdr.msg_name = &mut self.addrs[i].0 as *mut _ as *mut libc::c_void;
                hdrs[j].msg_hdr.msg_namelen = self.addrs[i].1;
            }
            // SAFETY: every header points at live buffers (self's, or `buf`) for the call.
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
    fn flush_gso(&mut self, fd: RawFd, base: *mut u8) -> Option<usize> {
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
                // SAFETY: checked by flush_from: starts[k] + lens[k] lies within the buffer
                // `base` points to, which sendmmsg only reads.
                let start = unsafe { base.add(self.starts[k]) };
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
            // SAFETY: every header points at live buffers (self's, `base`'s, this frame's).
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
