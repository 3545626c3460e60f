//! Data indications (RFC 8656 §11.4) written in place around a peer's payload.

use std::net::SocketAddr;
use std::ops::Range;

use crate::proto::stun::{self, Class, attr, method};

/// Writes a Data indication (XOR-PEER-ADDRESS, DATA) around the payload at
/// `buf[PEER_HEADROOM..PEER_HEADROOM + len]`; returns the frame's range.
pub(super) fn write_data_indication(
    buf: &mut [u8],
    at: usize,
    peer: SocketAddr,
    len: usize,
    tid: [u8; 12],
) -> Range<usize> {
    let mut xor = [0u8; 20];
    let xlen = stun::encode_xor_address(peer, &tid, &mut xor);
    let padded = (len + 3) & !3;
    let start = at - data_indication_header_len(peer);
    let body_len = (4 + xlen + 4 + padded) as u16;
    let h = &mut buf[start..];
    h[..2].copy_from_slice(&stun::message_type(Class::Indication, method::DATA).to_be_bytes());
    h[2..4].copy_from_slice(&body_len.to_be_bytes());
    h[4..8].copy_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
    h[8..20].copy_from_slice(&tid);
    h[20..22].copy_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
    h[22..24].copy_from_slice(&(xlen as u16).to_be_bytes());
    h[24..24 + xlen].copy_from_slice(&xor[..xlen]);
    let d = 24 + xlen;
    h[d..d + 2].copy_from_slice(&attr::DATA.to_be_bytes());
    h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
    let end = at + len;
    buf[end..at + padded].fill(0);
    start..at + padded
}

/// Bytes a Data indication puts before its payload: the STUN header, XOR-PEER-ADDRESS for
/// `peer`, the DATA attribute's header.
pub(super) fn data_indication_header_len(peer: SocketAddr) -> usize {
    let xlen = if peer.is_ipv4() { 8 } else { 20 };
    stun::HEADER_LEN + 4 + xlen + 4
}
