//! The traffic engine: sessions (TURN allocations, or plain sockets for the bare forwarder),
//! UDP echo peers, and a client loop that keeps a window of packets in flight per session (or
//! paces them), measuring delivery, loss and round-trip times.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::{Events, Interest, Poll, Token};
use turnpike::net::batch::{RecvBatch, SendBatch};
use turnpike::proto::channel;
use turnpike::proto::stun::{Message, attr};

use crate::turn::{self, Auth};

/// How data is carried between client and server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Carrier {
    /// ChannelData (4-byte header).
    Channel,
    /// Send and Data indications (36-byte header for IPv4).
    Send,
}

/// What one run does.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Sessions (allocations).
    pub sessions: usize,
    /// Payload bytes per packet (at least 16).
    pub size: usize,
    /// ChannelData or Send indications.
    pub carrier: Carrier,
    /// Packets per second per session; 0 = as fast as the window allows.
    pub rate: u64,
    /// Packets in flight per session when not paced.
    pub window: usize,
    /// Paced sessions all fall due at the same instant (lock-step bursts of one packet per
    /// session) instead of being spread evenly over the interval, as independent sessions are.
    pub aligned: bool,
    /// Measured time (after a warm-up).
    pub duration: Duration,
    /// Pair sessions: each pair's peers are each other's relayed addresses.
    pub relay_to_relay: bool,
    /// No TURN: plain datagrams (for the bare forwarder).
    pub raw: bool,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadResult {
    /// Round trips completed in the measured window.
    pub delivered: u64,
    /// Packets sent over the whole run.
    pub sent: u64,
    /// Packets sent but never echoed back (after a drain).
    pub lost: u64,
    /// Length of the measured window.
    pub elapsed: Duration,
    /// Round-trip time percentiles, in microseconds.
    pub rtt_p50_us: u64,
    /// 99th percentile.
    pub rtt_p99_us: u64,
    /// Median of the first leg (client send to the peer's kernel receive stamp), in
    /// microseconds; 0 when payloads are too short to carry the peer's stamp.
    pub forward_p50_us: u64,
    /// Server CPU time in the measured window.
    pub server_cpu: Duration,
}

impl LoadResult {
    /// Packets relayed by the server per CPU-second (each round trip is two relayed packets).
    pub fn packets_per_cpu_second(&self) -> f64 {
        let cpu = self.server_cpu.as_secs_f64();
        if cpu <= 0.0 {
            0.0
        } else {
            (self.delivered * 2) as f64 / cpu
        }
    }

    /// Round trips per wall-clock second.
    pub fn round_trips_per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// UDP echo peers: one thread answering every datagram to its source, batched, on one or more
/// sockets (distinct peer addresses). Runs until dropped.
pub struct EchoPeer {
    /// The first socket's address.
    pub addr: SocketAddr,
    /// Every socket's address.
    pub addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoPeer {
    /// Starts `count` echo sockets (at least one) on `ip`, served by one thread.
    pub fn start(ip: IpAddr, count: usize) -> anyhow::Result<Self> {
        let opts = turnpike::net::socket::UdpOptions {
            reuse_port: false,
            buffer_bytes: if count > 1 { 1 << 20 } else { 8 << 20 },
            dont_fragment: false,
        };
        let poll = Poll::new()?;
        let mut socks = Vec::with_capacity(count.max(1));
        let mut addrs = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let sock = turnpike::net::socket::bind_udp(SocketAddr::new(ip, 0), opts)?;
            turnpike::net::batch::enable_rx_timestamps(sock.as_raw_fd())?;
            addrs.push(sock.local_addr()?);
            let fd = sock.as_raw_fd();
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                Token(i),
                Interest::READABLE,
            )?;
            socks.push(sock);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut poll = poll;
            let mut events = Events::with_capacity(1024);
            let mut inb = RecvBatch::new(64, 2048, 0).with_timestamps();
            let mut out = SendBatch::new(64, 2048);
            while !flag.load(Ordering::Relaxed) {
                // Sleep until something arrives (or 50 ms pass, to see `stop`), then answer
                // everything queued, in batches.
                if poll
                    .poll(&mut events, Some(Duration::from_millis(50)))
                    .is_err()
                {
                    continue;
                }
                for event in events.iter() {
                    let Some(sock) = socks.get(event.token().0) else {
                        continue;
                    };
                    echo_all(sock.as_raw_fd(), &mut inb, &mut out);
                }
            }
        });
        Ok(EchoPeer {
            addr: addrs[0],
            addrs,
            stop,
            thread: Some(thread),
        })
    }
}

/// Answers everything queued on `fd` to its sources.
fn echo_all(fd: std::os::fd::RawFd, inb: &mut RecvBatch, out: &mut SendBatch) {
    while let Ok(got) = inb.recv(fd) {
        for i in 0..got {
            let stamp = inb.timestamp(i);
            let (slot, len, from) = inb.slot(i);
            let Some(from) = from else { continue };
            // The arrival time (kernel stamp) rides back in bytes 16..24, so the client can
            // split a round trip into its two legs.
            if let (Some(stamp), Some(field)) = (stamp, slot[..len].get_mut(16..24)) {
                field.copy_from_slice(&(stamp.as_nanos() as u64).to_be_bytes());
            }
            if out.is_full() {
                out.flush(fd);
            }
            out.push(&slot[..len], from);
        }
        if got < inb.capacity() {
            break;
        }
    }
    out.flush(fd);
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One client session.
struct Session {
    sock: UdpSocket,
    /// Template of an outgoing packet; the payload starts at `payload_at`.
    template: Vec<u8>,
    payload_at: usize,
    /// Sends (initiator) or echoes back what arrives (relay-to-relay responder).
    initiator: bool,
    next_seq: u32,
    inflight: usize,
    last_progress: Instant,
    next_due: Instant,
}

/// Creates the sessions: allocations with a channel (or permission) to their peer.
fn setup(
    spec: &LoadSpec,
    server: SocketAddr,
    secret: &str,
    peers: &[SocketAddr],
    client_ip: IpAddr,
) -> anyhow::Result<(Vec<Session>, Auth)> {
    let cred = turnpike::proto::credentials::mint(
        secret.as_bytes(),
        "bench",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        86400,
    );
    let mut auth = Auth::new(&cred.username, &cred.password);
    let mut socks = Vec::with_capacity(spec.sessions);
    let mut relays = Vec::with_capacity(spec.sessions);
    for _ in 0..spec.sessions {
        let opts = turnpike::net::socket::UdpOptions {
            reuse_port: false,
            buffer_bytes: 1 << 20,
            dont_fragment: false,
        };
        let sock = turnpike::net::socket::bind_udp(SocketAddr::new(client_ip, 0), opts)?;
        sock.set_nonblocking(false)?;
        let relay = if spec.raw {
            None
        } else {
            Some(turn::allocate(&sock, server, &mut auth).context("Allocate")?)
        };
        socks.push(sock);
        relays.push(relay);
    }
    let mut sessions = Vec::with_capacity(spec.sessions);
    for (i, sock) in socks.into_iter().enumerate() {
        let (initiator, target) = if spec.relay_to_relay {
            let other = i ^ 1;
            let target = relays
                .get(other)
                .copied()
                .flatten()
                .context("relay-to-relay needs an even number of sessions")?;
            (i % 2 == 0, target)
        } else {
            let peer = peers
                .get(i % peers.len().max(1))
                .copied()
                .context("no echo peer")?;
            (true, peer)
        };
        let mut template = Vec::with_capacity(spec.size + 64);
        let payload = vec![0u8; spec.size];
        let payload_at = if spec.raw {
            template.extend_from_slice(&payload);
            0
        } else {
            match spec.carrier {
                Carrier::Channel => {
                    let number = 0x4000 + (i as u16 % 0x0FFF);
                    turn::channel_bind(&sock, server, &mut auth, number, target)
                        .context("ChannelBind")?;
                    template.extend_from_slice(&[0; 4]);
                    channel::write_header(&mut template[..4], number, spec.size);
                    template.extend_from_slice(&payload);
                    4
                }
                Carrier::Send => {
                    turn::permit(&sock, server, &mut auth, target).context("CreatePermission")?;
                    turn::send_indication(&mut template, target, &payload);
                    let msg = Message::parse(&template).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let data = msg.get(attr::DATA).context("no DATA")?;
                    data.as_ptr() as usize - template.as_ptr() as usize
                }
            }
        };
        sock.set_nonblocking(true)?;
        turnpike::net::batch::enable_rx_timestamps(sock.as_raw_fd())?;
        let now = Instant::now();
        sessions.push(Session {
            sock,
            template,
            payload_at,
            initiator,
            next_seq: 0,
            inflight: 0,
            last_progress: now,
            next_due: now,
        });
    }
    Ok((sessions, auth))
}

/// Extracts the payload of a datagram a client received.
fn payload_of(data: &[u8], raw: bool) -> Option<&[u8]> {
    if raw {
        return Some(data);
    }
    if channel::looks_like_channel_data(data) {
        let (_, len) = channel::parse(data)?;
        return data.get(4..4 + len);
    }
    Message::parse(data).ok()?.get(attr::DATA)
}

/// Runs one load: sets up sessions against `server`, drives traffic, measures `cpu_of` (a
/// closure reading the server's CPU time) over the measured window.
pub fn run(
    spec: &LoadSpec,
    server: SocketAddr,
    secret: &str,
    peers: &[SocketAddr],
    client_ip: IpAddr,
    cpu_of: &dyn Fn() -> Duration,
) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(
        spec.size >= 16,
        "payloads carry a 16-byte stamp: use --size 16 or more"
    );
    let (mut sessions, mut auth) = setup(spec, server, secret, peers, client_ip)?;
    let mut poll = Poll::new()?;
    for (i, s) in sessions.iter().enumerate() {
        let fd = s.sock.as_raw_fd();
        poll.registry()
            .register(&mut mio::unix::SourceFd(&fd), Token(i), Interest::READABLE)?;
    }
    // epoll's timeout has millisecond resolution: pacing sleeps on a timerfd instead.
    let pacer = Pacer::new()?;
    poll.registry().register(
        &mut mio::unix::SourceFd(&pacer.fd()),
        PACER,
        Interest::READABLE,
    )?;
    let start = Instant::now();
    let warmup = Duration::from_millis(500);
    let stop_at = start + warmup + spec.duration;
    let mut events = Events::with_capacity(1024);
    // Round trips end at the kernel's receive timestamp, so the client's own processing of a
    // burst of answers does not count against the server.
    let mut inb = RecvBatch::new(32, 2048, 0).with_timestamps();
    let mut out = SendBatch::new(32, 2048);
    let mut rtts: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut forward_legs: Vec<u32> = Vec::with_capacity(1 << 20);
    let mut result = LoadResult::default();
    let mut measuring: Option<(Instant, Duration)> = None;
    let interval = 1_000_000_000u64
        .checked_div(spec.rate)
        .map_or(Duration::ZERO, Duration::from_nanos);
    if !spec.aligned {
        // Independent sessions are not in phase: spread their first packets over one interval.
        let count = sessions.len().max(1) as u32;
        for (i, s) in sessions.iter_mut().enumerate() {
            s.next_due = start + interval * i as u32 / count;
        }
    }
    let mut sending = true;
    let mut drain_until = None;
    let mut received = 0u64;
    let mut ready: Vec<usize> = Vec::with_capacity(1024);
    loop {
        let now = Instant::now();
        if measuring.is_none() && now >= start + warmup {
            measuring = Some((now, cpu_of()));
        }
        if sending && now >= stop_at {
            sending = false;
            if let Some((t0, c0)) = measuring {
                result.elapsed = now - t0;
                result.server_cpu = cpu_of().saturating_sub(c0);
            }
            drain_until = Some(now + Duration::from_millis(300));
        }
        if drain_until.is_some_and(|d| now >= d) {
            break;
        }
        if sending {
            for s in sessions.iter_mut().filter(|s| s.initiator) {
                let want = if spec.rate > 0 {
                    let mut n = 0;
                    while s.next_due <= now && n < 64 {
                        s.next_due += interval;
                        n += 1;
                    }
                    n
                } else {
                    if now - s.last_progress > Duration::from_millis(200) {
                        s.inflight = 0; // lost packets must not shrink the window forever
                        s.last_progress = now;
                    }
                    spec.window.saturating_sub(s.inflight)
                };
                let dest = server;
                let mut pkt = std::mem::take(&mut s.template);
                for _ in 0..want {
                    let stamp = unix_nanos();
                    pkt[s.payload_at..s.payload_at + 4].copy_from_slice(&s.next_seq.to_be_bytes());
                    pkt[s.payload_at + 8..s.payload_at + 16].copy_from_slice(&stamp.to_be_bytes());
                    s.next_seq += 1;
                    if out.is_full() {
                        result.sent += out.flush(s.sock.as_raw_fd()) as u64;
                    }
                    out.push(&pkt, dest);
                }
                result.sent += out.flush(s.sock.as_raw_fd()) as u64;
                s.inflight += want;
                s.template = pkt;
            }
        }
        if spec.rate > 0 && sending {
            // Wake for the next packet due, so pacing stays even.
            let next = sessions
                .iter()
                .filter(|s| s.initiator)
                .map(|s| s.next_due)
                .min()
                .unwrap_or(now);
            pacer.arm(next.saturating_duration_since(Instant::now()))?;
        }
        poll.poll(&mut events, Some(Duration::from_millis(5)))?;
        ready.clear();
        ready.extend(
            events
                .iter()
                .map(|e| e.token())
                .filter(|t| *t != PACER)
                .map(|t| t.0),
        );
        for &i in &ready {
            loop {
                let fd = sessions[i].sock.as_raw_fd();
                let Ok(n) = inb.recv(fd) else { break };
                let now = Instant::now();
                let processed_at = unix_nanos();
                for k in 0..n {
                    let received_at = inb
                        .timestamp(k)
                        .map_or(processed_at, |d| d.as_nanos() as u64);
                    let (slot, len, _) = inb.slot(k);
                    let Some(payload) = payload_of(&slot[..len], spec.raw) else {
                        continue;
                    };
                    let s = &mut sessions[i];
                    if s.initiator {
                        let sent_ns =
                            u64::from_be_bytes(payload[8..16].try_into().unwrap_or_default());
                        let rtt = received_at.saturating_sub(sent_ns);
                        s.inflight = s.inflight.saturating_sub(1);
                        s.last_progress = now;
                        if let Some((t0, _)) = measuring {
                            if sending && now >= t0 {
                                result.delivered += 1;
                                if rtts.len() < (1 << 24) {
                                    rtts.push((rtt / 1000).min(u32::MAX as u64) as u32);
                                }
                                let peer_ns = payload
                                    .get(16..24)
                                    .and_then(|b| b.try_into().ok())
                                    .map_or(0, u64::from_be_bytes);
                                if peer_ns > sent_ns && forward_legs.len() < (1 << 24) {
                                    let leg = (peer_ns - sent_ns) / 1000;
                                    forward_legs.push(leg.min(u32::MAX as u64) as u32);
                                }
                            }
                        }
                        received += 1;
                    } else {
                        // Relay-to-relay responder: send it back through our own allocation.
                        let mut pkt = std::mem::take(&mut s.template);
                        pkt[s.payload_at..s.payload_at + 16].copy_from_slice(&payload[..16]);
                        out.push(&pkt, server);
                        out.flush(fd);
                        s.template = pkt;
                    }
                }
                if n < inb.capacity() {
                    break;
                }
            }
        }
    }
    result.lost = result.sent.saturating_sub(received);
    if !spec.raw {
        for s in &sessions {
            s.sock.set_nonblocking(false)?;
            let _ = turn::release(&s.sock, server, &mut auth);
        }
    }
    rtts.sort_unstable();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    result.rtt_p50_us = pct(0.50);
    result.rtt_p99_us = pct(0.99);
    forward_legs.sort_unstable();
    result.forward_p50_us = forward_legs
        .get(forward_legs.len() / 2)
        .copied()
        .unwrap_or(0) as u64;
    Ok(result)
}

/// Token of the pacing timer.
const PACER: Token = Token(usize::MAX - 1);

/// A one-shot timerfd: wakes the client loop when the next paced packet is due, with
/// nanosecond resolution.
struct Pacer(std::os::fd::OwnedFd);

impl Pacer {
    fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the fd is checked and then owned.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(Pacer(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }

    /// Fires once after `after` (at least 1 ns: zero would disarm it).
    fn arm(&self, after: Duration) -> std::io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and a live itimerspec; the old value is not wanted.
        let rc = unsafe { libc::timerfd_settime(self.fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Wall-clock nanoseconds, the clock of the kernel's receive timestamps.
fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
