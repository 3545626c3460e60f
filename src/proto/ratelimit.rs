//! Token buckets: the per-allocation bandwidth cap and the per-source limit on unauthenticated
//! answers and failed authentications. All are pure: time comes in as an [`Instant`].

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A token bucket holding up to `burst` tokens, refilled at `rate` tokens per second.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
        }
    }

    /// Takes `n` tokens if there are enough; returns false (and takes none) otherwise.
    pub fn take(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens whether or not there are enough, leaving the bucket in debt: for a byte
    /// stream, which must relay what it already read, and pauses ([`TokenBucket::pause`])
    /// before it reads more.
    pub fn charge(&mut self, now: Instant, n: u64) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// How long until the bucket is out of debt: zero when it is not in debt.
    pub fn pause(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.tokens / self.rate).min(3600.0))
        }
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }
}

/// The per-source limit on unauthenticated answers and failed authentications, shared by every
/// core (UDP workers and TCP/TLS connections alike): a source whose datagrams reach several
/// workers (SO_REUSEPORT hashes by 4-tuple, so one IP with many ports does) or who opens many
/// connections still gets `rate` answers per second in all, not `rate` per worker or connection.
///
/// A *source* is an IPv4 address or an IPv6 /64 (one host or one subscriber's network:
/// anyone holding a /64 can send from 2^64 addresses, so a per-address key would give each of
/// them a fresh budget); an IPv4-mapped IPv6 address is its IPv4 address.
///
/// A fixed array of `size` slots, allocated once (24 bytes a slot), indexed by a randomly keyed
/// hash of the source, so an attacker cannot aim at a victim's slot. Sources that share a slot
/// share its budget, which only makes the limit stricter; no source ever gets a fresh burst by
/// cycling addresses. Each slot holds:
/// - the *answers* clock, a GCRA "theoretical arrival time" (the token bucket of `rate` per
///   second and a burst of `2 × rate`, in one `AtomicU64`): every answer to a request that did
///   not authenticate takes from it ([`SourceLimiter::allow`]): the reflection limit;
/// - the *failures* clock, another such bucket: every failed check of credentials takes from
///   it ([`SourceLimiter::failed`]), and a request that carries credentials is only checked
///   while it has room ([`SourceLimiter::may_check`]), before any HMAC or MD5 work, so a
///   password guesser pays a request per guess and the server nothing. Clients that
///   authenticate never fail, so the 401s they are answered first never hold up their
///   signed requests;
/// - a bank of *credits* (an `AtomicU32`, at most `credit_cap`): each request that
///   authenticated from the source ([`SourceLimiter::verified`]) adds [`CREDITS_EARNED`], and
///   an answer or a failure a clock does not cover spends one. Authentication proves the
///   source is real (its nonce is bound to its IP, so a spoofer cannot learn it), so many
///   clients behind one NAT, each answered one 401 before it authenticates, pay for each
///   other's 401s and are never held to the rate: each handshake earns more than it spends, so
///   the bank fills up to the cap as fast as clients arrive, however many arrive at once. A
///   spoofed flood at their address gets the rate plus at most [`CREDITS_EARNED`] answers per
///   request the real clients authenticated (and at most `credit_cap` banked), never more.
///
/// Every operation is a load and a compare-and-swap or two, with no lock.
///
/// Pure: time comes in as an [`Instant`], measured from the `epoch` given at construction.
#[derive(Debug)]
pub struct SourceLimiter {
    slots: Box<[Slot]>,
    credit_cap: u32,
    /// Nanoseconds between two answers at the steady rate (GCRA's emission interval).
    interval_ns: u64,
    /// How far ahead of now a slot's arrival time may run: `burst × interval`.
    tolerance_ns: u64,
    epoch: Instant,
    hasher: RandomState,
}

/// One source's (or several colliding sources') budget.
#[derive(Debug, Default)]
struct Slot {
    answers: AtomicU64,
    failures: AtomicU64,
    credits: AtomicU32,
}

/// Credits a source earns per request that authenticated: two, so that a client's handshake
/// (a 401, then a signed request) leaves one more in the bank than it found, and a burst of new
/// clients behind one address widens its own way instead of queueing behind the rate.
pub const CREDITS_EARNED: u32 = 2;

/// What a source is, for the limiter: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

impl SourceKey {
    /// The source `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    SourceKey::V6(prefix)
                }
            },
        }
    }
}

impl SourceLimiter {
    /// `rate` answers (and failures) per second per source (burst of `2 × rate`), plus up to
    /// `credit_cap` earned by authenticated requests, in a table of `size` slots (at most
    /// 2^24). A rate of 0 disables the limit (and allocates no table).
    pub fn new(rate: u32, credit_cap: u32, size: usize, epoch: Instant) -> Self {
        let size = if rate == 0 { 0 } else { size.clamp(1, 1 << 24) };
        let interval_ns = if rate == 0 {
            0
        } else {
            1_000_000_000 / u64::from(rate)
        };
        SourceLimiter {
            slots: (0..size).map(|_| Slot::default()).collect(),
            credit_cap,
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(2 * u64::from(rate)),
            epoch,
            hasher: RandomState::new(),
        }
    }

    fn slot(&self, ip: IpAddr) -> Option<&Slot> {
        if self.slots.is_empty() {
            return None;
        }
        let idx = self.hasher.hash_one(SourceKey::of(ip)) % self.slots.len() as u64;
        Some(&self.slots[idx as usize])
    }

    /// Nanoseconds since the epoch, plus one interval so that 0 means "never used".
    fn now_ns(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(self.interval_ns)
    }

    /// Takes one from the bucket `clock`, if it has room.
    fn take(&self, clock: &AtomicU64, now_ns: u64) -> bool {
        let mut tat = clock.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(self.interval_ns);
            if next - now_ns > self.tolerance_ns {
                return false;
            }
            match clock.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// True if the bucket `clock` has room for one more.
    fn room(&self, clock: &AtomicU64, now_ns: u64) -> bool {
        let tat = clock.load(Ordering::Relaxed);
        tat.max(now_ns).saturating_add(self.interval_ns) - now_ns <= self.tolerance_ns
    }

    fn spend_credit(slot: &Slot) -> bool {
        slot.credits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1))
            .is_ok()
    }

    /// Returns true if the source of `ip` may be sent one more answer to a request that did
    /// not authenticate (and counts it): from the rate if it allows, else from the source's
    /// credits.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let Some(slot) = self.slot(ip) else {
            return true;
        };
        self.take(&slot.answers, self.now_ns(now)) || Self::spend_credit(slot)
    }

    /// True if a request from `ip` that carries credentials may have them checked now: the
    /// source's failures have room, or it has credits. Counts nothing; asked before any HMAC
    /// or MD5 work.
    pub fn may_check(&self, ip: IpAddr, now: Instant) -> bool {
        let Some(slot) = self.slot(ip) else {
            return true;
        };
        self.room(&slot.failures, self.now_ns(now)) || slot.credits.load(Ordering::Relaxed) > 0
    }

    /// Counts a failed check of credentials from `ip`: against the failures' rate, else
    /// against the source's credits.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if let Some(slot) = self.slot(ip) {
            let _ = self.take(&slot.failures, self.now_ns(now)) || Self::spend_credit(slot);
        }
    }

    /// A request from `ip` authenticated: its source is real, and earns [`CREDITS_EARNED`]
    /// credits (up to the cap).
    pub fn verified(&self, ip: IpAddr) {
        let cap = self.credit_cap;
        if let Some(slot) = self.slot(ip).filter(|_| cap > 0) {
            let _ = slot
                .credits
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < cap).then_some(c.saturating_add(CREDITS_EARNED).min(cap))
                });
        }
    }
}

/// A core's handle on the [`SourceLimiter`] it shares with the other cores (or none: every
/// answer is allowed).
#[derive(Clone, Debug, Default)]
pub struct SourceLimit(Option<Arc<SourceLimiter>>);

impl SourceLimit {
    /// A handle on `limiter`.
    pub fn shared(limiter: Arc<SourceLimiter>) -> Self {
        SourceLimit(Some(limiter))
    }

    /// No limit.
    pub fn none() -> Self {
        SourceLimit(None)
    }

    /// See [`SourceLimiter::allow`].
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        self.0.as_ref().is_none_or(|l| l.allow(ip, now))
    }

    /// See [`SourceLimiter::may_check`].
    pub fn may_check(&self, ip: IpAddr, now: Instant) -> bool {
        self.0.as_ref().is_none_or(|l| l.may_check(ip, now))
    }

    /// See [`SourceLimiter::failed`].
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if let Some(l) = &self.0 {
            l.failed(ip, now);
        }
    }

    /// See [`SourceLimiter::verified`].
    pub fn verified(&self, ip: IpAddr) {
        if let Some(l) = &self.0 {
            l.verified(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 1000, t0);
        assert!(b.take(t0, 1000));
        assert!(!b.take(t0, 1));
        assert!(!b.take(t0 + Duration::from_millis(100), 101));
        assert!(b.take(t0 + Duration::from_millis(100), 100));
        assert!(b.take(t0 + Duration::from_secs(10), 1000));
        assert!(
            !b.take(t0 + Duration::from_secs(10), 1),
            "burst caps the refill"
        );
    }

    #[test]
    fn a_charged_bucket_goes_into_debt_and_says_how_long_to_pause() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 1000, t0);
        assert_eq!(b.pause(t0), Duration::ZERO);
        b.charge(t0, 600);
        assert_eq!(b.pause(t0), Duration::ZERO, "400 left");
        b.charge(t0, 900);
        assert_eq!(
            b.pause(t0),
            Duration::from_millis(500),
            "500 in debt at 1000/s"
        );
        assert!(!b.take(t0, 1), "a debt refuses takes too");
        let later = t0 + Duration::from_millis(500);
        assert_eq!(b.pause(later), Duration::ZERO);
        assert_eq!(b.burst(), 1000);
    }

    #[test]
    fn limiter_limits_each_source() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 0, 1024, t0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..50).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, 10, "burst of 2 × rate");
        let after = |ms| {
            (0..50)
                .filter(|_| l.allow(a, t0 + Duration::from_millis(ms)))
                .count()
        };
        assert_eq!(after(1000), 5, "5 a second");
        assert_eq!(after(1100), 0);
        assert_eq!(after(1400), 2);
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(b, t0) || std::ptr::eq(l.slot(a).unwrap(), l.slot(b).unwrap()));
        assert_eq!(
            l.slots.len(),
            1024,
            "the table is the size asked, and no larger"
        );
    }

    #[test]
    fn a_long_silence_gives_one_burst_not_more() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 0, 16, t0);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..50).filter(|_| l.allow(a, later)).count(), 10);
    }

    #[test]
    fn colliding_sources_share_a_budget_and_get_no_fresh_burst() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 0, 1, t0);
        let taken = (1..=50u8)
            .filter(|i| l.allow(IpAddr::from([192, 0, 2, *i]), t0))
            .count();
        assert_eq!(
            taken, 10,
            "one slot: every source draws from the same burst"
        );
    }

    #[test]
    fn threads_sharing_the_limiter_get_the_rate_once() {
        let t0 = Instant::now();
        let l = std::sync::Arc::new(SourceLimiter::new(20, 0, 64, t0));
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || (0..1000).filter(|_| l.allow(a, t0)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(
            total, 40,
            "a burst of 2 × 20 across all threads, not per thread"
        );
    }

    #[test]
    fn zero_rate_disables() {
        let l = SourceLimiter::new(0, 0, 1024, Instant::now());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| l.allow(a, Instant::now())));
        assert!(l.slots.is_empty());
    }

    #[test]
    fn an_ipv6_source_is_its_64_and_a_mapped_address_its_ipv4() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 0, 1 << 16, t0);
        // 2001:db8:0:1::/64 cycling its interface identifiers gets one burst in all.
        let taken = (1..=50u16)
            .filter(|i| l.allow(format!("2001:db8:0:1::{i:x}").parse().unwrap(), t0))
            .count();
        assert_eq!(taken, 10, "one /64, one budget");
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().unwrap();
        let plain: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(SourceKey::of(mapped), SourceKey::of(plain));
        assert_ne!(
            SourceKey::of("2001:db8:0:1::1".parse().unwrap()),
            SourceKey::of("2001:db8:0:2::1".parse().unwrap()),
            "another /64 is another source"
        );
    }

    #[test]
    fn authenticated_requests_earn_answers_up_to_the_cap() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 100, 1024, t0);
        let nat: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            (0..50).filter(|_| l.allow(nat, t0)).count(),
            10,
            "the burst"
        );
        // Each authenticated request pays for two more answers: a NAT's clients, each
        // answered one 401 and then authenticating, keep each other going at any speed.
        for _ in 0..40 {
            l.verified(nat);
            assert!(l.allow(nat, t0));
            assert!(l.allow(nat, t0));
            assert!(!l.allow(nat, t0), "two answers per authenticated request");
        }
        // The bank holds at most the cap.
        for _ in 0..1000 {
            l.verified(nat);
        }
        assert_eq!((0..1000).filter(|_| l.allow(nat, t0)).count(), 100);
        // Another source earned nothing (unless it shares the slot).
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        if !std::ptr::eq(l.slot(other).unwrap(), l.slot(nat).unwrap()) {
            assert_eq!((0..50).filter(|_| l.allow(other, t0)).count(), 10);
        }
    }

    #[test]
    fn failures_have_a_budget_of_their_own_that_answers_do_not_spend() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 0, 64, t0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!((0..50).filter(|_| l.allow(a, t0)).count(), 10);
        assert!(
            (0..1000).all(|_| l.may_check(a, t0)),
            "401s spent nothing of the failures' budget, and asking counts nothing"
        );
        for _ in 0..10 {
            assert!(l.may_check(a, t0));
            l.failed(a, t0);
        }
        assert!(!l.may_check(a, t0), "10 failures: the burst");
        assert!(l.may_check(a, t0 + Duration::from_millis(200)), "refilled");
    }

    #[test]
    fn credits_pay_for_failures_too() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 10, 64, t0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        (0..10).for_each(|_| l.failed(a, t0));
        assert!(!l.may_check(a, t0));
        l.verified(a);
        assert!(l.may_check(a, t0), "a guesser with credentials of its own");
        l.failed(a, t0);
        assert!(l.may_check(a, t0));
        l.failed(a, t0);
        assert!(
            !l.may_check(a, t0),
            "gets two guesses per request it authenticated"
        );
    }
}
