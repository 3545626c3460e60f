//! Which peer addresses a client may relay to.
//!
//! A TURN server relays to any address a client names in XOR-PEER-ADDRESS, so without a policy
//! it is an open door into the network it runs in: the loopback interface, the private LAN, the
//! cloud metadata service. [`PeerPolicy`] closes that door by default and lets the operator open
//! what they need:
//!
//! 1. an address matching an operator `allow` entry is permitted, whatever else it matches;
//! 2. otherwise an address matching an operator `deny` entry or a built-in denied range
//!    ([`default_denied`]) is refused;
//! 3. otherwise it is permitted.
//!
//! IPv6 spellings of IPv4 addresses are judged as the IPv4 address they reach (see
//! [`embedded_ipv4`]), for allow and deny entries alike, so `::ffff:127.0.0.1` is as denied as
//! `127.0.0.1`. This module is pure: no I/O, no clock.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

/// Why a string is not a CIDR block.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("invalid CIDR `{input}`: `{address}` is not an IP address")]
    InvalidAddress {
        /// The whole string that was parsed.
        input: String,
        /// The address part.
        address: String,
    },
    /// The part after `/` is not a decimal number.
    #[error("invalid CIDR `{input}`: prefix length `{prefix}` is not a number")]
    InvalidPrefix {
        /// The whole string that was parsed.
        input: String,
        /// The prefix part.
        prefix: String,
    },
    /// The prefix length is longer than the address (32 bits for IPv4, 128 for IPv6).
    #[error("invalid CIDR `{input}`: prefix length {prefix} is longer than {max} bits")]
    PrefixTooLong {
        /// The whole string that was parsed.
        input: String,
        /// The prefix length given.
        prefix: u32,
        /// The address family's length in bits.
        max: u8,
    },
}

/// A block of IP addresses: an address and a prefix length, such as `10.0.0.0/8`.
///
/// Host bits are cleared on construction (`10.1.2.3/8` becomes `10.0.0.0/8`). An IPv4-mapped
/// IPv6 block (`::ffff:10.0.0.0/104`) is stored as the IPv4 block it denotes (`10.0.0.0/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Builds a block, clearing host bits. Fails when `prefix` exceeds the address length.
    pub const fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, PrefixTooLong> {
        match addr {
            IpAddr::V4(v4) => {
                if prefix > 32 {
                    return Err(PrefixTooLong { prefix, max: 32 });
                }
                let bits = v4.to_bits() & mask_v4(prefix);
                Ok(Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from_bits(bits)),
                    prefix,
                })
            }
            IpAddr::V6(v6) => {
                if prefix > 128 {
                    return Err(PrefixTooLong { prefix, max: 128 });
                }
                if prefix >= 96 {
                    if let Some(v4) = v6.to_ipv4_mapped() {
                        // ::ffff:a.b.c.d/n is the IPv4 block a.b.c.d/(n-96).
                        let prefix = prefix - 96;
                        let bits = v4.to_bits() & mask_v4(prefix);
                        return Ok(Cidr {
                            addr: IpAddr::V4(Ipv4Addr::from_bits(bits)),
                            prefix,
                        });
                    }
                }
                let bits = v6.to_bits() & mask_v6(prefix);
                Ok(Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from_bits(bits)),
                    prefix,
                })
            }
        }
    }

    /// The block holding exactly one address (`/32` or `/128`).
    pub const fn host(addr: IpAddr) -> Cidr {
        let prefix = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        match Cidr::new(addr, prefix) {
            Ok(cidr) => cidr,
            // Unreachable: the prefix is the family's full length.
            Err(_) => Cidr { addr, prefix },
        }
    }

    /// The first address of the block (host bits are zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True if `ip` lies in this block, spelled either as given or as the IPv4 address it
    /// embeds (see [`embedded_ipv4`]): `10.0.0.0/8` contains `::ffff:10.1.2.3`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip)
            || embedded_ipv4(ip).is_some_and(|v4| self.contains_exactly(v4.into()))
    }

    /// True if `ip`, taken literally, lies in this block.
    fn contains_exactly(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask_v4(self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask_v6(self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

/// [`Cidr::new`] was given a prefix longer than the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("prefix length {prefix} is longer than {max} bits")]
pub struct PrefixTooLong {
    /// The prefix length given.
    pub prefix: u8,
    /// The address family's length in bits.
    pub max: u8,
}

/// The network mask of an IPv4 prefix; prefixes past 32 saturate to all ones.
const fn mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else if prefix >= 32 {
        u32::MAX
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// The network mask of an IPv6 prefix; prefixes past 128 saturate to all ones.
const fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else if prefix >= 128 {
        u128::MAX
    } else {
        u128::MAX << (128 - prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `addr/prefix` or a bare address (a single-host block).
    fn from_str(input: &str) -> Result<Cidr, CidrError> {
        let trimmed = input.trim();
        let (address, prefix) = match trimmed.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = address.parse().map_err(|_| CidrError::InvalidAddress {
            input: input.to_owned(),
            address: address.to_owned(),
        })?;
        let max = match addr {
            IpAddr::V4(_) => 32u8,
            IpAddr::V6(_) => 128u8,
        };
        let prefix = match prefix {
            None => max,
            Some(text) => {
                let too_long = |prefix: u32| CidrError::PrefixTooLong {
                    input: input.to_owned(),
                    prefix,
                    max,
                };
                let invalid = || CidrError::InvalidPrefix {
                    input: input.to_owned(),
                    prefix: text.to_owned(),
                };
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid());
                }
                let value: u32 = text.parse().map_err(|_| too_long(u32::MAX))?;
                if value > u32::from(max) {
                    return Err(too_long(value));
                }
                // Fits: value <= 128.
                value as u8
            }
        };
        Cidr::new(addr, prefix).map_err(|e| CidrError::PrefixTooLong {
            input: input.to_owned(),
            prefix: u32::from(e.prefix),
            max: e.max,
        })
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(value: String) -> Result<Cidr, CidrError> {
        value.parse()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The IPv4 address an IPv6 address stands for, when it is one of the IPv6 spellings of IPv4:
///
/// - IPv4-mapped `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): a dual-stack socket sends to `a.b.c.d`;
/// - IPv4-compatible `::a.b.c.d` (deprecated, RFC 4291 §2.5.5.1), except `::` and `::1`, which
///   are the IPv6 unspecified and loopback addresses and are judged as such;
/// - NAT64 well-known prefix `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 gateway on the path
///   forwards to `a.b.c.d`, so it is judged as that address. The local-use NAT64 prefix
///   `64:ff9b:1::/48` (RFC 8215) embeds the IPv4 address in an operator-chosen position and is
///   denied as a whole instead (see [`default_denied`]).
///
/// Returns `None` for IPv4 addresses and for every other IPv6 address.
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = v6.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    if bits >> 32 == 0 {
        // IPv4-compatible; :: and ::1 stay IPv6.
        return (bits > 1).then_some(low32);
    }
    if bits >> 32 == NAT64_WELL_KNOWN_PREFIX >> 32 {
        return Some(low32);
    }
    None
}

/// `64:ff9b::/96`.
const NAT64_WELL_KNOWN_PREFIX: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;

/// Builds a constant IPv4 block; a bad prefix is a compile-time error.
const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    match Cidr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix) {
        Ok(cidr) => cidr,
        Err(_) => panic!("bad built-in IPv4 block"),
    }
}

/// Builds a constant IPv6 block; a bad prefix is a compile-time error.
const fn v6(bits: u128, prefix: u8) -> Cidr {
    match Cidr::new(IpAddr::V6(Ipv6Addr::from_bits(bits)), prefix) {
        Ok(cidr) => cidr,
        Err(_) => panic!("bad built-in IPv6 block"),
    }
}

/// The built-in denied ranges, in the order [`default_denied`] lists them.
static DEFAULT_DENIED: [Cidr; 19] = [
    // IPv4
    // "this network" (RFC 791); 0.0.0.0 reaches the local host
    v4(0, 0, 0, 0, 8),
    // private (RFC 1918)
    v4(10, 0, 0, 0, 8),
    // carrier-grade NAT (RFC 6598); holds Alibaba's 100.100.100.200
    v4(100, 64, 0, 0, 10),
    // loopback
    v4(127, 0, 0, 0, 8),
    // link-local (RFC 3927); holds cloud metadata 169.254.169.254
    v4(169, 254, 0, 0, 16),
    // private (RFC 1918)
    v4(172, 16, 0, 0, 12),
    // IETF protocol assignments (RFC 6890)
    v4(192, 0, 0, 0, 24),
    // private (RFC 1918)
    v4(192, 168, 0, 0, 16),
    // benchmarking (RFC 2544)
    v4(198, 18, 0, 0, 15),
    // multicast
    v4(224, 0, 0, 0, 4),
    // reserved (RFC 1112)
    v4(240, 0, 0, 0, 4),
    // limited broadcast (inside 240/4; listed to be explicit)
    v4(255, 255, 255, 255, 32),
    // IPv6
    // :: unspecified
    v6(0, 128),
    // ::1 loopback
    v6(1, 128),
    // 64:ff9b:1::/48 local-use NAT64 (RFC 8215)
    v6(0x0064_ff9b_0001 << 80, 48),
    // unique local (RFC 4193)
    v6(0xfc00 << 112, 7),
    // AWS metadata fd00:ec2::254 (in fc00::/7)
    v6(0xfd00_0ec2_0000_0000_0000_0000_0000_0254, 128),
    // link-local
    v6(0xfe80 << 112, 10),
    // multicast
    v6(0xff00 << 112, 8),
];

/// The ranges a [`PeerPolicy`] denies unless an `allow` entry covers the address.
///
/// IPv4: `0.0.0.0/8`, `10.0.0.0/8`, `100.64.0.0/10`, `127.0.0.0/8`, `169.254.0.0/16` (cloud
/// metadata `169.254.169.254`), `172.16.0.0/12`, `192.0.0.0/24`, `192.168.0.0/16`,
/// `198.18.0.0/15`, `224.0.0.0/4`, `240.0.0.0/4`, `255.255.255.255/32`.
/// IPv6: `::/128`, `::1/128`, `64:ff9b:1::/48`, `fc00::/7`, `fd00:ec2::254/128` (AWS metadata),
/// `fe80::/10`, `ff00::/8`.
///
/// IPv4-mapped, IPv4-compatible and NAT64 (`64:ff9b::/96`) addresses are judged as the IPv4
/// address they embed (see [`embedded_ipv4`]), so they need no entries of their own.
pub fn default_denied() -> &'static [Cidr] {
    &DEFAULT_DENIED
}

/// Decides which peer addresses clients may relay to (CreatePermission, ChannelBind, Send).
///
/// See the module documentation for the rules. Cheap to clone and to query; built once per
/// configuration load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

impl PeerPolicy {
    /// A policy from the operator's `allow` and `deny` lists (the built-in ranges are always
    /// denied in addition to `deny`, unless allowed).
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> PeerPolicy {
        PeerPolicy { allow, deny }
    }

    /// The operator's allow list.
    pub fn allow(&self) -> &[Cidr] {
        &self.allow
    }

    /// The operator's deny list (without the built-in ranges).
    pub fn deny(&self) -> &[Cidr] {
        &self.deny
    }

    /// True if a client may relay to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|cidr| cidr.contains(ip)) {
            return true;
        }
        let denied = |cidr: &Cidr| cidr.contains(ip);
        !(self.deny.iter().any(denied) || DEFAULT_DENIED.iter().any(denied))
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
