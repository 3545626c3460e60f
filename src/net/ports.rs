//! The relay port pool, shared by every worker: which ports of `relay.ports` we hold.
//!
//! Touched only when a relay socket is opened or closed, never per packet.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use crate::proto::server::{RelayOpenError, RelayRequest};

/// A set of ports in an inclusive range, with a rotating start so that freed ports are not
/// reused at once (a late packet for an old allocation must not reach a new one).
#[derive(Debug)]
pub struct PortPool {
    start: u16,
    end: u16,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    used: Vec<u64>,
    cursor: u32,
    in_use: u32,
}

impl PortPool {
    /// A pool over `start..=end`.
    pub fn new(start: u16, end: u16) -> Self {
        let n = (end as u32).saturating_sub(start as u32) + 1;
        PortPool {
            start,
            end,
            state: Mutex::new(PoolState {
                used: vec![0; n.div_ceil(64) as usize],
                cursor: rand::random::<u32>() % n,
                in_use: 0,
            }),
        }
    }

    fn size(&self) -> u32 {
        self.end as u32 - self.start as u32 + 1
    }

    /// Takes a free port (even when `even`; with `pair`, also the next port), returning the
    /// first. `None` when none is free.
    pub fn take(&self, even: bool, pair: bool) -> Option<u16> {
        let n = self.size();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for step in 0..n {
            let i = (s.cursor + step) % n;
            let port = self.start as u32 + i;
            if even && port % 2 == 1 {
                continue;
            }
            if pair && (port + 1 > self.end as u32 || s.is_used(i + 1)) {
                continue;
            }
            if s.is_used(i) {
                continue;
            }
            s.set(i, true);
            if pair {
                s.set(i + 1, true);
            }
            s.cursor = (i + 1 + pair as u32) % n;
            return Some(port as u16);
        }
        None
    }

    /// Returns a port to the pool.
    pub fn give_back(&self, port: u16) {
        if port < self.start || port > self.end {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let i = (port - self.start) as u32;
        if s.is_used(i) {
            s.set(i, false);
        }
    }

    /// Ports held now.
    pub fn in_use(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).in_use
    }

    /// Ports in the range.
    pub fn capacity(&self) -> u32 {
        self.size()
    }
}

impl PoolState {
    fn is_used(&self, i: u32) -> bool {
        self.used[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u32, used: bool) {
        let word = &mut self.used[(i / 64) as usize];
        if used {
            *word |= 1 << (i % 64);
            self.in_use += 1;
        } else {
            *word &= !(1 << (i % 64));
            self.in_use -= 1;
        }
    }
}

/// How many ports to try when binding fails (another process holds one in our range).
const BIND_ATTEMPTS: usize = 16;

/// Opens a relay socket on a port of `pool` as `request` asks (even, reserving the next), with
/// `bind` binding the chosen port; retries on other ports while binding fails. Returns what
/// `bind` made, the advertised address, and the reserved next port (held in the pool, not
/// bound: whichever core claims the token binds it).
pub fn open_from_pool<T>(
    pool: &PortPool,
    request: &RelayRequest,
    advertised: IpAddr,
    mut bind: impl FnMut(u16) -> Option<T>,
) -> Result<(T, SocketAddr, Option<SocketAddr>), RelayOpenError> {
    for _ in 0..BIND_ATTEMPTS {
        let port = pool
            .take(request.even, request.reserve_next)
            .ok_or(RelayOpenError::NoPort)?;
        let Some(made) = bind(port) else {
            // Held by someone else: keep it marked so it is not tried again at once.
            if request.reserve_next {
                pool.give_back(port + 1);
            }
            continue;
        };
        let reserved = request
            .reserve_next
            .then(|| SocketAddr::new(advertised, port + 1));
        return Ok((made, SocketAddr::new(advertised, port), reserved));
    }
    Err(RelayOpenError::NoPort)
}

/// Binds the port a reservation held (`reserved`, with `bind`), or gives it back to `pool`
/// when that fails. Returns what `bind` made and the advertised address.
pub fn open_reserved_port<T>(
    pool: &PortPool,
    reserved: SocketAddr,
    advertised: IpAddr,
    bind: impl FnOnce(u16) -> Option<T>,
) -> Result<(T, SocketAddr), RelayOpenError> {
    match bind(reserved.port()) {
        Some(made) => Ok((made, SocketAddr::new(advertised, reserved.port()))),
        None => {
            pool.give_back(reserved.port());
            Err(RelayOpenError::NoPort)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_each_port_once() {
        let pool = PortPool::new(40000, 40009);
        let mut got: Vec<u16> = (0..10).map(|_| pool.take(false, false).unwrap()).collect();
        got.sort();
        assert_eq!(got, (40000..=40009).collect::<Vec<_>>());
        assert_eq!(pool.take(false, false), None);
        pool.give_back(40003);
        assert_eq!(pool.take(false, false), Some(40003));
        assert_eq!(pool.in_use(), 10);
    }

    #[test]
    fn even_ports_and_pairs() {
        let pool = PortPool::new(40001, 40006);
        let p = pool.take(true, true).unwrap();
        assert_eq!(p % 2, 0);
        assert!(pool.in_use() == 2);
        let q = pool.take(true, true).unwrap();
        assert_ne!(p, q);
        assert_eq!(pool.take(true, true), None, "40006 has no 40007 in range");
        assert_eq!(pool.take(true, false), Some(40006));
    }
}
