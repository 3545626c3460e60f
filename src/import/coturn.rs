//! The option-by-option conversion of turnserver.conf (see [`super::convert_coturn`]).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{Import, Line, Note, lines, quote, range_to_cidrs};

/// Options whose value may hold a secret: notes show their name only.
const SECRET_OPTIONS: &[&str] = &[
    "static-auth-secret",
    "user",
    "cli-password",
    "pkey-pwd",
    "userdb",
    "psql-userdb",
    "mysql-userdb",
    "mongo-userdb",
    "redis-userdb",
    "redis-statsdb",
    "secret-key-file",
];

/// Options turnpike has no equivalent for, with the reason given in the note.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "alt-listening-port",
        "no RFC 5780 NAT-behaviour discovery: no alternate port",
    ),
    (
        "alt-tls-listening-port",
        "no RFC 5780 NAT-behaviour discovery: no alternate port",
    ),
    ("tcp-proxy-port", "no PROXY-protocol listener"),
    (
        "listening-device",
        "listeners bind by address only ([[listen]] address)",
    ),
    (
        "relay-device",
        "relays bind by address only (relay.bind_ip)",
    ),
    (
        "aux-server",
        "no auxiliary servers: add a [[listen]] table per address instead",
    ),
    (
        "udp-self-balance",
        "no self-balancing: UDP load is spread over server.workers",
    ),
    (
        "alternate-server",
        "fleet.alternate_servers is only sent while a node drains; with [cluster], /api/v1/ice-servers lists the least-loaded nodes first instead",
    ),
    (
        "tls-alternate-server",
        "fleet.alternate_servers is only sent while a node drains",
    ),
    (
        "oauth",
        "no third-party (OAuth) authorization: use REST secrets or [http.jwt] bearer tokens for the ICE-servers endpoint",
    ),
    ("server-name", "no server name: the realm is realm"),
    (
        "userdb",
        "no user database: REST secrets (auth.secrets) or static users ([auth.users])",
    ),
    (
        "psql-userdb",
        "no user database: REST secrets (auth.secrets) or static users ([auth.users])",
    ),
    (
        "mysql-userdb",
        "no user database: REST secrets (auth.secrets) or static users ([auth.users])",
    ),
    (
        "mongo-userdb",
        "no user database: REST secrets (auth.secrets) or static users ([auth.users])",
    ),
    (
        "redis-userdb",
        "no user database: REST secrets (auth.secrets) or static users ([auth.users])",
    ),
    ("secret-key-file", "no encrypted user keys"),
    (
        "redis-statsdb",
        "statistics are Prometheus metrics at /metrics (docs/metrics.md)",
    ),
    ("check-origin-consistency", "no ORIGIN attribute checks"),
    (
        "bps-capacity",
        "no server-wide bandwidth cap: limits.bandwidth_bps caps each allocation",
    ),
    ("channel-lifetime", "fixed by RFC 8656: 600 s"),
    ("permission-lifetime", "fixed by RFC 8656: 300 s"),
    (
        "pkey-pwd",
        "encrypted private keys are not read: decrypt the key (`openssl pkey -in KEY -out KEY2`)",
    ),
    (
        "cipher-list",
        "TLS 1.2/1.3 with rustls' safe defaults only; no cipher configuration",
    ),
    ("ec-curve-name", "rustls' default key exchange groups"),
    ("dh566", "no finite-field DH (rustls uses ECDHE)"),
    ("dh1066", "no finite-field DH (rustls uses ECDHE)"),
    ("dh2066", "no finite-field DH (rustls uses ECDHE)"),
    ("dh-file", "no finite-field DH (rustls uses ECDHE)"),
    ("no-tlsv1", "TLS 1.0 and 1.1 are never offered"),
    ("no-tlsv1_1", "TLS 1.0 and 1.1 are never offered"),
    ("no-tlsv1_2", "TLS 1.2 and 1.3 are offered"),
    ("ca-file", "no client certificates"),
    (
        "no-dtls",
        "turnpike has no DTLS listener (nothing to turn off)",
    ),
    (
        "log-file",
        "logs go to standard error (journald under systemd); [log] format = \"json\" for shippers",
    ),
    (
        "syslog",
        "logs go to standard error (journald under systemd)",
    ),
    (
        "syslog-facility",
        "logs go to standard error (journald under systemd)",
    ),
    (
        "simple-log",
        "logs go to standard error (journald under systemd)",
    ),
    (
        "no-stdout-log",
        "logs go to standard error (journald under systemd)",
    ),
    (
        "new-log-timestamp",
        "log lines always carry an RFC 3339 timestamp",
    ),
    (
        "new-log-timestamp-format",
        "log lines always carry an RFC 3339 timestamp",
    ),
    (
        "log-binding",
        "Binding requests are not logged (they are counted in /metrics)",
    ),
    (
        "pidfile",
        "no PID file: systemd tracks the process (Type=notify)",
    ),
    ("proc-user", "the systemd unit runs as User=turnpike"),
    ("proc-group", "the systemd unit runs as Group=turnpike"),
    (
        "no-cli",
        "no telnet CLI: `turnpike admin` over the admin API (http.admin_keys)",
    ),
    (
        "cli-ip",
        "no telnet CLI: `turnpike admin` over the admin API (http.admin_keys)",
    ),
    (
        "cli-port",
        "no telnet CLI: `turnpike admin` over the admin API (http.admin_keys)",
    ),
    (
        "cli-password",
        "no telnet CLI: `turnpike admin` over the admin API (http.admin_keys)",
    ),
    (
        "cli-max-output-sessions",
        "no telnet CLI: `turnpike admin sessions` pages its output",
    ),
    (
        "web-admin",
        "no web admin: `turnpike admin` over the admin API (http.admin_keys)",
    ),
    (
        "web-admin-ip",
        "no web admin: the admin API listens on http.address",
    ),
    (
        "web-admin-port",
        "no web admin: the admin API listens on http.address",
    ),
    (
        "web-admin-listen-on-workers",
        "no web admin: the admin API listens on http.address",
    ),
    (
        "acme-redirect",
        "no ACME redirect: renew certificates outside (files reload by themselves)",
    ),
    ("server-relay", "no server relay mode"),
    ("mobility", "no ICE mobility (MOBILITY-TICKET)"),
    (
        "keep-address-family",
        "allocations follow RFC 6156/8656: REQUESTED-ADDRESS-FAMILY, default IPv4",
    ),
    (
        "allocation-default-address-family",
        "allocations follow RFC 6156/8656: REQUESTED-ADDRESS-FAMILY, default IPv4",
    ),
    ("max-allocate-timeout", "no allocation timeout setting"),
    (
        "secure-stun",
        "Binding requests are answered without authentication (answers carry nothing optional, rate-limited errors)",
    ),
    ("stun-only", "TURN is always on; no STUN-only mode"),
    ("no-stun", "STUN Binding is always answered"),
    (
        "no-rfc5780",
        "RFC 5780 is never offered (nothing to turn off)",
    ),
    (
        "no-stun-backward-compatibility",
        "RFC 3489 (classic STUN) is never answered",
    ),
    (
        "response-origin-only-with-rfc5780",
        "answers never carry RESPONSE-ORIGIN or OTHER-ADDRESS",
    ),
    (
        "no-software-attribute",
        "answers carry no SOFTWARE by default (server.software sets one)",
    ),
    ("no-udp-relay", "UDP relays are always offered"),
    (
        "rest-api-separator",
        "REST usernames are EXPIRY:USER with ':' only",
    ),
    (
        "prod",
        "already turnpike's behaviour: no SOFTWARE, no version in answers",
    ),
    (
        "sha256",
        "MESSAGE-INTEGRITY-SHA256 is accepted from clients that use it; nothing to set",
    ),
    ("no-auth-pings", "no Redis statistics"),
    ("no-dynamic-ip-list", "no database-held IP lists"),
    ("no-dynamic-realms", "one realm"),
    (
        "db",
        "no user database: REST secrets (auth.secrets) or static users ([auth.users])",
    ),
];

/// What the file asked for, gathered before the TOML is written.
#[derive(Default)]
struct Wanted {
    notes: Vec<Note>,
    listening_port: Option<u16>,
    tls_port: Option<u16>,
    listening_ips: Vec<IpAddr>,
    no_udp: bool,
    no_tcp: bool,
    no_tls: bool,
    cert: Option<String>,
    pkey: Option<String>,
    relay_ips: Vec<IpAddr>,
    /// (public, private)
    external: Vec<(IpAddr, Option<IpAddr>)>,
    min_port: Option<u16>,
    max_port: Option<u16>,
    realm: Option<String>,
    use_auth_secret: bool,
    secrets: Vec<String>,
    users: Vec<(String, String)>,
    allow: Vec<String>,
    deny: Vec<String>,
    user_quota: Option<u32>,
    total_quota: Option<u32>,
    max_bps: Option<u64>,
    stale_nonce: Option<u64>,
    max_lifetime: Option<u32>,
    no_tcp_relay: bool,
    log_level: Option<&'static str>,
    workers: Option<usize>,
    prometheus: bool,
    prometheus_port: Option<u16>,
    prometheus_address: Option<IpAddr>,
    no_auth: bool,
    lt_cred_mech: bool,
}

impl Wanted {
    fn note(&mut self, line: &Line<'_>, message: impl Into<String>) {
        let option = match (line.value, SECRET_OPTIONS.contains(&line.name)) {
            (Some(_), true) => format!("{}=…", line.name),
            (Some(value), false) => format!("{}={value}", line.name),
            (None, _) => line.name.to_owned(),
        };
        self.notes.push(Note {
            line: line.number,
            option,
            message: message.into(),
        });
    }

    fn note_file(&mut self, message: impl Into<String>) {
        self.notes.push(Note {
            line: 0,
            option: "-".into(),
            message: message.into(),
        });
    }
}

pub(super) fn convert(text: &str, source: &str) -> Import {
    let mut w = Wanted::default();
    for line in lines(text) {
        option(&mut w, &line);
    }
    defaults(&mut w);
    let toml = render(&mut w, source);
    Import {
        toml,
        notes: w.notes,
    }
}

/// A number, or a note saying why the value was not taken.
fn number<T: std::str::FromStr>(w: &mut Wanted, line: &Line<'_>) -> Option<T> {
    match line.value.map(str::parse::<T>) {
        Some(Ok(n)) => Some(n),
        _ => {
            w.note(line, "not a number turnpike can take: left out");
            None
        }
    }
}

fn ip(w: &mut Wanted, line: &Line<'_>) -> Option<IpAddr> {
    match line
        .value
        .map(|v| v.trim_matches(['[', ']']).parse::<IpAddr>())
    {
        Some(Ok(ip)) => Some(ip),
        _ => {
            w.note(line, "not an IP address: left out");
            None
        }
    }
}

/// One option line.
fn option(w: &mut Wanted, line: &Line<'_>) {
    let value = line.value;
    match line.name {
        "listening-port" => w.listening_port = number(w, line),
        "tls-listening-port" => w.tls_port = number(w, line),
        "listening-ip" => {
            if let Some(ip) = ip(w, line) {
                w.listening_ips.push(ip);
            }
        }
        "no-udp" => w.no_udp = true,
        "no-tcp" => w.no_tcp = true,
        "no-tls" => w.no_tls = true,
        "cert" => w.cert = value.map(str::to_owned),
        "pkey" => w.pkey = value.map(str::to_owned),
        "relay-ip" => {
            if let Some(ip) = ip(w, line) {
                if ip.is_unspecified() || ip.is_multicast() {
                    w.note(line, "not a unicast address: left out");
                } else {
                    w.relay_ips.push(ip);
                }
            }
        }
        "external-ip" => external_ip(w, line),
        "min-port" => w.min_port = number(w, line),
        "max-port" => w.max_port = number(w, line),
        "realm" => match value {
            Some(realm) if valid_realm(realm) => w.realm = Some(realm.to_owned()),
            _ => w.note(
                line,
                "not a realm turnpike takes (1-127 characters, no quotes, backslashes or control characters): left out",
            ),
        },
        "lt-cred-mech" | "a" => w.lt_cred_mech = true,
        "use-auth-secret" | "rest-api" => w.use_auth_secret = true,
        "static-auth-secret" => match value {
            Some(secret) => w.secrets.push(secret.to_owned()),
            None => w.note(line, "empty: left out"),
        },
        "user" | "u" => user(w, line),
        "no-auth" | "z" => {
            w.no_auth = true;
            w.note(
                line,
                "turnpike always authenticates allocations: give clients REST credentials (auth.secrets) or a static user",
            );
        }
        "denied-peer-ip" => peer_range(w, line, false),
        "allowed-peer-ip" => peer_range(w, line, true),
        "allow-loopback-peers" => {
            w.allow.push("127.0.0.0/8".into());
            w.allow.push("::1".into());
            w.note(
                line,
                "peers.allow gets 127.0.0.0/8 and ::1; the server's own listener and relay addresses stay denied unless allowed by a /32 or /128 entry",
            );
        }
        "no-loopback-peers" | "no-multicast-peers" => w.note(
            line,
            "already turnpike's default: loopback and multicast peers are denied",
        ),
        "user-quota" => w.user_quota = number(w, line),
        "total-quota" => w.total_quota = number(w, line),
        "max-bps" => w.max_bps = number(w, line),
        "stale-nonce" => {
            w.stale_nonce = match value {
                None => Some(600),
                Some(_) => number(w, line),
            }
        }
        "max-allocate-lifetime" => w.max_lifetime = number(w, line),
        "no-tcp-relay" => w.no_tcp_relay = true,
        "verbose" | "v" => w.log_level = Some("info"),
        "Verbose" | "V" => w.log_level = Some("debug"),
        "relay-threads" | "general-relay-threads" => {
            w.workers = number(w, line);
            w.note(
                line,
                "server.workers: UDP worker threads, one per core when 0 (TCP and TLS run on the async runtime)",
            );
        }
        "prometheus" => w.prometheus = true,
        "prometheus-port" => w.prometheus_port = number(w, line),
        "prometheus-address" => w.prometheus_address = ip(w, line),
        "fingerprint" | "f" => w.note(
            line,
            "nothing to set: answers carry FINGERPRINT when the request did (RFC 8489 §14.7)",
        ),
        name => match UNSUPPORTED.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => w.note(line, format!("no equivalent: {why}")),
            None => w.note(line, "unknown to the importer: left out"),
        },
    }
}

fn valid_realm(realm: &str) -> bool {
    (1..=127).contains(&realm.chars().count())
        && !realm
            .chars()
            .any(|c| c == '"' || c == '\\' || c.is_control())
}

fn external_ip(w: &mut Wanted, line: &Line<'_>) {
    let parsed = line.value.and_then(|v| match v.split_once('/') {
        Some((public, private)) => Some((
            public.parse::<IpAddr>().ok()?,
            Some(private.parse::<IpAddr>().ok()?),
        )),
        None => Some((v.parse::<IpAddr>().ok()?, None)),
    });
    match parsed {
        Some((public, private))
            if private.is_none_or(|p: IpAddr| p.is_ipv6() == public.is_ipv6())
                && !public.is_unspecified()
                && !public.is_multicast() =>
        {
            w.external.push((public, private))
        }
        _ => w.note(
            line,
            "not PUBLIC or PUBLIC/PRIVATE addresses of one family: left out",
        ),
    }
}

fn user(w: &mut Wanted, line: &Line<'_>) {
    let Some((name, password)) = line.value.and_then(|v| v.split_once(':')) else {
        w.note(line, "not NAME:PASSWORD: left out");
        return;
    };
    if password.starts_with("0x") {
        w.note(
            line,
            "a hashed key (0x...) cannot be imported: turnpike's [auth.users] holds passwords; set this user's password by hand",
        );
    } else if name.is_empty() || password.is_empty() || name.len() > 512 {
        w.note(line, "an empty or overlong name or password: left out");
    } else if crate::proto::credentials::parse_rest_username(name).is_some() {
        w.note(
            line,
            "the name looks like a REST username (digits, or digits and ':'), which turnpike reserves: left out",
        );
    } else if w.users.iter().any(|(n, _)| n == name) {
        w.note(line, "the same user again: the first password is kept");
    } else {
        w.users.push((name.to_owned(), password.to_owned()));
    }
}

fn peer_range(w: &mut Wanted, line: &Line<'_>, allow: bool) {
    let blocks = line.value.and_then(|v| {
        let (first, last) = v.split_once('-').unwrap_or((v, v));
        let first: IpAddr = first.trim().trim_matches(['[', ']']).parse().ok()?;
        let last: IpAddr = last.trim().trim_matches(['[', ']']).parse().ok()?;
        range_to_cidrs(first, last)
    });
    match blocks {
        Some(blocks) => {
            if blocks.len() > 1 {
                w.note(line, format!("as CIDR blocks: {}", blocks.join(", ")));
            }
            let list = if allow { &mut w.allow } else { &mut w.deny };
            for block in blocks {
                if !list.contains(&block) {
                    list.push(block);
                }
            }
        }
        None => w.note(
            line,
            "not an address or FIRST-LAST range of one family: left out",
        ),
    }
}

/// Remarks about defaults that differ from coturn's.
fn defaults(w: &mut Wanted) {
    w.note_file(
        "peer policy: coturn relays to private (RFC 1918, CGNAT, ULA) and link-local peers unless denied-peer-ip says otherwise; turnpike denies them, the server's own addresses and cloud metadata addresses by default. If clients relay to media servers on your network, add their ranges to [peers] allow",
    );
    if !w.no_tcp_relay {
        w.note_file(
            "RFC 6062 TCP relays: coturn offers them unless no-tcp-relay; turnpike does not by default (relay.tcp_allocations = false): browsers never use them. Set it to true only for clients that need them",
        );
    }
    if w.stale_nonce.is_none() {
        w.note_file(
            "nonces: coturn keeps a nonce valid forever without stale-nonce; turnpike's expire after auth.nonce_lifetime_secs (600 s), and clients retry after 438 Stale Nonce",
        );
    }
    if w.use_auth_secret && w.secrets.is_empty() {
        w.note_file(
            "use-auth-secret without static-auth-secret (coturn read the secret from its database): put the secret in auth.secrets",
        );
    }
    if !w.users.is_empty() && !w.lt_cred_mech && !w.use_auth_secret {
        w.note_file("user= without lt-cred-mech: imported into [auth.users] all the same");
    }
    if w.secrets.is_empty() && w.users.is_empty() {
        w.note_file(
            "no REST secret and no user: `turnpike serve` would generate a random secret at each start; set auth.secrets (`openssl rand -base64 32`)",
        );
    }
    if !w.prometheus {
        w.note_file(
            "metrics: turnpike always serves /metrics, /healthz and /readyz on http.address (loopback by default)",
        );
    }
}

/// Writes the TOML.
fn render(w: &mut Wanted, source: &str) -> String {
    let mut body = String::new();
    if let Some(realm) = &w.realm {
        let _ = writeln!(body, "realm = {}\n", quote(realm));
    }
    listeners(w, &mut body);
    relay(w, &mut body);
    auth(w, &mut body);
    if !w.allow.is_empty() || !w.deny.is_empty() {
        body.push_str("[peers]\n");
        let _ = writeln!(body, "allow = {}", list(&w.allow));
        let _ = writeln!(body, "deny = {}\n", list(&w.deny));
    }
    limits(w, &mut body);
    if let Some(workers) = w.workers {
        let _ = writeln!(body, "[server]\nworkers = {}\n", workers.min(1024));
    }
    if let Some(level) = w.log_level {
        let _ = writeln!(body, "[log]\nlevel = {}\n", quote(level));
    }
    tls(w, &mut body);
    http(w, &mut body);

    let mut out = format!(
        "# turnpike configuration imported from {source} by `turnpike import-coturn`.\n\
         # Every option turnpike does not set is at its default (config/turnpike.toml documents\n\
         # them all). Check with `turnpike check-config FILE`. This file may hold secrets: keep it\n\
         # readable by root and the turnpike group only (mode 0640).\n#\n"
    );
    if w.notes.is_empty() {
        out.push_str("# Every option carried over.\n");
    } else {
        out.push_str("# What did not carry over, or changes meaning:\n");
        for note in &w.notes {
            let place = match note.line {
                0 => "default".to_owned(),
                n => format!("line {n}, {}", note.option),
            };
            // A comment cannot hold control characters (TOML): they come from the input.
            let line: String = format!("# - {place}: {}", note.message)
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            let _ = writeln!(out, "{line}");
        }
    }
    out.push('\n');
    out.push_str(&body);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn listeners(w: &mut Wanted, body: &mut String) {
    let port = w.listening_port.filter(|p| *p != 0).unwrap_or(3478);
    let tls_port = w.tls_port.filter(|p| *p != 0).unwrap_or(5349);
    let ips: Vec<String> = if w.listening_ips.is_empty() {
        vec!["0.0.0.0".into(), "[::]".into()]
    } else {
        w.listening_ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            })
            .collect()
    };
    let mut tls = !w.no_tls;
    if tls && (w.cert.is_none() || w.pkey.is_none()) {
        tls = false;
        if w.cert.is_some() != w.pkey.is_some() {
            w.note_file("cert without pkey (or the reverse): no TLS listener imported");
        } else {
            w.note_file(
                "no cert and pkey: coturn serves TLS only with its default certificate files; no TLS listener imported (add [tls] certificate and private_key and a [[listen]] with transport = \"tls\")",
            );
        }
    }
    if tls && !w.no_tcp && tls_port == port {
        tls = false;
        w.note_file(
            "tls-listening-port equals listening-port: coturn tells TCP from TLS on one port, turnpike needs two; no TLS listener imported (or use a TLS listener with serve_http on 443)",
        );
    }
    let mut any = false;
    for ip in &ips {
        for (on, transport, port) in [
            (!w.no_udp, "udp", port),
            (!w.no_tcp, "tcp", port),
            (tls, "tls", tls_port),
        ] {
            if on {
                any = true;
                let _ = writeln!(
                    body,
                    "[[listen]]\ntransport = \"{transport}\"\naddress = \"{ip}:{port}\"\n"
                );
            }
        }
    }
    if !any {
        w.note_file(
            "no listener is left (no-udp, no-tcp and no TLS): turnpike's default listeners apply (UDP and TCP 3478, TLS 5349)",
        );
    }
}

fn relay(w: &mut Wanted, body: &mut String) {
    let mut lines = Vec::new();
    let v4: Vec<IpAddr> = w
        .relay_ips
        .iter()
        .copied()
        .filter(IpAddr::is_ipv4)
        .collect();
    let v6: Vec<IpAddr> = w
        .relay_ips
        .iter()
        .copied()
        .filter(IpAddr::is_ipv6)
        .collect();
    let mut bind_ip = v4.first().copied();
    let bind_ipv6 = v6.first().copied();
    let mut bind_ips: Vec<IpAddr> = v4.iter().chain(v6.iter()).skip(0).copied().collect();
    bind_ips.retain(|ip| Some(*ip) != bind_ip && Some(*ip) != bind_ipv6);
    // external-ip: a bare PUBLIC is relay.external_ip (external_ipv6); PUBLIC/PRIVATE pairs
    // map relay addresses, whose PRIVATE side becomes a relay address when it is none yet.
    let mut external_ip = None;
    let mut external_ipv6 = None;
    let mut mappings = Vec::new();
    let external = std::mem::take(&mut w.external);
    for (public, private) in external {
        match private {
            None if public.is_ipv4() && external_ip.is_none() => external_ip = Some(public),
            None if public.is_ipv6() && external_ipv6.is_none() && bind_ipv6.is_some() => {
                external_ipv6 = Some(public)
            }
            None => w.note_file(format!(
                "external-ip={public}: a second bare public address of a family has no equivalent: left out"
            )),
            Some(private) if private.is_unspecified() || private.is_multicast() => w.note_file(
                format!("external-ip={public}/{private}: the private side is not a unicast address: left out"),
            ),
            Some(private) => {
                if private.is_ipv4() && bind_ip.is_none() {
                    bind_ip = Some(private);
                } else if Some(private) != bind_ip
                    && Some(private) != bind_ipv6
                    && !bind_ips.contains(&private)
                {
                    if private.is_ipv6() && bind_ipv6.is_none() {
                        w.note_file(format!(
                            "external-ip={public}/{private}: IPv6 relays have no bind address (relay-ip): left out"
                        ));
                        continue;
                    }
                    bind_ips.push(private);
                }
                mappings.push(format!("{public}/{private}"));
            }
        }
    }
    if !mappings.is_empty() {
        w.note_file(
            "external-ip=PUBLIC/PRIVATE: each PRIVATE address is a relay address (relay.bind_ip or relay.bind_ips) advertised as PUBLIC",
        );
    }
    if let Some(ip) = bind_ip {
        lines.push(format!("bind_ip = \"{ip}\""));
    }
    if let Some(ip) = bind_ipv6 {
        lines.push(format!("bind_ipv6 = \"{ip}\""));
    }
    if !bind_ips.is_empty() {
        let ips: Vec<String> = bind_ips.iter().map(ToString::to_string).collect();
        lines.push(format!("bind_ips = {}", list(&ips)));
    }
    if let Some(ip) = external_ip {
        lines.push(format!("external_ip = \"{ip}\""));
    }
    if let Some(ip) = external_ipv6 {
        lines.push(format!("external_ipv6 = \"{ip}\""));
    }
    if !mappings.is_empty() {
        lines.push(format!("external_ips = {}", list(&mappings)));
    }
    let (min, max) = (w.min_port.unwrap_or(49152), w.max_port.unwrap_or(65535));
    if w.min_port.is_some() || w.max_port.is_some() {
        if min == 0 || min > max {
            w.note_file(format!(
                "min-port={min} and max-port={max} make no range: relay.ports keeps its default 49152-65535"
            ));
        } else {
            lines.push(format!("ports = \"{min}-{max}\""));
        }
    }
    if w.no_tcp_relay {
        lines.push("tcp_allocations = false".into());
    }
    if !lines.is_empty() {
        let _ = writeln!(body, "[relay]\n{}\n", lines.join("\n"));
    }
}

fn auth(w: &mut Wanted, body: &mut String) {
    let mut lines = Vec::new();
    if !w.secrets.is_empty() {
        if !w.use_auth_secret {
            w.note_file(
                "static-auth-secret without use-auth-secret: imported into auth.secrets all the same (turnpike always accepts REST credentials when a secret is set)",
            );
        }
        lines.push(format!("secrets = {}", list(&w.secrets)));
    }
    if let Some(secs) = w.stale_nonce {
        let clamped = secs.clamp(1, 86_400);
        if secs == 0 {
            w.note_file("stale-nonce=0 (nonces never expire) has no equivalent: auth.nonce_lifetime_secs = 86400, the longest");
        }
        lines.push(format!(
            "nonce_lifetime_secs = {}",
            if secs == 0 { 86_400 } else { clamped }
        ));
    }
    if !lines.is_empty() {
        let _ = writeln!(body, "[auth]\n{}\n", lines.join("\n"));
    }
    if !w.users.is_empty() {
        body.push_str("[auth.users]\n");
        for (name, password) in &w.users {
            let _ = writeln!(body, "{} = {}", quote(name), quote(password));
        }
        body.push('\n');
    }
}

fn limits(w: &mut Wanted, body: &mut String) {
    let mut lines = Vec::new();
    if let Some(n) = w.user_quota {
        lines.push(format!("allocations_per_user = {n}"));
    }
    match w.total_quota {
        Some(0) => w.note_file(
            "total-quota=0 (unlimited): turnpike always bounds allocations; limits.allocations_total keeps its default 100000",
        ),
        Some(n) => lines.push(format!("allocations_total = {n}")),
        None => {}
    }
    if let Some(n) = w.max_bps {
        lines.push(format!("bandwidth_bps = {n}"));
        if n > 0 {
            w.note_file(
                "max-bps: limits.bandwidth_bps caps each allocation in each direction (UDP above it is dropped, TCP relays are slowed)",
            );
        }
    }
    if let Some(n) = w.max_lifetime.filter(|n| *n > 0) {
        lines.push(format!("max_allocation_lifetime_secs = {n}"));
        if n < 600 {
            lines.push(format!("default_allocation_lifetime_secs = {n}"));
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(body, "[limits]\n{}\n", lines.join("\n"));
    }
}

fn tls(w: &mut Wanted, body: &mut String) {
    if let (Some(cert), Some(pkey)) = (&w.cert, &w.pkey) {
        let _ = writeln!(
            body,
            "[tls]\ncertificate = {}\nprivate_key = {}\n",
            quote(cert),
            quote(pkey)
        );
    }
}

fn http(w: &mut Wanted, body: &mut String) {
    if w.prometheus_port.is_none() && w.prometheus_address.is_none() {
        if w.prometheus {
            w.note_file(
                "prometheus: /metrics is served on http.address (127.0.0.1:9641 by default, loopback only: it needs no token)",
            );
        }
        return;
    }
    let ip = w.prometheus_address.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let port = w.prometheus_port.filter(|p| *p != 0).unwrap_or(9641);
    let address = match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    w.note_file(format!(
        "prometheus-port/prometheus-address: http.address = \"{address}\" serves /metrics and the rest of the HTTP API (health checks, credentials, admin){}",
        if w.prometheus_address.is_none() {
            "; on loopback, where coturn listened on every address"
        } else {
            ""
        }
    ));
    let _ = writeln!(body, "[http]\naddress = \"{address}\"\n");
}
