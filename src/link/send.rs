//! The sending half of a link (docs/link-protocol.md §3): the unacked buffer, bounded in
//! bytes, that numbers fragments, releases messages when the cumulative ack covers their last
//! fragment, rewinds after a timeout or a path switch, and renumbers everything from seq 1
//! when the peer restarts.

use std::collections::VecDeque;

use super::frame::{HEADER_BYTES, MAX_FRAGMENT_PAYLOAD, MAX_MESSAGE_BYTES, fragment_count};

/// Bytes each buffered message costs beyond its payload, so that a flood of empty messages is
/// bounded by the byte budget too.
pub const MESSAGE_OVERHEAD: usize = 64;

/// Why a message was not accepted into the unacked buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Above 1 MiB as encoded (`message_too_large`).
    #[error("the message is larger than 1 MiB ({0} bytes)")]
    MessageTooLarge(usize),
    /// The buffer has no room now; retry after acks (`send` waits, then `send_timeout`).
    #[error("the send buffer is full")]
    BufferFull,
    /// The link is closed (`link_closed`).
    #[error("the link is closed")]
    LinkClosed,
}

impl SendError {
    /// The error code of docs/link-protocol.md §7.
    pub fn code(self) -> &'static str {
        match self {
            SendError::MessageTooLarge(_) => "message_too_large",
            SendError::BufferFull => "send_timeout",
            SendError::LinkClosed => "link_closed",
        }
    }
}

/// One message waiting for its acknowledgement.
#[derive(Debug)]
struct Outgoing {
    /// The seq of its first fragment.
    first_seq: u64,
    /// Frame bytes of everything before it in the current numbering (for in-flight sums).
    start_offset: u64,
    binary: bool,
    data: Vec<u8>,
}

impl Outgoing {
    fn fragments(&self) -> u64 {
        fragment_count(self.data.len())
    }

    fn last_seq(&self) -> u64 {
        self.first_seq + self.fragments() - 1
    }

    fn frame_bytes(&self) -> u64 {
        (self.data.len() + self.fragments() as usize * HEADER_BYTES) as u64
    }
}

/// A fragment ready to go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Its seq.
    pub seq: u64,
    /// Last fragment of its message.
    pub end: bool,
    /// The message is bytes.
    pub binary: bool,
    /// The fragment's bytes.
    pub payload: &'a [u8],
}

/// The unacked buffer and the transmit cursor.
#[derive(Debug)]
pub struct SendBuffer {
    messages: VecDeque<Outgoing>,
    /// Bytes charged against `capacity` (payload + [`MESSAGE_OVERHEAD`] per message).
    buffered: usize,
    capacity: usize,
    /// The seq the next fragment gets.
    next_seq: u64,
    /// The cumulative ack: every seq up to it was received.
    acked: u64,
    /// The next seq to transmit on the current path.
    next_tx: u64,
    /// Frame bytes of every buffered message.
    end_offset: u64,
}

impl SendBuffer {
    /// An empty buffer holding at most `capacity` bytes (a larger message is still accepted
    /// into an empty buffer).
    pub fn new(capacity: usize) -> SendBuffer {
        SendBuffer {
            messages: VecDeque::new(),
            buffered: 0,
            capacity,
            next_seq: 1,
            acked: 0,
            next_tx: 1,
            end_offset: 0,
        }
    }

    /// Accepts a message, or says why not.
    pub fn push(&mut self, data: Vec<u8>, binary: bool) -> Result<(), SendError> {
        if data.len() > MAX_MESSAGE_BYTES {
            return Err(SendError::MessageTooLarge(data.len()));
        }
        let cost = data.len() + MESSAGE_OVERHEAD;
        if !self.messages.is_empty() && self.buffered + cost > self.capacity {
            return Err(SendError::BufferFull);
        }
        let message = Outgoing {
            first_seq: self.next_seq,
            start_offset: self.end_offset,
            binary,
            data,
        };
        self.next_seq += message.fragments();
        self.end_offset += message.frame_bytes();
        self.buffered += cost;
        self.messages.push_back(message);
        Ok(())
    }

    /// True when a message of `len` bytes would be accepted now.
    pub fn fits(&self, len: usize) -> bool {
        self.messages.is_empty() || self.buffered + len + MESSAGE_OVERHEAD <= self.capacity
    }

    /// Messages not yet fully acknowledged.
    pub fn unacked_messages(&self) -> usize {
        self.messages.len()
    }

    /// Bytes charged against the buffer.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// The last seq given to a fragment (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The cumulative ack.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The next seq the transmit cursor sends.
    pub fn next_tx(&self) -> u64 {
        self.next_tx
    }

    /// True when fragments were sent on the current path and are not acknowledged yet.
    pub fn has_in_flight(&self) -> bool {
        self.next_tx > self.acked + 1
    }

    /// Frame bytes sent on the current path and not acknowledged yet.
    pub fn in_flight_bytes(&self) -> u64 {
        self.offset(self.next_tx)
            .saturating_sub(self.offset(self.acked + 1))
    }

    /// Fragments sent on the current path and not acknowledged yet.
    pub fn in_flight_frames(&self) -> u64 {
        self.next_tx.saturating_sub(self.acked + 1)
    }

    /// The fragment at the transmit cursor, if any is left to send.
    pub fn peek(&self) -> Option<Fragment<'_>> {
        let seq = self.next_tx;
        let message = self.find(seq)?;
        let index = (seq - message.first_seq) as usize;
        let start = index * MAX_FRAGMENT_PAYLOAD;
        let end = (start + MAX_FRAGMENT_PAYLOAD).min(message.data.len());
        Some(Fragment {
            seq,
            end: seq == message.last_seq(),
            binary: message.binary,
            payload: message.data.get(start..end).unwrap_or_default(),
        })
    }

    /// Moves the cursor past the fragment [`SendBuffer::peek`] returned.
    pub fn advance(&mut self) {
        if self.next_tx < self.next_seq {
            self.next_tx += 1;
        }
    }

    /// Resends from the first unacknowledged fragment (timeout or path switch).
    pub fn rewind(&mut self) {
        self.next_tx = self.acked + 1;
    }

    /// Applies a cumulative ack; returns how many messages it released. An ack below the
    /// current one, or of a seq never sent, changes nothing.
    pub fn ack(&mut self, ack: u64) -> usize {
        if ack <= self.acked || ack >= self.next_seq {
            return 0;
        }
        self.acked = ack;
        self.next_tx = self.next_tx.max(ack + 1);
        let mut released = 0;
        while self.messages.front().is_some_and(|m| m.last_seq() <= ack) {
            if let Some(message) = self.messages.pop_front() {
                self.buffered -= message.data.len() + MESSAGE_OVERHEAD;
                released += 1;
            }
        }
        released
    }

    /// The peer restarted: every message still buffered is numbered again from seq 1 and will
    /// be sent again from its first fragment.
    pub fn renumber(&mut self) {
        let mut seq = 1;
        let mut offset = 0;
        for message in &mut self.messages {
            message.first_seq = seq;
            message.start_offset = offset;
            seq += message.fragments();
            offset += message.frame_bytes();
        }
        self.next_seq = seq;
        self.end_offset = offset;
        self.acked = 0;
        self.next_tx = 1;
    }

    /// Drops every buffered message (the link closed).
    pub fn clear(&mut self) {
        self.messages.clear();
        self.buffered = 0;
    }

    fn find(&self, seq: u64) -> Option<&Outgoing> {
        if seq <= self.acked || seq >= self.next_seq {
            return None;
        }
        let index = self.messages.partition_point(|m| m.last_seq() < seq);
        self.messages.get(index)
    }

    /// Frame bytes of every fragment before `seq` in the current numbering.
    fn offset(&self, seq: u64) -> u64 {
        if seq >= self.next_seq {
            return self.end_offset;
        }
        let index = self.messages.partition_point(|m| m.last_seq() < seq);
        match self.messages.get(index) {
            Some(m) if seq >= m.first_seq => {
                m.start_offset + (seq - m.first_seq) * (MAX_FRAGMENT_PAYLOAD + HEADER_BYTES) as u64
            }
            Some(m) => m.start_offset,
            None => self.end_offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_acks_and_release() {
        let mut buffer = SendBuffer::new(1 << 20);
        buffer.push(vec![1; 40_000], true).unwrap();
        buffer.push(b"hi".to_vec(), false).unwrap();
        let mut sent = Vec::new();
        while let Some(fragment) = buffer.peek() {
            sent.push((fragment.seq, fragment.end, fragment.payload.len()));
            buffer.advance();
        }
        assert_eq!(
            sent,
            vec![
                (1, false, 16_366),
                (2, false, 16_366),
                (3, true, 7_268),
                (4, true, 2)
            ]
        );
        assert_eq!(buffer.in_flight_bytes(), 40_000 + 2 + 4 * 18);
        assert_eq!(buffer.ack(2), 0, "the first message is not complete");
        assert_eq!(buffer.ack(3), 1);
        assert_eq!(buffer.in_flight_bytes(), 20);
        assert_eq!(buffer.ack(9), 0, "never sent");
        assert_eq!(buffer.ack(4), 1);
        assert_eq!(buffer.unacked_messages(), 0);
        assert_eq!(buffer.buffered_bytes(), 0);
    }

    #[test]
    fn the_buffer_is_bounded_but_takes_one_large_message() {
        let mut buffer = SendBuffer::new(1000);
        buffer.push(vec![0; 5000], true).unwrap();
        assert_eq!(buffer.push(vec![], true), Err(SendError::BufferFull));
        assert_eq!(
            buffer.push(vec![0; MAX_MESSAGE_BYTES + 1], true),
            Err(SendError::MessageTooLarge(MAX_MESSAGE_BYTES + 1))
        );
        let mut small = SendBuffer::new(200);
        small.push(vec![0; 10], true).unwrap();
        small.push(vec![0; 10], true).unwrap();
        assert!(!small.fits(100));
        assert_eq!(small.push(vec![0; 100], true), Err(SendError::BufferFull));
    }

    #[test]
    fn rewind_and_renumber_resend_from_the_first_unacked_fragment() {
        let mut buffer = SendBuffer::new(1 << 20);
        for text in ["a", "b", "c"] {
            buffer.push(text.as_bytes().to_vec(), false).unwrap();
        }
        while buffer.peek().is_some() {
            buffer.advance();
        }
        buffer.ack(1);
        buffer.rewind();
        assert_eq!(
            buffer.peek().map(|f| (f.seq, f.payload)),
            Some((2, &b"b"[..]))
        );
        buffer.renumber();
        assert_eq!(
            buffer.peek().map(|f| (f.seq, f.payload)),
            Some((1, &b"b"[..]))
        );
        assert_eq!(buffer.last_seq(), 2);
    }
}
