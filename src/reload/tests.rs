//! Which keys reload live and which need a restart, and what a merge applies.

use super::*;
use crate::config::{
    AuthConfig, ClusterConfig, ConnectionsConfig, FleetConfig, HttpConfig, JwtConfig, LimitsConfig,
    LogConfig, LogFormat, PeersConfig, RegistryConfig, RelayConfig, ServerConfig, TlsConfig,
};

fn parse(text: &str) -> Config {
    Config::from_toml_str(text, "test.toml").unwrap()
}

/// Every key of the configuration, destructured without `..`: a key added to any section
/// fails to compile here until it is also classified in [`merge`] (and counted below).
#[test]
fn every_key_is_either_live_or_restart_only() {
    let Config {
        realm: _,
        listen: _,
        relay:
            RelayConfig {
                bind_ip: _,
                bind_ipv6: _,
                external_ip: _,
                external_ipv6: _,
                bind_ips: _,
                external_ips: _,
                ports: _,
                tcp_allocations: _,
                xdp: _,
            },
        auth:
            AuthConfig {
                secrets: _,
                users: _,
                nonce_lifetime_secs: _,
                nonce_key: _,
            },
        peers: PeersConfig { allow: _, deny: _ },
        limits:
            LimitsConfig {
                allocations_per_user: _,
                allocations_total: _,
                bandwidth_bps: _,
                max_allocation_lifetime_secs: _,
                default_allocation_lifetime_secs: _,
                permissions_per_allocation: _,
                channels_per_allocation: _,
                unauthenticated_rate: _,
                verified_credit: _,
                rate_limit_table_size: _,
            },
        server:
            ServerConfig {
                workers: _,
                socket_buffer_bytes: _,
                software: _,
                bind_retry_secs: _,
                drain_timeout_secs: _,
            },
        log: LogConfig {
            level: _,
            format: _,
        },
        tls:
            TlsConfig {
                certificate: _,
                private_key: _,
                reload_interval_secs: _,
            },
        connections:
            ConnectionsConfig {
                max_total: _,
                max_per_ip: _,
                handshake_timeout_secs: _,
                idle_timeout_secs: _,
            },
        http:
            HttpConfig {
                enabled: _,
                address: _,
                public_host: _,
                api_keys: _,
                admin_keys: _,
                revocations_file: _,
                credential_ttl_secs: _,
                max_credential_ttl_secs: _,
                cors_origins: _,
                demo: _,
                jwt:
                    JwtConfig {
                        hs256_secrets: _,
                        eddsa_public_keys: _,
                        audience: _,
                        issuer: _,
                    },
            },
        registry:
            RegistryConfig {
                enabled: _,
                listen: _,
                jwt_secrets: _,
                jwt_public_keys: _,
                max_connections: _,
                max_connections_per_ip: _,
                max_projects: _,
                max_peers_per_project: _,
                max_payload_bytes: _,
                max_relay_frame_bytes: _,
                messages_per_sec: _,
                relay_bytes_per_sec: _,
                relay_queue_blobs: _,
                signal_queue_messages: _,
                signal_queue_bytes: _,
                ping_interval_secs: _,
                idle_timeout_secs: _,
                join_timeout_secs: _,
                ice_servers: _,
                token_warning_secs: _,
                relay_warn_bytes_per_sec: _,
                peer_budget_bytes: _,
                budget_bytes: _,
                project_messages_per_sec: _,
            },
        cluster:
            ClusterConfig {
                redis_url: _,
                node_id: _,
                presence_ttl_secs: _,
                forward_queue_bytes: _,
                max_remote_peers: _,
            },
        fleet:
            FleetConfig {
                alternate_servers: _,
                load_ttl_secs: _,
                ice_servers_nodes: _,
            },
    } = Config::default();
    // A configuration where every key differs from the default: each is reported once.
    let pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    let text = format!(
        r#"
realm = "other"
[[listen]]
address = "127.0.0.1:3479"
[relay]
bind_ip = "127.0.0.1"
bind_ipv6 = "::1"
external_ip = "203.0.113.7"
external_ipv6 = "2001:db8::7"
ports = "50000-50100"
xdp = ["eth9"]
[auth]
secrets = ["b"]
users = {{ bob = "pw" }}
nonce_lifetime_secs = 60
nonce_key = "0123456789abcdef0123"
[peers]
allow = ["127.0.0.1"]
deny = ["198.51.100.0/24"]
[limits]
allocations_per_user = 1
allocations_total = 2
bandwidth_bps = 3
max_allocation_lifetime_secs = 60
default_allocation_lifetime_secs = 30
permissions_per_allocation = 5
channels_per_allocation = 6
unauthenticated_rate = 7
rate_limit_table_size = 8
[server]
workers = 2
socket_buffer_bytes = 65536
software = "x"
bind_retry_secs = 1
drain_timeout_secs = 2
[log]
level = "debug"
format = "json"
[tls]
certificate = "/c.pem"
private_key = "/k.pem"
reload_interval_secs = 9
[connections]
max_total = 1
max_per_ip = 1
handshake_timeout_secs = 1
idle_timeout_secs = 1
[http]
enabled = false
address = "127.0.0.1:1"
public_host = "turn.example.org"
api_keys = ["0123456789abcdef0123"]
credential_ttl_secs = 5
max_credential_ttl_secs = 6
cors_origins = ["https://a.example.org"]
demo = true
[http.jwt]
hs256_secrets = ["0123456789abcdef0123456789abcdef"]
eddsa_public_keys = ['''{pem}''']
audience = "a"
issuer = "i"
[registry]
enabled = true
listen = "127.0.0.1:2"
jwt_secrets = ["r"]
jwt_public_keys = ["/r.pem"]
max_connections = 1
max_connections_per_ip = 1
max_projects = 1
max_peers_per_project = 1
max_payload_bytes = 1
max_relay_frame_bytes = 105
messages_per_sec = 1
relay_bytes_per_sec = 1
relay_queue_blobs = 1
signal_queue_messages = 1
signal_queue_bytes = 4097
ping_interval_secs = 1
idle_timeout_secs = 2
join_timeout_secs = 1
ice_servers = false
token_warning_secs = 5
relay_warn_bytes_per_sec = 6
[cluster]
redis_url = "redis://127.0.0.1:1"
node_id = "n1"
presence_ttl_secs = 3
forward_queue_bytes = 70000
max_remote_peers = 7

[fleet]
alternate_servers = ["turn:192.0.2.9:3478"]
load_ttl_secs = 20
ice_servers_nodes = 5
"#
    );
    let new = parse(&text);
    let running = Config::default();
    let merged = merge(&running, new.clone());
    let mut all: Vec<&str> = merged.live.iter().chain(&merged.restart).copied().collect();
    assert_eq!(merged.live.len(), 28, "{:?}", merged.live);
    assert_eq!(merged.restart.len(), 50, "{:?}", merged.restart);
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "a key is in both lists");
    // The restart-only keys kept their running values, the live ones took the new ones.
    assert_eq!(merged.config.realm, running.realm);
    assert_eq!(merged.config.listen, running.listen);
    assert_eq!(merged.config.relay, running.relay);
    assert_eq!(merged.config.connections, running.connections);
    assert_eq!(merged.config.tls, running.tls);
    assert_eq!(merged.config.log.format, LogFormat::Text);
    assert_eq!(merged.config.http.address, running.http.address);
    assert_eq!(merged.config.registry.enabled, running.registry.enabled);
    assert_eq!(merged.config.auth, new.auth);
    assert_eq!(merged.config.peers, new.peers);
    assert_eq!(merged.config.limits, new.limits);
    assert_eq!(merged.config.http.jwt, new.http.jwt);
    assert_eq!(merged.config.http.api_keys, new.http.api_keys);
    assert_eq!(merged.config.registry.jwt_secrets, new.registry.jwt_secrets);
    assert_eq!(merged.config.server.drain_timeout_secs, 2);
    assert_eq!(merged.config.log.level, "debug");
}

#[test]
fn an_unchanged_file_changes_nothing() {
    let running = parse("[auth]\nsecrets = [\"a\"]\n");
    let merged = merge(&running, running.clone());
    assert_eq!(merged.config, running);
    assert!(merged.live.is_empty() && merged.restart.is_empty());
}

#[test]
fn secret_rotation_is_live_and_a_new_port_range_is_not() {
    let running = parse("[auth]\nsecrets = [\"a\"]\n[relay]\nports = \"50000-50100\"\n");
    let new = parse("[auth]\nsecrets = [\"b\", \"a\"]\n[relay]\nports = \"50000-50200\"\n");
    let merged = merge(&running, new);
    assert_eq!(merged.live, ["auth.secrets"]);
    assert_eq!(merged.restart, ["relay.ports"]);
    assert_eq!(merged.config.auth.secrets, ["b", "a"]);
    assert_eq!(merged.config.relay.ports, running.relay.ports);
}

#[test]
fn parse_errors_are_logged_without_quoted_values() {
    let error =
        Config::from_toml_str("[auth]\nsecrets = \"hunter2-secret\"\n", "t.toml").unwrap_err();
    assert!(error.to_string().contains("t.toml:2:"), "{error}");
    let text = redacted(&error);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.starts_with("t.toml:2:"), "{text}");
    // Validation errors name the key and carry no value of a secret: left as they are.
    let error = Config::from_toml_str("[auth]\nsecrets = [\"\"]\n", "t.toml").unwrap_err();
    assert_eq!(redacted(&error), error.to_string());
    assert!(redacted(&error).contains("auth.secrets[0]"));
}

#[test]
fn core_settings_keep_the_nonce_key() {
    let relays = RelayAddresses {
        bind_v4: Some("127.0.0.1".parse().unwrap()),
        bind_v6: None,
        advertised_v4: Some("127.0.0.1".parse().unwrap()),
        advertised_v6: None,
        extra: Vec::new(),
    };
    let a = core_settings(&parse("[auth]\nsecrets = [\"a\"]\n"), &relays, &[], [3; 32]);
    let b = core_settings(&parse("[auth]\nsecrets = [\"b\"]\n"), &relays, &[], [3; 32]);
    let client: std::net::SocketAddr = "192.0.2.1:1".parse().unwrap();
    assert_eq!(a.auth.nonce(1000, client), b.auth.nonce(1000, client));
    assert_eq!(a.families, [true, false]);
}
