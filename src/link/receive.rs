//! The receiving half of a link (docs/link-protocol.md §3): in-order delivery from `next`,
//! duplicates dropped, a reorder buffer of at most 256 frames ahead, reassembly of fragments
//! up to 1 MiB, and the acknowledgement schedule (every 8 DATA frames, within 20 ms, at once
//! after a duplicate or a filled gap).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::Path;
use super::frame::MAX_MESSAGE_BYTES;

/// How far ahead of `next` a frame is held.
pub const REORDER_FRAMES: u64 = 256;
/// Acknowledge after this many DATA frames at the latest.
pub const ACK_EVERY: u32 = 8;
/// Acknowledge within this delay of an unacknowledged DATA frame.
pub const ACK_DELAY: Duration = Duration::from_millis(20);
/// Delivered messages waiting to be polled, at most. Messages not polled yet are not
/// acknowledged (the ack stops before them), so an honest sender's unacked buffer is the real
/// bound; this one only stops a sender that ignores acks (beyond it frames are dropped).
pub const MAX_READY_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

/// A message delivered to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Bytes (else UTF-8 text, already checked).
    pub binary: bool,
    /// The message.
    pub data: Vec<u8>,
}

impl Message {
    /// The text of a text message.
    pub fn text(&self) -> Option<&str> {
        if self.binary {
            None
        } else {
            std::str::from_utf8(&self.data).ok()
        }
    }
}

/// What was wrong with received data (§3: `protocol_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// A message in progress grew above 1 MiB: the link closes.
    #[error("a message above 1 MiB")]
    MessageTooLarge,
    /// A text message is not UTF-8: it is dropped, the link carries on.
    #[error("a text message is not valid UTF-8")]
    BadUtf8,
}

#[derive(Debug)]
struct Held {
    end: bool,
    binary: bool,
    payload: Vec<u8>,
}

/// Receive state for one remote epoch.
#[derive(Debug)]
pub struct Receiver {
    next: u64,
    reorder: BTreeMap<u64, Held>,
    partial: Vec<u8>,
    partial_binary: bool,
    /// The seq of the first fragment of the message in progress.
    partial_first: u64,
    /// Delivered messages not polled yet, with the seq of their first fragment.
    ready: VecDeque<(u64, Message)>,
    ready_bytes: usize,
    last_ack: u64,
    unacked_frames: u32,
    ack_deadline: Option<Instant>,
    ack_now: bool,
    ack_path: Path,
    delivered: u64,
}

impl Default for Receiver {
    fn default() -> Self {
        Receiver::new()
    }
}

impl Receiver {
    /// Expects seq 1.
    pub fn new() -> Receiver {
        Receiver {
            next: 1,
            reorder: BTreeMap::new(),
            partial: Vec::new(),
            partial_binary: false,
            partial_first: 1,
            ready: VecDeque::new(),
            ready_bytes: 0,
            last_ack: 0,
            unacked_frames: 0,
            ack_deadline: None,
            ack_now: false,
            ack_path: Path::Relay,
            delivered: 0,
        }
    }

    /// Starts over (a new remote epoch); messages already delivered stay queued for the app.
    pub fn reset(&mut self) {
        self.next = 1;
        self.last_ack = 0;
        self.reorder.clear();
        self.partial.clear();
        self.unacked_frames = 0;
        self.ack_deadline = None;
        self.ack_now = false;
    }

    /// The cumulative ack: every seq up to it was received in order, and every complete
    /// message up to it was polled by the application (unread messages are not acknowledged,
    /// so a slow reader slows the sender down instead of growing this buffer).
    pub fn cumulative(&self) -> u64 {
        match self.ready.front() {
            Some((first_seq, _)) => first_seq - 1,
            None => self.next - 1,
        }
    }

    /// The highest seq received in order (read by the application or not).
    pub fn in_order(&self) -> u64 {
        self.next - 1
    }

    /// Complete messages waiting to be polled.
    pub fn ready_messages(&self) -> usize {
        self.ready.len()
    }

    /// The path the latest DATA frame came in on.
    pub fn last_path(&self) -> Path {
        self.ack_path
    }

    /// Messages delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Handles one DATA fragment. Errors are protocol errors; the frame is dropped.
    pub fn on_data(
        &mut self,
        now: Instant,
        path: Path,
        seq: u64,
        end: bool,
        binary: bool,
        payload: &[u8],
    ) -> Result<(), ReceiveError> {
        self.ack_path = path;
        if seq < self.next {
            self.ack_now = true;
            return Ok(());
        }
        if seq > self.next {
            let room = self.ready_bytes + payload.len() <= MAX_READY_BYTES;
            if seq - self.next <= REORDER_FRAMES && room {
                self.reorder.entry(seq).or_insert_with(|| Held {
                    end,
                    binary,
                    payload: payload.to_vec(),
                });
            }
            // A gap: tell the sender where we are at once.
            self.ack_now = true;
            return Ok(());
        }
        if self.ready_bytes + self.partial.len() + payload.len() > MAX_READY_BYTES {
            // The application does not read: drop, the sender resends.
            return Ok(());
        }
        let filled_gap = !self.reorder.is_empty();
        let mut result = self.accept(end, binary, payload);
        while let Some(held) = self.reorder.remove(&self.next) {
            let outcome = self.accept(held.end, held.binary, &held.payload);
            if result.is_ok() {
                result = outcome;
            }
        }
        self.unacked_frames += 1;
        if filled_gap || self.unacked_frames >= ACK_EVERY {
            self.ack_now = true;
        } else if self.ack_deadline.is_none() {
            self.ack_deadline = Some(now + ACK_DELAY);
        }
        result
    }

    fn accept(&mut self, end: bool, binary: bool, payload: &[u8]) -> Result<(), ReceiveError> {
        if self.partial.is_empty() {
            self.partial_binary = binary;
            self.partial_first = self.next;
        }
        self.next += 1;
        if self.partial.len() + payload.len() > MAX_MESSAGE_BYTES {
            self.partial.clear();
            return Err(ReceiveError::MessageTooLarge);
        }
        self.partial.extend_from_slice(payload);
        if !end {
            return Ok(());
        }
        let data = std::mem::take(&mut self.partial);
        let binary = self.partial_binary;
        if !binary && std::str::from_utf8(&data).is_err() {
            return Err(ReceiveError::BadUtf8);
        }
        self.ready_bytes += data.len();
        self.delivered += 1;
        self.ready
            .push_back((self.partial_first, Message { binary, data }));
        Ok(())
    }

    /// The next delivered message.
    pub fn poll_message(&mut self, now: Instant) -> Option<Message> {
        let (_, message) = self.ready.pop_front()?;
        self.ready_bytes -= message.data.len();
        if self.cumulative() > self.last_ack && self.ack_deadline.is_none() {
            self.ack_deadline = Some(now + ACK_DELAY);
        }
        Some(message)
    }

    /// When an ack is due (now, if it is due at once).
    pub fn ack_timeout(&self, now: Instant) -> Option<Instant> {
        if self.ack_now {
            Some(now)
        } else {
            self.ack_deadline
        }
    }

    /// Takes the ack to send now, if one is due: (cumulative ack, path).
    pub fn take_ack(&mut self, now: Instant) -> Option<(u64, Path)> {
        let due = self.ack_now || self.ack_deadline.is_some_and(|at| at <= now);
        if !due {
            return None;
        }
        self.ack_now = false;
        self.ack_deadline = None;
        self.unacked_frames = 0;
        self.last_ack = self.cumulative();
        Some((self.last_ack, self.ack_path))
    }

    /// Asks for an ack at once (a PROBE or a CLOSE came, or the link closes).
    pub fn ack_soon(&mut self) {
        if self.unacked_frames > 0 || self.ack_deadline.is_some() {
            self.ack_now = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_window_is_bounded() {
        let now = Instant::now();
        let mut receiver = Receiver::new();
        receiver
            .on_data(now, Path::P2p, 1 + REORDER_FRAMES + 1, true, true, b"x")
            .unwrap();
        assert!(receiver.reorder.is_empty(), "beyond the window: dropped");
        receiver
            .on_data(now, Path::P2p, 1 + REORDER_FRAMES, true, true, b"x")
            .unwrap();
        assert_eq!(receiver.reorder.len(), 1);
    }

    #[test]
    fn acks_every_eight_frames_or_after_twenty_ms() {
        let now = Instant::now();
        let mut receiver = Receiver::new();
        receiver
            .on_data(now, Path::Relay, 1, true, true, b"")
            .unwrap();
        assert_eq!(receiver.take_ack(now), None);
        assert_eq!(receiver.ack_timeout(now), Some(now + ACK_DELAY));
        assert_eq!(
            receiver.take_ack(now + ACK_DELAY),
            Some((0, Path::Relay)),
            "not read yet: not acknowledged"
        );
        assert!(receiver.poll_message(now).is_some());
        assert_eq!(receiver.ack_timeout(now), Some(now + ACK_DELAY));
        assert_eq!(receiver.take_ack(now + ACK_DELAY), Some((1, Path::Relay)));
        for seq in 2..=9 {
            receiver
                .on_data(now, Path::P2p, seq, true, true, b"")
                .unwrap();
            receiver.poll_message(now).unwrap();
        }
        assert_eq!(receiver.take_ack(now), Some((9, Path::P2p)));
    }

    #[test]
    fn oversized_messages_and_bad_utf8_are_errors() {
        let now = Instant::now();
        let mut receiver = Receiver::new();
        let big = vec![0u8; 16_366];
        let mut seq = 1;
        let mut result = Ok(());
        while result.is_ok() && seq < 100 {
            result = receiver.on_data(now, Path::P2p, seq, false, true, &big);
            seq += 1;
        }
        assert_eq!(result, Err(ReceiveError::MessageTooLarge));
        assert_eq!(seq, 66, "64 full fragments fit in 1 MiB, the 65th does not");
        let mut receiver = Receiver::new();
        assert_eq!(
            receiver.on_data(now, Path::P2p, 1, true, false, &[0xff]),
            Err(ReceiveError::BadUtf8)
        );
        assert_eq!(receiver.cumulative(), 1, "consumed, not delivered");
        assert_eq!(receiver.poll_message(now), None);
    }
}
