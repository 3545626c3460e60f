//! ChannelData messages (RFC 8656 §12.4): a 4-byte header (channel number, length) and the
//! application data. This is the relay's hot path, so it is a few byte reads and no more.

/// The first valid channel number.
pub const CHANNEL_MIN: u16 = 0x4000;
/// The last channel number RFC 8656 assigns (0x4000-0x4FFF).
pub const CHANNEL_MAX_RFC8656: u16 = 0x4FFF;
/// The last valid channel number we accept. RFC 8656 narrowed RFC 5766's range (0x4000-0x7FFE)
/// to 0x4000-0x4FFF, but clients written to RFC 5766 (coturn's own tools among them) still pick
/// numbers up to 0x7FFE; coturn accepts them and so do we, for drop-in compatibility. The
/// first byte of such ChannelData (0x50-0x7F) cannot be confused with STUN (0x00-0x03) or
/// DTLS (0x14-0x3F), so the demultiplexing of RFC 7983 is unaffected on the client side.
pub const CHANNEL_MAX: u16 = 0x7FFE;
/// ChannelData header length.
pub const HEADER_LEN: usize = 4;

/// True when `n` is a channel number a client may bind.
pub fn is_valid_channel(n: u16) -> bool {
    (CHANNEL_MIN..=CHANNEL_MAX).contains(&n)
}

/// True when the first byte says ChannelData (0b01 in the two top bits, 0x40-0x7F).
pub fn looks_like_channel_data(data: &[u8]) -> bool {
    data.first().is_some_and(|b| b & 0xC0 == 0x40)
}

/// Parses a ChannelData datagram: returns the channel number and the payload length. Over UDP
/// trailing padding (up to 3 bytes) is allowed and ignored.
pub fn parse(data: &[u8]) -> Option<(u16, usize)> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let channel = u16::from_be_bytes([data[0], data[1]]);
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    if !is_valid_channel(channel)
        || HEADER_LEN + len > data.len()
        || data.len() - HEADER_LEN - len > 3
    {
        return None;
    }
    Some((channel, len))
}

/// Frame length of the ChannelData message at the start of a stream buffer (padded to 4).
pub fn framed_len(data: &[u8]) -> Option<usize> {
    if data.len() < HEADER_LEN {
        return None;
    }
    let len = u16::from_be_bytes([data[2], data[3]]) as usize;
    Some(HEADER_LEN + ((len + 3) & !3))
}

/// Writes a ChannelData header into `header`.
pub fn write_header(header: &mut [u8], channel: u16, len: usize) {
    header[..2].copy_from_slice(&channel.to_be_bytes());
    header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_bounds() {
        assert_eq!(parse(&[0x40, 0x00, 0x00, 0x02, 9, 9]), Some((0x4000, 2)));
        assert_eq!(
            parse(&[0x40, 0x00, 0x00, 0x02, 9, 9, 0, 0]),
            Some((0x4000, 2))
        );
        assert_eq!(
            parse(&[0x40, 0x00, 0x00, 0x03, 9, 9]),
            None,
            "length past the end"
        );
        assert_eq!(
            parse(&[0x50, 0x00, 0x00, 0x00]),
            Some((0x5000, 0)),
            "RFC 5766 range"
        );
        assert_eq!(parse(&[0x7F, 0xFF, 0x00, 0x00]), None, "0x7FFF is reserved");
        assert_eq!(
            parse(&[0x40, 0x00, 0x00, 0x00, 1, 2, 3, 4]),
            None,
            "too much trailing"
        );
        assert_eq!(parse(&[0x40, 0x00]), None);
        assert_eq!(framed_len(&[0x40, 0, 0, 5]), Some(12));
        assert!(is_valid_channel(0x4FFF) && is_valid_channel(0x7FFE));
        assert!(
            !is_valid_channel(0x3FFF) && !is_valid_channel(0x7FFF) && !is_valid_channel(0x8000)
        );
    }
}
