//! Token buckets: the per-allocation bandwidth cap and the per-source limit on unauthenticated
//! answers. All are pure: time comes in as an [`Instant`].

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The per-source limit on unauthenticated answers, shared by every worker's core: a source
/// whose datagrams reach several workers (SO_REUSEPORT hashes by 4-tuple, so one IP with many
/// ports does) still gets `rate` answers per second in all, not `rate` per worker.
///
/// A fixed array of `size` slots, allocated once (8 bytes a slot), indexed by a randomly keyed
/// hash of the source IP, so an attacker cannot aim at a victim's slot. Sources that share a
/// slot share its budget, which only makes the limit stricter; no source ever gets a fresh
/// burst by cycling addresses. Each slot is one `AtomicU64` holding a GCRA "theoretical
/// arrival time" (the token bucket of `rate` per second and a burst of `2 × rate`, in one
/// number): [`SourceLimiter::allow`] is a load and a compare-and-swap, with no lock. It is only
/// consulted for answers to unauthenticated requests, never for authenticated traffic.
///
/// Pure: time comes in as an [`Instant`], measured from the `epoch` given at construction.
#[derive(Debug)]
pub struct SourceLimiter {
    slots: Box<[AtomicU64]>,
    /// Nanoseconds between two answers at the steady rate (GCRA's emission interval).
    interval_ns: u64,
    /// How far ahead of now a slot's arrival time may run: `burst × interval`.
    tolerance_ns: u64,
    epoch: Instant,
    hasher: RandomState,
}

impl SourceLimiter {
    /// `rate` answers per second per source (burst of `2 × rate`), in a table of `size` slots
    /// (at most 2^24). A rate of 0 disables the limit (and allocates no table).
    pub fn new(rate: u32, size: usize, epoch: Instant) -> Self {
        let size = if rate == 0 { 0 } else { size.clamp(1, 1 << 24) };
        let interval_ns = if rate == 0 {
            0
        } else {
            1_000_000_000 / u64::from(rate)
        };
        SourceLimiter {
            slots: (0..size).map(|_| AtomicU64::new(0)).collect(),
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(2 * u64::from(rate)),
            epoch,
            hasher: RandomState::new(),
        }
    }

    /// Returns true if `ip` may be sent one more answer now (and counts it).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.slots.is_empty() {
            return true;
        }
        let idx = (self.hasher.hash_one(ip) % self.slots.len() as u64) as usize;
        let slot = &self.slots[idx];
        // Nanoseconds since the epoch, plus one interval so that 0 means "never used".
        let now_ns = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_add(self.interval_ns);
        let mut tat = slot.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now_ns).saturating_add(self.interval_ns);
            if next - now_ns > self.tolerance_ns {
                return false;
            }
            match slot.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }
}

/// A core's handle on the [`SourceLimiter`] it shares with the other cores, or none for a core
/// whose sources cannot be spoofed (one per TCP/TLS connection): then every answer is allowed.
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

    /// Returns true if `ip` may be sent one more answer now (see [`SourceLimiter::allow`]).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        self.0.as_ref().is_none_or(|l| l.allow(ip, now))
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
        let l = SourceLimiter::new(5, 1024, t0);
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
        assert!(l.allow(b, t0) || l.slots.len() == 1);
        assert_eq!(
            l.slots.len(),
            1024,
            "the table is the size asked, and no larger"
        );
    }

    #[test]
    fn a_long_silence_gives_one_burst_not_more() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 16, t0);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..50).filter(|_| l.allow(a, later)).count(), 10);
    }

    #[test]
    fn colliding_sources_share_a_budget_and_get_no_fresh_burst() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(5, 1, t0);
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
        let l = std::sync::Arc::new(SourceLimiter::new(20, 64, t0));
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
        let l = SourceLimiter::new(0, 1024, Instant::now());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| l.allow(a, Instant::now())));
        assert!(l.slots.is_empty());
    }
}
