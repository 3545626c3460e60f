//! `tcp-flood`: thousands of TCP connections from many loopback addresses send garbage, stall
//! in the middle of a frame or guess passwords (Allocates with a wrong MESSAGE-INTEGRITY),
//! reconnecting whenever the server closes them, while authenticated TCP clients allocate and
//! relay ChannelData to an echo peer. Memory must stay bounded and the clients served.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

use crate::load::EchoPeer;
use crate::proc::{Sampler, Usage, mib};
use crate::reliability::{self, Verdict, within};
use crate::tcp_turn::{TcpClient, channel_data, frame_len};
use crate::{PEER_IP, SECRET, ip};

/// Arguments of `turnpike-bench tcp-flood`.
#[derive(clap::Args)]
pub struct TcpFloodArgs {
    /// Attacking connections held open (reopened when the server closes them).
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Attacking source addresses (127.2.x.y); the server admits 256 connections per address.
    #[arg(long, default_value_t = 50)]
    sources: usize,
    /// Seconds of attack; the clients relay for as long.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Authenticated TCP clients (each allocates, binds a channel and relays, one packet in
    /// flight, then releases and starts over on a new connection).
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Allowed RSS growth per attacking connection, KiB.
    #[arg(long, default_value_t = 64)]
    max_kib_per_connection: u64,
}

/// What the attackers did.
#[derive(Default, Debug)]
struct Attack {
    connects: u64,
    closed_by_server: u64,
    guesses: u64,
    answers: u64,
}

/// One attacking connection.
struct Conn {
    stream: Option<TcpStream>,
    source: IpAddr,
    inbox: Vec<u8>,
    nonce: Option<(Vec<u8>, Vec<u8>)>,
    started: bool,
}

fn connect_from(source: IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(source, 0).into())?;
    s.connect_timeout(&server.into(), Duration::from_millis(200))?;
    let s: TcpStream = s.into();
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A wrong-password Allocate, signed with a key no secret yields.
fn guess(realm: &[u8], nonce: &[u8], n: u64) -> Vec<u8> {
    let username = format!("{}:guess{n}", u32::MAX);
    let key = long_term_key(
        &username,
        &String::from_utf8_lossy(realm),
        "not-the-password",
    );
    let mut out = Vec::new();
    let mut tid = [0u8; 12];
    tid[..8].copy_from_slice(&n.to_be_bytes());
    Writer::new(&mut out, Class::Request, method::ALLOCATE, tid)
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(attr::USERNAME, username.as_bytes())
        .attr(attr::REALM, realm)
        .attr(attr::NONCE, nonce)
        .integrity(Integrity::Sha1, &key);
    out
}

/// Runs `conns` in 20 ms ticks until `stop`: kind 0 sends garbage, kind 1 a frame header
/// announcing 8 KiB then one byte a tick, kind 2 guesses passwords.
fn attack(server: SocketAddr, mut conns: Vec<Conn>, stop: &AtomicBool) -> Attack {
    let mut a = Attack::default();
    let mut buf = [0u8; 4096];
    let mut n = 0u64;
    let mut unauth = Vec::new();
    Writer::new(&mut unauth, Class::Request, method::ALLOCATE, [9; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Some(s) = c.stream.as_mut() else {
                if let Ok(s) = connect_from(c.source, server) {
                    a.connects += 1;
                    c.stream = Some(s);
                    c.started = false;
                    c.inbox.clear();
                }
                continue;
            };
            let mut closed = false;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(k) => {
                        if c.inbox.len() < 8192 {
                            c.inbox.extend_from_slice(&buf[..k]);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            while let Some(len) = frame_len(&c.inbox) {
                if len > c.inbox.len() {
                    c.inbox.clear();
                    break;
                }
                a.answers += 1;
                if let Ok(m) = Message::parse(&c.inbox[..len]) {
                    if let (Some(r), Some(nn)) = (m.get(attr::REALM), m.get(attr::NONCE)) {
                        c.nonce = Some((r.to_vec(), nn.to_vec()));
                    }
                }
                c.inbox.drain(..len);
            }
            let bytes: Vec<u8> = match i % 3 {
                0 => (0..64).map(|_| rand::random::<u8>() | 0x80).collect(),
                1 if !c.started => vec![0x00, 0x03, 0x20, 0x00, 0x21, 0x12, 0xa4, 0x42],
                1 => vec![0],
                _ => match &c.nonce {
                    Some((realm, nonce)) => {
                        n += 1;
                        a.guesses += 1;
                        guess(realm, nonce, n)
                    }
                    None if !c.started => unauth.clone(),
                    None => Vec::new(),
                },
            };
            c.started = true;
            if !bytes.is_empty() && s.write(&bytes).is_err() {
                closed = true;
            }
            if closed {
                a.closed_by_server += 1;
                c.stream = None;
            }
        }
        if let Some(rest) = Duration::from_millis(20).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    a
}

/// What the authenticated clients got.
#[derive(Default, Debug)]
struct Served {
    sessions: u64,
    failed: u64,
    sent: u64,
    echoed: u64,
    slowest_allocation: Duration,
    first_error: Option<String>,
}

/// One authenticated client: sessions of 1 s (allocate, bind, relay lock-step, release) until
/// `stop`.
fn client(server: SocketAddr, peer: SocketAddr, stop: &AtomicBool) -> Served {
    let mut s = Served::default();
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let cred = turnpike::proto::credentials::mint(SECRET.as_bytes(), "tcp", now_unix, 86400);
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let mut session = || -> anyhow::Result<()> {
            let mut c = TcpClient::connect(server, &cred.username, &cred.password)?;
            c.allocate()?;
            c.channel_bind(0x4000, peer)?;
            s.slowest_allocation = s.slowest_allocation.max(t0.elapsed());
            let end = Instant::now() + Duration::from_secs(1);
            let mut seq = 0u32;
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                seq += 1;
                let mut payload = [0u8; 100];
                payload[..4].copy_from_slice(&seq.to_be_bytes());
                c.write(&channel_data(0x4000, &payload))?;
                s.sent += 1;
                let f = c.read_frame()?;
                if f.len() >= 8 && f[0] == 0x40 && f[4..8] == seq.to_be_bytes() {
                    s.echoed += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            c.release()
        };
        match session() {
            Ok(()) => s.sessions += 1,
            Err(e) => {
                s.failed += 1;
                s.first_error.get_or_insert_with(|| format!("{e:#}"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    s
}

/// Runs the bench; prints the table and fails when a check fails.
pub fn run(a: TcpFloodArgs) -> anyhow::Result<()> {
    let peer = EchoPeer::start(ip(PEER_IP), 1)?;
    let spec = reliability::spec(true, peer.addr)?;
    let server = reliability::start(&spec)?;
    let pid = server.pid;
    std::thread::sleep(Duration::from_millis(500));
    let baseline = Usage::of(pid);
    let sampler = Sampler::start(pid, Duration::from_millis(100));
    println!(
        "# turnpike-bench tcp-flood: {} attacking connections from {} addresses for {} s, {} authenticated TCP clients",
        a.connections, a.sources, a.seconds, a.clients
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sources = a.sources.max(1);
    let threads = 4.min(a.connections.max(1));
    let attackers: Vec<_> = (0..threads)
        .map(|t| {
            let conns: Vec<Conn> = (0..a.connections)
                .filter(|i| i % threads == t)
                .map(|i| Conn {
                    stream: None,
                    source: IpAddr::V4(Ipv4Addr::new(
                        127,
                        2,
                        ((i % sources) / 250) as u8,
                        ((i % sources) % 250 + 1) as u8,
                    )),
                    inbox: Vec::new(),
                    nonce: None,
                    started: false,
                })
                .collect();
            let stop = stop.clone();
            let listen = spec.listen;
            std::thread::spawn(move || attack(listen, conns, &stop))
        })
        .collect();
    // Let the attack build up before the clients start.
    std::thread::sleep(Duration::from_secs(2));
    let under_attack = Usage::of(pid);
    let clients: Vec<_> = (0..a.clients)
        .map(|_| {
            let stop = stop.clone();
            let (listen, peer) = (spec.listen, peer.addr);
            std::thread::spawn(move || client(listen, peer, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(a.seconds));
    let during = sampler.take_peak(Usage::of(pid));
    stop.store(true, Ordering::Relaxed);
    let mut attack_total = Attack::default();
    for t in attackers {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("an attacker panicked"))?;
        attack_total.connects += r.connects;
        attack_total.closed_by_server += r.closed_by_server;
        attack_total.guesses += r.guesses;
        attack_total.answers += r.answers;
    }
    let mut served = Served::default();
    for t in clients {
        let r = t.join().map_err(|_| anyhow::anyhow!("a client panicked"))?;
        served.sessions += r.sessions;
        served.failed += r.failed;
        served.sent += r.sent;
        served.echoed += r.echoed;
        served.slowest_allocation = served.slowest_allocation.max(r.slowest_allocation);
        if served.first_error.is_none() {
            served.first_error = r.first_error;
        }
    }
    // The attackers' sockets are closed: the server lets go of their connections.
    std::thread::sleep(Duration::from_secs(2));
    let after = Usage::of(pid);
    let growth = during.rss.saturating_sub(baseline.rss);
    println!(
        "| figure | value |\n|---|---|\n| attacking connections opened / closed by the server | {} / {} |\n| password guesses sent / frames answered | {} / {} |\n| server fds: baseline / 2 s into the attack / peak / after | {} / {} / {} / {} |\n| server RSS: baseline / peak / after | {:.1} / {:.1} / {:.1} MiB |\n| RSS growth per attacking connection | {:.1} KiB |\n| client sessions ok / failed | {} / {} |\n| client packets sent / echoed | {} / {} |\n| slowest connect + allocate + bind | {} ms |",
        attack_total.connects,
        attack_total.closed_by_server,
        attack_total.guesses,
        attack_total.answers,
        baseline.fds,
        under_attack.fds,
        during.fds,
        after.fds,
        mib(baseline.rss),
        mib(during.rss),
        mib(after.rss),
        growth as f64 / 1024.0 / a.connections.max(1) as f64,
        served.sessions,
        served.failed,
        served.sent,
        served.echoed,
        served.slowest_allocation.as_millis()
    );
    if let Some(e) = &served.first_error {
        println!("  first client error: {e}");
    }
    let mut v = Verdict::default();
    v.check(
        attack_total.connects >= a.connections as u64 && attack_total.guesses > 0,
        format!(
            "the attack ran ({} connections, {} guesses)",
            attack_total.connects, attack_total.guesses
        ),
    );
    v.check(
        served.sessions >= a.clients as u64 && served.failed == 0,
        format!(
            "every client session served ({} ok, {} failed)",
            served.sessions, served.failed
        ),
    );
    v.check(
        served.sent > 0 && served.echoed == served.sent,
        format!(
            "the clients' packets all relayed ({} of {})",
            served.echoed, served.sent
        ),
    );
    v.check(
        growth <= a.max_kib_per_connection * 1024 * a.connections as u64,
        format!(
            "memory bounded: peak growth {:.1} MiB <= {} KiB x {} connections",
            mib(growth),
            a.max_kib_per_connection,
            a.connections
        ),
    );
    v.check(
        within(after.fds, baseline.fds, 10.0),
        format!(
            "descriptors released after the attack ({} vs {})",
            after.fds, baseline.fds
        ),
    );
    drop(server);
    v.finish("tcp-flood")
}
