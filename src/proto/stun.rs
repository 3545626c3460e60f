//! The STUN message codec (RFC 8489), zero-copy on the way in and writing into a reusable buffer
//! on the way out.
//!
//! Why our own and not `stun-types`: see the comment on `md-5` in `Cargo.toml`. Parsing never
//! panics and never allocates; every length is checked before it is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The fixed magic cookie of RFC 5389 and later.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Length of the STUN header.
pub const HEADER_LEN: usize = 20;

/// STUN/TURN methods.
pub mod method {
    /// Binding (RFC 8489).
    pub const BINDING: u16 = 0x001;
    /// Allocate (RFC 8656).
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh.
    pub const REFRESH: u16 = 0x004;
    /// Send (indication).
    pub const SEND: u16 = 0x006;
    /// Data (indication).
    pub const DATA: u16 = 0x007;
    /// CreatePermission.
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind.
    pub const CHANNEL_BIND: u16 = 0x009;
    /// Connect (RFC 6062).
    pub const CONNECT: u16 = 0x00a;
    /// ConnectionBind (RFC 6062).
    pub const CONNECTION_BIND: u16 = 0x00b;
    /// ConnectionAttempt (RFC 6062).
    pub const CONNECTION_ATTEMPT: u16 = 0x00c;
}

/// Attribute types we understand.
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656).
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT.
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT.
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM.
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH.
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN.
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// PRIORITY (ICE, RFC 8445).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// CONNECTION-ID (RFC 6062).
    pub const CONNECTION_ID: u16 = 0x002A;
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656).
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    /// ADDRESS-ERROR-CODE (RFC 8656).
    pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
    /// PASSWORD-ALGORITHMS.
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// ALTERNATE-DOMAIN.
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// ICMP (RFC 8656).
    pub const ICMP: u16 = 0x8004;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED.
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING.
    pub const ICE_CONTROLLING: u16 = 0x802A;
    /// RESPONSE-ORIGIN.
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    /// OTHER-ADDRESS.
    pub const OTHER_ADDRESS: u16 = 0x802C;

    /// True for every comprehension-required attribute (type < 0x8000) that turnpike knows.
    pub fn is_known_required(t: u16) -> bool {
        matches!(
            t,
            MAPPED_ADDRESS
                | USERNAME
                | MESSAGE_INTEGRITY
                | ERROR_CODE
                | UNKNOWN_ATTRIBUTES
                | CHANNEL_NUMBER
                | LIFETIME
                | XOR_PEER_ADDRESS
                | DATA
                | REALM
                | NONCE
                | XOR_RELAYED_ADDRESS
                | REQUESTED_ADDRESS_FAMILY
                | EVEN_PORT
                | REQUESTED_TRANSPORT
                | DONT_FRAGMENT
                | MESSAGE_INTEGRITY_SHA256
                | PASSWORD_ALGORITHM
                | USERHASH
                | XOR_MAPPED_ADDRESS
                | RESERVATION_TOKEN
                | PRIORITY
                | USE_CANDIDATE
                | CONNECTION_ID
        )
    }
}

/// The class of a STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A request, answered by a success or error response.
    Request,
    /// An indication, never answered.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
}

/// Packs a method and class into the 14-bit message type.
pub fn message_type(class: Class, method: u16) -> u16 {
    let c = class.bits();
    (method & 0x000f)
        | ((method & 0x0070) << 1)
        | ((method & 0x0f80) << 2)
        | ((c & 0b01) << 4)
        | ((c & 0b10) << 7)
}

fn split_type(t: u16) -> (Class, u16) {
    let method = (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80);
    let class = match ((t >> 4) & 0b01) | ((t >> 7) & 0b10) {
        0b00 => Class::Request,
        0b01 => Class::Indication,
        0b10 => Class::Success,
        _ => Class::Error,
    };
    (class, method)
}

/// Why bytes are not a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than a header, or the length field disagrees with the datagram.
    #[error("truncated or mis-sized STUN message")]
    Length,
    /// The two top bits are not zero or the cookie is wrong.
    #[error("not a STUN message")]
    NotStun,
    /// An attribute runs past the end of the message.
    #[error("malformed attribute")]
    Attribute,
    /// FINGERPRINT present but wrong, or not last.
    #[error("bad FINGERPRINT")]
    Fingerprint,
}

/// The integrity algorithm a request used (and its answer must use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// MESSAGE-INTEGRITY, HMAC-SHA1.
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256.
    Sha256,
}

/// A parsed, structurally valid STUN message borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    data: &'a [u8],
    class: Class,
    method: u16,
    /// Offset of the first integrity attribute, if any. Attributes after it (other than
    /// integrity and FINGERPRINT) are ignored, as RFC 8489 §14.5 requires.
    integrity_at: Option<usize>,
    has_fingerprint: bool,
}

/// Returns true when `data` begins like a STUN message (first two bits 0, magic cookie).
pub fn looks_like_stun(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN
        && data[0] & 0xC0 == 0
        && u32::from_be_bytes([data[4], data[5], data[6], data[7]]) == MAGIC_COOKIE
}

/// Returns the total length (header included) of the STUN message at the start of `data`, if
/// the header is there: used to frame STUN over streams.
pub fn framed_len(data: &[u8]) -> Option<usize> {
    if data.len() < 4 {
        return None;
    }
    Some(HEADER_LEN + u16::from_be_bytes([data[2], data[3]]) as usize)
}

impl<'a> Message<'a> {
    /// Parses one STUN message that fills `data` exactly.
    pub fn parse(data: &'a [u8]) -> Result<Self, ParseError> {
        if data.len() < HEADER_LEN {
            return Err(ParseError::Length);
        }
        if !looks_like_stun(data) {
            return Err(ParseError::NotStun);
        }
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        if len % 4 != 0 || HEADER_LEN + len != data.len() {
            return Err(ParseError::Length);
        }
        let (class, method) = split_type(u16::from_be_bytes([data[0], data[1]]) & 0x3fff);
        let mut msg = Message {
            data,
            class,
            method,
            integrity_at: None,
            has_fingerprint: false,
        };
        let mut off = HEADER_LEN;
        while off < data.len() {
            if off + 4 > data.len() {
                return Err(ParseError::Attribute);
            }
            let t = u16::from_be_bytes([data[off], data[off + 1]]);
            let l = u16::from_be_bytes([data[off + 2], data[off + 3]]) as usize;
            let end = off + 4 + l;
            if end > data.len() {
                return Err(ParseError::Attribute);
            }
            if msg.has_fingerprint {
                return Err(ParseError::Fingerprint);
            }
            match t {
                attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 => {
                    msg.integrity_at.get_or_insert(off);
                }
                attr::FINGERPRINT => {
                    if l != 4 || end != data.len() {
                        return Err(ParseError::Fingerprint);
                    }
                    let want = u32::from_be_bytes([
                        data[off + 4],
                        data[off + 5],
                        data[off + 6],
                        data[off + 7],
                    ]);
                    if fingerprint_of(&data[..off]) != want {
                        return Err(ParseError::Fingerprint);
                    }
                    msg.has_fingerprint = true;
                }
                _ => {}
            }
            off = off + 4 + ((l + 3) & !3);
        }
        Ok(msg)
    }

    /// The message class.
    pub fn class(&self) -> Class {
        self.class
    }

    /// The method.
    pub fn method(&self) -> u16 {
        self.method
    }

    /// The 96-bit transaction id.
    pub fn transaction_id(&self) -> [u8; 12] {
        let mut t = [0; 12];
        t.copy_from_slice(&self.data[8..20]);
        t
    }

    /// The raw bytes of the message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// True when the message ends with a valid FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.has_fingerprint
    }

    /// True when the message carries MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256.
    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    /// Iterates over the attributes that count (those before the integrity attributes), as
    /// `(type, value)`.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            data: self.data,
            off: HEADER_LEN,
            end: self.integrity_at.unwrap_or(self.data.len()),
        }
    }

    /// The value of the first attribute of type `t` (before the integrity attributes).
    pub fn get(&self, t: u16) -> Option<&'a [u8]> {
        self.attributes().find(|(at, _)| *at == t).map(|(_, v)| v)
    }

    /// The first comprehension-required attribute type that turnpike does not know.
    pub fn unknown_required(&self) -> impl Iterator<Item = u16> + 'a {
        self.attributes()
            .map(|(t, _)| t)
            .filter(|t| *t < 0x8000 && !attr::is_known_required(*t))
    }

    /// Decodes an XOR-encoded address attribute (XOR-MAPPED/PEER/RELAYED-ADDRESS) at `value`.
    pub fn xor_address(&self, value: &[u8]) -> Option<SocketAddr> {
        decode_xor_address(value, &self.transaction_id())
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 (preferred when present) or MESSAGE-INTEGRITY with a
    /// long-term key. Comparison is in constant time.
    pub fn verify_integrity(&self, key: &[u8]) -> Option<Integrity> {
        let start = self.integrity_at?;
        let mut sha1_at = None;
        let mut sha256_at = None;
        let mut off = start;
        while off + 4 <= self.data.len() {
            let t = u16::from_be_bytes([self.data[off], self.data[off + 1]]);
            let l = u16::from_be_bytes([self.data[off + 2], self.data[off + 3]]) as usize;
            match t {
                attr::MESSAGE_INTEGRITY if sha1_at.is_none() => sha1_at = Some((off, l)),
                attr::MESSAGE_INTEGRITY_SHA256 if sha256_at.is_none() => sha256_at = Some((off, l)),
                _ => {}
            }
            off += 4 + ((l + 3) & !3);
        }
        if let Some((at, l)) = sha256_at {
            // RFC 8489 §14.6: 16 to 32 bytes, a multiple of 4 (a truncated HMAC).
            if !(16..=32).contains(&l) || l % 4 != 0 {
                return None;
            }
            let mac = hmac_over(self.data, at, l, key, Integrity::Sha256);
            let got = &self.data[at + 4..at + 4 + l];
            return bool::from(mac[..l].ct_eq(got)).then_some(Integrity::Sha256);
        }
        let (at, l) = sha1_at?;
        if l != 20 {
            return None;
        }
        let mac = hmac_over(self.data, at, l, key, Integrity::Sha1);
        let got = &self.data[at + 4..at + 24];
        bool::from(mac[..20].ct_eq(got)).then_some(Integrity::Sha1)
    }
}

/// Iterator over `(type, value)` of a message's attributes.
pub struct Attributes<'a> {
    data: &'a [u8],
    off: usize,
    end: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.off + 4 > self.end {
            return None;
        }
        let d = self.data;
        let o = self.off;
        let t = u16::from_be_bytes([d[o], d[o + 1]]);
        let l = u16::from_be_bytes([d[o + 2], d[o + 3]]) as usize;
        let value = d.get(o + 4..o + 4 + l)?;
        self.off = o + 4 + ((l + 3) & !3);
        Some((t, value))
    }
}

/// HMAC over the message up to the integrity attribute at `at`, with the header length
/// adjusted to end after that attribute (RFC 8489 §14.5).
fn hmac_over(data: &[u8], at: usize, value_len: usize, key: &[u8], alg: Integrity) -> [u8; 32] {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&data[..HEADER_LEN]);
    let adjusted = (at + 4 + value_len - HEADER_LEN) as u16;
    header[2..4].copy_from_slice(&adjusted.to_be_bytes());
    let mut out = [0u8; 32];
    match alg {
        Integrity::Sha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
            mac.update(&header);
            mac.update(&data[HEADER_LEN..at]);
            out[..20].copy_from_slice(&mac.finalize().into_bytes());
        }
        Integrity::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
            mac.update(&header);
            mac.update(&data[HEADER_LEN..at]);
            out.copy_from_slice(&mac.finalize().into_bytes());
        }
    }
    out
}

fn fingerprint_of(data_before: &[u8]) -> u32 {
    // The length field must already count the FINGERPRINT attribute: recompute it.
    let mut header = [0u8; 4];
    header.copy_from_slice(&data_before[..4]);
    let adjusted = (data_before.len() + 8 - HEADER_LEN) as u16;
    header[2..4].copy_from_slice(&adjusted.to_be_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&header);
    h.update(&data_before[4..]);
    h.finalize() ^ 0x5354_554e
}

/// Decodes an XOR-encoded address value.
pub fn decode_xor_address(value: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (value[1], value.len()) {
        (0x01, 8) => {
            let raw = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(raw)), port))
        }
        (0x02, 20) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(tid);
            let mut ip = [0u8; 16];
            for i in 0..16 {
                ip[i] = value[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Decodes a plain (not XOR-ed) address value: MAPPED-ADDRESS, ALTERNATE-SERVER.
pub fn decode_address(value: &[u8]) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    match (value[1], value.len()) {
        (0x01, 8) => {
            let ip: [u8; 4] = value[4..8].try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let ip: [u8; 16] = value[4..20].try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Encodes a plain address value into `out`, returning its length (8 or 20).
pub fn encode_address(addr: SocketAddr, out: &mut [u8; 20]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            out[4..8].copy_from_slice(&ip.octets());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            out[4..20].copy_from_slice(&ip.octets());
            20
        }
    }
}

/// Encodes an XOR address value into `out`, returning its length (8 or 20).
pub fn encode_xor_address(addr: SocketAddr, tid: &[u8; 12], out: &mut [u8; 20]) -> usize {
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            out[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
            8
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(tid);
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ key[i];
            }
            20
        }
    }
}

/// Writes a STUN message into a caller-owned buffer (cleared first), so answers reuse memory.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    tid: [u8; 12],
}

impl<'b> Writer<'b> {
    /// Starts a message of `class`/`method` with transaction id `tid`.
    pub fn new(buf: &'b mut Vec<u8>, class: Class, method: u16, tid: [u8; 12]) -> Self {
        buf.clear();
        buf.extend_from_slice(&message_type(class, method).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid);
        Writer { buf, tid }
    }

    /// Appends an attribute with padding.
    pub fn attr(&mut self, t: u16, value: &[u8]) -> &mut Self {
        let len = value.len().min(u16::MAX as usize - 4);
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        self.buf.extend_from_slice(&value[..len]);
        let pad = (4 - len % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len();
        self
    }

    /// Appends a 32-bit attribute value.
    pub fn u32_attr(&mut self, t: u16, v: u32) -> &mut Self {
        self.attr(t, &v.to_be_bytes())
    }

    /// Appends an XOR-encoded address attribute.
    pub fn xor_addr(&mut self, t: u16, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = encode_xor_address(addr, &self.tid, &mut v);
        self.attr(t, &v[..n])
    }

    /// Appends a plain (not XOR-ed) address attribute, such as ALTERNATE-SERVER.
    pub fn addr(&mut self, t: u16, addr: SocketAddr) -> &mut Self {
        let mut v = [0u8; 20];
        let n = encode_address(addr, &mut v);
        self.attr(t, &v[..n])
    }

    /// Appends ERROR-CODE (or ADDRESS-ERROR-CODE with `family`) with a reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        self.coded_error(attr::ERROR_CODE, 0, code, reason)
    }

    /// Appends ADDRESS-ERROR-CODE (RFC 8656 §18.12) for an address family.
    pub fn address_error(&mut self, family: u8, code: u16, reason: &str) -> &mut Self {
        self.coded_error(attr::ADDRESS_ERROR_CODE, family, code, reason)
    }

    fn coded_error(&mut self, t: u16, first: u8, code: u16, reason: &str) -> &mut Self {
        let mut v = Vec::with_capacity(4 + reason.len());
        v.extend_from_slice(&[first, 0, (code / 100) as u8, (code % 100) as u8]);
        v.extend_from_slice(reason.as_bytes());
        self.attr(t, &v)
    }

    /// Appends MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 computed with `key`.
    pub fn integrity(&mut self, alg: Integrity, key: &[u8]) -> &mut Self {
        let (t, len) = match alg {
            Integrity::Sha1 => (attr::MESSAGE_INTEGRITY, 20),
            Integrity::Sha256 => (attr::MESSAGE_INTEGRITY_SHA256, 32),
        };
        let at = self.buf.len();
        // Reserve the attribute so the length field counts it, then fill in the HMAC.
        self.attr(t, &[0u8; 32][..len]);
        let mac = hmac_over(self.buf, at, len, key, alg);
        self.buf[at + 4..at + 4 + len].copy_from_slice(&mac[..len]);
        self
    }

    /// Appends FINGERPRINT; must be last.
    pub fn fingerprint(&mut self) -> &mut Self {
        let fp = fingerprint_of(self.buf);
        self.attr(attr::FINGERPRINT, &fp.to_be_bytes())
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// The bytes written so far (a complete message after each call).
    pub fn bytes(&self) -> &[u8] {
        self.buf
    }
}

#[cfg(test)]
#[path = "stun_tests.rs"]
mod tests;
