//! Blocks of IP addresses (`10.0.0.0/8`, `2001:db8::/32`): parsing, containment, display.
//!
//! A [`Cidr`] is what the operator writes in `[peers]` and what the built-in peer policy is
//! made of ([`crate::proto::policy`]). Pure: no I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

use super::policy::embedded_ipv4s;

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
    /// embeds (see [`embedded_ipv4s`]): `10.0.0.0/8` contains `::ffff:10.1.2.3`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip)
            || embedded_ipv4s(ip)
                .into_iter()
                .flatten()
                .any(|v4| self.contains_exactly(v4.into()))
    }

    /// True if `ip`, taken literally, lies in this block.
    pub fn contains_exactly(&self, ip: IpAddr) -> bool {
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
