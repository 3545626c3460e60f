//! The configuration's shape: one struct per TOML section, every field with its default.
//!
//! The defaults here and the values written in `config/turnpike.toml` must agree; a unit test
//! in `config::tests` holds them together. Every struct rejects unknown keys, so a typo is an
//! error with a line and column instead of a silently ignored option.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::proto::policy::PeerEntry;

/// The whole configuration of a turnpike server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The REALM clients authenticate in (long-term credentials, RFC 8489 §9.2).
    pub realm: String,
    /// The sockets clients reach the server on.
    pub listen: Vec<Listen>,
    /// Where relayed addresses are allocated.
    pub relay: RelayConfig,
    /// How clients authenticate.
    pub auth: AuthConfig,
    /// Which peer addresses clients may relay to.
    pub peers: PeersConfig,
    /// Quotas and protocol limits.
    pub limits: LimitsConfig,
    /// Process-level tuning.
    pub server: ServerConfig,
    /// Logging.
    pub log: LogConfig,
    /// The certificate of TLS listeners.
    pub tls: TlsConfig,
    /// Limits and timeouts of TCP and TLS connections.
    pub connections: ConnectionsConfig,
    /// The HTTP API: credentials endpoint, metrics, health.
    pub http: super::http::HttpConfig,
    /// The registry: WebSocket signaling and the encrypted relay fallback.
    pub registry: crate::registry::RegistryConfig,
    /// Several nodes sharing state through Redis.
    pub cluster: super::cluster::ClusterConfig,
    /// Several TURN nodes behind one name: drain alternates, published load.
    pub fleet: super::fleet::FleetConfig,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            realm: "turnpike".to_owned(),
            listen: default_listeners(),
            relay: RelayConfig::default(),
            auth: AuthConfig::default(),
            peers: PeersConfig::default(),
            limits: LimitsConfig::default(),
            server: ServerConfig::default(),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            connections: ConnectionsConfig::default(),
            http: super::http::HttpConfig::default(),
            registry: crate::registry::RegistryConfig::default(),
            cluster: super::cluster::ClusterConfig::default(),
            fleet: super::fleet::FleetConfig::default(),
        }
    }
}

/// The listeners used when the configuration names none: UDP and TCP 3478 and TLS 5349, on
/// every IPv4 and IPv6 address.
pub fn default_listeners() -> Vec<Listen> {
    let mut listeners = Vec::new();
    for (transport, port) in [
        (ListenTransport::Udp, 3478),
        (ListenTransport::Tcp, 3478),
        (ListenTransport::Tls, 5349),
    ] {
        for ip in [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ] {
            listeners.push(Listen {
                transport,
                address: SocketAddr::new(ip, port),
                serve_http: false,
            });
        }
    }
    listeners
}

/// One socket clients reach the server on (a `[[listen]]` entry).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The transport; `udp` when omitted.
    #[serde(default)]
    pub transport: ListenTransport,
    /// The local address and port, such as `0.0.0.0:3478` or `[::]:3478`. Required.
    pub address: SocketAddr,
    /// TLS listeners only: also serve HTTPS on this port (port 443 shared by `turns:` and the
    /// HTTP endpoints), telling the two apart by ALPN or by the first byte.
    #[serde(default)]
    pub serve_http: bool,
}

/// The transport of a listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenTransport {
    /// STUN/TURN over UDP.
    #[default]
    Udp,
    /// STUN/TURN over TCP.
    Tcp,
    /// STUN/TURN over TLS (`turns:`).
    Tls,
}

impl ListenTransport {
    /// The name used in the configuration file: `udp`, `tcp` or `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenTransport::Udp => "udp",
            ListenTransport::Tcp => "tcp",
            ListenTransport::Tls => "tls",
        }
    }
}

impl fmt::Display for ListenTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[relay]` section: the addresses and ports relayed transport addresses are taken from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// The IPv4 address relay sockets bind to.
    pub bind_ip: IpAddr,
    /// The IPv6 address relay sockets bind to; `None` (written `"none"`) refuses IPv6
    /// allocations.
    #[serde(deserialize_with = "deserialize_optional_ip")]
    pub bind_ipv6: Option<IpAddr>,
    /// The public IPv4 address clients and peers see, when the server is behind 1:1 NAT.
    /// Reported in XOR-RELAYED-ADDRESS instead of the bound address.
    pub external_ip: Option<IpAddr>,
    /// The public IPv6 address, when it differs from the bound one.
    pub external_ipv6: Option<IpAddr>,
    /// More relay addresses, either family, besides `bind_ip` and `bind_ipv6`: a client that
    /// reached the server at one of them gets its relay there.
    pub bind_ips: Vec<IpAddr>,
    /// External-to-internal mappings, "PUBLIC/PRIVATE" (coturn's `external-ip`): a relay bound
    /// at PRIVATE is advertised as PUBLIC.
    pub external_ips: Vec<String>,
    /// The UDP port range relay sockets are bound in.
    pub ports: PortRange,
    /// RFC 6062 TCP relays (Allocate with REQUESTED-TRANSPORT TCP, Connect): off by default,
    /// since browsers never use them and they let a client open TCP connections to any peer
    /// the policy permits.
    pub tcp_allocations: bool,
    /// Interfaces to attach the XDP fast path for channel data to (native mode); empty (the
    /// default) keeps every packet in user space.
    pub xdp: Vec<String>,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            bind_ipv6: Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            external_ip: None,
            external_ipv6: None,
            bind_ips: Vec::new(),
            external_ips: Vec::new(),
            ports: PortRange::default(),
            tcp_allocations: false,
            xdp: Vec::new(),
        }
    }
}

impl RelayConfig {
    /// `external_ips` as (public, private) pairs (validated when the configuration loads).
    pub fn external_mappings(&self) -> Vec<(IpAddr, IpAddr)> {
        self.external_ips
            .iter()
            .filter_map(|m| parse_external_mapping(m))
            .collect()
    }
}

/// Parses "PUBLIC/PRIVATE" (two addresses of one family).
pub fn parse_external_mapping(s: &str) -> Option<(IpAddr, IpAddr)> {
    let (public, private) = s.split_once('/')?;
    let public: IpAddr = public.trim().parse().ok()?;
    let private: IpAddr = private.trim().parse().ok()?;
    (public.is_ipv4() == private.is_ipv4()).then_some((public, private))
}

/// Reads `bind_ipv6`: an address, or `"none"` (or `false`) for no IPv6 relays.
fn deserialize_optional_ip<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<IpAddr>, D::Error> {
    struct OptionalIp;

    impl serde::de::Visitor<'_> for OptionalIp {
        type Value = Option<IpAddr>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an IP address, or \"none\" to disable IPv6 relays")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Option<IpAddr>, E> {
            if value.eq_ignore_ascii_case("none") {
                return Ok(None);
            }
            value
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("`{value}` is not an IP address (or \"none\")")))
        }

        fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Option<IpAddr>, E> {
            if value {
                Err(E::custom("expected an IP address, \"none\" or false"))
            } else {
                Ok(None)
            }
        }
    }

    deserializer.deserialize_any(OptionalIp)
}

/// An inclusive range of ports, written `"49152-65535"` (or a single port, `"50000"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PortRange {
    /// The first port of the range.
    pub start: u16,
    /// The last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// How many ports the range holds (0 when `start > end`).
    pub fn port_count(&self) -> u32 {
        if self.start > self.end {
            0
        } else {
            u32::from(self.end) - u32::from(self.start) + 1
        }
    }

    /// True if `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl Default for PortRange {
    /// The IANA dynamic range, 49152-65535 (RFC 8656 §7.2 recommends it for relays).
    fn default() -> PortRange {
        PortRange {
            start: 49152,
            end: 65535,
        }
    }
}

/// Why a string is not a port range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid port range `{input}`: expected \"FIRST-LAST\" with ports from 1 to 65535, such as \"49152-65535\""
)]
pub struct PortRangeError {
    /// The text that was parsed.
    pub input: String,
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(input: &str) -> Result<PortRange, PortRangeError> {
        let error = || PortRangeError {
            input: input.to_owned(),
        };
        let port = |text: &str| -> Result<u16, PortRangeError> {
            let text = text.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error());
            }
            text.parse().map_err(|_| error())
        };
        let (start, end) = match input.split_once('-') {
            Some((start, end)) => (port(start)?, port(end)?),
            None => {
                let single = port(input)?;
                (single, single)
            }
        };
        Ok(PortRange { start, end })
    }
}

impl TryFrom<String> for PortRange {
    type Error = PortRangeError;

    fn try_from(value: String) -> Result<PortRange, PortRangeError> {
        value.parse()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// The `[auth]` section. Its `Debug` output never shows a secret or a password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared secrets for REST credentials (`expiry:user` usernames, HMAC-SHA1 passwords).
    /// Any of them validates, so a secret is rotated by adding the new one first and removing
    /// the old one after the longest credential lifetime. The first one mints credentials.
    pub secrets: Vec<String>,
    /// Static long-term users: name -> password.
    pub users: BTreeMap<String, String>,
    /// How long a NONCE stays valid, in seconds, before a client must retry with a fresh one.
    pub nonce_lifetime_secs: u64,
    /// A secret every node of a fleet shares, from which the nonce key is derived, so a nonce
    /// issued by one node is accepted by the others (and survives a restart); unset: a random
    /// key per process.
    pub nonce_key: Option<String>,
}

impl AuthConfig {
    /// True when at least one REST secret or static user is configured, so a client can
    /// authenticate at all.
    pub fn has_credentials(&self) -> bool {
        !self.secrets.is_empty() || !self.users.is_empty()
    }
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            secrets: Vec::new(),
            users: BTreeMap::new(),
            nonce_lifetime_secs: 600,
            nonce_key: None,
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Prints a list of `<redacted>` as long as the list of secrets.
        struct RedactedList(usize);
        impl fmt::Debug for RedactedList {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(std::iter::repeat_n(Redacted, self.0))
                    .finish()
            }
        }
        /// Prints user names with `<redacted>` passwords.
        struct RedactedUsers<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for RedactedUsers<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.keys().map(|name| (name, Redacted)))
                    .finish()
            }
        }
        f.debug_struct("AuthConfig")
            .field("secrets", &RedactedList(self.secrets.len()))
            .field("users", &RedactedUsers(&self.users))
            .field("nonce_lifetime_secs", &self.nonce_lifetime_secs)
            .field("nonce_key", &self.nonce_key.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
#[derive(Clone, Copy)]
struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The `[peers]` section: the operator's additions to the peer policy
/// (see [`crate::proto::policy`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeersConfig {
    /// Blocks (optionally with ports) clients may always relay to, even inside the built-in
    /// denied ranges and the server's own addresses.
    pub allow: Vec<PeerEntry>,
    /// Blocks (optionally with ports) clients may never relay to (besides the built-in denied
    /// ranges), unless allowed.
    pub deny: Vec<PeerEntry>,
}

impl PeersConfig {
    /// The policy these lists describe.
    pub fn policy(&self) -> crate::proto::policy::PeerPolicy {
        crate::proto::policy::PeerPolicy::with_entries(self.allow.clone(), self.deny.clone())
    }
}

/// The `[limits]` section: quotas and protocol limits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Allocations one user may hold at once (REST: the part after `expiry:`); 0 = unlimited.
    pub allocations_per_user: u32,
    /// Allocations the whole server holds at once.
    pub allocations_total: u32,
    /// Per-allocation cap in bytes per second, each direction; 0 = unlimited.
    pub bandwidth_bps: u64,
    /// The longest LIFETIME granted to an Allocate or Refresh, in seconds.
    pub max_allocation_lifetime_secs: u32,
    /// The LIFETIME granted when a client asks for none, in seconds.
    pub default_allocation_lifetime_secs: u32,
    /// Permissions (peer IP addresses) one allocation may hold.
    pub permissions_per_allocation: u32,
    /// Channels one allocation may bind.
    pub channels_per_allocation: u32,
    /// Error answers (401/400/438) to unauthenticated requests and failed authentications per
    /// source (IPv4 address or IPv6 /64) per second, over every transport; 0 disables the limit.
    pub unauthenticated_rate: u32,
    /// Answers beyond the rate a source may bank, one earned per request that authenticated
    /// from it (many clients behind one NAT pay for each other's 401s).
    pub verified_credit: u32,
    /// How many source addresses the unauthenticated-answer limiter tracks.
    pub rate_limit_table_size: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            allocations_per_user: 10,
            allocations_total: 100_000,
            bandwidth_bps: 0,
            max_allocation_lifetime_secs: 3600,
            default_allocation_lifetime_secs: 600,
            permissions_per_allocation: 64,
            channels_per_allocation: 64,
            unauthenticated_rate: 20,
            verified_credit: 1024,
            rate_limit_table_size: 65_536,
        }
    }
}

/// The `[server]` section: process-level tuning.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// UDP worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// SO_RCVBUF and SO_SNDBUF asked for on every socket, in bytes.
    pub socket_buffer_bytes: usize,
    /// The SOFTWARE attribute on answers to authenticated requests; `None` sends none.
    pub software: Option<String>,
    /// How long to keep retrying a client listener address that is in use or not assigned
    /// yet, in seconds; 0 fails at once.
    pub bind_retry_secs: u64,
    /// On SIGTERM or SIGINT, how long to keep serving the allocations that exist (refusing new
    /// ones) before stopping, in seconds; the server stops sooner once none is left. 0 stops
    /// at once.
    pub drain_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            workers: 0,
            socket_buffer_bytes: 4 * 1024 * 1024,
            software: None,
            bind_retry_secs: 0,
            drain_timeout_secs: 30,
        }
    }
}

/// The `[log]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, such as `info` or `info,turnpike=debug`.
    /// `RUST_LOG`, when set, takes precedence.
    pub level: String,
    /// The line format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The `[tls]` section: the certificate TLS listeners present.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first. Unset: a self-signed certificate is generated
    /// at start (with a warning).
    pub certificate: Option<PathBuf>,
    /// The private key of the leaf certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub private_key: Option<PathBuf>,
    /// How often the two files are checked for changes, in seconds; 0 reloads only on SIGHUP.
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> TlsConfig {
        TlsConfig {
            certificate: None,
            private_key: None,
            reload_interval_secs: 5,
        }
    }
}

/// The `[connections]` section: limits and timeouts of TCP and TLS client connections.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// TCP and TLS client connections open at once, over all listeners.
    pub max_total: u32,
    /// Client connections open at once from one IPv4 address or one IPv6 /64.
    pub max_per_ip: u32,
    /// Seconds a new connection has to complete its TLS handshake and send its first bytes.
    pub handshake_timeout_secs: u64,
    /// Seconds a connection without an allocation may stay silent before it is closed.
    pub idle_timeout_secs: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> ConnectionsConfig {
        ConnectionsConfig {
            max_total: 10_000,
            max_per_ip: 256,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 60,
        }
    }
}
