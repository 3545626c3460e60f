//! The link frame codec (docs/link-protocol.md §2): an 18-byte header, integers big-endian,
//! and a payload on DATA frames only. Decoding refuses every malformed frame with a typed
//! [`FrameError`]; it never panics and never allocates.

/// Size of the header every frame starts with.
pub const HEADER_BYTES: usize = 18;
/// The largest frame on either path.
pub const MAX_FRAME_BYTES: usize = 16_384;
/// The largest DATA payload (one fragment).
pub const MAX_FRAGMENT_PAYLOAD: usize = MAX_FRAME_BYTES - HEADER_BYTES;
/// The largest message, as encoded (text as UTF-8).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;
/// The largest `number` (2^53 - 1, so JavaScript holds it exactly).
pub const MAX_NUMBER: u64 = (1 << 53) - 1;

/// DATA flag: the last fragment of a message.
const FLAG_END: u8 = 0x01;
/// DATA flag: the message is bytes (else UTF-8 text).
const FLAG_BINARY: u8 = 0x02;

/// The kind of a frame (its first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A fragment of a message; `number` is its seq.
    Data,
    /// A cumulative acknowledgement; `number` is the highest seq received in order.
    Ack,
    /// A path check; `number` is a nonce.
    Probe,
    /// The answer to a probe; `number` is the probe's nonce.
    ProbeAck,
    /// The sender closed its end; `number` is the last seq it sent.
    Close,
}

impl FrameKind {
    fn code(self) -> u8 {
        match self {
            FrameKind::Data => 1,
            FrameKind::Ack => 2,
            FrameKind::Probe => 3,
            FrameKind::ProbeAck => 4,
            FrameKind::Close => 5,
        }
    }

    fn from_code(code: u8) -> Option<FrameKind> {
        Some(match code {
            1 => FrameKind::Data,
            2 => FrameKind::Ack,
            3 => FrameKind::Probe,
            4 => FrameKind::ProbeAck,
            5 => FrameKind::Close,
            _ => return None,
        })
    }

    /// The name used in the test vectors (`data`, `ack`, `probe`, `probe_ack`, `close`).
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Data => "data",
            FrameKind::Ack => "ack",
            FrameKind::Probe => "probe",
            FrameKind::ProbeAck => "probe_ack",
            FrameKind::Close => "close",
        }
    }
}

/// One decoded frame, borrowing its payload from the received bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame is.
    pub kind: FrameKind,
    /// DATA: last fragment of its message.
    pub end: bool,
    /// DATA: the message is bytes.
    pub binary: bool,
    /// The sender's epoch (never 0).
    pub src_epoch: u32,
    /// The receiver's epoch as the sender knows it (0 when unknown).
    pub dst_epoch: u32,
    /// seq, cumulative ack, nonce or last seq, depending on `kind`.
    pub number: u64,
    /// DATA: the fragment; empty on every other kind.
    pub payload: &'a [u8],
}

/// Why bytes are not a frame (§2: every case is a `protocol_error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than the 18-byte header.
    #[error("frame shorter than the 18-byte header ({0} bytes)")]
    TooShort(usize),
    /// Longer than 16,384 bytes.
    #[error("frame longer than 16384 bytes ({0} bytes)")]
    TooLong(usize),
    /// The first byte is no known kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// `src_epoch` is 0.
    #[error("src_epoch is 0")]
    ZeroSrcEpoch,
    /// Flags on a kind other than DATA, or unknown flag bits on DATA.
    #[error("invalid flags {flags:#04x} on a {kind} frame")]
    BadFlags {
        /// The kind.
        kind: &'static str,
        /// The flags byte.
        flags: u8,
    },
    /// A payload on a kind other than DATA.
    #[error("a {0} frame carries a payload")]
    UnexpectedPayload(&'static str),
    /// `number` above 2^53 - 1.
    #[error("number {0} above 2^53 - 1")]
    NumberTooLarge(u64),
    /// A DATA frame with seq 0.
    #[error("DATA with seq 0")]
    ZeroSeq,
}

impl<'a> Frame<'a> {
    /// A DATA frame.
    pub fn data(
        src_epoch: u32,
        dst_epoch: u32,
        seq: u64,
        end: bool,
        binary: bool,
        payload: &'a [u8],
    ) -> Frame<'a> {
        Frame {
            kind: FrameKind::Data,
            end,
            binary,
            src_epoch,
            dst_epoch,
            number: seq,
            payload,
        }
    }

    /// A frame without payload or flags (ACK, PROBE, PROBE_ACK, CLOSE).
    pub fn control(kind: FrameKind, src_epoch: u32, dst_epoch: u32, number: u64) -> Frame<'a> {
        Frame {
            kind,
            end: false,
            binary: false,
            src_epoch,
            dst_epoch,
            number,
            payload: &[],
        }
    }

    /// The encoded size.
    pub fn len(&self) -> usize {
        HEADER_BYTES + self.payload.len()
    }

    /// Never true: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let flags = if self.kind == FrameKind::Data {
            (if self.end { FLAG_END } else { 0 }) | (if self.binary { FLAG_BINARY } else { 0 })
        } else {
            0
        };
        out.reserve(self.len());
        out.push(self.kind.code());
        out.push(flags);
        out.extend_from_slice(&self.src_epoch.to_be_bytes());
        out.extend_from_slice(&self.dst_epoch.to_be_bytes());
        out.extend_from_slice(&self.number.to_be_bytes());
        out.extend_from_slice(self.payload);
    }

    /// The encoded frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.encode_into(&mut out);
        out
    }

    /// Decodes one frame, refusing every malformed one (§2).
    pub fn decode(bytes: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        if bytes.len() < HEADER_BYTES {
            return Err(FrameError::TooShort(bytes.len()));
        }
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(FrameError::TooLong(bytes.len()));
        }
        let (header, payload) = bytes.split_at(HEADER_BYTES);
        let kind = FrameKind::from_code(header[0]).ok_or(FrameError::UnknownKind(header[0]))?;
        let flags = header[1];
        let src_epoch = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        let dst_epoch = u32::from_be_bytes([header[6], header[7], header[8], header[9]]);
        let mut number = [0u8; 8];
        number.copy_from_slice(&header[10..18]);
        let number = u64::from_be_bytes(number);
        if src_epoch == 0 {
            return Err(FrameError::ZeroSrcEpoch);
        }
        let allowed = if kind == FrameKind::Data {
            FLAG_END | FLAG_BINARY
        } else {
            0
        };
        if flags & !allowed != 0 {
            return Err(FrameError::BadFlags {
                kind: kind.name(),
                flags,
            });
        }
        if kind != FrameKind::Data && !payload.is_empty() {
            return Err(FrameError::UnexpectedPayload(kind.name()));
        }
        if number > MAX_NUMBER {
            return Err(FrameError::NumberTooLarge(number));
        }
        if kind == FrameKind::Data && number == 0 {
            return Err(FrameError::ZeroSeq);
        }
        Ok(Frame {
            kind,
            end: flags & FLAG_END != 0,
            binary: flags & FLAG_BINARY != 0,
            src_epoch,
            dst_epoch,
            number,
            payload,
        })
    }
}

/// How many fragments a message of `len` bytes takes (an empty message is one fragment).
pub fn fragment_count(len: usize) -> u64 {
    len.div_ceil(MAX_FRAGMENT_PAYLOAD).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let payload = vec![7u8; MAX_FRAGMENT_PAYLOAD];
        let frame = Frame::data(1, 2, MAX_NUMBER, true, true, &payload);
        let bytes = frame.encode();
        assert_eq!(bytes.len(), MAX_FRAME_BYTES);
        assert_eq!(Frame::decode(&bytes), Ok(frame));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Frame::decode(&long), Err(FrameError::TooLong(16_385)));
        let close = Frame::control(FrameKind::Close, 9, 0, 0);
        assert_eq!(Frame::decode(&close.encode()), Ok(close));
        assert_eq!(fragment_count(0), 1);
        assert_eq!(fragment_count(MAX_FRAGMENT_PAYLOAD + 1), 2);
    }

    #[test]
    fn flags_are_checked_per_kind() {
        let mut probe = Frame::control(FrameKind::Probe, 1, 0, 5).encode();
        probe[1] = 1;
        assert!(matches!(
            Frame::decode(&probe),
            Err(FrameError::BadFlags { kind: "probe", .. })
        ));
        let mut data = Frame::data(1, 0, 1, false, false, b"").encode();
        data[1] = 0x80;
        assert!(matches!(
            Frame::decode(&data),
            Err(FrameError::BadFlags { kind: "data", .. })
        ));
    }
}
