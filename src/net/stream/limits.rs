//! How many TCP/TLS client connections may be open: in total and per source.
//!
//! Every accepted connection takes a [`Permit`] before anything else is done with it, and gives
//! it back when dropped. The per-source table only holds sources with an open connection, so it
//! is bounded by the total limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connection counters shared by every listener.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: u32,
    max_per_source: u32,
    state: Mutex<(u32, HashMap<IpAddr, u32>)>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `connections.max_total` reached.
    Total,
    /// `connections.max_per_ip` reached for this source.
    PerSource,
}

/// One open connection's place in the counters; released on drop.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnectionLimits>,
    source: IpAddr,
}

/// The key a source is counted under: the IPv4 address (IPv4-mapped addresses included), or
/// the /64 of an IPv6 address (one host commonly holds a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
    }
}

impl ConnectionLimits {
    /// Limits of `max_total` connections and `max_per_source` per source.
    pub fn new(max_total: u32, max_per_source: u32) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_source,
            state: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes a place for a connection from `ip`.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let source = source_key(ip);
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_source) = &mut *guard;
        if *total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = per_source.entry(source).or_insert(0);
        if *n >= self.max_per_source {
            return Err(Refused::PerSource);
        }
        *n += 1;
        *total += 1;
        Ok(Permit {
            limits: self.clone(),
            source,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut guard = self.limits.state.lock().unwrap_or_else(|e| e.into_inner());
        let (total, per_source) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_source_and_gives_back() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::2".parse().unwrap();
        let p1 = limits.acquire(a).unwrap();
        let _p2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).unwrap_err(), Refused::PerSource);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(limits.acquire(mapped).unwrap_err(), Refused::PerSource);
        let _p3 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b_same_64).unwrap_err(), Refused::Total);
        drop(p1);
        assert_eq!(limits.open(), 2);
        let _p4 = limits.acquire(b_same_64).unwrap();
        assert_eq!(limits.acquire(b).unwrap_err(), Refused::Total);
        drop(_p4);
        drop(_p3);
        assert_eq!(
            limits.state.lock().unwrap().1.len(),
            1,
            "empty sources are removed"
        );
    }
}
