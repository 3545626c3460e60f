//! Splitting the byte stream from a TURN server (TCP, TLS) into messages, sans-IO.

use crate::proto::framing::{self, Frame, MAX_FRAME};

/// Buffers bytes read from a TURN stream and hands out whole STUN or ChannelData messages
/// (RFC 8656 §3.1; ChannelData is padded to 4 bytes on streams). Holds at most
/// [`StreamDecoder::CAPACITY`] bytes: the driver reads at most [`StreamDecoder::room`] bytes.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    start: usize,
}

/// The stream cannot be framed (neither STUN nor ChannelData): the connection must close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the TURN stream cannot be framed")]
pub struct FramingError;

impl StreamDecoder {
    /// Most bytes buffered: one maximal frame and one more read.
    pub const CAPACITY: usize = 2 * MAX_FRAME;

    /// An empty decoder.
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// How many more bytes [`push`](Self::push) takes now.
    pub fn room(&self) -> usize {
        Self::CAPACITY - (self.buf.len() - self.start)
    }

    /// Appends bytes read from the stream; at most [`room`](Self::room) of them are kept (the
    /// driver never reads more than that).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let n = bytes.len().min(self.room());
        self.buf.extend_from_slice(&bytes[..n]);
    }

    /// The next whole message (padding included), `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let pending = &self.buf[self.start..];
        match framing::next_frame(pending) {
            Frame::Incomplete(_) => Ok(None),
            Frame::Invalid => Err(FramingError),
            Frame::Complete(n) => {
                let at = self.start;
                self.start += n;
                Ok(Some(&self.buf[at..at + n]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_stun_and_padded_channel_data_across_reads() {
        let mut stun = vec![0x01, 0x13, 0x00, 0x04, 0x21, 0x12, 0xA4, 0x42];
        stun.extend_from_slice(&[7; 12]);
        stun.extend_from_slice(&[0, 0, 0, 0]);
        let cd = [0x40, 0x00, 0x00, 0x03, 1, 2, 3, 0];
        let all: Vec<u8> = stun.iter().chain(cd.iter()).copied().collect();
        let mut d = StreamDecoder::new();
        let mut got = Vec::new();
        for chunk in all.chunks(5) {
            d.push(chunk);
            while let Some(m) = d.next_message().unwrap() {
                got.push(m.to_vec());
            }
        }
        assert_eq!(got, vec![stun, cd.to_vec()]);
    }

    #[test]
    fn garbage_is_an_error_and_the_buffer_is_bounded() {
        let mut d = StreamDecoder::new();
        d.push(b"\x80garbage");
        assert_eq!(d.next_message(), Err(FramingError));
        let mut d = StreamDecoder::new();
        d.push(&vec![0x40; StreamDecoder::CAPACITY + 100]);
        assert_eq!(d.room(), 0);
        // 0x4040 channel, 0x4040 bytes: a frame, then more frames of the same.
        assert!(d.next_message().unwrap().is_some());
        assert_eq!(d.room(), 4 + 0x4040, "a consumed frame makes room");
    }
}
