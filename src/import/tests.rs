use super::*;
use crate::config::Config;

/// Imports `text` and loads the result as a configuration (what check-config does).
fn import(text: &str) -> (Import, Config) {
    let import = convert_coturn(text, "test.conf");
    let config = Config::from_toml_str(&import.toml, "imported.toml")
        .unwrap_or_else(|e| panic!("{e}\n---\n{}", import.toml));
    (import, config)
}

fn noted(import: &Import, option: &str, words: &str) -> bool {
    import
        .notes
        .iter()
        .any(|n| n.option.starts_with(option) && n.message.contains(words))
}

#[test]
fn lines_are_read_in_every_form_coturn_takes() {
    let text = "# comment\n\n  listening-port=3479\n--realm \"example.org\"\nfingerprint\n\
                new-log-timestamp-format \"%FT%T%z\"\nuser=a:b\n";
    let got = lines(text);
    let names: Vec<_> = got.iter().map(|l| (l.number, l.name, l.value)).collect();
    assert_eq!(
        names,
        [
            (3, "listening-port", Some("3479")),
            (4, "realm", Some("example.org")),
            (5, "fingerprint", None),
            (6, "new-log-timestamp-format", Some("%FT%T%z")),
            (7, "user", Some("a:b")),
        ]
    );
}

#[test]
fn an_empty_file_gives_the_defaults_and_says_what_differs() {
    let (import, config) = import("");
    assert_eq!(
        config.listen.len(),
        4,
        "UDP and TCP on 0.0.0.0 and [::], no TLS"
    );
    assert!(!config.relay.tcp_allocations);
    assert!(noted(&import, "-", "private (RFC 1918"));
    assert!(noted(&import, "-", "RFC 6062 TCP relays:"));
    assert!(noted(&import, "-", "no REST secret and no user"));
    assert!(noted(&import, "-", "no TLS listener"));
}

#[test]
fn a_typical_rest_setup_carries_over() {
    let text = "\
listening-port=3478
tls-listening-port=443
listening-ip=192.0.2.10
relay-ip=192.0.2.10
external-ip=203.0.113.7
min-port=40000
max-port=40999
fingerprint
use-auth-secret
static-auth-secret=s3cr3t-shared
realm=turn.example.org
total-quota=500
user-quota=12
max-bps=250000
stale-nonce=300
no-tcp-relay
cert=/etc/ssl/turn.pem
pkey=/etc/ssl/turn.key
denied-peer-ip=203.0.113.0-203.0.113.255
allowed-peer-ip=10.1.0.0-10.1.255.255
no-multicast-peers
prometheus
no-cli
verbose
";
    let (import, config) = import(text);
    assert_eq!(config.realm, "turn.example.org");
    let listen: Vec<String> = config
        .listen
        .iter()
        .map(|l| format!("{:?} {}", l.transport, l.address))
        .collect();
    assert_eq!(
        listen,
        [
            "Udp 192.0.2.10:3478",
            "Tcp 192.0.2.10:3478",
            "Tls 192.0.2.10:443"
        ]
    );
    assert_eq!(config.relay.bind_ip.to_string(), "192.0.2.10");
    assert_eq!(
        config.relay.external_ip.map(|i| i.to_string()).as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(
        (config.relay.ports.start, config.relay.ports.end),
        (40000, 40999)
    );
    assert_eq!(config.auth.secrets, ["s3cr3t-shared"]);
    assert_eq!(config.auth.nonce_lifetime_secs, 300);
    assert_eq!(config.limits.allocations_total, 500);
    assert_eq!(config.limits.allocations_per_user, 12);
    assert_eq!(config.limits.bandwidth_bps, 250_000);
    assert!(!config.relay.tcp_allocations);
    assert_eq!(
        config.tls.certificate.as_deref(),
        Some(std::path::Path::new("/etc/ssl/turn.pem"))
    );
    assert_eq!(config.peers.deny.len(), 1);
    assert_eq!(config.peers.allow.len(), 1);
    assert!(import.toml.contains("\"203.0.113.0/24\""));
    assert!(import.toml.contains("\"10.1.0.0/16\""));
    assert_eq!(config.log.level, "info");
    assert!(noted(&import, "fingerprint", "nothing to set"));
    assert!(noted(&import, "no-multicast-peers", "already"));
    assert!(noted(&import, "no-cli", "turnpike admin"));
    assert!(noted(&import, "-", "prometheus"));
    assert!(
        !noted(&import, "-", "RFC 6062 TCP relays:"),
        "no-tcp-relay was given"
    );
    assert!(!noted(&import, "-", "nonces:"), "stale-nonce was given");
    // The secret is in the configuration, never in a note.
    assert!(!import.notes.iter().any(|n| n.option.contains("s3cr3t")));
    assert_eq!(import.toml.matches("s3cr3t-shared").count(), 1);
}

#[test]
fn long_term_users_carry_over_and_hashed_keys_are_named() {
    let text = "lt-cred-mech\nuser=alice:wonder land\nuser=bob:0xbc807ee29df3c9ffa736523fb2c4e8ee\n\
                user=12345:pw\nuser=broken\nrealm=example.org\n";
    let (import, config) = import(text);
    assert_eq!(config.auth.users.len(), 1);
    assert_eq!(config.auth.users["alice"], "wonder land");
    assert!(noted(&import, "user=…", "hashed key"));
    assert!(noted(&import, "user=…", "REST username"));
    assert!(noted(&import, "user=…", "NAME:PASSWORD"));
    assert!(!import.notes.iter().any(|n| n.option.contains("0xbc80")));
}

#[test]
fn external_ip_pairs_become_relay_mappings() {
    let text = "relay-ip=172.17.19.105\nexternal-ip=60.70.80.91\n\
                external-ip=60.70.80.91/172.17.19.101\nexternal-ip=60.70.80.92/172.17.19.102\n";
    let (_, config) = import(text);
    assert_eq!(config.relay.bind_ip.to_string(), "172.17.19.105");
    assert_eq!(config.relay.bind_ips.len(), 2);
    assert_eq!(config.relay.external_ips.len(), 2);
    assert_eq!(
        config.relay.external_ip.map(|i| i.to_string()).as_deref(),
        Some("60.70.80.91")
    );
    // A pair alone sets the relay address itself.
    let (_, config) = import("external-ip=198.51.100.1/10.0.0.5\n");
    assert_eq!(config.relay.bind_ip.to_string(), "10.0.0.5");
    assert_eq!(config.relay.external_ips, ["198.51.100.1/10.0.0.5"]);
}

#[test]
fn bad_values_are_left_out_with_a_note() {
    let text = "listening-port=abc\nrealm=\"a\\\"b\"\nrelay-ip=nope\nmin-port=6000\nmax-port=5000\n\
                denied-peer-ip=10.0.0.9-10.0.0.1\nexternal-ip=1.2.3.4/::1\ntotal-quota=0\n\
                stale-nonce=0\nsomething-new=1\ncert=/only/cert.pem\n";
    let (import, config) = import(text);
    assert_eq!(config.listen[0].address.port(), 3478);
    assert_eq!(config.realm, "turnpike");
    assert_eq!(
        (config.relay.ports.start, config.relay.ports.end),
        (49152, 65535)
    );
    assert!(config.peers.deny.is_empty());
    assert_eq!(config.limits.allocations_total, 100_000);
    assert_eq!(config.auth.nonce_lifetime_secs, 86_400);
    assert!(noted(&import, "listening-port", "not a number"));
    assert!(noted(&import, "something-new", "unknown"));
    assert!(noted(&import, "denied-peer-ip", "left out"));
    assert!(noted(&import, "external-ip", "one family"));
    assert!(noted(&import, "-", "cert without pkey"));
    assert!(noted(&import, "-", "total-quota=0"));
}

#[test]
fn no_listener_left_falls_back_to_the_defaults() {
    let (import, config) = import("no-udp\nno-tcp\nno-tls\n");
    assert_eq!(config.listen.len(), 6);
    assert!(noted(&import, "-", "no listener is left"));
}

#[test]
fn loopback_peers_and_the_prometheus_port() {
    let (import, config) = import("allow-loopback-peers\nprometheus\nprometheus-port=9100\n");
    assert_eq!(config.peers.allow.len(), 2);
    assert_eq!(config.http.address.to_string(), "127.0.0.1:9100");
    assert!(noted(&import, "-", "on loopback"));
}

#[test]
fn hostile_input_never_breaks_the_output() {
    // Quotes, newlines, control characters and huge values in every position.
    let nasty = [
        "realm=\u{7}\n",
        "static-auth-secret=\"quoted \\\" and \\\\ back\"\n",
        "user=\"x\":\"pa\"ss\"\n",
        "cert=/a\"b\\c\n",
        "pkey=/k\u{1}\n",
        "relay-threads=99999999999\n",
        "user-quota=-1\n",
        "max-allocate-lifetime=5\n",
        "listening-ip=::1\n",
        "tls-listening-port=3478\n",
        "=\n",
        "--\n",
    ]
    .concat();
    let (_, config) = import(&nasty);
    assert_eq!(config.auth.secrets, ["quoted \\\" and \\\\ back"]);
    assert_eq!(config.limits.max_allocation_lifetime_secs, 5);
}

#[test]
fn quoting_round_trips() {
    for s in [
        "plain",
        "a\"b",
        "back\\slash",
        "tab\tnew\nline",
        "\u{1}\u{7f}",
        "é ü",
    ] {
        let doc = format!("v = {}", quote(s));
        let value: toml::Value = toml::from_str(&doc).unwrap();
        assert_eq!(value["v"].as_str(), Some(s));
    }
}
