//! The host's interface addresses: every one of them (the peer policy refuses them), the
//! relayed address to advertise when the operator did not set one, and the addresses a
//! wildcard UDP listener binds one socket to each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Every address on the host's interfaces, both families, loopback and link-local included,
/// read from `getifaddrs` (no packet is sent). Empty when it cannot be read.
pub fn interface_addresses() -> Vec<IpAddr> {
    named_interface_addresses()
        .into_iter()
        .map(|(_, ip)| ip)
        .collect()
}

/// Like [`interface_addresses`], with the name of the interface each address is on.
pub fn named_interface_addresses() -> Vec<(String, IpAddr)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr whose family says its size.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        let ip = match family {
            libc::AF_INET => {
                // SAFETY: the family is AF_INET, so this is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: the family is AF_INET6, so this is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        let name = if ifa.ifa_name.is_null() {
            String::new()
        } else {
            // SAFETY: ifa_name is a NUL-terminated string alive until freeifaddrs.
            unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
                .to_string_lossy()
                .into_owned()
        };
        found.push((name, ip));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found
}

/// True for the interfaces container runtimes and hypervisors make for their guests (Docker,
/// Podman, libvirt, LXC, CNI plugins): their addresses are reachable only from this host.
pub fn is_container_bridge(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "docker", "br-", "virbr", "lxcbr", "lxdbr", "podman", "cni", "flannel", "cali", "weave",
        "kube-", "veth", "vmnet", "vboxnet",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The address to advertise for relays of `v6`'s family when the operator set neither
/// `relay.external_ip(v6)` nor a specific `relay.bind_ip(v6)`: never a loopback, link-local or
/// container-bridge address; a global one before a private (RFC 1918, CGNAT, ULA) one. Returns
/// it with its interface's name, or `None` when the host has none.
pub fn advertisable_address(v6: bool, interfaces: &[(String, IpAddr)]) -> Option<(String, IpAddr)> {
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(a) => !(v6 || a.is_loopback() || a.is_link_local() || a.is_unspecified()),
        IpAddr::V6(a) => {
            v6 && !(a.is_loopback()
                || a.is_unicast_link_local()
                || a.is_unspecified()
                || a.to_ipv4_mapped().is_some())
        }
    };
    let private = |ip: &IpAddr| match ip {
        IpAddr::V4(a) => a.is_private() || (a.octets()[0] == 100 && a.octets()[1] & 0xc0 == 64),
        IpAddr::V6(a) => a.is_unique_local(),
    };
    let candidates = || {
        interfaces
            .iter()
            .filter(|(name, ip)| usable(ip) && !is_container_bridge(name))
    };
    candidates()
        .find(|(_, ip)| !private(ip))
        .or_else(|| candidates().next())
        .cloned()
}

/// The addresses a UDP listener configured on `addr` binds, one socket each: `addr` itself
/// when it names an address; for a wildcard (`0.0.0.0`, `[::]`), every address of its family
/// on the host's interfaces (IPv6 link-local ones, which need a scope, left out). A socket
/// bound to one address sends its answers from that address, which is the one the client sent
/// to (a wildcard socket would let the kernel pick the source by route, which on a host with
/// several addresses may be another one, and the client's NAT or firewall drops the answer);
/// and the 5-tuple records the address the client reached. When no interface address can be
/// read, the wildcard itself.
pub fn listener_addresses(addr: SocketAddr, interfaces: &[IpAddr]) -> Vec<SocketAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr];
    }
    let mut out: Vec<SocketAddr> = interfaces
        .iter()
        .filter(|ip| match (ip, addr.ip()) {
            (IpAddr::V4(a), IpAddr::V4(_)) => !a.is_unspecified(),
            (IpAddr::V6(a), IpAddr::V6(_)) => {
                !(a.is_unspecified() || a.is_unicast_link_local() || a.to_ipv4_mapped().is_some())
            }
            _ => false,
        })
        .map(|ip| SocketAddr::new(*ip, addr.port()))
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() { vec![addr] } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_interface_is_listed() {
        let all = interface_addresses();
        assert!(all.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{all:?}");
    }

    fn named(list: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        list.iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn never_advertises_loopback_link_local_or_a_container_bridge() {
        let host = named(&[
            ("lo", "127.0.0.1"),
            ("docker0", "172.17.0.1"),
            ("eth0", "169.254.3.4"),
            ("lo", "::1"),
            ("eth0", "fe80::1"),
        ]);
        assert_eq!(advertisable_address(false, &host), None);
        assert_eq!(advertisable_address(true, &host), None);
        let lan = named(&[
            ("lo", "127.0.0.1"),
            ("br-1a2b", "172.18.0.1"),
            ("eth0", "192.168.1.5"),
        ]);
        assert_eq!(
            advertisable_address(false, &lan).map(|(_, ip)| ip),
            Some("192.168.1.5".parse().unwrap())
        );
    }

    #[test]
    fn a_global_address_is_advertised_before_a_private_one() {
        let host = named(&[
            ("eth0", "10.0.0.5"),
            ("eth1", "100.64.0.9"),
            ("eth2", "198.51.100.7"),
            ("eth0", "fd00::5"),
            ("eth0", "2001:db8::5"),
        ]);
        assert_eq!(
            advertisable_address(false, &host),
            Some(("eth2".into(), "198.51.100.7".parse().unwrap()))
        );
        assert_eq!(
            advertisable_address(true, &host).map(|(_, ip)| ip),
            Some("2001:db8::5".parse().unwrap())
        );
    }

    #[test]
    fn a_wildcard_listener_binds_each_address_of_its_family() {
        let ips: Vec<IpAddr> = [
            "127.0.0.1",
            "192.0.2.1",
            "192.0.2.2",
            "::1",
            "fe80::1",
            "2001:db8::1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let v4 = listener_addresses("0.0.0.0:3478".parse().unwrap(), &ips);
        assert_eq!(
            v4,
            ["127.0.0.1:3478", "192.0.2.1:3478", "192.0.2.2:3478"]
                .map(|s| s.parse::<SocketAddr>().unwrap())
        );
        let v6 = listener_addresses("[::]:3478".parse().unwrap(), &ips);
        assert_eq!(
            v6,
            ["[::1]:3478", "[2001:db8::1]:3478"].map(|s| s.parse::<SocketAddr>().unwrap())
        );
        let one: SocketAddr = "192.0.2.2:3478".parse().unwrap();
        assert_eq!(listener_addresses(one, &ips), vec![one]);
        let wild: SocketAddr = "0.0.0.0:3478".parse().unwrap();
        assert_eq!(
            listener_addresses(wild, &[]),
            vec![wild],
            "nothing known: the wildcard"
        );
    }
}
