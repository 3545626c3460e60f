//! The BPF object, its program and its maps (layouts mirror xdp/relay.bpf.c).

use std::net::{Ipv4Addr, SocketAddrV4};

use aya::maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray};
use aya::programs::{Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader, Pod};

use super::XdpError;

/// The object build.rs compiled, when clang was there.
#[cfg(turnpike_xdp_object)]
const OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/relay.bpf.o"
)));
#[cfg(not(turnpike_xdp_object))]
const OBJECT: Option<&[u8]> = None;

/// Interfaces the program can be attached to (MAX_IFACES in the program).
pub const MAX_INTERFACES: usize = 8;

/// Channels the maps hold (MAX_CHANNELS in the program).
pub const MAX_CHANNELS: u32 = 65536;

/// Client → peer key: the client's datagram as it arrives (network byte order throughout).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct C2pKey {
    client_ip: u32,
    server_ip: u32,
    client_port: u16,
    server_port: u16,
    channel: u16,
    pad: u16,
}

/// Client → peer value: the datagram to send instead, and the entry's counters and expiry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct C2pVal {
    relay_ip: u32,
    peer_ip: u32,
    relay_port: u16,
    peer_port: u16,
    slot: u32,
    expires_ns: u64,
}

/// Peer → client key: the peer's datagram to the relay address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct P2cKey {
    peer_ip: u32,
    relay_ip: u32,
    peer_port: u16,
    relay_port: u16,
}

/// Peer → client value: the ChannelData to send instead, and the entry's counters and expiry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct P2cVal {
    server_ip: u32,
    client_ip: u32,
    server_port: u16,
    client_port: u16,
    channel: u16,
    pad: u16,
    slot: u32,
    pad2: u32,
    expires_ns: u64,
}

/// Per-channel counters: packets and payload bytes, client → peer then peer → client.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets per direction.
    pub packets: [u64; 2],
    /// Payload bytes per direction.
    pub bytes: [u64; 2],
}

// SAFETY: plain #[repr(C)] integers with explicit padding fields: every byte pattern is valid.
unsafe impl Pod for C2pKey {}
// SAFETY: as above.
unsafe impl Pod for C2pVal {}
// SAFETY: as above.
unsafe impl Pod for P2cKey {}
// SAFETY: as above.
unsafe impl Pod for P2cVal {}
// SAFETY: as above.
unsafe impl Pod for Counters {}

fn ip(addr: &SocketAddrV4) -> u32 {
    u32::from_ne_bytes(addr.ip().octets())
}

/// One channel as the program sees it: both keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Client → peer.
    pub c2p: (C2pKey, C2pVal),
    /// Peer → client.
    pub p2c: (P2cKey, P2cVal),
}

/// The addresses of one channel (IPv4 only).
pub struct Addresses {
    /// The client.
    pub client: SocketAddrV4,
    /// The listener the client sends to.
    pub server: SocketAddrV4,
    /// The relay socket's bound address.
    pub relay: SocketAddrV4,
    /// The peer.
    pub peer: SocketAddrV4,
}

impl Entry {
    /// The keys and values for a channel, counting into `slot`, valid until `expires_ns`
    /// (CLOCK_MONOTONIC).
    pub fn new(a: &Addresses, channel: u16, slot: u32, expires_ns: u64) -> Entry {
        let c2p_key = C2pKey {
            client_ip: ip(&a.client),
            server_ip: ip(&a.server),
            client_port: a.client.port().to_be(),
            server_port: a.server.port().to_be(),
            channel: channel.to_be(),
            pad: 0,
        };
        let c2p_val = C2pVal {
            relay_ip: ip(&a.relay),
            peer_ip: ip(&a.peer),
            relay_port: a.relay.port().to_be(),
            peer_port: a.peer.port().to_be(),
            slot,
            expires_ns,
        };
        let p2c_key = P2cKey {
            peer_ip: ip(&a.peer),
            relay_ip: ip(&a.relay),
            peer_port: a.peer.port().to_be(),
            relay_port: a.relay.port().to_be(),
        };
        let p2c_val = P2cVal {
            server_ip: ip(&a.server),
            client_ip: ip(&a.client),
            server_port: a.server.port().to_be(),
            client_port: a.client.port().to_be(),
            channel: channel.to_be(),
            pad: 0,
            slot,
            pad2: 0,
            expires_ns,
        };
        Entry {
            c2p: (c2p_key, c2p_val),
            p2c: (p2c_key, p2c_val),
        }
    }

    /// True when `other` has the same keys (an update of the same channel).
    pub fn same_keys(&self, other: &Entry) -> bool {
        self.c2p.0 == other.c2p.0 && self.p2c.0 == other.p2c.0
    }
}

/// What the program did with packets that matched an entry, summed over CPUs (the OUTCOMES
/// map: rewritten, or left to the kernel stack and why).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// ChannelData rewritten into peer datagrams.
    pub client_to_peer: u64,
    /// Peer datagrams rewritten into ChannelData.
    pub peer_to_client: u64,
    /// Matched an entry past its expiry.
    pub expired: u64,
    /// No route, an unresolved neighbour, or an egress interface without the program.
    pub no_route: u64,
    /// A ChannelData length or padding the program does not handle.
    pub shape: u64,
}

/// The loaded object: the program stays attached while this lives (aya's links detach when
/// dropped, and the kernel detaches them when the process exits).
pub struct Maps {
    _ebpf: Ebpf,
    c2p: HashMap<MapData, C2pKey, C2pVal>,
    p2c: HashMap<MapData, P2cKey, P2cVal>,
    counters: Array<MapData, Counters>,
    outcomes: PerCpuArray<MapData, u64>,
    /// Counter slots given back, and the next never used.
    free: Vec<u32>,
    next: u32,
}

fn take<T>(
    ebpf: &mut Ebpf,
    name: &str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, aya::maps::MapError>,
) -> Result<T, XdpError> {
    let map = ebpf.take_map(name).ok_or_else(|| XdpError::Step {
        step: format!("finding map {name}"),
        detail: "not in the object".into(),
    })?;
    convert(map).map_err(|e| XdpError::step(format!("opening map {name}"), &e))
}

impl Maps {
    /// Loads the program, attaches it to `interfaces` and opens its maps.
    pub fn load(interfaces: &[String]) -> Result<Maps, XdpError> {
        let object = OBJECT.ok_or(XdpError::NotBuilt)?;
        let mut ifindexes = Vec::with_capacity(interfaces.len());
        for name in interfaces {
            let c_name = std::ffi::CString::new(name.as_str()).map_err(|_| XdpError::Step {
                step: format!("interface {name:?}"),
                detail: "not a valid name".into(),
            })?;
            // SAFETY: a NUL-terminated string that lives across the call.
            let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
            if index == 0 {
                return Err(XdpError::step(
                    format!("interface {name}"),
                    &std::io::Error::last_os_error(),
                ));
            }
            ifindexes.push(index);
        }
        let mut ebpf = EbpfLoader::new()
            .load(object)
            .map_err(|e| XdpError::step("loading the BPF object (maps)", &e))?;
        let program: &mut Xdp = ebpf
            .program_mut("turnpike_relay")
            .ok_or_else(|| XdpError::Step {
                step: "finding the program".into(),
                detail: "turnpike_relay is not in the object".into(),
            })?
            .try_into()
            .map_err(|e| XdpError::step("finding the program", &e))?;
        program
            .load()
            .map_err(|e| XdpError::step("loading the program (verifier)", &e))?;
        for (name, &index) in interfaces.iter().zip(&ifindexes) {
            program
                .attach_to_if_index(index, XdpFlags::DRV_MODE)
                .map_err(|e| XdpError::step(format!("attaching to {name} (native mode)"), &e))?;
        }
        if ifindexes.len() > MAX_INTERFACES {
            return Err(XdpError::Step {
                step: "attaching".into(),
                detail: format!("at most {MAX_INTERFACES} interfaces"),
            });
        }
        let mut tx: DevMapHash<MapData> = take(&mut ebpf, "TX_PORTS", DevMapHash::try_from)?;
        let mut ifaces: Array<MapData, u32> = take(&mut ebpf, "IFACES", Array::try_from)?;
        for (i, (name, &index)) in interfaces.iter().zip(&ifindexes).enumerate() {
            tx.insert(index, index, None, 0)
                .map_err(|e| XdpError::step(format!("adding {name} to TX_PORTS"), &e))?;
            ifaces
                .set(i as u32, index, 0)
                .map_err(|e| XdpError::step(format!("adding {name} to IFACES"), &e))?;
        }
        Ok(Maps {
            c2p: take(&mut ebpf, "C2P", HashMap::try_from)?,
            p2c: take(&mut ebpf, "P2C", HashMap::try_from)?,
            counters: take(&mut ebpf, "COUNTERS", Array::try_from)?,
            outcomes: take(&mut ebpf, "OUTCOMES", PerCpuArray::try_from)?,
            _ebpf: ebpf,
            free: Vec::new(),
            next: 0,
        })
    }

    /// A counter slot, zeroed; `None` when every slot is in use.
    pub fn take_slot(&mut self) -> Option<u32> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.next < MAX_CHANNELS => {
                self.next += 1;
                self.next - 1
            }
            None => return None,
        };
        if self.counters.set(slot, Counters::default(), 0).is_err() {
            self.free.push(slot);
            return None;
        }
        Some(slot)
    }

    /// Gives a slot back.
    pub fn release_slot(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Installs (or replaces) both directions of a channel.
    pub fn insert(&mut self, entry: &Entry) -> Result<(), aya::maps::MapError> {
        self.c2p.insert(entry.c2p.0, entry.c2p.1, 0)?;
        if let Err(e) = self.p2c.insert(entry.p2c.0, entry.p2c.1, 0) {
            let _ = self.c2p.remove(&entry.c2p.0);
            return Err(e);
        }
        Ok(())
    }

    /// Removes both directions of a channel.
    pub fn remove(&mut self, entry: &Entry) {
        let _ = self.c2p.remove(&entry.c2p.0);
        let _ = self.p2c.remove(&entry.p2c.0);
    }

    /// A slot's counters (zero if it cannot be read).
    pub fn counters(&self, slot: u32) -> Counters {
        self.counters.get(&slot, 0).unwrap_or_default()
    }

    /// The program's outcome counts, summed over CPUs.
    pub fn outcomes(&self) -> Outcomes {
        let read = |i: u32| -> u64 {
            self.outcomes
                .get(&i, 0)
                .map(|per_cpu| per_cpu.iter().sum())
                .unwrap_or(0)
        };
        Outcomes {
            client_to_peer: read(0),
            peer_to_client: read(1),
            expired: read(2),
            no_route: read(3),
            shape: read(4),
        }
    }
}

/// A peer, client or relay address as the program handles it: IPv4 (an IPv4-mapped IPv6
/// address counts as its IPv4).
pub fn v4(addr: std::net::SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        std::net::SocketAddr::V4(a) => Some(a),
        std::net::SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip: Ipv4Addr| SocketAddrV4::new(ip, a.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Pod>(v: &T) -> Vec<u8> {
        // SAFETY: T is Pod (plain integers, no padding the compiler adds: sizes checked below).
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn layouts_match_the_program() {
        // The sizes of struct c2p_key, c2p_val, p2c_key, p2c_val and counters in relay.bpf.c.
        assert_eq!(std::mem::size_of::<C2pKey>(), 16);
        assert_eq!(std::mem::size_of::<C2pVal>(), 24);
        assert_eq!(std::mem::size_of::<P2cKey>(), 12);
        assert_eq!(std::mem::size_of::<P2cVal>(), 32);
        assert_eq!(std::mem::size_of::<Counters>(), 32);
    }

    #[test]
    fn keys_hold_addresses_ports_and_channels_as_on_the_wire() {
        let a = Addresses {
            client: "192.0.2.1:1000".parse().unwrap(),
            server: "192.0.2.2:3478".parse().unwrap(),
            relay: "198.51.100.1:50000".parse().unwrap(),
            peer: "198.51.100.2:7000".parse().unwrap(),
        };
        let e = Entry::new(&a, 0x4001, 5, 99);
        assert_eq!(
            bytes(&e.c2p.0),
            [
                192, 0, 2, 1, 192, 0, 2, 2, 0x03, 0xe8, 0x0d, 0x96, 0x40, 0x01, 0, 0
            ]
        );
        assert_eq!(
            bytes(&e.p2c.0),
            [198, 51, 100, 2, 198, 51, 100, 1, 0x1b, 0x58, 0xc3, 0x50]
        );
        assert_eq!(e.c2p.1.slot, 5);
        assert_eq!(e.p2c.1.expires_ns, 99);
        assert!(e.same_keys(&Entry::new(&a, 0x4001, 6, 100)));
        assert!(!e.same_keys(&Entry::new(&a, 0x4002, 5, 99)));
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        assert_eq!(
            v4("[::ffff:192.0.2.1]:5".parse().unwrap()),
            Some("192.0.2.1:5".parse().unwrap())
        );
        assert_eq!(v4("[2001:db8::1]:5".parse().unwrap()), None);
    }
}
