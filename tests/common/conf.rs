//! What a test wants from its server ([`Conf`]), and the configuration file written for it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;

use super::{REALM, SECRET_ONE, SECRET_TWO, STATIC_PASSWORD, STATIC_USER};

/// What a test wants from its server. `Conf::default()` is the common case: UDP on 127.0.0.1,
/// both REST secrets, the static user, loopback peers denied (the product default).
#[derive(Clone, Debug)]
pub struct Conf {
    /// Also listen on [::1] (relays are on 127.0.0.1 and ::1 either way).
    pub ipv6: bool,
    /// `peers.allow`: empty means the default policy (loopback denied).
    pub peers_allow: Vec<String>,
    pub peers_deny: Vec<String>,
    pub secrets: Vec<String>,
    pub users: Vec<(String, String)>,
    pub nonce_lifetime_secs: u64,
    pub allocations_per_user: u32,
    pub allocations_total: u32,
    pub unauthenticated_rate: u32,
    /// `limits.verified_credit` (the product default, 1024, unless a test changes it).
    pub verified_credit: u32,
    /// `limits.bandwidth_bps` (0: no cap).
    pub bandwidth_bps: u64,
    pub log_level: String,
    /// Also listen for TCP (`Server::tcp`).
    pub tcp: bool,
    /// `relay.tcp_allocations`: RFC 6062 TCP relays (off by default, as in the product).
    pub tcp_allocations: bool,
    /// Also listen for TLS (`Server::tls`).
    pub tls: bool,
    /// Also a TLS listener with `serve_http = true` (`Server::tls_http`).
    pub tls_http: bool,
    /// `[tls] certificate` and `private_key`; `None`: the generated self-signed certificate.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// `[tls] reload_interval_secs`.
    pub tls_reload_secs: u64,
    /// `[connections]` handshake_timeout_secs and max_per_ip.
    pub handshake_timeout_secs: u64,
    pub max_connections_per_ip: u32,
    /// `[connections] idle_timeout_secs`.
    pub idle_timeout_secs: u64,
    /// Extra `key = value` lines for the `[http]` section (the harness sets `address`).
    pub http_extra: Vec<String>,
    /// Extra `key = value` lines for the `[auth]` section (such as `nonce_key`).
    pub auth_extra: Vec<String>,
    /// Extra `key = value` lines for the `[limits]` section (such as
    /// `default_allocation_lifetime_secs`).
    pub limits_extra: Vec<String>,
    /// Extra TOML appended at the end (whole sections, such as `[server]`).
    pub extra_toml: String,
    /// `[relay] bind_ip` (a server in a network namespace relays on that namespace's address).
    pub relay_ip: String,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            ipv6: false,
            peers_allow: Vec::new(),
            peers_deny: Vec::new(),
            secrets: vec![SECRET_ONE.into(), SECRET_TWO.into()],
            users: vec![(STATIC_USER.into(), STATIC_PASSWORD.into())],
            nonce_lifetime_secs: 600,
            allocations_per_user: 10,
            allocations_total: 100_000,
            // High enough that no test meets it by accident; the rate-limit test lowers it.
            unauthenticated_rate: 1000,
            verified_credit: 1024,
            bandwidth_bps: 0,
            log_level: std::env::var("TURNPIKE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            tcp: false,
            tcp_allocations: false,
            tls: false,
            tls_http: false,
            tls_files: None,
            tls_reload_secs: 5,
            handshake_timeout_secs: 10,
            max_connections_per_ip: 256,
            idle_timeout_secs: 60,
            http_extra: Vec::new(),
            auth_extra: Vec::new(),
            limits_extra: Vec::new(),
            extra_toml: String::new(),
            relay_ip: "127.0.0.1".into(),
        }
    }
}

impl Conf {
    /// Loopback peers allowed (what relaying to a `turnutils_peer` on 127.0.0.1 needs).
    pub fn loopback_peers() -> Conf {
        Conf {
            peers_allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
            ..Conf::default()
        }
    }

    /// The configuration file the harness writes for this server.
    pub fn to_toml(
        &self,
        listen: &[SocketAddr],
        streams: &[(&str, SocketAddr, bool)],
        relay: &RangeInclusive<u16>,
        http: SocketAddr,
    ) -> String {
        fn list(items: &[String]) -> String {
            let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", quoted.join(", "))
        }
        let mut t = String::new();
        writeln!(t, "realm = {REALM:?}").unwrap();
        for addr in listen {
            writeln!(t, "\n[[listen]]\ntransport = \"udp\"\naddress = \"{addr}\"").unwrap();
        }
        for (transport, addr, serve_http) in streams {
            writeln!(
                t,
                "\n[[listen]]\ntransport = \"{transport}\"\naddress = \"{addr}\"\nserve_http = {serve_http}"
            )
            .unwrap();
        }
        // Relays on loopback only, IPv6 included (left out, the server would pick an interface
        // address for IPv6 relays).
        writeln!(
            t,
            "\n[relay]\nbind_ip = {:?}\nbind_ipv6 = \"::1\"",
            self.relay_ip
        )
        .unwrap();
        writeln!(t, "ports = \"{}-{}\"", relay.start(), relay.end()).unwrap();
        writeln!(t, "tcp_allocations = {}", self.tcp_allocations).unwrap();
        writeln!(t, "\n[auth]\nsecrets = {}", list(&self.secrets)).unwrap();
        let users: Vec<String> = self
            .users
            .iter()
            .map(|(u, p)| format!("{u:?} = {p:?}"))
            .collect();
        writeln!(t, "users = {{ {} }}", users.join(", ")).unwrap();
        writeln!(t, "nonce_lifetime_secs = {}", self.nonce_lifetime_secs).unwrap();
        for line in &self.auth_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(
            t,
            "\n[peers]\nallow = {}\ndeny = {}",
            list(&self.peers_allow),
            list(&self.peers_deny)
        )
        .unwrap();
        writeln!(
            t,
            "\n[limits]\nallocations_per_user = {}\nallocations_total = {}\nunauthenticated_rate = {}\nverified_credit = {}\nbandwidth_bps = {}",
            self.allocations_per_user,
            self.allocations_total,
            self.unauthenticated_rate,
            self.verified_credit,
            self.bandwidth_bps
        )
        .unwrap();
        for line in &self.limits_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(t, "\n[log]\nlevel = {:?}", self.log_level).unwrap();
        writeln!(
            t,
            "\n[tls]\nreload_interval_secs = {}",
            self.tls_reload_secs
        )
        .unwrap();
        if let Some((cert, key)) = &self.tls_files {
            writeln!(t, "certificate = {:?}\nprivate_key = {:?}", cert, key).unwrap();
        }
        writeln!(
            t,
            "\n[connections]\nhandshake_timeout_secs = {}\nmax_per_ip = {}\nidle_timeout_secs = {}",
            self.handshake_timeout_secs, self.max_connections_per_ip, self.idle_timeout_secs
        )
        .unwrap();
        writeln!(t, "\n[http]\naddress = \"{http}\"").unwrap();
        for line in &self.http_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(t, "\n{}", self.extra_toml).unwrap();
        t
    }
}
