use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::proto::policy::{Cidr, PeerEntry};

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml")
}

/// The key and message of a validation error, or a panic naming what came instead.
fn invalid_key(text: &str) -> String {
    match parse(text) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected a validation error for {text:?}, got {other:?}"),
    }
}

const CONTRACT_EXAMPLE: &str = r#"
realm = "example.org"
[[listen]]
transport = "udp"
address = "0.0.0.0:3478"
[relay]
bind_ip = "0.0.0.0"
external_ip = "203.0.113.7"
ports = "49152-65535"
[auth]
secrets = ["new-secret", "old-secret"]
[peers]
allow = ["10.1.0.0/16"]
deny = []
[limits]
allocations_per_user = 10
allocations_total = 100000
"#;

#[test]
fn embedded_default_parses_and_equals_the_code_defaults() {
    let parsed = Config::from_toml_str(EMBEDDED_DEFAULT, EMBEDDED_ORIGIN).unwrap();
    assert_eq!(parsed, Config::default());
    assert_eq!(Config::embedded_default(), Config::default());
}

#[test]
fn default_values() {
    let config = Config::default();
    assert_eq!(config.realm, "turnpike");
    assert_eq!(
        config
            .listen
            .iter()
            .map(|l| (l.transport, l.address))
            .collect::<Vec<_>>(),
        [
            (ListenTransport::Udp, "0.0.0.0:3478"),
            (ListenTransport::Udp, "[::]:3478"),
            (ListenTransport::Tcp, "0.0.0.0:3478"),
            (ListenTransport::Tcp, "[::]:3478"),
            (ListenTransport::Tls, "0.0.0.0:5349"),
            (ListenTransport::Tls, "[::]:5349"),
        ]
        .map(|(t, a)| (t, a.parse::<SocketAddr>().unwrap()))
        .to_vec()
    );
    assert_eq!(config.relay.bind_ip, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(
        config.relay.bind_ipv6,
        Some("::".parse::<IpAddr>().unwrap())
    );
    assert_eq!(config.relay.external_ip, None);
    assert_eq!(
        config.relay.ports,
        PortRange {
            start: 49152,
            end: 65535
        }
    );
    assert!(config.auth.secrets.is_empty());
    assert!(config.auth.users.is_empty());
    assert!(!config.auth.has_credentials());
    assert_eq!(config.auth.nonce_lifetime_secs, 600);
    assert!(config.peers.allow.is_empty() && config.peers.deny.is_empty());
    let limits = &config.limits;
    assert_eq!(limits.allocations_per_user, 10);
    assert_eq!(limits.allocations_total, 100_000);
    assert_eq!(limits.bandwidth_bps, 0);
    assert_eq!(limits.max_allocation_lifetime_secs, 3600);
    assert_eq!(limits.default_allocation_lifetime_secs, 600);
    assert_eq!(limits.permissions_per_allocation, 64);
    assert_eq!(limits.channels_per_allocation, 64);
    assert_eq!(limits.unauthenticated_rate, 20);
    assert_eq!(limits.verified_credit, 1024);
    assert_eq!(limits.rate_limit_table_size, 65_536);
    assert_eq!(config.server.workers, 0);
    assert_eq!(config.server.socket_buffer_bytes, 4 * 1024 * 1024);
    assert_eq!(config.server.software, None);
    assert_eq!(config.server.drain_timeout_secs, 30);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn an_empty_file_is_the_default() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(parse("# only a comment\n\n").unwrap(), Config::default());
    assert_eq!(
        parse("[relay]\n[auth]\n[peers]\n[limits]\n[server]\n[log]\n").unwrap(),
        Config::default()
    );
}

#[test]
fn the_contract_example_parses() {
    let config = parse(CONTRACT_EXAMPLE).unwrap();
    assert_eq!(config.realm, "example.org");
    assert_eq!(config.listen.len(), 1);
    assert_eq!(config.listen[0].transport, ListenTransport::Udp);
    assert_eq!(
        config.listen[0].address,
        "0.0.0.0:3478".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        config.relay.external_ip,
        Some("203.0.113.7".parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        config.auth.secrets,
        vec!["new-secret".to_owned(), "old-secret".to_owned()]
    );
    assert_eq!(
        config.peers.allow,
        vec![PeerEntry::from("10.1.0.0/16".parse::<Cidr>().unwrap())]
    );
    assert!(config.peers.deny.is_empty());
    assert_eq!(config.limits.allocations_per_user, 10);
    assert_eq!(config.limits.allocations_total, 100_000);
    // Unwritten values keep their defaults.
    assert_eq!(config.limits.channels_per_allocation, 64);
    assert_eq!(
        config.relay.bind_ipv6,
        Some("::".parse::<IpAddr>().unwrap())
    );
    let policy = config.peer_policy();
    assert!(policy.permits("10.1.2.3".parse().unwrap()));
    assert!(!policy.permits("10.2.0.1".parse().unwrap()));
}

#[test]
fn every_field_can_be_set() {
    let config = parse(
        r#"
realm = "r"
[[listen]]
transport = "tcp"
address = "[2001:db8::1]:443"
[[listen]]
address = "192.0.2.1:3478"
[relay]
bind_ip = "192.0.2.1"
bind_ipv6 = "none"
external_ip = "203.0.113.7"
ports = "50000"
[auth]
secrets = ["s"]
nonce_lifetime_secs = 30
[auth.users]
alice = "pw"
[peers]
allow = ["127.0.0.1"]
deny = ["198.51.100.0/24"]
[limits]
allocations_per_user = 0
allocations_total = 5
bandwidth_bps = 125000
max_allocation_lifetime_secs = 60
default_allocation_lifetime_secs = 60
permissions_per_allocation = 1
channels_per_allocation = 4096
unauthenticated_rate = 0
verified_credit = 0
rate_limit_table_size = 0
[server]
workers = 2
socket_buffer_bytes = 65536
software = "turnpike test"
drain_timeout_secs = 0
[log]
level = "debug,turnpike=trace"
format = "json"
[tls]
certificate = "/etc/turnpike/fullchain.pem"
private_key = "/etc/turnpike/privkey.pem"
reload_interval_secs = 0
[connections]
max_total = 7
max_per_ip = 3
handshake_timeout_secs = 2
idle_timeout_secs = 30
"#,
    )
    .unwrap();
    assert_eq!(config.listen[0].transport, ListenTransport::Tcp);
    assert!(!config.listen[0].serve_http);
    assert_eq!(
        config.tls.certificate.as_deref(),
        Some(std::path::Path::new("/etc/turnpike/fullchain.pem"))
    );
    assert_eq!(config.tls.reload_interval_secs, 0);
    assert_eq!(
        (
            config.connections.max_total,
            config.connections.max_per_ip,
            config.connections.handshake_timeout_secs,
            config.connections.idle_timeout_secs
        ),
        (7, 3, 2, 30)
    );
    let shared =
        parse("[[listen]]\ntransport = \"tls\"\naddress = \"0.0.0.0:443\"\nserve_http = true\n")
            .unwrap();
    assert!(shared.listen[0].serve_http);
    assert_eq!(
        config.listen[1].transport,
        ListenTransport::Udp,
        "transport defaults to udp"
    );
    assert_eq!(config.relay.bind_ipv6, None);
    assert_eq!(
        config.relay.ports,
        PortRange {
            start: 50000,
            end: 50000
        }
    );
    assert_eq!(
        config.auth.users.get("alice").map(String::as_str),
        Some("pw")
    );
    assert!(config.auth.has_credentials());
    assert_eq!(config.limits.bandwidth_bps, 125_000);
    assert_eq!(config.server.software.as_deref(), Some("turnpike test"));
    assert_eq!(config.server.drain_timeout_secs, 0);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(
        parse("[relay]\nbind_ipv6 = false\n")
            .unwrap()
            .relay
            .bind_ipv6
            .is_none()
    );
}

#[test]
fn unknown_keys_are_reported_with_line_and_column() {
    let error = parse("realm = \"x\"\n\n[limits]\n  allocations_per_usr = 3\n").unwrap_err();
    match &error {
        ConfigError::Parse {
            origin,
            line,
            column,
            message,
        } => {
            assert_eq!(origin, "test.toml");
            assert_eq!((*line, *column), (4, 3));
            assert!(message.contains("allocations_per_usr"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .starts_with("test.toml:4:3: unknown field `allocations_per_usr`"),
        "{error}"
    );

    let top_level = parse("realm = \"x\"\nrelam = \"y\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        top_level.starts_with("test.toml:2:1: unknown field `relam`"),
        "{top_level}"
    );

    let unknown_section = parse("[metrics]\nport = 1\n").unwrap_err().to_string();
    assert!(
        unknown_section.starts_with("test.toml:1:2: unknown field `metrics`"),
        "{unknown_section}"
    );

    let in_listener = parse("[[listen]]\naddress = \"0.0.0.0:1\"\nport = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        in_listener.starts_with("test.toml:3:1: unknown field `port`"),
        "{in_listener}"
    );
}

#[test]
fn bad_values_are_reported_with_line_and_column() {
    let cases = [
        (
            "[peers]\nallow = [\"10.0.0.0/33\"]\n",
            2,
            9,
            "prefix length 33",
        ),
        ("[relay]\nports = \"1-2-3\"\n", 2, 9, "invalid port range"),
        (
            "[relay]\nports = \"70000-70001\"\n",
            2,
            9,
            "invalid port range",
        ),
        ("[relay]\nbind_ipv6 = \"yes\"\n", 2, 13, "not an IP address"),
        (
            "[[listen]]\ntransport = \"quic\"\naddress = \"0.0.0.0:1\"\n",
            2,
            13,
            "quic",
        ),
        (
            "[[listen]]\ntransport = \"udp\"\n",
            1,
            1,
            "missing field `address`",
        ),
        ("[limits]\nallocations_total = -1\n", 2, 21, "expected u32"),
        ("[log]\nformat = \"xml\"\n", 2, 10, "xml"),
        ("realm = \n", 1, 9, ""),
        (
            "realm = \"é\"\n[limits]\nchannels_per_allocation = \"many\"\n",
            3,
            27,
            "",
        ),
    ];
    for (text, line, column, needle) in cases {
        match parse(text) {
            Err(ConfigError::Parse {
                line: l,
                column: c,
                message,
                ..
            }) => {
                assert_eq!((l, c), (line, column), "{text:?}: {message}");
                assert!(message.contains(needle), "{text:?}: {message}");
                assert!(!message.contains('\n'), "one line: {message}");
            }
            other => panic!("expected a parse error for {text:?}, got {other:?}"),
        }
    }
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(super::line_and_column("", 0), (1, 1));
    assert_eq!(super::line_and_column("ab\ncd", 4), (2, 2));
    assert_eq!(super::line_and_column("é = 1", 3), (1, 3));
    assert_eq!(super::line_and_column("ab", 99), (1, 3));
}

#[test]
fn validation_names_the_key() {
    let cases = [
        ("realm = \"\"", "realm"),
        (&format!("realm = \"{}\"", "r".repeat(128)), "realm"),
        ("realm = \"a\\\"b\"", "realm"),
        ("listen = []", "listen"),
        (
            "[[listen]]\naddress = \"0.0.0.0:3478\"\n[[listen]]\naddress = \"0.0.0.0:3478\"",
            "listen[1].address",
        ),
        (
            "[[listen]]\naddress = \"224.0.0.1:3478\"",
            "listen[0].address",
        ),
        (
            "[[listen]]\ntransport = \"tcp\"\naddress = \"0.0.0.0:443\"\n\
             [[listen]]\ntransport = \"tls\"\naddress = \"0.0.0.0:443\"",
            "listen[1].address",
        ),
        (
            "[[listen]]\ntransport = \"tcp\"\naddress = \"0.0.0.0:3478\"\nserve_http = true",
            "listen[0].serve_http",
        ),
        ("[tls]\ncertificate = \"/etc/c.pem\"", "tls.private_key"),
        ("[tls]\nprivate_key = \"/etc/k.pem\"", "tls.certificate"),
        (
            "[tls]\nreload_interval_secs = 3601",
            "tls.reload_interval_secs",
        ),
        (
            "[server]\ndrain_timeout_secs = 3601",
            "server.drain_timeout_secs",
        ),
        ("[connections]\nmax_total = 0", "connections.max_total"),
        ("[connections]\nmax_per_ip = 0", "connections.max_per_ip"),
        (
            "[connections]\nhandshake_timeout_secs = 0",
            "connections.handshake_timeout_secs",
        ),
        (
            "[connections]\nidle_timeout_secs = 3601",
            "connections.idle_timeout_secs",
        ),
        ("[relay]\nports = \"60000-50000\"", "relay.ports"),
        ("[relay]\nports = \"0-100\"", "relay.ports"),
        ("[relay]\nbind_ip = \"::\"", "relay.bind_ip"),
        ("[relay]\nbind_ipv6 = \"0.0.0.0\"", "relay.bind_ipv6"),
        (
            "[relay]\nexternal_ip = \"2001:db8::1\"",
            "relay.external_ip",
        ),
        ("[relay]\nexternal_ip = \"0.0.0.0\"", "relay.external_ip"),
        (
            "[relay]\nexternal_ipv6 = \"203.0.113.1\"",
            "relay.external_ipv6",
        ),
        (
            "[relay]\nbind_ipv6 = \"none\"\nexternal_ipv6 = \"2001:db8::1\"",
            "relay.external_ipv6",
        ),
        ("[relay]\nbind_ips = [\"0.0.0.0\"]", "relay.bind_ips[0]"),
        (
            "[relay]\nexternal_ips = [\"203.0.113.1\"]",
            "relay.external_ips[0]",
        ),
        (
            "[relay]\nexternal_ips = [\"203.0.113.1/2001:db8::1\"]",
            "relay.external_ips[0]",
        ),
        (
            "[relay]\nbind_ip = \"10.0.0.1\"\nexternal_ips = [\"203.0.113.1/10.0.0.9\"]",
            "relay.external_ips[0]",
        ),
        ("[auth]\nsecrets = [\"ok\", \"\"]", "auth.secrets[1]"),
        (
            "[auth]\nnonce_lifetime_secs = 0",
            "auth.nonce_lifetime_secs",
        ),
        ("[auth]\nnonce_key = \"short\"", "auth.nonce_key"),
        ("[auth.users]\nbob = \"\"", "auth.users.\"bob\""),
        (
            "[auth.users]\n\"1700000000:bob\" = \"pw\"",
            "auth.users.\"1700000000:bob\"",
        ),
        ("[auth.users]\n\"\" = \"pw\"", "auth.users"),
        (
            "[limits]\nallocations_total = 0",
            "limits.allocations_total",
        ),
        (
            "[limits]\nmax_allocation_lifetime_secs = 0",
            "limits.max_allocation_lifetime_secs",
        ),
        (
            "[limits]\ndefault_allocation_lifetime_secs = 0",
            "limits.default_allocation_lifetime_secs",
        ),
        (
            "[limits]\ndefault_allocation_lifetime_secs = 7200",
            "limits.default_allocation_lifetime_secs",
        ),
        (
            "[limits]\npermissions_per_allocation = 0",
            "limits.permissions_per_allocation",
        ),
        (
            "[limits]\nchannels_per_allocation = 0",
            "limits.channels_per_allocation",
        ),
        (
            "[limits]\nchannels_per_allocation = 4097",
            "limits.channels_per_allocation",
        ),
        (
            "[limits]\nrate_limit_table_size = 0",
            "limits.rate_limit_table_size",
        ),
        ("[server]\nworkers = 100000", "server.workers"),
        (
            "[server]\nsocket_buffer_bytes = 0",
            "server.socket_buffer_bytes",
        ),
        ("[server]\nsoftware = \"\"", "server.software"),
        (
            &format!("[server]\nsoftware = \"{}\"", "s".repeat(128)),
            "server.software",
        ),
        ("[log]\nlevel = \"\"", "log.level"),
        ("[log]\nlevel = \"turnpike=loud\"", "log.level"),
    ];
    for (text, key) in cases {
        assert_eq!(invalid_key(text), key, "{text}");
    }
    let message = parse("[relay]\nports = \"60000-50000\"")
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "test.toml: relay.ports: the range 60000-50000 is empty: the first port must not exceed the last"
    );
}

#[test]
fn realm_length_counts_characters() {
    assert!(parse(&format!("realm = \"{}\"", "é".repeat(127))).is_ok());
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, CONTRACT_EXAMPLE).unwrap();
    assert_eq!(Config::load(&good).unwrap().realm, "example.org");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[relay]\nport = \"1-2\"\n").unwrap();
    let message = Config::load(&bad).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:2:1: unknown field `port`", bad.display())),
        "{message}"
    );

    let missing = dir.path().join("missing.toml");
    let error = Config::load(&missing).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read {}", missing.display()))
    );
}

#[test]
fn auth_debug_redacts_secrets_and_passwords() {
    let config =
        parse("[auth]\nsecrets = [\"hunter2\", \"s3cr3t\"]\n[auth.users]\nalice = \"pa55word\"\n")
            .unwrap();
    for printed in [
        format!("{:?}", config.auth),
        format!("{config:?}"),
        format!("{config:#?}"),
    ] {
        for secret in ["hunter2", "s3cr3t", "pa55word"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(
            printed.contains("alice"),
            "user names are not secret: {printed}"
        );
    }
    assert_eq!(
        format!("{:?}", config.auth),
        r#"AuthConfig { secrets: ["<redacted>", "<redacted>"], users: {"alice": "<redacted>"}, nonce_lifetime_secs: 600, nonce_key: None }"#
    );
}

#[test]
fn port_ranges_parse_and_print() {
    assert_eq!(
        "49152-65535".parse::<PortRange>().unwrap(),
        PortRange {
            start: 49152,
            end: 65535
        }
    );
    assert_eq!(
        " 1 - 2 ".parse::<PortRange>().unwrap(),
        PortRange { start: 1, end: 2 }
    );
    assert_eq!(
        "7".parse::<PortRange>().unwrap(),
        PortRange { start: 7, end: 7 }
    );
    for bad in ["", "-", "1-", "-2", "a-b", "1-65536", "+1-2", "1..2"] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad}");
    }
    let range = PortRange { start: 10, end: 19 };
    assert_eq!(range.to_string(), "10-19");
    assert_eq!(range.port_count(), 10);
    assert!(range.contains(10) && range.contains(19) && !range.contains(20));
    assert_eq!(PortRange { start: 2, end: 1 }.port_count(), 0);
    assert_eq!(PortRange::default().port_count(), 16384);
}

fn uris_for(text: &str) -> Vec<String> {
    client_uris(&parse(text).unwrap())
}

#[test]
fn client_uris_use_the_external_address() {
    assert_eq!(
        uris_for(CONTRACT_EXAMPLE),
        vec![
            "turn:203.0.113.7:3478?transport=udp",
            "stun:203.0.113.7:3478"
        ]
    );
    // The default dual-stack listeners collapse into one host when only IPv4 is external.
    assert_eq!(
        uris_for("[relay]\nexternal_ip = \"203.0.113.7\""),
        vec![
            "turn:203.0.113.7:3478?transport=udp",
            "turn:203.0.113.7:3478?transport=tcp",
            "turns:203.0.113.7:5349?transport=tcp",
            "stun:203.0.113.7:3478"
        ]
    );
    assert_eq!(
        uris_for("[relay]\nexternal_ip = \"203.0.113.7\"\nexternal_ipv6 = \"2001:db8::7\""),
        vec![
            "turn:203.0.113.7:3478?transport=udp",
            "turn:[2001:db8::7]:3478?transport=udp",
            "turn:203.0.113.7:3478?transport=tcp",
            "turn:[2001:db8::7]:3478?transport=tcp",
            "turns:203.0.113.7:5349?transport=tcp",
            "turns:[2001:db8::7]:5349?transport=tcp",
            "stun:203.0.113.7:3478",
        ]
    );
}

#[test]
fn client_uris_fall_back_to_the_listener_then_loopback() {
    assert_eq!(
        uris_for(""),
        vec![
            "turn:127.0.0.1:3478?transport=udp",
            "turn:127.0.0.1:3478?transport=tcp",
            "turns:127.0.0.1:5349?transport=tcp",
            "stun:127.0.0.1:3478"
        ]
    );
    assert_eq!(
        uris_for(
            "[[listen]]\ntransport = \"tls\"\naddress = \"[2001:db8::1]:443\"\n\
             [[listen]]\ntransport = \"tcp\"\naddress = \"192.0.2.1:3478\"\n\
             [[listen]]\ntransport = \"udp\"\naddress = \"192.0.2.1:3479\"\n"
        ),
        vec![
            "turns:[2001:db8::1]:443?transport=tcp",
            "turn:192.0.2.1:3478?transport=tcp",
            "turn:192.0.2.1:3479?transport=udp",
            "stun:192.0.2.1:3479",
        ]
    );
    assert_eq!(
        uris_for("[[listen]]\ntransport = \"tcp\"\naddress = \"[::]:3478\"\n"),
        vec!["turn:127.0.0.1:3478?transport=tcp", "stun:127.0.0.1:3478"]
    );
}
