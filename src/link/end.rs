//! [`Link`]: one link end, the façade over the codec, the send and receive halves and the
//! switcher, in the quinn-proto / str0m style (input with the time, output by polling).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Instant;

use super::frame::{Frame, FrameKind};
use super::modes::{Action, Mode, P2pEvent, Pacer, Rto, Switcher};
use super::receive::{ReceiveError, Receiver};
use super::send::{SendBuffer, SendError};
use super::types::{CloseReason, ErrorCode, Event, LinkConfig, LinkError, Stats, Transmit};
use super::{Path, Rng};

/// How many retired remote epochs are remembered (§2).
const RETIRED_EPOCHS: usize = 4;
/// Control frames (answers, probes, close) waiting for `poll_transmit`, at most.
const MAX_CONTROL_FRAMES: usize = 1024;

/// One link end: the pure core of docs/link-protocol.md.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    epoch: u32,
    remote: Option<u32>,
    retired: VecDeque<u32>,
    send: SendBuffer,
    receive: Receiver,
    switcher: Switcher,
    rto: Rto,
    rto_at: Option<Instant>,
    pacer: Pacer,
    /// (seq, sent at) of the fragment timing the round trip; cleared by any resend.
    rtt_sample: Option<(u64, Instant)>,
    /// The highest seq ever transmitted in this numbering (resends are below it).
    highest_sent: u64,
    p2p_buffered: u64,
    control: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: Rng,
    now: Instant,
    stats: Stats,
    opened: bool,
    remote_close: Option<u64>,
    pending_close: Option<CloseReason>,
    malformed_reported: bool,
    hold_messages: bool,
}

impl Link {
    /// A link end created at `now` with its `epoch` (random, non-zero) and a random `seed` for
    /// its probe nonces; mode `connecting`, fallback timer started.
    pub fn new(config: LinkConfig, now: Instant, epoch: NonZeroU32, seed: u64) -> Link {
        Link {
            send: SendBuffer::new(config.max_buffered_bytes),
            receive: Receiver::new(),
            switcher: Switcher::new(now, config.fallback_after, config.offerer),
            pacer: Pacer::new(config.relay_bytes_per_sec),
            config,
            epoch: epoch.get(),
            remote: None,
            retired: VecDeque::new(),
            rto: Rto::default(),
            rto_at: None,
            rtt_sample: None,
            highest_sent: 0,
            p2p_buffered: 0,
            control: VecDeque::new(),
            events: VecDeque::new(),
            rng: Rng::new(seed),
            now,
            stats: Stats::default(),
            opened: false,
            remote_close: None,
            pending_close: None,
            malformed_reported: false,
            hold_messages: false,
        }
    }

    /// This end's epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The adopted remote epoch.
    pub fn remote_epoch(&self) -> Option<u32> {
        self.remote
    }

    /// The sending path.
    pub fn mode(&self) -> Mode {
        self.switcher.mode()
    }

    /// The cumulative ack this end reports for the adopted remote epoch.
    pub fn cumulative_ack(&self) -> u64 {
        self.receive.cumulative()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            rtt: self.rto.srtt(),
            unacked_messages: self.send.unacked_messages(),
            buffered_bytes: self.send.buffered_bytes(),
            ..self.stats.clone()
        }
    }

    /// Messages sent and not yet acknowledged by the peer.
    pub fn unacked_messages(&self) -> usize {
        self.send.unacked_messages()
    }

    /// True when a message of `len` bytes fits in the unacked buffer now.
    pub fn fits(&self, len: usize) -> bool {
        self.send.fits(len)
    }

    /// Holds delivered messages back (not acknowledged, not polled) while the application's
    /// queue is full; the peer's sender slows down instead of this end buffering.
    pub fn hold_messages(&mut self, hold: bool) {
        self.hold_messages = hold;
    }

    /// Accepts a message into the unacked buffer.
    pub fn send(&mut self, now: Instant, data: Vec<u8>, binary: bool) -> Result<(), SendError> {
        self.now = now;
        if self.mode() == Mode::Closed {
            return Err(SendError::LinkClosed);
        }
        self.send.push(data, binary)?;
        self.stats.sent += 1;
        Ok(())
    }

    /// Allows or refuses the relay path (key attestation, §5).
    pub fn set_relay_allowed(&mut self, now: Instant, allowed: bool) {
        self.now = now;
        self.switcher.set_relay_allowed(now, allowed);
        self.drain_actions(now);
    }

    /// While `on`, sends on the relay and never returns to p2p (the JS SDK's `forceRelay`);
    /// off: back to the usual rules (a probe at once when the DataChannel is open).
    pub fn force_relay(&mut self, now: Instant, on: bool) {
        self.now = now;
        self.switcher.force_relay(now, on, &mut self.rng);
        self.drain_actions(now);
    }

    /// A report from the WebRTC path.
    pub fn handle_p2p_event(&mut self, now: Instant, event: P2pEvent) {
        self.now = now;
        if self.mode() == Mode::Closed {
            return;
        }
        if let P2pEvent::BufferedAmount(amount) = event {
            self.p2p_buffered = amount;
        }
        self.switcher.on_p2p_event(now, event, &mut self.rng);
        self.drain_actions(now);
    }

    /// A frame that arrived on `path` (on the relay: after the box opened).
    pub fn handle_frame(&mut self, now: Instant, path: Path, bytes: &[u8]) {
        self.now = now;
        if self.mode() == Mode::Closed {
            return;
        }
        let frame = match Frame::decode(bytes) {
            Ok(frame) => frame,
            Err(error) => {
                self.stats.malformed_frames += 1;
                if !self.malformed_reported {
                    self.malformed_reported = true;
                    self.error(
                        ErrorCode::ProtocolError,
                        format!("malformed frame: {error}"),
                    );
                }
                return;
            }
        };
        if frame.src_epoch == self.epoch {
            // Our own frame sent back to us (a relay box opens both ways): never the peer's.
            self.stats.reflected_frames += 1;
            return;
        }
        if frame.dst_epoch != 0 && frame.dst_epoch != self.epoch {
            // For our previous incarnation: tell the sender our epoch (never answer an ACK).
            if matches!(frame.kind, FrameKind::Data | FrameKind::Probe) {
                let ack = Frame::control(FrameKind::Ack, self.epoch, frame.src_epoch, 0);
                self.queue_control(path, &ack);
            }
            return;
        }
        if self.retired.contains(&frame.src_epoch) {
            return;
        }
        if self.remote != Some(frame.src_epoch) {
            self.adopt(frame.src_epoch);
        }
        self.stats.received_frames += 1;
        match frame.kind {
            FrameKind::Data => self.on_data(now, path, &frame),
            FrameKind::Ack if frame.dst_epoch == self.epoch => self.on_ack(now, frame.number),
            FrameKind::Ack => {}
            FrameKind::Probe => {
                let answer = Frame::control(
                    FrameKind::ProbeAck,
                    self.epoch,
                    frame.src_epoch,
                    frame.number,
                );
                self.queue_control(path, &answer);
            }
            FrameKind::ProbeAck => {
                self.switcher.on_probe_ack(path == Path::P2p, frame.number);
                self.drain_actions(now);
            }
            FrameKind::Close => {
                self.remote_close = Some(frame.number);
                self.check_remote_close();
            }
        }
    }

    /// Closes this end: `CLOSE(last seq)` on the current path (best effort), mode `closed`.
    pub fn close(&mut self, now: Instant, reason: CloseReason) {
        self.now = now;
        if self.mode() == Mode::Closed {
            return;
        }
        let path = match self.mode() {
            Mode::P2p => Some(Path::P2p),
            Mode::Relay => Some(Path::Relay),
            _ => None,
        };
        if let (Some(path), Some(remote)) = (path, self.remote) {
            let ack = Frame::control(FrameKind::Ack, self.epoch, remote, self.receive.in_order());
            self.queue_control(path, &ack);
        }
        if let Some(path) = path {
            let dst = self.remote.unwrap_or(0);
            let close = Frame::control(FrameKind::Close, self.epoch, dst, self.send.last_seq());
            self.queue_control(path, &close);
        }
        self.finish(reason);
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.now = now;
        if let Some(transmit) = self.control.pop_front() {
            return Some(transmit);
        }
        if let (Some(remote), Some((ack, path))) = (self.remote, self.receive.take_ack(now)) {
            let frame = Frame::control(FrameKind::Ack, self.epoch, remote, ack);
            return Some(self.count(path, frame.encode()));
        }
        let path = match self.mode() {
            Mode::P2p if self.p2p_buffered <= self.config.p2p_high_water => Path::P2p,
            Mode::Relay => Path::Relay,
            _ => return None,
        };
        let fragment = self.send.peek()?;
        let frame_len = super::frame::HEADER_BYTES + fragment.payload.len();
        if path == Path::Relay {
            let blob = frame_len + self.config.relay_overhead;
            let in_flight = self.send.in_flight_bytes();
            let window_full = self.send.has_in_flight()
                && (in_flight + frame_len as u64 > self.config.relay_max_in_flight_bytes
                    || self.send.in_flight_frames() >= self.config.relay_max_in_flight_frames);
            if window_full || !self.pacer.ready(now, blob) {
                return None;
            }
            self.pacer.consume(now, blob);
        }
        let dst = self.remote.unwrap_or(0);
        let frame = Frame::data(
            self.epoch,
            dst,
            fragment.seq,
            fragment.end,
            fragment.binary,
            fragment.payload,
        );
        let bytes = frame.encode();
        let seq = fragment.seq;
        self.send.advance();
        if seq > self.highest_sent {
            self.highest_sent = seq;
            if self.rtt_sample.is_none() && path == Path::Relay {
                self.rtt_sample = Some((seq, now));
            }
        } else {
            self.stats.retransmitted_frames += 1;
        }
        if path == Path::Relay && self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto.current());
        }
        if path == Path::P2p {
            self.p2p_buffered += bytes.len() as u64;
        }
        Some(self.count(path, bytes))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        if !self.hold_messages {
            if let Some(message) = self.receive.poll_message(self.now) {
                self.stats.received += 1;
                return Some(Event::Message(message));
            }
        }
        if self.receive.ready_messages() == 0 || self.hold_messages {
            if let Some(reason) = self.pending_close.take() {
                return Some(Event::Closed(reason));
            }
        }
        None
    }

    /// When [`Link::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.mode() == Mode::Closed {
            return None;
        }
        let mut at = [
            self.switcher.poll_timeout(),
            self.receive.ack_timeout(self.now),
        ];
        if self.mode() == Mode::Relay {
            if self.send.has_in_flight() {
                at[0] = earliest(at[0], self.rto_at);
            }
            if let Some(fragment) = self.send.peek() {
                let blob = super::frame::HEADER_BYTES
                    + fragment.payload.len()
                    + self.config.relay_overhead;
                let paced = self.pacer.ready_at(self.now, blob);
                if paced > self.now {
                    at[1] = earliest(at[1], Some(paced));
                }
            }
        }
        earliest(at[0], at[1])
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.mode() == Mode::Closed {
            return;
        }
        self.switcher.handle_timeout(now, &mut self.rng);
        self.drain_actions(now);
        if self.rto_at.is_some_and(|at| at <= now) {
            self.rto_at = None;
            if self.mode() == Mode::Relay && self.send.has_in_flight() {
                self.send.rewind();
                self.rto.on_timeout();
                self.rtt_sample = None;
            }
        }
    }

    fn on_data(&mut self, now: Instant, path: Path, frame: &Frame<'_>) {
        let outcome = self.receive.on_data(
            now,
            path,
            frame.number,
            frame.end,
            frame.binary,
            frame.payload,
        );
        match outcome {
            Ok(()) => {}
            Err(ReceiveError::BadUtf8) => {
                self.error(
                    ErrorCode::ProtocolError,
                    "a text message is not UTF-8".into(),
                );
            }
            Err(ReceiveError::MessageTooLarge) => {
                self.error(ErrorCode::ProtocolError, "a message above 1 MiB".into());
                self.finish(CloseReason::ProtocolError);
                return;
            }
        }
        self.check_remote_close();
    }

    fn on_ack(&mut self, now: Instant, ack: u64) {
        let before = self.send.acked();
        self.send.ack(ack);
        if self.send.acked() == before {
            return;
        }
        if let Some((seq, sent)) = self.rtt_sample {
            if self.send.acked() >= seq {
                self.rto.on_sample(now.saturating_duration_since(sent));
                self.rtt_sample = None;
            }
        }
        self.rto_at = self.send.has_in_flight().then(|| now + self.rto.current());
    }

    /// A new remote epoch: receive state starts over; a previous one is retired and every
    /// message not fully acknowledged is renumbered and sent again.
    fn adopt(&mut self, epoch: u32) {
        if let Some(old) = self.remote.replace(epoch) {
            if self.retired.len() == RETIRED_EPOCHS {
                self.retired.pop_front();
            }
            self.retired.push_back(old);
            self.send.renumber();
            self.highest_sent = 0;
            self.rtt_sample = None;
            self.rto_at = None;
        }
        self.receive.reset();
        self.remote_close = None;
    }

    fn check_remote_close(&mut self) {
        let Some(last) = self.remote_close else {
            return;
        };
        if self.receive.in_order() >= last {
            if let Some(remote) = self.remote {
                // Everything up to `last` will be delivered: acknowledge it before closing.
                let ack =
                    Frame::control(FrameKind::Ack, self.epoch, remote, self.receive.in_order());
                let path = self.receive.last_path();
                self.queue_control(path, &ack);
            }
            self.finish(CloseReason::RemoteClosed);
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        self.switcher.close();
        self.drain_actions(self.now);
        self.rto_at = None;
        self.pending_close = Some(reason);
    }

    fn drain_actions(&mut self, now: Instant) {
        while let Some(action) = self.switcher.poll_action() {
            match action {
                Action::Probe(nonce) => {
                    let dst = self.remote.unwrap_or(0);
                    let probe = Frame::control(FrameKind::Probe, self.epoch, dst, nonce);
                    self.queue_control(Path::P2p, &probe);
                }
                Action::RestartIce => self.events.push_back(Event::RestartIce),
                Action::Switched(mode) => self.on_switch(now, mode),
            }
        }
    }

    fn on_switch(&mut self, _now: Instant, mode: Mode) {
        self.events.push_back(Event::Mode(mode));
        let path = match mode {
            Mode::P2p => Path::P2p,
            Mode::Relay => Path::Relay,
            _ => return,
        };
        if !self.opened {
            self.opened = true;
            self.events.push_back(Event::Open(path));
        }
        // Everything unacknowledged goes again on the new path, in order.
        self.send.rewind();
        self.rto_at = None;
        self.rtt_sample = None;
    }

    fn queue_control(&mut self, path: Path, frame: &Frame<'_>) {
        if self.control.len() >= MAX_CONTROL_FRAMES {
            return; // a flood of probes or stale frames: answers are best effort
        }
        let transmit = self.count(path, frame.encode());
        self.control.push_back(transmit);
    }

    fn count(&mut self, path: Path, bytes: Vec<u8>) -> Transmit {
        match path {
            Path::P2p => self.stats.p2p_bytes += bytes.len() as u64,
            Path::Relay => self.stats.relay_bytes += bytes.len() as u64,
        }
        Transmit { path, bytes }
    }

    fn error(&mut self, code: ErrorCode, message: String) {
        self.events
            .push_back(Event::Error(LinkError { code, message }));
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
