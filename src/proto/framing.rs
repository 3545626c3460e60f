//! Framing STUN and ChannelData messages on a byte stream (TCP, TLS), sans-IO.
//!
//! Over a stream, messages follow each other with no delimiter (RFC 8656 §3.1): a STUN message
//! is framed by the length in its header, and a ChannelData message by its length field plus
//! padding to a multiple of 4 bytes (RFC 8656 §12.5). The first two bits tell the two apart:
//! `00` is STUN, `01` is ChannelData. Anything else cannot be framed, so the stream cannot be
//! resynchronised and the connection must be closed.

use super::{channel, stun};

/// Longest frame: a STUN header and a maximal body (ChannelData is shorter).
pub const MAX_FRAME: usize = stun::HEADER_LEN + u16::MAX as usize;

/// What the start of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet to know the frame's length, or to hold the whole frame: the
    /// number is the total the buffer must reach (at least `len + 1` when unknown).
    Incomplete(usize),
    /// A whole frame of this many bytes.
    Complete(usize),
    /// Not STUN or ChannelData (or a STUN length that is not a multiple of 4): the stream
    /// cannot be framed.
    Invalid,
}

/// Frames the message at the start of `buf`.
pub fn next_frame(buf: &[u8]) -> Frame {
    let Some(&first) = buf.first() else {
        return Frame::Incomplete(1);
    };
    let total = match first >> 6 {
        0b00 => {
            if buf.len() < 4 {
                return Frame::Incomplete(4);
            }
            let body = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            if body % 4 != 0 {
                return Frame::Invalid;
            }
            stun::HEADER_LEN + body
        }
        0b01 => match channel::framed_len(buf) {
            Some(n) => n,
            None => return Frame::Incomplete(channel::HEADER_LEN),
        },
        _ => return Frame::Invalid,
    };
    if buf.len() >= total {
        Frame::Complete(total)
    } else {
        Frame::Incomplete(total)
    }
}

/// True when the first byte of a connection says STUN/TURN (0x00-0x03: a STUN message type
/// with the top bits clear, RFC 7983): used to tell TURN from HTTP on a shared TLS port.
pub fn first_byte_is_stun(byte: u8) -> bool {
    byte <= 0x03
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_stun_and_channel_data() {
        assert_eq!(next_frame(&[]), Frame::Incomplete(1));
        assert_eq!(next_frame(&[0x00, 0x01]), Frame::Incomplete(4));
        let mut binding = vec![0x00, 0x01, 0x00, 0x08];
        binding.resize(28, 0);
        assert_eq!(next_frame(&binding[..20]), Frame::Incomplete(28));
        assert_eq!(next_frame(&binding), Frame::Complete(28));
        binding.extend_from_slice(&[0x40, 0x00]);
        assert_eq!(
            next_frame(&binding),
            Frame::Complete(28),
            "the next frame waits"
        );
        // ChannelData of 5 bytes is padded to 8 over a stream.
        let cd = [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(next_frame(&cd[..3]), Frame::Incomplete(4));
        assert_eq!(next_frame(&cd[..9]), Frame::Incomplete(12));
        assert_eq!(next_frame(&cd), Frame::Complete(12));
        assert_eq!(next_frame(&[0x40, 0x00, 0x00, 0x00]), Frame::Complete(4));
    }

    #[test]
    fn unframeable_input_is_invalid() {
        assert_eq!(next_frame(&[0x80]), Frame::Invalid);
        // 'G' (0x47) has the ChannelData bits: HTTP on a TURN-only port waits for a frame
        // that never completes (and meets the idle timeout); shared ports sniff it instead.
        assert_eq!(
            next_frame(b"GET / HTTP/1.1\r\n"),
            Frame::Incomplete(4 + 0x5420)
        );
        assert_eq!(next_frame(&[0x16, 0x03, 0x01, 0x02]), Frame::Invalid, "TLS");
        assert_eq!(next_frame(&[0x00, 0x01, 0x00, 0x05]), Frame::Invalid);
        assert_eq!(
            next_frame(&[0x00, 0x01, 0xff, 0xfc]),
            Frame::Incomplete(MAX_FRAME - 3)
        );
    }

    #[test]
    fn first_byte_demultiplexes() {
        assert!(first_byte_is_stun(0x00) && first_byte_is_stun(0x01) && first_byte_is_stun(0x03));
        assert!(
            !first_byte_is_stun(b'G') && !first_byte_is_stun(0x04) && !first_byte_is_stun(0x40)
        );
    }
}
