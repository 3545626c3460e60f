//! One peer's outgoing side: a bounded FIFO of text messages (control and signaling, in the
//! order they were queued), a bounded relay queue (DERP-style datagrams), a pending ping, a
//! pending close, and the token buckets that limit what the peer sends.

use std::collections::VecDeque;
use std::time::Instant;

use super::messages::SignalKind;

/// Entries a queue keeps room for once it is empty again.
const SHRINK_ABOVE: usize = 4;

/// What the WebSocket task must send next on one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// A text frame (JSON).
    Text(String),
    /// A binary frame (a relay blob).
    Binary(Vec<u8>),
    /// A WebSocket Ping.
    Ping,
    /// A close frame; the connection ends after it.
    Close {
        /// The close code.
        code: u16,
        /// The reason text.
        reason: &'static str,
    },
}

/// Where a queued signaling message came from, to answer `undelivered` if it is never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub sender: u64,
    pub kind: SignalKind,
    pub id: Option<u64>,
    pub to: String,
}

#[derive(Debug)]
struct Entry {
    text: String,
    origin: Option<Origin>,
}

/// The bounds of one queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueueLimits {
    pub signal_messages: usize,
    pub signal_bytes: usize,
    pub control_messages: usize,
    pub relay_blobs: usize,
}

/// A peer's bounded outgoing queues.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    fifo: VecDeque<Entry>,
    signal_messages: usize,
    signal_bytes: usize,
    control_messages: usize,
    /// Relay frames, each with the number of FIFO entries queued before it: a frame never
    /// overtakes a message queued earlier (a sender's `peer_joined` reaches the peer before
    /// the sender's first relay blob).
    relay: VecDeque<(Vec<u8>, u64)>,
    /// FIFO entries ever queued, and ever taken out (sent or dropped).
    fifo_in: u64,
    fifo_out: u64,
    /// Bytes of every queued frame (text and binary), counted against the budgets.
    bytes: usize,
    ping: bool,
    close: Option<(u16, &'static str)>,
    /// Alternates between the FIFO and the relay queue so neither starves the other.
    relay_turn: bool,
}

impl OutQueue {
    /// Queues a signaling message; false (nothing queued) when the signaling bounds are met.
    pub fn push_signal(&mut self, limits: &QueueLimits, text: String, origin: Origin) -> bool {
        if self.close.is_some()
            || self.signal_messages >= limits.signal_messages
            || self.signal_bytes + text.len() > limits.signal_bytes
        {
            return false;
        }
        self.signal_messages += 1;
        self.signal_bytes += text.len();
        self.bytes += text.len();
        self.fifo.push_back(Entry {
            text,
            origin: Some(origin),
        });
        self.fifo_in += 1;
        true
    }

    /// Queues a control message; false when the control bound is met (the peer is too slow).
    pub fn push_control(&mut self, limits: &QueueLimits, text: String) -> bool {
        if self.close.is_some() {
            return true; // the connection is closing: nothing more is sent, nothing to report
        }
        if self.control_messages >= limits.control_messages {
            return false;
        }
        self.control_messages += 1;
        self.bytes += text.len();
        self.fifo.push_back(Entry { text, origin: None });
        self.fifo_in += 1;
        true
    }

    /// Queues a relay frame; false when the relay queue is full.
    pub fn push_relay(&mut self, limits: &QueueLimits, frame: Vec<u8>) -> bool {
        if self.close.is_some() || self.relay.len() >= limits.relay_blobs {
            return false;
        }
        self.bytes += frame.len();
        self.relay.push_back((frame, self.fifo_in));
        true
    }

    /// Asks for a WebSocket ping.
    pub fn push_ping(&mut self) {
        self.ping = true;
    }

    /// Ends the queue with a close frame; returns the signaling messages never sent.
    pub fn close(&mut self, code: u16, reason: &'static str) -> Vec<Origin> {
        self.close = Some((code, reason));
        let unsent = self.drain_unsent();
        self.bytes -= self.relay.iter().map(|(f, _)| f.len()).sum::<usize>();
        self.relay.clear();
        self.relay.shrink_to_fit();
        self.ping = false;
        unsent
    }

    /// Empties the queue; returns the signaling messages never sent.
    pub fn drain_unsent(&mut self) -> Vec<Origin> {
        self.bytes -= self.fifo.iter().map(|e| e.text.len()).sum::<usize>();
        let unsent = self.fifo.drain(..).filter_map(|e| e.origin).collect();
        self.fifo_out = self.fifo_in;
        self.fifo.shrink_to_fit();
        self.signal_messages = 0;
        self.signal_bytes = 0;
        self.control_messages = 0;
        unsent
    }

    /// The next frame to send: the close first, then a ping, then the FIFO and the relay
    /// queue in turn.
    pub fn pop(&mut self) -> Option<Transmit> {
        if let Some((code, reason)) = self.close {
            // Handed out once; the task ends the connection after it.
            self.close = Some((0, ""));
            return (code != 0).then_some(Transmit::Close { code, reason });
        }
        if self.ping {
            self.ping = false;
            return Some(Transmit::Ping);
        }
        self.relay_turn = !self.relay_turn;
        let relay_ready = self
            .relay
            .front()
            .is_some_and(|&(_, before)| before <= self.fifo_out);
        if self.relay_turn && relay_ready {
            if let Some((frame, _)) = self.relay.pop_front() {
                self.bytes -= frame.len();
                return Some(Transmit::Binary(frame));
            }
        }
        if let Some(entry) = self.fifo.pop_front() {
            self.fifo_out += 1;
            if self.fifo.is_empty() && self.fifo.capacity() > SHRINK_ABOVE {
                // A burst (the peer_joined of a whole project) is over: an idle peer keeps
                // no large queue.
                self.fifo.shrink_to(SHRINK_ABOVE);
            }
            self.bytes -= entry.text.len();
            if entry.origin.is_some() {
                self.signal_messages -= 1;
                self.signal_bytes -= entry.text.len();
            } else {
                self.control_messages -= 1;
            }
            return Some(Transmit::Text(entry.text));
        }
        let (frame, _) = self.relay.pop_front()?;
        self.bytes -= frame.len();
        Some(Transmit::Binary(frame))
    }

    /// Bytes of the frames queued (text and binary), what the budgets count.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`. Time is passed in.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            rate,
            burst,
            last: now,
        }
    }

    /// Takes `amount` tokens if there are that many.
    pub fn take(&mut self, now: Instant, amount: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod ordering_tests {
    use super::*;

    const LIMITS: QueueLimits = QueueLimits {
        signal_messages: 8,
        signal_bytes: 1 << 16,
        control_messages: 8,
        relay_blobs: 8,
    };

    fn order(q: &mut OutQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|t| match t {
                Transmit::Text(text) => text,
                Transmit::Binary(frame) => String::from_utf8(frame).unwrap(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_relay_frame_never_overtakes_a_message_queued_before_it() {
        let mut q = OutQueue::default();
        assert!(q.push_control(&LIMITS, "peer_joined".into()));
        assert!(q.push_relay(&LIMITS, b"blob1".to_vec()));
        assert!(q.push_relay(&LIMITS, b"blob2".to_vec()));
        assert_eq!(order(&mut q), ["peer_joined", "blob1", "blob2"]);
    }

    #[test]
    fn otherwise_the_queues_take_turns() {
        let mut q = OutQueue::default();
        assert!(q.push_relay(&LIMITS, b"r1".to_vec()));
        assert!(q.push_relay(&LIMITS, b"r2".to_vec()));
        assert!(q.push_control(&LIMITS, "c1".into()));
        assert!(q.push_control(&LIMITS, "c2".into()));
        assert_eq!(order(&mut q), ["r1", "c1", "r2", "c2"]);
    }
}
