//! Tests for the peer policy.

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn default_policy() -> PeerPolicy {
    PeerPolicy::new(Vec::new(), Vec::new())
}

#[test]
fn parses_blocks_and_bare_addresses() {
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    assert_eq!(cidr("::1/128").to_string(), "::1/128");
    assert_eq!(cidr("192.0.2.7").to_string(), "192.0.2.7/32");
    assert_eq!(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
    assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert_eq!(cidr("::/0").to_string(), "::/0");
    assert_eq!(cidr(" 10.0.0.0/8 ").prefix(), 8);
}

#[test]
fn host_bits_are_masked() {
    assert_eq!(cidr("10.1.2.3/8"), cidr("10.0.0.0/8"));
    assert_eq!(cidr("10.1.2.3/8").addr(), ip("10.0.0.0"));
    assert_eq!(cidr("2001:db8::ffff/32").to_string(), "2001:db8::/32");
    assert_eq!(cidr("172.31.255.255/12").to_string(), "172.16.0.0/12");
}

#[test]
fn mapped_blocks_become_ipv4_blocks() {
    assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
    assert_eq!(cidr("::ffff:127.0.0.1"), cidr("127.0.0.1/32"));
    // Shorter than /96 it is an IPv6 block.
    assert_eq!(cidr("::ffff:0:0/95").to_string(), "::fffe:0:0/95");
}

#[test]
fn parse_errors_are_reported() {
    assert!(matches!(
        "10.0.0.0/33".parse::<Cidr>(),
        Err(CidrError::PrefixTooLong {
            prefix: 33,
            max: 32,
            ..
        })
    ));
    assert!(matches!(
        "::/129".parse::<Cidr>(),
        Err(CidrError::PrefixTooLong {
            prefix: 129,
            max: 128,
            ..
        })
    ));
    assert!(matches!(
        "::/99999999999999999999".parse::<Cidr>(),
        Err(CidrError::PrefixTooLong { .. })
    ));
    for bad_prefix in [
        "10.0.0.0/",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/8/8",
        "10.0.0.0/ 8",
        "10.0.0.0/x",
    ] {
        assert!(
            matches!(
                bad_prefix.parse::<Cidr>(),
                Err(CidrError::InvalidPrefix { .. })
            ),
            "{bad_prefix}"
        );
    }
    for bad_address in [
        "",
        "/8",
        "10.0.0/8",
        "example.org/8",
        "10.0.0.256",
        "[::1]/128",
        "fe80::1%eth0",
    ] {
        assert!(
            matches!(
                bad_address.parse::<Cidr>(),
                Err(CidrError::InvalidAddress { .. })
            ),
            "{bad_address}"
        );
    }
    let message = "10.0.0.0/40".parse::<Cidr>().unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid CIDR `10.0.0.0/40`: prefix length 40 is longer than 32 bits"
    );
}

#[test]
fn constructor_checks_the_prefix() {
    assert_eq!(
        Cidr::new(ip("10.0.0.0"), 33),
        Err(PrefixTooLong {
            prefix: 33,
            max: 32
        })
    );
    assert!(Cidr::new(ip("::"), 128).is_ok());
    assert_eq!(Cidr::host(ip("192.0.2.1")).to_string(), "192.0.2.1/32");
    assert_eq!(
        Cidr::host(ip("::ffff:192.0.2.1")).to_string(),
        "192.0.2.1/32"
    );
}

#[test]
fn deserializes_from_a_string() {
    #[derive(Debug, Deserialize)]
    struct Holder {
        blocks: Vec<Cidr>,
    }
    let holder: Holder = toml::from_str(r#"blocks = ["10.0.0.0/8", "::1"]"#).unwrap();
    assert_eq!(holder.blocks, vec![cidr("10.0.0.0/8"), cidr("::1/128")]);
    let error = toml::from_str::<Holder>(r#"blocks = ["10.0.0.0/99"]"#).unwrap_err();
    assert!(error.message().contains("prefix length 99"), "{error}");
}

#[test]
fn containment() {
    let private = cidr("10.0.0.0/8");
    assert!(private.contains(ip("10.0.0.0")));
    assert!(private.contains(ip("10.255.255.255")));
    assert!(!private.contains(ip("11.0.0.0")));
    assert!(!private.contains(ip("9.255.255.255")));
    assert!(private.contains(ip("::ffff:10.1.2.3")));
    assert!(!private.contains(ip("2001:db8::a00:1")));
    assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
    assert!(cidr("::/0").contains(ip("2001:db8::1")));
    assert!(cidr("fe80::/10").contains(ip("febf:ffff::1")));
    assert!(!cidr("fe80::/10").contains(ip("fec0::1")));
    assert!(cidr("192.0.2.1").contains(ip("192.0.2.1")));
    assert!(!cidr("192.0.2.1").contains(ip("192.0.2.2")));
}

#[test]
fn every_default_class_is_denied() {
    let policy = default_policy();
    for denied in [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.100.100.200",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.255.254",
        "169.254.169.254",
        "169.254.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "64:ff9b:1::a00:1",
        "168.63.129.16",
        "100::1",
        "100::ffff:ffff:ffff:ffff",
        "fec0::1",
        "feff::1",
    ] {
        assert!(!policy.permits(ip(denied)), "{denied} should be denied");
    }
}

#[test]
fn public_addresses_are_permitted() {
    let policy = default_policy();
    for permitted in [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.255",
        "192.0.2.1",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "203.0.113.7",
        "223.255.255.255",
        "2001:4860:4860::8888",
        "2606:4700::1111",
        "2001:db8::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "168.63.129.15",
        "168.63.129.17",
        "100:0:0:1::1",
        "::ffff:0:808:808",
        "2002:808:808::1",
        // Teredo: server 8.8.8.8, client (complemented) 1.1.1.1.
        "2001:0:808:808:8000:ffff:fefe:fefe",
    ] {
        assert!(
            policy.permits(ip(permitted)),
            "{permitted} should be permitted"
        );
    }
}

#[test]
fn ipv6_spellings_of_ipv4_are_judged_as_ipv4() {
    let policy = default_policy();
    for denied in [
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        "::127.0.0.1",
        "::10.0.0.1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
    ] {
        assert!(!policy.permits(ip(denied)), "{denied} should be denied");
    }
    assert_eq!(
        embedded_ipv4(ip("::ffff:1.2.3.4")),
        Some(Ipv4Addr::new(1, 2, 3, 4))
    );
    assert_eq!(
        embedded_ipv4(ip("::1.2.3.4")),
        Some(Ipv4Addr::new(1, 2, 3, 4))
    );
    assert_eq!(
        embedded_ipv4(ip("64:ff9b::1.2.3.4")),
        Some(Ipv4Addr::new(1, 2, 3, 4))
    );
    assert_eq!(embedded_ipv4(ip("::")), None);
    assert_eq!(embedded_ipv4(ip("::1")), None);
    assert_eq!(embedded_ipv4(ip("1.2.3.4")), None);
    assert_eq!(embedded_ipv4(ip("2001:db8::1.2.3.4")), None);
}

#[test]
fn allow_overrides_built_in_and_operator_denies() {
    let policy = PeerPolicy::new(
        vec![cidr("127.0.0.1/32"), cidr("10.1.0.0/16"), cidr("::1")],
        vec![cidr("10.0.0.0/8")],
    );
    assert!(policy.permits(ip("127.0.0.1")));
    assert!(
        policy.permits(ip("::ffff:127.0.0.1")),
        "mapped forms are allowed too"
    );
    assert!(!policy.permits(ip("127.0.0.2")));
    assert!(policy.permits(ip("10.1.2.3")));
    assert!(!policy.permits(ip("10.2.0.1")));
    assert!(policy.permits(ip("::1")));
    assert_eq!(policy.allow().len(), 3);
    assert_eq!(policy.deny(), &[PeerEntry::from(cidr("10.0.0.0/8"))]);
}

#[test]
fn allow_written_as_mapped_ipv6_matches_plain_ipv4() {
    let policy = PeerPolicy::new(vec![cidr("::ffff:127.0.0.1")], Vec::new());
    assert!(policy.permits(ip("127.0.0.1")));
    assert!(policy.permits(ip("::ffff:127.0.0.1")));
}

#[test]
fn operator_deny_blocks_public_addresses() {
    let policy = PeerPolicy::new(
        Vec::new(),
        vec![cidr("203.0.113.0/24"), cidr("2606:4700::/32")],
    );
    assert!(!policy.permits(ip("203.0.113.7")));
    assert!(!policy.permits(ip("::ffff:203.0.113.7")));
    assert!(!policy.permits(ip("64:ff9b::203.0.113.7")));
    assert!(!policy.permits(ip("2606:4700::1111")));
    assert!(policy.permits(ip("198.51.100.1")));
}

#[test]
fn allow_everything_opens_every_class() {
    let policy = PeerPolicy::new(vec![cidr("0.0.0.0/0"), cidr("::/0")], Vec::new());
    for address in DEFAULT_DENIED.iter().map(Cidr::addr) {
        assert!(policy.permits(address), "{address}");
    }
}

#[test]
fn default_denied_lists_valid_blocks() {
    for block in default_denied() {
        let reparsed: Cidr = block.to_string().parse().unwrap();
        assert_eq!(&reparsed, block);
    }
    assert!(default_denied().contains(&cidr("169.254.0.0/16")));
    assert!(default_denied().contains(&cidr("fd00:ec2::254")));
}

#[test]
fn every_ipv6_form_of_ipv4_is_judged_as_its_ipv4() {
    let policy = default_policy();
    // 127.0.0.1 = 7f00:0001, 169.254.169.254 = a9fe:a9fe, 10.0.0.1 = 0a00:0001,
    // 168.63.129.16 = a83f:8110; a Teredo client is stored complemented.
    for denied in [
        "::ffff:0:127.0.0.1",
        "::ffff:0:a9fe:a9fe",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe:1::5",
        "2002:a00:1::",
        "2002:a83f:8110::1",
        // Teredo with a denied server (10.0.0.1) and a public client (1.1.1.1).
        "2001:0:a00:1:8000:ffff:fefe:fefe",
        // Teredo with a public server (8.8.8.8) and a denied client (127.0.0.1).
        "2001:0:808:808:8000:ffff:80ff:fffe",
        // ... and a metadata client 169.254.169.254.
        "2001:0:808:808:0:0:5601:5601",
    ] {
        assert!(!policy.permits(ip(denied)), "{denied} should be denied");
    }
    assert_eq!(
        embedded_ipv4s(ip("2001:0:808:808:8000:ffff:80ff:fffe")),
        [
            Some(Ipv4Addr::new(8, 8, 8, 8)),
            Some(Ipv4Addr::new(127, 0, 0, 1))
        ]
    );
    assert_eq!(
        embedded_ipv4(ip("2002:7f00:1::1")),
        Some(Ipv4Addr::new(127, 0, 0, 1))
    );
    assert_eq!(
        embedded_ipv4(ip("::ffff:0:1.2.3.4")),
        Some(Ipv4Addr::new(1, 2, 3, 4))
    );
    // An allow entry for the IPv4 address opens its IPv6 forms too.
    let policy = PeerPolicy::new(vec![cidr("127.0.0.1")], vec![]);
    assert!(policy.permits(ip("2002:7f00:1::1")));
    assert!(policy.permits(ip("::ffff:0:127.0.0.1")));
}

fn entry(text: &str) -> PeerEntry {
    text.parse().unwrap()
}

#[test]
fn entries_with_ports_parse_and_print() {
    let e = entry("203.0.113.0/24:443");
    assert_eq!(e.cidr, cidr("203.0.113.0/24"));
    assert_eq!(
        e.ports,
        Some(PortSpan {
            first: 443,
            last: 443
        })
    );
    let e = entry("[2001:db8::]/32:8000-8100");
    assert_eq!(e.cidr, cidr("2001:db8::/32"));
    assert_eq!(
        e.ports,
        Some(PortSpan {
            first: 8000,
            last: 8100
        })
    );
    assert_eq!(e.to_string(), "[2001:db8::]/32:8000-8100");
    assert_eq!(entry("192.0.2.1:80").to_string(), "192.0.2.1/32:80");
    assert_eq!(entry("10.0.0.0/8").ports, None);
    assert_eq!(entry("2001:db8::/32").ports, None);
    assert_eq!(entry("::ffff:10.0.0.0/104").cidr, cidr("10.0.0.0/8"));
    assert_eq!(entry("[::1]:53").cidr, cidr("::1"));
    for bad in [
        "10.0.0.0/8:",
        "10.0.0.0/8:0",
        "10.0.0.0/8:70000",
        "10.0.0.0/8:9-8",
        "10.0.0.0/8:a",
        "[2001:db8::/32:80",
        "[2001:db8::]x:80",
        "nonsense:80",
    ] {
        assert!(bad.parse::<PeerEntry>().is_err(), "{bad} should not parse");
    }
}

#[test]
fn ports_narrow_allow_and_deny_entries() {
    let sa = |t: &str| t.parse::<std::net::SocketAddr>().unwrap();
    let policy = PeerPolicy::with_entries(
        vec![entry("10.1.0.0/16:443"), entry("[fd00::]/8:8000-8100")],
        vec![entry("203.0.113.0/24:22")],
    );
    assert!(policy.permits_addr(sa("10.1.2.3:443")));
    assert!(!policy.permits_addr(sa("10.1.2.3:444")));
    assert!(policy.permits_addr(sa("[fd00::1]:8050")));
    assert!(!policy.permits_addr(sa("[fd00::1]:7999")));
    assert!(!policy.permits_addr(sa("203.0.113.9:22")));
    assert!(policy.permits_addr(sa("203.0.113.9:23")));
    assert!(policy.permits_addr(sa("[::ffff:10.1.2.3]:443")));
    // Without a port, an address some ports of which are open depends on the port.
    assert_eq!(policy.verdict(ip("10.1.2.3")), Verdict::DependsOnPort);
    assert_eq!(policy.verdict(ip("203.0.113.9")), Verdict::DependsOnPort);
    assert_eq!(policy.verdict(ip("10.2.0.1")), Verdict::Deny);
    assert_eq!(policy.verdict(ip("198.51.100.1")), Verdict::Permit);
    // Only an entry naming the address itself counts as naming it (the host's own addresses).
    assert!(!policy.allows_ip(ip("10.1.2.3")));
    assert!(!policy.allows_explicitly(sa("10.1.2.3:443")));
    let single = PeerPolicy::with_entries(vec![entry("10.1.2.3:443")], vec![]);
    assert!(single.allows_ip(ip("10.1.2.3")));
    assert!(single.allows_ip(ip("::ffff:10.1.2.3")));
    assert!(!single.allows_explicitly(sa("10.1.2.3:80")));
    assert!(single.allows_explicitly(sa("10.1.2.3:443")));
}
