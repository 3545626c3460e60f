//! The relay port pool, shared by every worker: which ports of `relay.ports` we hold.
//!
//! Touched only when a relay socket is opened or closed, never per packet.
//!
//! A port another process holds (binding it fails with `AddrInUse`) is not ours to hand out,
//! but it is not lost either: it cools down for [`COOL_DOWN`], out of the picks so that
//! allocations do not spin on it, then goes back to the pool by itself.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// One bit per port: taken (by us, or cooling down).
    used: Vec<u64>,
    /// One bit per port: cooling down (a subset of `used`).
    cooling: Vec<u64>,
    /// Cooling ports (index in the range) and when they come back, oldest first. Bounded by
    /// the size of the range: a port cools down at most once at a time.
    cool_queue: VecDeque<(u32, Instant)>,
    cursor: u32,
    in_use: u32,
}

/// How long a port that another process held stays out of the picks.
pub const COOL_DOWN: Duration = Duration::from_secs(30);

impl PortPool {
    /// A pool over `start..=end`.
    pub fn new(start: u16, end: u16) -> Self {
        let n = (end as u32).saturating_sub(start as u32) + 1;
        PortPool {
            start,
            end,
            state: Mutex::new(PoolState {
                used: vec![0; n.div_ceil(64) as usize],
                cooling: vec![0; n.div_ceil(64) as usize],
                cool_queue: VecDeque::new(),
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
        self.take_at(Instant::now(), even, pair)
    }

    /// [`PortPool::take`] at time `now`: ports whose cool-down ended by `now` are free again.
    pub fn take_at(&self, now: Instant, even: bool, pair: bool) -> Option<u16> {
        let n = self.size();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.end_cool_downs(now);
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
            // Not expected (nobody holds a cooling port), but then its queue entry is stale.
            s.set_cooling(i, false);
        }
    }

    /// Gives back a port we took but could not bind because another process holds it: it
    /// stays out of the picks until `now + COOL_DOWN`, then is free again.
    pub fn cool_down(&self, port: u16, now: Instant) {
        if port < self.start || port > self.end {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let i = (port - self.start) as u32;
        if s.is_used(i) && !s.is_cooling(i) {
            s.set_cooling(i, true);
            s.cool_queue.push_back((i, now + COOL_DOWN));
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

    fn is_cooling(&self, i: u32) -> bool {
        self.cooling[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set_cooling(&mut self, i: u32, on: bool) {
        let word = &mut self.cooling[(i / 64) as usize];
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }

    /// Frees the ports whose cool-down ended by `now`. Every cool-down is equally long, so the
    /// queue is in order of expiry.
    fn end_cool_downs(&mut self, now: Instant) {
        while let Some(&(i, until)) = self.cool_queue.front() {
            if until > now {
                break;
            }
            self.cool_queue.pop_front();
            // A stale entry (the port was given back meanwhile) is skipped.
            if self.is_cooling(i) {
                self.set_cooling(i, false);
                self.set(i, false);
            }
        }
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

/// How many ports to try when binding fails because another process holds the port.
const BIND_ATTEMPTS: usize = 16;

/// Opens a relay socket on a port of `pool` as `request` asks (even, reserving the next), with
/// `bind` binding the chosen port. While binding fails with `AddrInUse` (another process holds
/// the port), the port cools down ([`PortPool::cool_down`]) and another is tried, at most
/// [`BIND_ATTEMPTS`] times; any other failure (out of file descriptors, say) is not the port's
/// fault: the port goes straight back and the open fails. Returns what `bind` made, the
/// advertised address, and the reserved next port (held in the pool, not bound: whichever core
/// claims the token binds it).
pub fn open_from_pool<T>(
    pool: &PortPool,
    request: &RelayRequest,
    advertised: IpAddr,
    mut bind: impl FnMut(u16) -> io::Result<T>,
) -> Result<(T, SocketAddr, Option<SocketAddr>), RelayOpenError> {
    for _ in 0..BIND_ATTEMPTS {
        let now = Instant::now();
        let port = pool
            .take_at(now, request.even, request.reserve_next)
            .ok_or(RelayOpenError::NoPort)?;
        match bind(port) {
            Ok(made) => {
                let reserved = request
                    .reserve_next
                    .then(|| SocketAddr::new(advertised, port + 1));
                return Ok((made, SocketAddr::new(advertised, port), reserved));
            }
            Err(error) => {
                if request.reserve_next {
                    pool.give_back(port + 1);
                }
                if error.kind() != io::ErrorKind::AddrInUse {
                    pool.give_back(port);
                    tracing::debug!(port, %error, "cannot bind a relay socket");
                    return Err(RelayOpenError::NoPort);
                }
                tracing::debug!(port, "relay port held by another process: cooling down");
                pool.cool_down(port, now);
            }
        }
    }
    Err(RelayOpenError::NoPort)
}

/// Binds the port a reservation held (`reserved`, with `bind`), or gives it back to `pool`
/// when that fails (to cool down when another process took it meanwhile). Returns what `bind`
/// made and the advertised address.
pub fn open_reserved_port<T>(
    pool: &PortPool,
    reserved: SocketAddr,
    advertised: IpAddr,
    bind: impl FnOnce(u16) -> io::Result<T>,
) -> Result<(T, SocketAddr), RelayOpenError> {
    match bind(reserved.port()) {
        Ok(made) => Ok((made, SocketAddr::new(advertised, reserved.port()))),
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => {
            pool.cool_down(reserved.port(), Instant::now());
            Err(RelayOpenError::NoPort)
        }
        Err(_) => {
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

    fn in_use_error() -> io::Error {
        io::ErrorKind::AddrInUse.into()
    }

    const PLAIN: RelayRequest = RelayRequest {
        family: crate::proto::server::Family::V4,
        even: false,
        reserve_next: false,
        dont_fragment: false,
        near: None,
    };
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_port_another_process_holds_cools_down_then_comes_back() {
        let pool = PortPool::new(40000, 40002);
        let mut tried = Vec::new();
        // The first two ports picked are held by someone else, the third binds.
        let (made, addr, _) = open_from_pool(&pool, &PLAIN, IP, |port| {
            tried.push(port);
            if tried.len() < 3 {
                Err(in_use_error())
            } else {
                Ok(port)
            }
        })
        .unwrap();
        assert_eq!((made, addr.port()), (tried[2], tried[2]));
        let mut held_elsewhere = tried[..2].to_vec();
        held_elsewhere.sort();
        assert_eq!(pool.in_use(), 3, "cooling ports count as in use");
        let now = Instant::now();
        assert_eq!(
            pool.take_at(now, false, false),
            None,
            "and are not handed out"
        );
        assert_eq!(
            pool.take_at(now + COOL_DOWN / 2, false, false),
            None,
            "not before the cool-down ends"
        );
        // After the cool-down they are free again, each handed out once.
        let later = now + COOL_DOWN + Duration::from_secs(1);
        let mut back: Vec<u16> = std::iter::from_fn(|| pool.take_at(later, false, false))
            .take(5)
            .collect();
        back.sort();
        assert_eq!(back, held_elsewhere);
        assert_eq!(pool.in_use(), 3);
        for port in 40000..=40002 {
            pool.give_back(port);
        }
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_real_socket_on_the_port_is_seen_as_held_by_another_process() {
        use crate::net::socket::{UdpOptions, bind_udp};
        let held = std::net::UdpSocket::bind((IP, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let pool = PortPool::new(port, port);
        let opts = UdpOptions {
            reuse_port: false,
            buffer_bytes: 0,
            dont_fragment: false,
        };
        let open = |pool: &PortPool| {
            open_from_pool(pool, &PLAIN, IP, |p| bind_udp(SocketAddr::new(IP, p), opts))
        };
        assert_eq!(open(&pool).err(), Some(RelayOpenError::NoPort));
        assert_eq!(pool.in_use(), 1, "cooling down, not lost");
        drop(held);
        let later = Instant::now() + COOL_DOWN;
        assert_eq!(pool.take_at(later, false, false), Some(port));
        pool.give_back(port);
        let (socket, addr, _) = open(&pool).unwrap();
        assert_eq!(addr.port(), port);
        drop(socket);
    }

    #[test]
    fn binding_is_retried_a_bounded_number_of_times() {
        let pool = PortPool::new(40000, 40099);
        let mut calls = 0;
        let result = open_from_pool(&pool, &PLAIN, IP, |_| -> io::Result<()> {
            calls += 1;
            Err(in_use_error())
        });
        assert_eq!(result, Err(RelayOpenError::NoPort));
        assert_eq!(calls, BIND_ATTEMPTS);
        assert_eq!(pool.in_use() as usize, BIND_ATTEMPTS, "cooling down");
        let later = Instant::now() + COOL_DOWN;
        let all = std::iter::from_fn(|| pool.take_at(later, false, false)).count();
        assert_eq!(all, 100, "every cooled port came back");
    }

    #[test]
    fn other_bind_errors_give_the_port_back_at_once_and_stop() {
        let pool = PortPool::new(40000, 40099);
        let mut calls = 0;
        let pair = RelayRequest {
            even: true,
            reserve_next: true,
            ..PLAIN
        };
        let result = open_from_pool(&pool, &pair, IP, |_| -> io::Result<()> {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        });
        assert_eq!(result, Err(RelayOpenError::NoPort));
        assert_eq!(calls, 1, "out of descriptors is not the port's fault");
        assert_eq!(pool.in_use(), 0, "the port and its pair are back");
    }

    #[test]
    fn a_failed_pair_gives_back_its_second_port_and_cools_the_first() {
        let pool = PortPool::new(40000, 40003);
        let pair = RelayRequest {
            even: true,
            reserve_next: true,
            ..PLAIN
        };
        let mut first = None;
        let (port, _, reserved) = open_from_pool(&pool, &pair, IP, |port| {
            if first.is_none() {
                first = Some(port);
                Err(in_use_error())
            } else {
                Ok(port)
            }
        })
        .unwrap();
        let first = first.unwrap();
        assert_ne!(port, first);
        assert_eq!(reserved.unwrap().port(), port + 1);
        assert_eq!(pool.in_use(), 3, "our pair and the cooling port");
        // The cooling port's neighbour was given back at once.
        assert_eq!(pool.take(false, false), Some(first + 1));
    }

    #[test]
    fn a_reserved_port_taken_meanwhile_cools_down() {
        let pool = PortPool::new(40000, 40001);
        let p = pool.take(true, true).unwrap();
        let reserved = SocketAddr::new(IP, p + 1);
        let result = open_reserved_port(&pool, reserved, IP, |_| -> io::Result<()> {
            Err(in_use_error())
        });
        assert_eq!(result, Err(RelayOpenError::NoPort));
        pool.give_back(p);
        assert_eq!(
            pool.take(false, false),
            Some(p),
            "only the cooling port is out"
        );
        let later = Instant::now() + COOL_DOWN;
        assert_eq!(pool.take_at(later, false, false), Some(p + 1));
    }
}
