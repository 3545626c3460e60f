//! Token buckets: the per-allocation bandwidth cap and the per-source limit on unauthenticated
//! answers. Both are pure: time comes in as an [`Instant`].

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

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
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// A fixed-size table of token buckets keyed by source IP: bounded by construction (sources
/// that hash to the same slot share it, which only makes the limit stricter). The hash is keyed
/// randomly so that an attacker cannot aim at a victim's slot.
#[derive(Debug)]
pub struct SourceLimiter {
    slots: Vec<Option<(IpAddr, TokenBucket)>>,
    rate: u64,
    hasher: RandomState,
}

impl SourceLimiter {
    /// `rate` answers per second per source (burst of `2 × rate`), in a table of `size` slots.
    /// A rate of 0 disables the limit.
    pub fn new(rate: u32, size: usize) -> Self {
        let size = if rate == 0 { 0 } else { size.clamp(1, 1 << 24) };
        SourceLimiter {
            slots: vec![None; size],
            rate: rate as u64,
            hasher: RandomState::new(),
        }
    }

    /// Returns true if `ip` may be sent one more answer now.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.slots.is_empty() {
            return true;
        }
        let idx = (self.hasher.hash_one(ip) % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[idx];
        match slot {
            Some((owner, bucket)) if *owner == ip => bucket.take(now, 1),
            Some((_, bucket)) => {
                // A collision: the newcomer inherits the slot's state (never a fresh burst),
                // so an attacker cannot reset a bucket by cycling addresses.
                let ok = bucket.take(now, 1);
                *slot = Some((ip, bucket.clone()));
                ok
            }
            None => {
                let mut bucket = TokenBucket::new(self.rate, self.rate * 2, now);
                let ok = bucket.take(now, 1);
                *slot = Some((ip, bucket));
                ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn limiter_limits_each_source() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(5, 1024);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..50).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, 10, "burst of 2 × rate");
        assert!(l.allow(a, t0 + Duration::from_secs(1)));
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.allow(b, t0) || l.slots.len() == 1);
    }

    #[test]
    fn zero_rate_disables() {
        let mut l = SourceLimiter::new(0, 1024);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..1000).all(|_| l.allow(a, Instant::now())));
    }
}
