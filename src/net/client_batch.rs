//! The worker's outgoing batches that point into its receive slots: frames for clients
//! ([`ClientBatch`], gathered over a loop turn) and payloads for peers ([`flush_relay`]).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;

use super::batch::{RecvBatch, SendBatch};
use super::relay::RelaySet;
use crate::proto::server::RelayId;

/// Longest a frame for a client waits in a batch for others to share its `sendmmsg`.
const MAX_BATCH_DELAY: Duration = Duration::from_micros(20);

/// Frames for clients, gathered from every relay socket served in a loop turn and sent with
/// one `sendmmsg` per listener: at the end of the turn, when full, or once the oldest frame has
/// waited [`MAX_BATCH_DELAY`] (so a long turn does not hold the first answers of a burst). The
/// frames stay in the receive slots they arrived in, held until the send.
pub(super) struct ClientBatch {
    pub(super) send: SendBatch,
    /// The receive slots the queued frames lie in.
    pub(super) held: Vec<u16>,
    /// The listener the queued frames leave from.
    pub(super) listener: Option<usize>,
    /// When the oldest queued frame was queued.
    pub(super) since: Option<Instant>,
}

impl ClientBatch {
    /// Makes room for a frame that leaves from `listener`.
    fn make_room(
        &mut self,
        listeners: &[(SocketAddr, UdpSocket)],
        recv: &mut RecvBatch,
        listener: usize,
    ) {
        if self.listener.is_some_and(|l| l != listener) || self.send.is_full() {
            self.flush(listeners, recv);
        }
        self.listener = Some(listener);
        self.since.get_or_insert_with(Instant::now);
    }

    /// Queues `frame` of the last receive's datagram `datagram` (holding its slot) for `to`,
    /// from listener `listener`: `(listener, datagram)`.
    pub(super) fn push_held(
        &mut self,
        listeners: &[(SocketAddr, UdpSocket)],
        recv: &mut RecvBatch,
        (listener, datagram): (usize, usize),
        frame: std::ops::Range<usize>,
        to: SocketAddr,
    ) {
        self.make_room(listeners, recv, listener);
        let start = recv.slot_start(datagram) + frame.start;
        self.held.push(recv.hold(datagram));
        self.send.push_ref(start, frame.len(), to);
    }

    /// Queues a copy of `frame` (from a buffer that does not stay) in a free receive slot.
    pub(super) fn push_copy(
        &mut self,
        listeners: &[(SocketAddr, UdpSocket)],
        recv: &mut RecvBatch,
        listener: usize,
        frame: &[u8],
        to: SocketAddr,
    ) {
        self.make_room(listeners, recv, listener);
        match recv.hold_free() {
            Some((slot, buf)) if frame.len() <= buf.len() => {
                buf[..frame.len()].copy_from_slice(frame);
                self.held.push(slot);
                self.send.push_ref(recv.pool_start(slot), frame.len(), to);
            }
            Some((slot, _)) => {
                recv.release(slot);
                self.send.count_dropped();
            }
            None => self.send.count_dropped(),
        }
    }

    pub(super) fn flush_if_late(
        &mut self,
        listeners: &[(SocketAddr, UdpSocket)],
        recv: &mut RecvBatch,
    ) {
        if self.since.is_some_and(|t| t.elapsed() >= MAX_BATCH_DELAY) {
            self.flush(listeners, recv);
        }
    }

    pub(super) fn flush(&mut self, listeners: &[(SocketAddr, UdpSocket)], recv: &mut RecvBatch) {
        self.since = None;
        flush_listener(
            &mut self.send,
            listeners,
            self.listener.take(),
            recv.buffer(),
        );
        for slot in self.held.drain(..) {
            recv.release(slot);
        }
    }
}

pub(super) fn flush_relay(
    send: &mut SendBatch,
    relays: &RelaySet,
    relay: Option<RelayId>,
    buf: &[u8],
) {
    match relay.and_then(|r| relays.socket(r)) {
        Some(socket) => {
            send.flush_from(socket.as_raw_fd(), buf);
        }
        None => send.discard(),
    }
}

fn flush_listener(
    send: &mut SendBatch,
    listeners: &[(SocketAddr, UdpSocket)],
    index: Option<usize>,
    buf: &[u8],
) {
    match index.and_then(|i| listeners.get(i)) {
        Some((_, socket)) => {
            send.flush_from(socket.as_raw_fd(), buf);
        }
        None => send.discard(),
    }
}
