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
//! An entry may carry a port range ([`PeerEntry`], `"203.0.113.0/24:443"`), and then matches
//! only those ports. IPv6 spellings of IPv4 addresses are judged as the IPv4 address(es) they
//! reach (see [`embedded_ipv4s`]), for allow and deny entries alike, so `::ffff:127.0.0.1` is
//! as denied as `127.0.0.1`, and a Teredo address is denied when its server or its client is.
//!
//! The server's own addresses are not this module's business: the core denies them with the
//! addresses the service pushes into its settings. This module is pure: no I/O, no clock.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::Deserialize;

pub use super::cidr::{Cidr, CidrError, PrefixTooLong};

/// The IPv4 address an IPv6 address stands for, when it is one of the IPv6 spellings of IPv4
/// (the first of [`embedded_ipv4s`]). Returns `None` for IPv4 addresses and for every other
/// IPv6 address.
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let [first, second] = embedded_ipv4s(ip);
    first.or(second)
}

/// The IPv4 addresses an IPv6 address reaches, when it is one of the IPv6 spellings of IPv4:
///
/// - IPv4-mapped `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): a dual-stack socket sends to `a.b.c.d`;
/// - SIIT IPv4-translated `::ffff:0:a.b.c.d` (RFC 2765 §2.1): a stateless translator sends to
///   `a.b.c.d`;
/// - IPv4-compatible `::a.b.c.d` (deprecated, RFC 4291 §2.5.5.1), except `::` and `::1`, which
///   are the IPv6 unspecified and loopback addresses and are judged as such;
/// - NAT64 well-known prefix `64:ff9b::a.b.c.d` (RFC 6052): a NAT64 gateway on the path
///   forwards to `a.b.c.d`. The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) embeds the
///   IPv4 address in an operator-chosen position and is denied as a whole instead (see
///   [`default_denied`]);
/// - 6to4 `2002:aabb:ccdd::/48` (RFC 3056): a 6to4 relay tunnels to `aa.bb.cc.dd`;
/// - Teredo `2001:0:SSSS:SSSS:flags:port:CCCC:CCCC` (RFC 4380 §4): the packet goes through the
///   Teredo server `S` to the client whose address is the complement of `C`; both are
///   returned, and the address is denied when either is.
///
/// Returns `[None, None]` for IPv4 addresses and for every other IPv6 address.
pub fn embedded_ipv4s(ip: IpAddr) -> [Option<Ipv4Addr>; 2] {
    let IpAddr::V6(v6) = ip else {
        return [None, None];
    };
    let bits = v6.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    let high96 = bits >> 32;
    let one = |v4: Ipv4Addr| [Some(v4), None];
    if high96 == 0xffff || high96 == 0xffff_0000 {
        // Mapped, or SIIT translated.
        return one(low32);
    }
    if high96 == 0 {
        // IPv4-compatible; :: and ::1 stay IPv6.
        return if bits > 1 { one(low32) } else { [None, None] };
    }
    if high96 == NAT64_WELL_KNOWN_PREFIX >> 32 {
        return one(low32);
    }
    if bits >> 112 == 0x2002 {
        return one(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    if bits >> 96 == 0x2001_0000 {
        let server = Ipv4Addr::from_bits((bits >> 64) as u32);
        let client = Ipv4Addr::from_bits(!(bits as u32));
        return [Some(server), Some(client)];
    }
    [None, None]
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
static DEFAULT_DENIED: [Cidr; 22] = [
    // IPv4
    // "this network" (RFC 791); 0.0.0.0 reaches the local host
    v4(0, 0, 0, 0, 8),
    // private (RFC 1918)
    v4(10, 0, 0, 0, 8),
    // carrier-grade NAT (RFC 6598); holds Alibaba's 100.100.100.200
    v4(100, 64, 0, 0, 10),
    // loopback
    v4(127, 0, 0, 0, 8),
    // Azure's WireServer (a public address every Azure VM reaches its host agent on)
    v4(168, 63, 129, 16, 32),
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
    // 100::/64 discard-only (RFC 6666)
    v6(0x0100 << 112, 64),
    // unique local (RFC 4193)
    v6(0xfc00 << 112, 7),
    // AWS metadata fd00:ec2::254 (in fc00::/7)
    v6(0xfd00_0ec2_0000_0000_0000_0000_0000_0254, 128),
    // link-local
    v6(0xfe80 << 112, 10),
    // site-local (deprecated, RFC 3879; still routed inside some networks)
    v6(0xfec0 << 112, 10),
    // multicast
    v6(0xff00 << 112, 8),
];

/// The ranges a [`PeerPolicy`] denies unless an `allow` entry covers the address.
///
/// IPv4: `0.0.0.0/8`, `10.0.0.0/8`, `100.64.0.0/10`, `127.0.0.0/8`, `168.63.129.16/32`
/// (Azure's WireServer), `169.254.0.0/16` (cloud metadata `169.254.169.254`), `172.16.0.0/12`,
/// `192.0.0.0/24`, `192.168.0.0/16`, `198.18.0.0/15`, `224.0.0.0/4`, `240.0.0.0/4`,
/// `255.255.255.255/32`.
/// IPv6: `::/128`, `::1/128`, `64:ff9b:1::/48`, `100::/64` (discard), `fc00::/7`,
/// `fd00:ec2::254/128` (AWS metadata), `fe80::/10`, `fec0::/10` (site-local), `ff00::/8`.
///
/// IPv4-mapped, SIIT, IPv4-compatible, NAT64 (`64:ff9b::/96`), 6to4 (`2002::/16`) and Teredo
/// (`2001::/32`) addresses are judged as the IPv4 address(es) they embed (see
/// [`embedded_ipv4s`]), so they need no entries of their own.
pub fn default_denied() -> &'static [Cidr] {
    &DEFAULT_DENIED
}

/// An inclusive range of ports, `first <= last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortSpan {
    /// The first port.
    pub first: u16,
    /// The last port (inclusive).
    pub last: u16,
}

impl PortSpan {
    /// True if `port` lies in the span.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// Why a string is not a `[peers]` entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerEntryError {
    /// The address part is not a CIDR block.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// The part after the block's `:` is not a port or a `FIRST-LAST` range of ports.
    #[error(
        "invalid peer entry `{input}`: `{ports}` is not a port or a FIRST-LAST port range \
         (1-65535, FIRST <= LAST)"
    )]
    Ports {
        /// The whole string that was parsed.
        input: String,
        /// The port part.
        ports: String,
    },
    /// An IPv6 block with ports must be bracketed: `[2001:db8::]/32:443`.
    #[error("invalid peer entry `{input}`: write an IPv6 block with ports as `[ADDR]/LEN:PORTS`")]
    Brackets {
        /// The whole string that was parsed.
        input: String,
    },
}

/// One `[peers]` entry: a block of addresses and, optionally, the ports it covers.
///
/// Written `"10.1.0.0/16"`, `"192.0.2.1"`, `"2001:db8::/32"` (every port), or with ports
/// `"203.0.113.0/24:443"`, `"192.0.2.1:3000-3999"`, `"[2001:db8::]/32:8000-8100"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerEntry {
    /// The addresses.
    pub cidr: Cidr,
    /// The ports; `None` is every port.
    pub ports: Option<PortSpan>,
}

impl PeerEntry {
    /// True if the entry covers `ip` taken literally, on `port` (`None`: any port counts only
    /// for an entry without ports).
    fn covers(&self, ip: IpAddr, port: Option<u16>) -> bool {
        let ports_match = match (self.ports, port) {
            (None, _) => true,
            (Some(span), Some(port)) => span.contains(port),
            (Some(_), None) => false,
        };
        ports_match && self.cidr.contains_exactly(ip)
    }
}

impl PeerEntry {
    /// True when the block is one address (`/32`, `/128`).
    pub fn is_single_address(&self) -> bool {
        let full = if self.cidr.addr().is_ipv4() { 32 } else { 128 };
        self.cidr.prefix() == full
    }
}

impl From<Cidr> for PeerEntry {
    fn from(cidr: Cidr) -> PeerEntry {
        PeerEntry { cidr, ports: None }
    }
}

impl FromStr for PeerEntry {
    type Err = PeerEntryError;

    fn from_str(input: &str) -> Result<PeerEntry, PeerEntryError> {
        let text = input.trim();
        let (block, ports): (String, Option<&str>) = if let Some(rest) = text.strip_prefix('[') {
            let (addr, after) = rest
                .split_once(']')
                .ok_or_else(|| PeerEntryError::Brackets {
                    input: input.to_owned(),
                })?;
            let (prefix, ports) = match after.split_once(':') {
                Some((prefix, ports)) => (prefix, Some(ports)),
                None => (after, None),
            };
            if !prefix.is_empty() && !prefix.starts_with('/') {
                return Err(PeerEntryError::Brackets {
                    input: input.to_owned(),
                });
            }
            (format!("{addr}{prefix}"), ports)
        } else if text.contains('.') && text.matches(':').count() == 1 {
            // IPv4 with ports (an IPv6 address has at least two colons).
            let (block, ports) = text.split_once(':').unwrap_or((text, ""));
            (block.to_owned(), Some(ports))
        } else {
            (text.to_owned(), None)
        };
        let cidr: Cidr = block.parse().map_err(|e| match e {
            // Report the whole entry, not the part.
            CidrError::InvalidAddress { address, .. } => CidrError::InvalidAddress {
                input: input.to_owned(),
                address,
            },
            CidrError::InvalidPrefix { prefix, .. } => CidrError::InvalidPrefix {
                input: input.to_owned(),
                prefix,
            },
            CidrError::PrefixTooLong { prefix, max, .. } => CidrError::PrefixTooLong {
                input: input.to_owned(),
                prefix,
                max,
            },
        })?;
        let ports = match ports {
            None => None,
            Some(text) => Some(parse_ports(text).ok_or_else(|| PeerEntryError::Ports {
                input: input.to_owned(),
                ports: text.to_owned(),
            })?),
        };
        Ok(PeerEntry { cidr, ports })
    }
}

/// `PORT` or `FIRST-LAST`, ports 1-65535, `FIRST <= LAST`.
fn parse_ports(text: &str) -> Option<PortSpan> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let port = |t: &str| -> Option<u16> {
        let t = t.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse::<u16>().ok().filter(|p| *p > 0)
    };
    let (first, last) = (port(first)?, port(last)?);
    (first <= last).then_some(PortSpan { first, last })
}

impl TryFrom<String> for PeerEntry {
    type Error = PeerEntryError;

    fn try_from(value: String) -> Result<PeerEntry, PeerEntryError> {
        value.parse()
    }
}

impl fmt::Display for PeerEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ports, self.cidr.addr()) {
            (None, _) => write!(f, "{}", self.cidr),
            (Some(p), addr) => {
                if addr.is_ipv6() {
                    write!(f, "[{}]/{}", addr, self.cidr.prefix())?;
                } else {
                    write!(f, "{}", self.cidr)?;
                }
                if p.first == p.last {
                    write!(f, ":{}", p.first)
                } else {
                    write!(f, ":{}-{}", p.first, p.last)
                }
            }
        }
    }
}

/// A policy's answer for an address whose port is not known (a permission covers every port
/// of an IP, RFC 8656 §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every port is permitted.
    Permit,
    /// No port is permitted.
    Deny,
    /// Some ports are: each packet's port must be judged ([`PeerPolicy::permits_addr`]).
    DependsOnPort,
}

/// Decides which peer addresses clients may relay to (CreatePermission, ChannelBind, Send,
/// Connect).
///
/// See the module documentation for the rules. Cheap to clone and to query; built once per
/// configuration load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    allow: Vec<PeerEntry>,
    deny: Vec<PeerEntry>,
}

impl PeerPolicy {
    /// A policy from the operator's `allow` and `deny` blocks (the built-in ranges are always
    /// denied in addition to `deny`, unless allowed).
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> PeerPolicy {
        PeerPolicy::with_entries(
            allow.into_iter().map(PeerEntry::from).collect(),
            deny.into_iter().map(PeerEntry::from).collect(),
        )
    }

    /// A policy from `[peers]` entries, which may carry port ranges.
    pub fn with_entries(allow: Vec<PeerEntry>, deny: Vec<PeerEntry>) -> PeerPolicy {
        PeerPolicy { allow, deny }
    }

    /// The operator's allow list.
    pub fn allow(&self) -> &[PeerEntry] {
        &self.allow
    }

    /// The operator's deny list (without the built-in ranges).
    pub fn deny(&self) -> &[PeerEntry] {
        &self.deny
    }

    /// True if a client may relay to `ip` on some port.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.verdict(ip) != Verdict::Deny
    }

    /// True if a client may relay to `peer` (address and port).
    pub fn permits_addr(&self, peer: SocketAddr) -> bool {
        self.judge(peer.ip(), Some(peer.port())) == Verdict::Permit
    }

    /// What the policy says about `ip` when the port is not known.
    pub fn verdict(&self, ip: IpAddr) -> Verdict {
        self.judge(ip, None)
    }

    /// True if an operator `allow` entry names `peer`'s address itself (a single address,
    /// `/32` or `/128`, literally or through the IPv4 address it embeds) on its port: the
    /// operator asked for exactly this address, so it is permitted even where the server
    /// would otherwise refuse it (one of its own addresses). An allow *range* that merely
    /// contains one of the host's addresses does not open it.
    pub fn allows_explicitly(&self, peer: SocketAddr) -> bool {
        let port = Some(peer.port());
        let covered = |ip: IpAddr| {
            self.allow
                .iter()
                .any(|e| e.is_single_address() && e.covers(ip, port))
        };
        covered(peer.ip())
            || embedded_ipv4s(peer.ip())
                .into_iter()
                .flatten()
                .any(|v4| covered(v4.into()))
    }

    /// True if an operator `allow` entry names `ip` itself (a single address, literally or
    /// through the IPv4 address it embeds) on at least one port.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let covered = |ip: IpAddr| {
            self.allow
                .iter()
                .any(|e| e.is_single_address() && e.cidr.contains_exactly(ip))
        };
        covered(ip)
            || embedded_ipv4s(ip)
                .into_iter()
                .flatten()
                .any(|v4| covered(v4.into()))
    }

    fn judge(&self, ip: IpAddr, port: Option<u16>) -> Verdict {
        if self.allow.iter().any(|e| e.covers(ip, port)) {
            return Verdict::Permit;
        }
        let mut verdict = self.judge_one(ip, port);
        for v4 in embedded_ipv4s(ip).into_iter().flatten() {
            verdict = match (verdict, self.judge_one(v4.into(), port)) {
                (Verdict::Deny, _) | (_, Verdict::Deny) => Verdict::Deny,
                (Verdict::DependsOnPort, _) | (_, Verdict::DependsOnPort) => Verdict::DependsOnPort,
                _ => Verdict::Permit,
            };
        }
        verdict
    }

    /// The verdict for one address taken literally.
    fn judge_one(&self, ip: IpAddr, port: Option<u16>) -> Verdict {
        if self.allow.iter().any(|e| e.covers(ip, port)) {
            return Verdict::Permit;
        }
        let denied = self.deny.iter().any(|e| e.covers(ip, port))
            || DEFAULT_DENIED.iter().any(|c| c.contains_exactly(ip));
        if port.is_some() {
            return if denied {
                Verdict::Deny
            } else {
                Verdict::Permit
            };
        }
        // Port unknown: entries with ports make the answer depend on it.
        let with_ports = |list: &[PeerEntry]| {
            list.iter()
                .any(|e| e.ports.is_some() && e.cidr.contains_exactly(ip))
        };
        match (denied, with_ports(&self.allow), with_ports(&self.deny)) {
            (true, false, _) => Verdict::Deny,
            (true, true, _) | (false, _, true) => Verdict::DependsOnPort,
            (false, _, false) => Verdict::Permit,
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
