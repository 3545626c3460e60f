//! Checks that a parsed configuration makes sense as a whole, before anything is bound.
//!
//! Parsing (serde) checks types and names; this checks values: ranges, families, limits. The
//! first problem found is returned, naming the key (`limits.channels_per_allocation`) so the
//! operator knows where to look.

use std::collections::HashSet;
use std::net::IpAddr;

use super::schema::{Config, LimitsConfig, ListenTransport, RelayConfig};
use crate::proto::credentials::parse_rest_username;

/// One value in the configuration that is out of its range or contradicts another.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    /// The dotted key, such as `relay.ports` or `listen[1].address`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// The longest REALM RFC 8489 §14.9 allows, in characters.
pub const MAX_REALM_CHARS: usize = 127;
/// The longest SOFTWARE RFC 8489 §14.14 allows, in characters.
pub const MAX_SOFTWARE_CHARS: usize = 127;
/// The longest USERNAME RFC 8489 §14.3 allows, in bytes.
pub const MAX_USERNAME_BYTES: usize = 512;
/// Channel numbers run from 0x4000 to 0x4FFF (RFC 8656 §12), so no allocation can bind more.
pub const MAX_CHANNELS_PER_ALLOCATION: u32 = 0x1000;
/// The shortest `auth.nonce_key` accepted: 16 bytes (128 bits when random).
pub const MIN_NONCE_KEY_BYTES: usize = 16;
/// The longest nonce lifetime accepted: one day.
pub const MAX_NONCE_LIFETIME_SECS: u64 = 86_400;
/// The smallest socket buffer accepted (64 KiB).
pub const MIN_SOCKET_BUFFER_BYTES: usize = 64 * 1024;
/// The largest socket buffer accepted (1 GiB; the kernel takes an `int` and doubles it).
pub const MAX_SOCKET_BUFFER_BYTES: usize = 1024 * 1024 * 1024;
/// The most worker threads accepted.
pub const MAX_WORKERS: usize = 1024;
/// The longest listener bind retry accepted: ten minutes.
pub const MAX_BIND_RETRY_SECS: u64 = 600;
/// The longest drain accepted: one hour (the longest allocation lifetime by default).
pub const MAX_DRAIN_TIMEOUT_SECS: u64 = 3600;

pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// Checks every value; returns the first problem.
pub fn validate(config: &Config) -> Result<(), Invalid> {
    validate_realm(&config.realm)?;
    validate_listeners(config)?;
    validate_relay(&config.relay)?;
    validate_auth(config)?;
    validate_limits(&config.limits)?;
    validate_server(config)?;
    validate_log(config)?;
    validate_tls(config)?;
    validate_connections(config)?;
    super::http::validate(&config.http)?;
    crate::registry::config::validate(&config.registry, config.http.demo)?;
    super::cluster::validate(&config.cluster)?;
    super::fleet::validate(&config.fleet)?;
    if config.http.demo && !config.registry.enabled {
        return Err(invalid(
            "http.demo",
            "the demo needs the registry: set registry.enabled = true",
        ));
    }
    Ok(())
}

/// The longest handshake and idle timeouts accepted: one hour.
pub const MAX_CONNECTION_TIMEOUT_SECS: u64 = 3600;

fn validate_tls(config: &Config) -> Result<(), Invalid> {
    let tls = &config.tls;
    match (&tls.certificate, &tls.private_key) {
        (Some(_), None) => {
            return Err(invalid(
                "tls.private_key",
                "must be set when tls.certificate is set",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "tls.certificate",
                "must be set when tls.private_key is set",
            ));
        }
        _ => {}
    }
    if tls.reload_interval_secs > MAX_CONNECTION_TIMEOUT_SECS {
        return Err(invalid(
            "tls.reload_interval_secs",
            format!("must be at most {MAX_CONNECTION_TIMEOUT_SECS} (0 = only on SIGHUP)"),
        ));
    }
    Ok(())
}

fn validate_connections(config: &Config) -> Result<(), Invalid> {
    let c = &config.connections;
    if c.max_total == 0 {
        return Err(invalid("connections.max_total", "must be greater than 0"));
    }
    if c.max_per_ip == 0 {
        return Err(invalid("connections.max_per_ip", "must be greater than 0"));
    }
    for (key, value) in [
        (
            "connections.handshake_timeout_secs",
            c.handshake_timeout_secs,
        ),
        ("connections.idle_timeout_secs", c.idle_timeout_secs),
    ] {
        if value == 0 || value > MAX_CONNECTION_TIMEOUT_SECS {
            return Err(invalid(
                key,
                format!("must be between 1 and {MAX_CONNECTION_TIMEOUT_SECS} seconds"),
            ));
        }
    }
    Ok(())
}

fn validate_realm(realm: &str) -> Result<(), Invalid> {
    if realm.is_empty() {
        return Err(invalid("realm", "must not be empty"));
    }
    let chars = realm.chars().count();
    if chars > MAX_REALM_CHARS {
        return Err(invalid(
            "realm",
            format!("is {chars} characters long; at most {MAX_REALM_CHARS} are allowed (RFC 8489)"),
        ));
    }
    if realm
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(invalid(
            "realm",
            "must not contain control characters, quotes or backslashes",
        ));
    }
    Ok(())
}

fn validate_listeners(config: &Config) -> Result<(), Invalid> {
    if config.listen.is_empty() {
        return Err(invalid(
            "listen",
            "at least one [[listen]] entry is required",
        ));
    }
    let mut seen = HashSet::new();
    for (index, listener) in config.listen.iter().enumerate() {
        let key = format!("listen[{index}].address");
        let ip = listener.address.ip();
        if ip.is_multicast() {
            return Err(invalid(key, format!("{ip} is a multicast address")));
        }
        if is_ipv4_broadcast(ip) {
            return Err(invalid(key, "255.255.255.255 is the broadcast address"));
        }
        if listener.serve_http && listener.transport != ListenTransport::Tls {
            return Err(invalid(
                format!("listen[{index}].serve_http"),
                "only a TLS listener can share its port with HTTPS (transport = \"tls\")",
            ));
        }
        let stream = listener.transport != ListenTransport::Udp;
        if stream
            && config.listen[..index].iter().any(|other| {
                other.transport != ListenTransport::Udp
                    && other.transport != listener.transport
                    && other.address == listener.address
            })
        {
            return Err(invalid(
                key,
                format!(
                    "{} is both a TCP and a TLS listener; they need different ports",
                    listener.address
                ),
            ));
        }
        if !seen.insert((listener.transport, listener.address)) {
            return Err(invalid(
                key,
                format!(
                    "{} {} is listed twice",
                    listener.transport, listener.address
                ),
            ));
        }
    }
    Ok(())
}

fn is_ipv4_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

/// Checks that an address is of the expected family and usable as a unicast address.
fn check_address(
    key: &str,
    ip: IpAddr,
    want_ipv6: bool,
    allow_unspecified: bool,
) -> Result<(), Invalid> {
    let family = if want_ipv6 { "IPv6" } else { "IPv4" };
    if ip.is_ipv6() != want_ipv6 {
        return Err(invalid(key, format!("{ip} is not an {family} address")));
    }
    if ip.is_unspecified() && !allow_unspecified {
        return Err(invalid(
            key,
            format!("{ip} is unspecified; give the address peers reach"),
        ));
    }
    if ip.is_multicast() || is_ipv4_broadcast(ip) {
        return Err(invalid(key, format!("{ip} is not a unicast address")));
    }
    Ok(())
}

fn validate_relay(relay: &RelayConfig) -> Result<(), Invalid> {
    check_address("relay.bind_ip", relay.bind_ip, false, true)?;
    if let Some(ip) = relay.bind_ipv6 {
        check_address("relay.bind_ipv6", ip, true, true)?;
    }
    if let Some(ip) = relay.external_ip {
        check_address("relay.external_ip", ip, false, false)?;
    }
    if let Some(ip) = relay.external_ipv6 {
        check_address("relay.external_ipv6", ip, true, false)?;
        if relay.bind_ipv6.is_none() {
            return Err(invalid(
                "relay.external_ipv6",
                "is set but IPv6 relays are disabled (relay.bind_ipv6 = \"none\")",
            ));
        }
    }
    for (i, ip) in relay.bind_ips.iter().enumerate() {
        check_address(&format!("relay.bind_ips[{i}]"), *ip, ip.is_ipv6(), false)?;
    }
    let binds: Vec<IpAddr> = [Some(relay.bind_ip), relay.bind_ipv6]
        .into_iter()
        .flatten()
        .chain(relay.bind_ips.iter().copied())
        .collect();
    for (i, m) in relay.external_ips.iter().enumerate() {
        let key = format!("relay.external_ips[{i}]");
        let Some((public, private)) = super::schema::parse_external_mapping(m) else {
            return Err(invalid(
                &key,
                "must be \"PUBLIC/PRIVATE\", two addresses of one family",
            ));
        };
        check_address(&key, public, public.is_ipv6(), false)?;
        if !binds.contains(&private) {
            return Err(invalid(
                &key,
                "maps an address that is not a relay address (relay.bind_ip, relay.bind_ipv6 or relay.bind_ips)",
            ));
        }
    }
    let ports = relay.ports;
    if ports.start == 0 {
        return Err(invalid(
            "relay.ports",
            "port 0 is not a port; ports run from 1 to 65535",
        ));
    }
    if ports.start > ports.end {
        return Err(invalid(
            "relay.ports",
            format!("the range {ports} is empty: the first port must not exceed the last"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, name) in relay.xdp.iter().enumerate() {
        // Linux interface names: 1-15 bytes (IFNAMSIZ - 1), no '/', ':' or whitespace.
        let valid = !name.is_empty()
            && name.len() <= 15
            && name != "."
            && name != ".."
            && !name
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
        if !valid {
            return Err(invalid(
                format!("relay.xdp[{i}]"),
                format!("{name:?} is not an interface name (1-15 bytes, no '/', ':' or spaces)"),
            ));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid(
                format!("relay.xdp[{i}]"),
                format!("{name:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

fn validate_auth(config: &Config) -> Result<(), Invalid> {
    let auth = &config.auth;
    for (index, secret) in auth.secrets.iter().enumerate() {
        if secret.is_empty() {
            return Err(invalid(
                format!("auth.secrets[{index}]"),
                "must not be empty",
            ));
        }
    }
    for (name, password) in &auth.users {
        let key = format!("auth.users.\"{name}\"");
        if name.is_empty() {
            return Err(invalid("auth.users", "a user name must not be empty"));
        }
        if name.len() > MAX_USERNAME_BYTES {
            return Err(invalid(
                key,
                format!("the user name is longer than {MAX_USERNAME_BYTES} bytes (RFC 8489)"),
            ));
        }
        if parse_rest_username(name).is_some() {
            return Err(invalid(
                key,
                "looks like a REST username (`expiry` or `expiry:user`); static user names must not start with digits followed by `:` or consist only of digits",
            ));
        }
        if password.is_empty() {
            return Err(invalid(key, "the password must not be empty"));
        }
    }
    if auth.nonce_lifetime_secs == 0 || auth.nonce_lifetime_secs > MAX_NONCE_LIFETIME_SECS {
        return Err(invalid(
            "auth.nonce_lifetime_secs",
            format!("must be between 1 and {MAX_NONCE_LIFETIME_SECS} seconds"),
        ));
    }
    if auth
        .nonce_key
        .as_ref()
        .is_some_and(|k| k.len() < MIN_NONCE_KEY_BYTES)
    {
        return Err(invalid(
            "auth.nonce_key",
            format!("must be at least {MIN_NONCE_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)"),
        ));
    }
    Ok(())
}

fn validate_limits(limits: &LimitsConfig) -> Result<(), Invalid> {
    let positive = [
        ("limits.allocations_total", limits.allocations_total),
        (
            "limits.max_allocation_lifetime_secs",
            limits.max_allocation_lifetime_secs,
        ),
        (
            "limits.default_allocation_lifetime_secs",
            limits.default_allocation_lifetime_secs,
        ),
        (
            "limits.permissions_per_allocation",
            limits.permissions_per_allocation,
        ),
        (
            "limits.channels_per_allocation",
            limits.channels_per_allocation,
        ),
    ];
    for (key, value) in positive {
        if value == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    if limits.default_allocation_lifetime_secs > limits.max_allocation_lifetime_secs {
        return Err(invalid(
            "limits.default_allocation_lifetime_secs",
            format!(
                "{} exceeds limits.max_allocation_lifetime_secs ({})",
                limits.default_allocation_lifetime_secs, limits.max_allocation_lifetime_secs
            ),
        ));
    }
    if limits.channels_per_allocation > MAX_CHANNELS_PER_ALLOCATION {
        return Err(invalid(
            "limits.channels_per_allocation",
            format!("at most {MAX_CHANNELS_PER_ALLOCATION} channel numbers exist (0x4000-0x4FFF)"),
        ));
    }
    if limits.unauthenticated_rate > 0 && limits.rate_limit_table_size == 0 {
        return Err(invalid(
            "limits.rate_limit_table_size",
            "must be greater than 0 while limits.unauthenticated_rate is set",
        ));
    }
    Ok(())
}

fn validate_server(config: &Config) -> Result<(), Invalid> {
    let server = &config.server;
    if server.workers > MAX_WORKERS {
        return Err(invalid(
            "server.workers",
            format!("must be at most {MAX_WORKERS} (0 = one per CPU core)"),
        ));
    }
    if !(MIN_SOCKET_BUFFER_BYTES..=MAX_SOCKET_BUFFER_BYTES).contains(&server.socket_buffer_bytes) {
        return Err(invalid(
            "server.socket_buffer_bytes",
            format!("must be between {MIN_SOCKET_BUFFER_BYTES} and {MAX_SOCKET_BUFFER_BYTES}"),
        ));
    }
    if server.bind_retry_secs > MAX_BIND_RETRY_SECS {
        return Err(invalid(
            "server.bind_retry_secs",
            format!("must be at most {MAX_BIND_RETRY_SECS} seconds"),
        ));
    }
    if server.drain_timeout_secs > MAX_DRAIN_TIMEOUT_SECS {
        return Err(invalid(
            "server.drain_timeout_secs",
            format!("must be at most {MAX_DRAIN_TIMEOUT_SECS} seconds (0 = stop at once)"),
        ));
    }
    if let Some(software) = &server.software {
        if software.is_empty() {
            return Err(invalid(
                "server.software",
                "must not be empty; omit it to send no SOFTWARE",
            ));
        }
        if software.chars().count() > MAX_SOFTWARE_CHARS {
            return Err(invalid(
                "server.software",
                format!("at most {MAX_SOFTWARE_CHARS} characters are allowed (RFC 8489)"),
            ));
        }
    }
    Ok(())
}

/// Checks a log filter (`log.level`, or `RUST_LOG` at start) against the grammar turnpike
/// accepts: comma-separated directives, each `LEVEL`, `TARGET` or `TARGET=LEVEL`, where a target
/// is a module path (`turnpike::net`) and a level one of `off`, `error`, `warn`, `info`, `debug`,
/// `trace`. tracing's span and field filters (`[span{field=value}]`) are refused: its parser
/// panics or runs for minutes on some of them (found by the `config` fuzz target: text that
/// is not ASCII, field values compiled as regular expressions, directives that break an
/// ordering invariant), and an operator's filter never needs them.
pub(crate) fn check_log_directives(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
    let is_target = |s: &str| {
        !s.is_empty()
            && s.len() <= 200
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
    };
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let ok = match directive.split_once('=') {
            Some((target, level)) => is_target(target) && is_level(level),
            None => is_level(directive) || is_target(directive),
        };
        if !ok {
            let shown: String = directive.chars().take(40).collect();
            return Err(format!(
                "`{shown}` is not LEVEL, TARGET or TARGET=LEVEL (levels: off, error, warn, info, \
                 debug, trace; span and field filters are not supported)"
            ));
        }
    }
    Ok(())
}

fn validate_log(config: &Config) -> Result<(), Invalid> {
    let level = &config.log.level;
    if level.trim().is_empty() {
        return Err(invalid(
            "log.level",
            "must not be empty; `info` is the default",
        ));
    }
    check_log_directives(level).map_err(|reason| invalid("log.level", reason))?;
    tracing_subscriber::EnvFilter::builder()
        .with_regex(false)
        .parse(level)
        .map_err(|e| invalid("log.level", format!("`{level}` is not a valid filter: {e}")))?;
    Ok(())
}
