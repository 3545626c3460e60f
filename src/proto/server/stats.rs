//! The core's counters: plain atomics that the core adds to and the metrics collector reads
//! from another thread at scrape time (DESIGN §1: nothing in the core knows about Prometheus).
//!
//! Every counter is a bounded array indexed by small enums (direction, transport, method,
//! result, reason), so the set of label values is fixed at compile time: no per-user or
//! per-address entry can ever be created.
//!
//! Two ways to write:
//! - [`Stats::single_writer`]: exactly one core adds to it (a UDP worker's core). An add is a
//!   relaxed load and a relaxed store, with no locked instruction, so counting costs a relayed
//!   packet two plain memory writes to a cache line only its worker writes.
//! - [`Stats::shared`]: many cores add to it (one core per TCP/TLS connection task). An add is a
//!   relaxed `fetch_add`.
//!
//! Readers ([`Stats::snapshot`]) may see one counter a packet ahead of another; every value is
//! monotonic, and the sum over all [`Stats`] is what `/metrics` reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::auth::AuthFailure;
use crate::proto::Transport;

/// Number of transports (UDP, TCP, TLS).
pub const TRANSPORTS: usize = 3;
/// Number of relay directions.
pub const DIRECTIONS: usize = 2;
/// Upper bounds (seconds) of the allocation lifetime histogram buckets; a last `+Inf` bucket
/// follows.
pub const LIFETIME_BUCKETS: [u64; 10] = [10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400];
/// The error codes the core answers with, each its own `result` value; anything else is
/// counted as `other_error`.
pub const ERROR_CODES: [u16; 13] = [
    300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 508,
];
/// Number of request results: success, one per error code, other errors.
pub const RESULTS: usize = ERROR_CODES.len() + 2;

/// The index of a transport in per-transport arrays.
pub fn transport_index(t: Transport) -> usize {
    match t {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    }
}

/// The transports in index order.
pub const TRANSPORT_ORDER: [Transport; TRANSPORTS] =
    [Transport::Udp, Transport::Tcp, Transport::Tls];

/// Which way a relayed packet went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client, through its relay socket, to a peer.
    ClientToPeer = 0,
    /// From a peer, through the relay socket, to the client.
    PeerToClient = 1,
}

impl Direction {
    /// Every direction, in index order.
    pub const ALL: [Direction; DIRECTIONS] = [Direction::ClientToPeer, Direction::PeerToClient];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ClientToPeer => "client_to_peer",
            Direction::PeerToClient => "peer_to_client",
        }
    }
}

/// Why a packet (or an unauthenticated request's answer) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Data for a peer the allocation has no permission for, or from one.
    NoPermission = 0,
    /// Data addressed to a peer that the peer policy refuses.
    PeerDenied = 1,
    /// An Allocate refused because of an allocation quota (per user or in total).
    Quota = 2,
    /// Data over the allocation's bandwidth cap.
    BandwidthCap = 3,
    /// An answer to an unauthenticated request suppressed by the per-source rate limit.
    RateLimit = 4,
    /// A datagram that is neither STUN nor ChannelData, or a malformed one.
    Malformed = 5,
    /// Data for no allocation or an unbound channel.
    NoAllocation = 6,
    /// A datagram the kernel refused to send (a full socket buffer, an unreachable or
    /// forbidden destination): counted by the I/O layer.
    SendFailed = 7,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 8] = [
        DropReason::NoPermission,
        DropReason::PeerDenied,
        DropReason::Quota,
        DropReason::BandwidthCap,
        DropReason::RateLimit,
        DropReason::Malformed,
        DropReason::NoAllocation,
        DropReason::SendFailed,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::NoPermission => "no_permission",
            DropReason::PeerDenied => "peer_denied",
            DropReason::Quota => "quota",
            DropReason::BandwidthCap => "bandwidth_cap",
            DropReason::RateLimit => "rate_limit",
            DropReason::Malformed => "malformed",
            DropReason::NoAllocation => "no_allocation",
            DropReason::SendFailed => "send_failed",
        }
    }
}

/// The STUN/TURN method of a request, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestMethod {
    /// Binding.
    Binding = 0,
    /// Allocate.
    Allocate = 1,
    /// Refresh.
    Refresh = 2,
    /// CreatePermission.
    CreatePermission = 3,
    /// ChannelBind.
    ChannelBind = 4,
    /// Any other method (answered 400).
    Other = 5,
}

impl RequestMethod {
    /// Every method, in index order.
    pub const ALL: [RequestMethod; 6] = [
        RequestMethod::Binding,
        RequestMethod::Allocate,
        RequestMethod::Refresh,
        RequestMethod::CreatePermission,
        RequestMethod::ChannelBind,
        RequestMethod::Other,
    ];

    /// The method of a STUN method number.
    pub fn from_method(method: u16) -> RequestMethod {
        use crate::proto::stun::method;
        match method {
            method::BINDING => RequestMethod::Binding,
            method::ALLOCATE => RequestMethod::Allocate,
            method::REFRESH => RequestMethod::Refresh,
            method::CREATE_PERMISSION => RequestMethod::CreatePermission,
            method::CHANNEL_BIND => RequestMethod::ChannelBind,
            _ => RequestMethod::Other,
        }
    }

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            RequestMethod::Binding => "binding",
            RequestMethod::Allocate => "allocate",
            RequestMethod::Refresh => "refresh",
            RequestMethod::CreatePermission => "create_permission",
            RequestMethod::ChannelBind => "channel_bind",
            RequestMethod::Other => "other",
        }
    }
}

/// The index of a request result: 0 success, then one per [`ERROR_CODES`] entry, then other.
pub fn result_index(result: Result<(), u16>) -> usize {
    match result {
        Ok(()) => 0,
        Err(code) => ERROR_CODES
            .iter()
            .position(|&c| c == code)
            .map_or(RESULTS - 1, |i| i + 1),
    }
}

/// The metrics label of a result index: `success`, the error code (`"401"`), or
/// `other_error`.
pub fn result_label(index: usize) -> &'static str {
    const LABELS: [&str; RESULTS] = [
        "success",
        "300",
        "400",
        "401",
        "403",
        "420",
        "437",
        "438",
        "440",
        "441",
        "442",
        "443",
        "486",
        "508",
        "other_error",
    ];
    LABELS.get(index).copied().unwrap_or("other_error")
}

/// The authentication failures that are counted (every [`AuthFailure`] but `Missing`, which
/// is the first leg of the normal handshake), in index order.
pub const AUTH_FAILURES: [AuthFailure; 7] = [
    AuthFailure::Incomplete,
    AuthFailure::StaleNonce,
    AuthFailure::WrongRealm,
    AuthFailure::UnknownUser,
    AuthFailure::Expired,
    AuthFailure::BadIntegrity,
    AuthFailure::Revoked,
];

fn auth_index(failure: AuthFailure) -> Option<usize> {
    AUTH_FAILURES.iter().position(|&f| f == failure)
}

/// Live counters of one core (or of many cores, see the module documentation).
#[derive(Debug)]
pub struct Stats {
    many_writers: bool,
    relayed_bytes: [[AtomicU64; TRANSPORTS]; DIRECTIONS],
    relayed_packets: [[AtomicU64; TRANSPORTS]; DIRECTIONS],
    allocations_created: [AtomicU64; TRANSPORTS],
    allocations_ended: [AtomicU64; TRANSPORTS],
    lifetime_buckets: [AtomicU64; LIFETIME_BUCKETS.len() + 1],
    lifetime_sum_ms: AtomicU64,
    requests: [[AtomicU64; RESULTS]; RequestMethod::ALL.len()],
    auth_failures: [AtomicU64; AUTH_FAILURES.len()],
    dropped: [AtomicU64; DropReason::ALL.len()],
}

impl Stats {
    fn new(many_writers: bool) -> Stats {
        Stats {
            many_writers,
            relayed_bytes: Default::default(),
            relayed_packets: Default::default(),
            allocations_created: Default::default(),
            allocations_ended: Default::default(),
            lifetime_buckets: Default::default(),
            lifetime_sum_ms: AtomicU64::new(0),
            requests: Default::default(),
            auth_failures: Default::default(),
            dropped: Default::default(),
        }
    }

    /// Counters written by exactly one core at a time (adds are a load and a store). Sharing
    /// these between cores that run concurrently would lose counts: use [`Stats::shared`].
    pub fn single_writer() -> Stats {
        Stats::new(false)
    }

    /// Counters any number of cores may add to concurrently (adds are `fetch_add`).
    pub fn shared() -> Stats {
        Stats::new(true)
    }

    #[inline]
    fn add(&self, counter: &AtomicU64, n: u64) {
        if self.many_writers {
            counter.fetch_add(n, Ordering::Relaxed);
        } else {
            // Single writer: no other thread stores to this counter, so a plain load and store
            // cannot lose an update, and needs no locked instruction.
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        }
    }

    /// Counts one relayed packet of `bytes` payload bytes.
    #[inline]
    pub fn relayed(&self, direction: Direction, transport: Transport, bytes: u64) {
        let (d, t) = (direction as usize, transport_index(transport));
        self.add(&self.relayed_bytes[d][t], bytes);
        self.add(&self.relayed_packets[d][t], 1);
    }

    /// Counts `packets` relayed packets of `bytes` payload bytes in all (what a kernel fast
    /// path relayed since it last reported).
    pub fn relayed_many(
        &self,
        direction: Direction,
        transport: Transport,
        packets: u64,
        bytes: u64,
    ) {
        if packets == 0 && bytes == 0 {
            return;
        }
        let (d, t) = (direction as usize, transport_index(transport));
        self.add(&self.relayed_bytes[d][t], bytes);
        self.add(&self.relayed_packets[d][t], packets);
    }

    /// Counts a dropped packet.
    #[inline]
    pub fn dropped(&self, reason: DropReason) {
        self.add(&self.dropped[reason as usize], 1);
    }

    /// Counts `n` packets dropped for `reason` (0 counts nothing).
    pub fn dropped_many(&self, reason: DropReason, n: u64) {
        if n > 0 {
            self.add(&self.dropped[reason as usize], n);
        }
    }

    /// Counts an answered request (`Err(code)` for an error answer).
    pub fn request(&self, method: RequestMethod, result: Result<(), u16>) {
        self.add(&self.requests[method as usize][result_index(result)], 1);
    }

    /// Counts an authentication failure (`Missing` is not a failure and is not counted).
    pub fn auth_failure(&self, failure: AuthFailure) {
        if let Some(i) = auth_index(failure) {
            self.add(&self.auth_failures[i], 1);
        }
    }

    /// Counts a new allocation.
    pub fn allocation_created(&self, transport: Transport) {
        self.add(&self.allocations_created[transport_index(transport)], 1);
    }

    /// Counts an allocation that ended after `lifetime`.
    pub fn allocation_ended(&self, transport: Transport, lifetime: Duration) {
        let secs = lifetime.as_secs_f64();
        let bucket = LIFETIME_BUCKETS
            .iter()
            .position(|&b| secs <= b as f64)
            .unwrap_or(LIFETIME_BUCKETS.len());
        self.add(&self.lifetime_buckets[bucket], 1);
        self.add(
            &self.lifetime_sum_ms,
            u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
        );
        self.add(&self.allocations_ended[transport_index(transport)], 1);
    }

    /// A copy of every counter now.
    pub fn snapshot(&self) -> StatsSnapshot {
        fn read<const N: usize>(a: &[AtomicU64; N]) -> [u64; N] {
            std::array::from_fn(|i| a[i].load(Ordering::Relaxed))
        }
        StatsSnapshot {
            relayed_bytes: [read(&self.relayed_bytes[0]), read(&self.relayed_bytes[1])],
            relayed_packets: [
                read(&self.relayed_packets[0]),
                read(&self.relayed_packets[1]),
            ],
            allocations_created: read(&self.allocations_created),
            allocations_ended: read(&self.allocations_ended),
            lifetime_buckets: read(&self.lifetime_buckets),
            lifetime_sum_ms: self.lifetime_sum_ms.load(Ordering::Relaxed),
            requests: std::array::from_fn(|m| read(&self.requests[m])),
            auth_failures: read(&self.auth_failures),
            dropped: read(&self.dropped),
        }
    }
}

/// The values of a [`Stats`] at one moment; snapshots of many add up with
/// [`StatsSnapshot::merge`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Payload bytes relayed, by direction and transport.
    pub relayed_bytes: [[u64; TRANSPORTS]; DIRECTIONS],
    /// Packets relayed, by direction and transport.
    pub relayed_packets: [[u64; TRANSPORTS]; DIRECTIONS],
    /// Allocations created, by transport.
    pub allocations_created: [u64; TRANSPORTS],
    /// Allocations ended, by transport.
    pub allocations_ended: [u64; TRANSPORTS],
    /// Ended allocations per lifetime bucket ([`LIFETIME_BUCKETS`], then `+Inf`), not
    /// cumulative.
    pub lifetime_buckets: [u64; LIFETIME_BUCKETS.len() + 1],
    /// Sum of the lifetimes of ended allocations, in milliseconds.
    pub lifetime_sum_ms: u64,
    /// Requests by method and result index ([`result_index`]).
    pub requests: [[u64; RESULTS]; RequestMethod::ALL.len()],
    /// Authentication failures, in [`AUTH_FAILURES`] order.
    pub auth_failures: [u64; AUTH_FAILURES.len()],
    /// Dropped packets, in [`DropReason::ALL`] order.
    pub dropped: [u64; DropReason::ALL.len()],
}

impl StatsSnapshot {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &StatsSnapshot) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.wrapping_add(*y);
            }
        }
        for d in 0..DIRECTIONS {
            add(&mut self.relayed_bytes[d], &other.relayed_bytes[d]);
            add(&mut self.relayed_packets[d], &other.relayed_packets[d]);
        }
        add(&mut self.allocations_created, &other.allocations_created);
        add(&mut self.allocations_ended, &other.allocations_ended);
        add(&mut self.lifetime_buckets, &other.lifetime_buckets);
        self.lifetime_sum_ms = self.lifetime_sum_ms.wrapping_add(other.lifetime_sum_ms);
        for (m, o) in self.requests.iter_mut().zip(&other.requests) {
            add(m, o);
        }
        add(&mut self.auth_failures, &other.auth_failures);
        add(&mut self.dropped, &other.dropped);
    }

    /// Dropped packets for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Authentication failures for `failure` (0 for `Missing`, which is not counted).
    pub fn auth_failures(&self, failure: AuthFailure) -> u64 {
        auth_index(failure).map_or(0, |i| self.auth_failures[i])
    }

    /// Requests of `method` with `result`.
    pub fn requests(&self, method: RequestMethod, result: Result<(), u16>) -> u64 {
        self.requests[method as usize][result_index(result)]
    }

    /// Allocations live now on `transport` (created minus ended).
    pub fn allocations_active(&self, transport: Transport) -> u64 {
        let t = transport_index(transport);
        self.allocations_created[t].saturating_sub(self.allocations_ended[t])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_writers_count_the_same() {
        for stats in [Stats::single_writer(), Stats::shared()] {
            stats.relayed(Direction::ClientToPeer, Transport::Udp, 100);
            stats.relayed(Direction::ClientToPeer, Transport::Udp, 20);
            stats.relayed(Direction::PeerToClient, Transport::Tls, 7);
            stats.dropped(DropReason::Malformed);
            stats.request(RequestMethod::Allocate, Err(401));
            stats.request(RequestMethod::Allocate, Err(599));
            stats.request(RequestMethod::Binding, Ok(()));
            stats.auth_failure(AuthFailure::Missing);
            stats.auth_failure(AuthFailure::Expired);
            stats.allocation_created(Transport::Udp);
            stats.allocation_created(Transport::Udp);
            stats.allocation_ended(Transport::Udp, Duration::from_secs(30));
            stats.allocation_ended(Transport::Udp, Duration::from_secs(100_000));
            let s = stats.snapshot();
            assert_eq!(s.relayed_bytes[0], [120, 0, 0]);
            assert_eq!(s.relayed_packets[0], [2, 0, 0]);
            assert_eq!(s.relayed_bytes[1], [0, 0, 7]);
            assert_eq!(s.dropped(DropReason::Malformed), 1);
            assert_eq!(s.dropped(DropReason::RateLimit), 0);
            assert_eq!(s.requests(RequestMethod::Allocate, Err(401)), 1);
            assert_eq!(
                s.requests(RequestMethod::Allocate, Err(598)),
                1,
                "other_error"
            );
            assert_eq!(s.requests(RequestMethod::Binding, Ok(())), 1);
            assert_eq!(s.auth_failures(AuthFailure::Missing), 0);
            assert_eq!(s.auth_failures(AuthFailure::Expired), 1);
            assert_eq!(s.allocations_active(Transport::Udp), 0);
            assert_eq!(s.allocations_created[0], 2);
            // 30 s lands in the `le=30` bucket (index 1), 100000 s in +Inf.
            let mut buckets = [0u64; LIFETIME_BUCKETS.len() + 1];
            buckets[1] = 1;
            buckets[LIFETIME_BUCKETS.len()] = 1;
            assert_eq!(s.lifetime_buckets, buckets);
            assert_eq!(s.lifetime_sum_ms, 100_030_000);
        }
    }

    #[test]
    fn snapshots_merge() {
        let a = Stats::single_writer();
        let b = Stats::shared();
        a.relayed(Direction::PeerToClient, Transport::Udp, 5);
        b.relayed(Direction::PeerToClient, Transport::Udp, 6);
        b.dropped(DropReason::Quota);
        let mut total = a.snapshot();
        total.merge(&b.snapshot());
        assert_eq!(total.relayed_bytes[1][0], 11);
        assert_eq!(total.relayed_packets[1][0], 2);
        assert_eq!(total.dropped(DropReason::Quota), 1);
    }

    #[test]
    fn result_labels_cover_every_index() {
        assert_eq!(result_label(result_index(Ok(()))), "success");
        for code in ERROR_CODES {
            assert_eq!(result_label(result_index(Err(code))), code.to_string());
        }
        assert_eq!(result_label(result_index(Err(500))), "other_error");
    }

    #[test]
    fn many_threads_lose_nothing_on_shared_stats() {
        let stats = std::sync::Arc::new(Stats::shared());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = stats.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        s.relayed(Direction::ClientToPeer, Transport::Tcp, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stats.snapshot().relayed_bytes[0][1], 40_000);
    }
}
