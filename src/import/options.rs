//! The coturn options the importer names without converting: those whose values may hold a
//! secret (shown by name only), and those turnpike has no equivalent for, with the reason.

/// Options whose value may hold a secret: notes show their name only.
pub(super) const SECRET_OPTIONS: &[&str] = &[
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
pub(super) const UNSUPPORTED: &[(&str, &str)] = &[
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
