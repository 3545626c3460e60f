//! The registry's counters and gauges: plain atomics the core and the endpoint update, read at
//! scrape time through [`RegistryMetrics::samples`]. Nothing here knows about Prometheus; the
//! names and labels are those of docs/registry-protocol.md §8.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::messages::{CloseReason, ErrorCode, SignalKind};

/// Why a relay blob was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The destination's relay queue was full.
    QueueFull,
    /// The sender exceeded its byte rate.
    RateLimited,
    /// No such peer in the sender's project.
    UnknownPeer,
    /// The frame was malformed (too short, too large, bad id).
    Malformed,
    /// The sender had not joined.
    NotJoined,
    /// The destination's byte budget (or the registry's) had no room for it.
    OverBudget,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::RateLimited,
        DropReason::UnknownPeer,
        DropReason::Malformed,
        DropReason::NotJoined,
        DropReason::OverBudget,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::RateLimited => "rate_limited",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Malformed => "malformed",
            DropReason::NotJoined => "not_joined",
            DropReason::OverBudget => "over_budget",
        }
    }
}

/// Why a request was refused before the upgrade (the HTTP `error` reasons of §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token anywhere.
    MissingToken,
    /// Not a JWT.
    MalformedToken,
    /// The `alg` matches no configured key.
    BadAlgorithm,
    /// No key verifies the signature.
    BadSignature,
    /// `exp` passed.
    Expired,
    /// `nbf` in the future.
    NotYetValid,
    /// A claim is missing or malformed.
    InvalidClaims,
    /// Subprotocols offered, ours not among them.
    UnsupportedSubprotocol,
    /// A key attestation (`typ` `turnpike-attest+jwt`) offered as a login token.
    WrongTokenType,
}

impl AuthFailure {
    /// Every reason, in label order.
    pub const ALL: [AuthFailure; 9] = [
        AuthFailure::MissingToken,
        AuthFailure::MalformedToken,
        AuthFailure::BadAlgorithm,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
        AuthFailure::InvalidClaims,
        AuthFailure::UnsupportedSubprotocol,
        AuthFailure::WrongTokenType,
    ];

    /// The `error` field of the HTTP answer, and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::MalformedToken => "malformed_token",
            AuthFailure::BadAlgorithm => "bad_algorithm",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::InvalidClaims => "invalid_claims",
            AuthFailure::UnsupportedSubprotocol => "unsupported_subprotocol",
            AuthFailure::WrongTokenType => "wrong_token_type",
        }
    }

    /// A sentence for people.
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => {
                "no token: send Authorization: Bearer, a turnpike.bearer.<token> subprotocol or access_token"
            }
            AuthFailure::MalformedToken => "the token is not a well-formed JWT",
            AuthFailure::BadAlgorithm => "the token's algorithm matches no configured key",
            AuthFailure::BadSignature => "no configured key verifies the token's signature",
            AuthFailure::Expired => "the token has expired",
            AuthFailure::NotYetValid => "the token is not valid yet",
            AuthFailure::InvalidClaims => {
                "the token needs sub and project (1-64 printable ASCII bytes), exp, and a 32-byte base64 pk if any"
            }
            AuthFailure::UnsupportedSubprotocol => {
                "the offered subprotocols do not include turnpike.registry.v1"
            }
            AuthFailure::WrongTokenType => {
                "the token is a key attestation (typ turnpike-attest+jwt), not a login token"
            }
        }
    }
}

/// Why a connection was refused for capacity (§1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// The IP address holds `max_connections_per_ip` connections (429).
    TooManyConnections,
    /// The server holds `max_connections` connections (503).
    ServerFull,
}

impl ConnectRefusal {
    /// The `error` field and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectRefusal::TooManyConnections => "too_many_connections",
            ConnectRefusal::ServerFull => "server_full",
        }
    }
}

/// The registry's counters and gauges.
#[derive(Debug, Default)]
pub struct RegistryMetrics {
    pub(crate) connections: AtomicI64,
    pub(crate) peers: AtomicI64,
    pub(crate) projects: AtomicI64,
    pub(crate) signals: [AtomicU64; 3],
    pub(crate) relay_blobs: AtomicU64,
    pub(crate) relay_bytes: AtomicU64,
    pub(crate) relay_drops: [AtomicU64; DropReason::ALL.len()],
    /// Bytes queued for all peers (what `budget_bytes` bounds).
    pub(crate) queued_bytes: AtomicI64,
    pub(crate) errors: [AtomicU64; ErrorCode::ALL.len()],
    pub(crate) auth_failures: [AtomicU64; AuthFailure::ALL.len()],
    pub(crate) refused: [AtomicU64; 2],
    pub(crate) closes: [AtomicU64; CloseReason::ALL.len()],
    pub(crate) reauths: AtomicU64,
    pub(crate) token_warnings: AtomicU64,
    pub(crate) relay_usage_warnings: AtomicU64,
}

/// Whether a sample is a counter or a gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One value for the metrics collector: a metric name, its help text, at most one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The metric name, such as `turnpike_registry_relay_drops_total`.
    pub name: &'static str,
    /// The help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: SampleKind,
    /// The label (name, value), if the metric has one.
    pub label: Option<(&'static str, &'static str)>,
    /// The value.
    pub value: i64,
}

fn read(counter: &AtomicU64) -> i64 {
    counter.load(Ordering::Relaxed).min(i64::MAX as u64) as i64
}

impl RegistryMetrics {
    /// Every value, for the `/metrics` collector (names: docs/registry-protocol.md §8).
    pub fn samples(&self) -> Vec<Sample> {
        use SampleKind::{Counter, Gauge};
        let mut out = Vec::with_capacity(48);
        let mut push = |name, help, kind, label, value| {
            out.push(Sample {
                name,
                help,
                kind,
                label,
                value,
            })
        };
        push(
            "turnpike_registry_connections",
            "Registry WebSocket connections, joined or not.",
            Gauge,
            None,
            self.connections.load(Ordering::Relaxed),
        );
        push(
            "turnpike_registry_peers",
            "Joined registry peers.",
            Gauge,
            None,
            self.peers.load(Ordering::Relaxed),
        );
        push(
            "turnpike_registry_projects",
            "Projects with at least one joined peer.",
            Gauge,
            None,
            self.projects.load(Ordering::Relaxed),
        );
        push(
            "turnpike_registry_queued_bytes",
            "Bytes queued for all peers (control, signaling and relay frames), bounded by budget_bytes.",
            Gauge,
            None,
            self.queued_bytes.load(Ordering::Relaxed),
        );
        for kind in SignalKind::ALL {
            push(
                "turnpike_registry_signaling_messages_total",
                "Signaling messages forwarded, by type.",
                Counter,
                Some(("type", kind.as_str())),
                read(&self.signals[kind as usize]),
            );
        }
        push(
            "turnpike_registry_relay_blobs_total",
            "Relay blobs forwarded.",
            Counter,
            None,
            read(&self.relay_blobs),
        );
        push(
            "turnpike_registry_relay_bytes_total",
            "Relay bytes forwarded (frames as sent to the destination).",
            Counter,
            None,
            read(&self.relay_bytes),
        );
        for reason in DropReason::ALL {
            push(
                "turnpike_registry_relay_drops_total",
                "Relay blobs not forwarded, by reason.",
                Counter,
                Some(("reason", reason.as_str())),
                read(&self.relay_drops[reason as usize]),
            );
        }
        for code in ErrorCode::ALL {
            push(
                "turnpike_registry_errors_total",
                "Error messages sent to peers, by code.",
                Counter,
                Some(("code", code.as_str())),
                read(&self.errors[code.index()]),
            );
        }
        for reason in AuthFailure::ALL {
            push(
                "turnpike_registry_auth_failures_total",
                "Upgrade requests refused before the upgrade, by reason.",
                Counter,
                Some(("reason", reason.as_str())),
                read(&self.auth_failures[reason as usize]),
            );
        }
        for (index, reason) in [
            ConnectRefusal::TooManyConnections,
            ConnectRefusal::ServerFull,
        ]
        .into_iter()
        .enumerate()
        {
            push(
                "turnpike_registry_connections_refused_total",
                "Connections refused for capacity, by reason.",
                Counter,
                Some(("reason", reason.as_str())),
                read(&self.refused[index]),
            );
        }
        for reason in CloseReason::ALL {
            push(
                "turnpike_registry_closes_total",
                "Connections closed by the server, by reason.",
                Counter,
                Some(("reason", reason.as_str())),
                read(&self.closes[reason as usize]),
            );
        }
        push(
            "turnpike_registry_reauths_total",
            "Successful reauth messages (a connection's token replaced).",
            Counter,
            None,
            read(&self.reauths),
        );
        push(
            "turnpike_registry_token_warnings_total",
            "token_expiring messages sent.",
            Counter,
            None,
            read(&self.token_warnings),
        );
        push(
            "turnpike_registry_relay_usage_warnings_total",
            "relay_usage messages sent (a peer relayed above relay_warn_bytes_per_sec).",
            Counter,
            None,
            read(&self.relay_usage_warnings),
        );
        out
    }

    /// The value of one sample, for tests and tools.
    pub fn value(&self, name: &str, label: Option<&str>) -> Option<i64> {
        self.samples()
            .into_iter()
            .find(|s| s.name == name && s.label.map(|(_, v)| v) == label)
            .map(|s| s.value)
    }

    pub(crate) fn count_drop(&self, reason: DropReason) {
        self.relay_drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_error(&self, code: ErrorCode) {
        self.errors[code.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self, reason: ConnectRefusal) {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_close(&self, reason: CloseReason) {
        self.closes[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}
