//! Allocation rate and memory: many sockets allocate at once, pipelined, and the server's RSS is
//! read before and after.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::os::fd::AsRawFd;
use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

/// What an allocation run measured.
#[derive(Debug, Default)]
pub struct AllocResult {
    /// Allocations that succeeded.
    pub allocated: usize,
    /// Time from the first authenticated Allocate to the last success.
    pub elapsed: Duration,
    /// Server RSS growth divided by allocations.
    pub rss_per_allocation: f64,
}

impl AllocResult {
    /// Authenticated allocations per second.
    pub fn rate(&self) -> f64 {
        self.allocated as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn error_code(msg: &Message<'_>) -> u16 {
    msg.get(attr::ERROR_CODE)
        .map(|v| (v[2] & 7) as u16 * 100 + v[3] as u16)
        .unwrap_or(0)
}

/// Allocates `count` times from `count` sockets spread over `client_ips`, keeping the sockets
/// (and so the allocations) open until the result is returned. Each socket first learns its
/// nonce with an unauthenticated Allocate (coturn's nonces are per 5-tuple), then all
/// authenticated Allocates are sent at once and timed.
pub fn run(
    server: SocketAddr,
    secret: &str,
    count: usize,
    client_ips: &[IpAddr],
    rss_of: &dyn Fn() -> u64,
) -> anyhow::Result<(AllocResult, Vec<std::net::UdpSocket>)> {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cred = turnpike::proto::credentials::mint(secret.as_bytes(), "alloc", now_unix, 86400);
    let mut socks = Vec::with_capacity(count);
    for i in 0..count {
        let ip = client_ips[i % client_ips.len()];
        let opts = turnpike::net::socket::UdpOptions {
            reuse_port: false,
            buffer_bytes: 0,
            dont_fragment: false,
        };
        socks.push(
            turnpike::net::socket::bind_udp(SocketAddr::new(ip, 0), opts)
                .with_context(|| format!("client socket {i}"))?,
        );
    }
    let mut poll = Poll::new()?;
    for (i, s) in socks.iter().enumerate() {
        let fd = s.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    let rss_before = rss_of();
    // Phase 1: learn realm and nonce per socket (bounded wait).
    let mut req = Vec::new();
    let mut nonces: Vec<Option<(Vec<u8>, Vec<u8>)>> = vec![None; count];
    let mut buf = [0u8; 1500];
    let mut events = Events::with_capacity(4096);
    for round in 0..5 {
        for (i, s) in socks.iter().enumerate() {
            if nonces[i].is_none() {
                Writer::new(
                    &mut req,
                    Class::Request,
                    method::ALLOCATE,
                    [round as u8; 12],
                )
                .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                let _ = s.send_to(&req, server);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while nonces.iter().any(Option::is_none) && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(50)))?;
            for ev in events.iter() {
                let i = ev.token().0;
                while let Ok((n, _)) = socks[i].recv_from(&mut buf) {
                    if let Ok(m) = Message::parse(&buf[..n]) {
                        if let (Some(r), Some(nn)) = (m.get(attr::REALM), m.get(attr::NONCE)) {
                            nonces[i] = Some((r.to_vec(), nn.to_vec()));
                        }
                    }
                }
            }
        }
        if nonces.iter().all(Option::is_some) {
            break;
        }
    }
    // A socket whose 401 was rate-limited borrows the nonce another socket of the same client
    // IP learnt: turnpike binds nonces to the client IP, so one 401 serves a whole host.
    for i in 0..count {
        if nonces[i].is_none() {
            let ip = client_ips[i % client_ips.len()];
            let donor =
                (0..count).find(|&j| nonces[j].is_some() && client_ips[j % client_ips.len()] == ip);
            nonces[i] = donor.and_then(|j| nonces[j].clone());
        }
    }
    // Phase 2: authenticated Allocates, all at once, retransmitted after 500 ms if unanswered.
    let requests: Vec<Option<Vec<u8>>> = nonces
        .iter()
        .enumerate()
        .map(|(i, n)| {
            n.as_ref().map(|(realm, nonce)| {
                let realm_s = String::from_utf8_lossy(realm);
                let key = long_term_key(&cred.username, &realm_s, &cred.password);
                let mut out = Vec::new();
                let mut tid = [0u8; 12];
                tid[..8].copy_from_slice(&(i as u64).to_be_bytes());
                Writer::new(&mut out, Class::Request, method::ALLOCATE, tid)
                    .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                    .attr(attr::USERNAME, cred.username.as_bytes())
                    .attr(attr::REALM, realm)
                    .attr(attr::NONCE, nonce)
                    .integrity(Integrity::Sha1, &key);
                out
            })
        })
        .collect();
    let mut done = vec![false; count];
    let mut allocated = 0;
    let start = Instant::now();
    let mut last_success = start;
    for _attempt in 0..4 {
        for (i, r) in requests.iter().enumerate() {
            if let (false, Some(r)) = (done[i], r) {
                let _ = socks[i].send_to(r, server);
            }
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while allocated < count && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(20)))?;
            for ev in events.iter() {
                let i = ev.token().0;
                while let Ok((n, _)) = socks[i].recv_from(&mut buf) {
                    if let Ok(m) = Message::parse(&buf[..n]) {
                        if m.class() == Class::Success && !done[i] {
                            done[i] = true;
                            allocated += 1;
                            last_success = Instant::now();
                        } else if m.class() == Class::Error && error_code(&m) != 0 && !done[i] {
                            tracing_error(i, error_code(&m));
                        }
                    }
                }
            }
        }
        if allocated == count {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = rss_of();
    let result = AllocResult {
        allocated,
        elapsed: last_success - start,
        rss_per_allocation: (rss_after.saturating_sub(rss_before)) as f64 / allocated.max(1) as f64,
    };
    Ok((result, socks))
}

fn tracing_error(i: usize, code: u16) {
    if i < 3 {
        eprintln!("allocation {i}: error {code}");
    }
}

/// What a run of full handshakes from one source measured.
#[derive(Debug, Default)]
pub struct HandshakeResult {
    /// Clients that allocated.
    pub allocated: usize,
    /// From the first client's first request to the last success (or the time limit).
    pub elapsed: Duration,
    /// Requests sent again after 500 ms without an answer.
    pub retransmits: usize,
}

impl HandshakeResult {
    /// Authenticated allocations per second.
    pub fn rate(&self) -> f64 {
        self.allocated as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Where one client of a handshake run stands.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    /// Not started.
    Idle,
    /// Sent its unauthenticated Allocate at this time (try n).
    Challenged(Instant, u8),
    /// Sent its signed Allocate at this time (try n).
    Signed(Instant, u8),
    /// Allocated, or gave up.
    Finished,
}

/// `count` clients on `client_ip` (many ports of one address, as behind one NAT), each
/// handshaking as an ICE agent does: an unauthenticated Allocate, the 401's nonce, a signed
/// Allocate; at most `window` of them in their handshake at once, each request retransmitted
/// after 500 ms (at most 7 sends). Nothing is shared between clients: every one learns its
/// own nonce. Stops after `limit`. The sockets are returned so the allocations stay held.
pub fn run_handshakes(
    server: SocketAddr,
    secret: &str,
    count: usize,
    client_ip: IpAddr,
    window: usize,
    limit: Duration,
) -> anyhow::Result<(HandshakeResult, Vec<std::net::UdpSocket>)> {
    const RTO: Duration = Duration::from_millis(500);
    const TRIES: u8 = 7;
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cred = turnpike::proto::credentials::mint(secret.as_bytes(), "nat", now_unix, 86400);
    let opts = turnpike::net::socket::UdpOptions {
        reuse_port: false,
        buffer_bytes: 0,
        dont_fragment: false,
    };
    let socks = (0..count)
        .map(|i| {
            turnpike::net::socket::bind_udp(SocketAddr::new(client_ip, 0), opts)
                .with_context(|| format!("client socket {i}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut poll = Poll::new()?;
    for (i, s) in socks.iter().enumerate() {
        let fd = s.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    let tid = |i: usize, signed: bool| {
        let mut t = [0u8; 12];
        t[0] = u8::from(signed);
        t[4..].copy_from_slice(&(i as u64).to_be_bytes());
        t
    };
    let mut challenge = Vec::new();
    let challenge_of = |i: usize, out: &mut Vec<u8>| {
        Writer::new(out, Class::Request, method::ALLOCATE, tid(i, false))
            .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    };
    let mut key = None;
    let mut signed: Vec<Option<Vec<u8>>> = vec![None; count];
    let mut steps = vec![Step::Idle; count];
    let mut next = 0;
    let mut active = 0;
    let mut result = HandshakeResult::default();
    let mut events = Events::with_capacity(4096);
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let mut last_success = start;
    while result.allocated < count && start.elapsed() < limit {
        let now = Instant::now();
        while active < window && next < count {
            challenge_of(next, &mut challenge);
            let _ = socks[next].send_to(&challenge, server);
            steps[next] = Step::Challenged(now, 1);
            next += 1;
            active += 1;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            while let Ok((n, _)) = socks[i].recv_from(&mut buf) {
                let Ok(m) = Message::parse(&buf[..n]) else {
                    continue;
                };
                match steps[i] {
                    Step::Challenged(..) if m.class() == Class::Error => {
                        let (Some(realm), Some(nonce)) = (m.get(attr::REALM), m.get(attr::NONCE))
                        else {
                            continue;
                        };
                        let k = *key.get_or_insert_with(|| {
                            long_term_key(
                                &cred.username,
                                &String::from_utf8_lossy(realm),
                                &cred.password,
                            )
                        });
                        let mut out = Vec::new();
                        Writer::new(&mut out, Class::Request, method::ALLOCATE, tid(i, true))
                            .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                            .attr(attr::USERNAME, cred.username.as_bytes())
                            .attr(attr::REALM, realm)
                            .attr(attr::NONCE, nonce)
                            .integrity(Integrity::Sha1, &k);
                        let _ = socks[i].send_to(&out, server);
                        signed[i] = Some(out);
                        steps[i] = Step::Signed(Instant::now(), 1);
                    }
                    Step::Signed(..) if m.transaction_id() == tid(i, true) => {
                        if m.class() == Class::Success {
                            result.allocated += 1;
                            last_success = Instant::now();
                        } else {
                            tracing_error(i, error_code(&m));
                        }
                        steps[i] = Step::Finished;
                        active -= 1;
                    }
                    _ => {}
                }
            }
        }
        // Retransmissions, as a client's STUN transaction timer does.
        let now = Instant::now();
        for i in 0..next {
            match steps[i] {
                Step::Challenged(at, tries) | Step::Signed(at, tries)
                    if now.duration_since(at) >= RTO =>
                {
                    if tries >= TRIES {
                        steps[i] = Step::Finished;
                        active -= 1;
                        continue;
                    }
                    result.retransmits += 1;
                    if let Step::Challenged(..) = steps[i] {
                        challenge_of(i, &mut challenge);
                        let _ = socks[i].send_to(&challenge, server);
                        steps[i] = Step::Challenged(now, tries + 1);
                    } else if let Some(s) = &signed[i] {
                        let _ = socks[i].send_to(s, server);
                        steps[i] = Step::Signed(now, tries + 1);
                    }
                }
                _ => {}
            }
        }
    }
    result.elapsed = if result.allocated == count {
        last_success - start
    } else {
        start.elapsed()
    };
    Ok((result, socks))
}
