//! `restart`: clients relay through the server, which is killed with SIGKILL and started again
//! on the same address; each client notices the silence, allocates again (retrying every
//! 50 ms) and relays again. Measures, per client, the time from the restart to its first
//! relayed packet.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

use crate::load::EchoPeer;
use crate::reliability::{self, Verdict};
use crate::{CLIENT_IP, PEER_IP, SECRET, ip};

/// Arguments of `turnpike-bench restart`.
#[derive(clap::Args)]
pub struct RestartArgs {
    /// Clients relaying.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// ChannelData packets per second per client.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Seconds of relaying before the kill.
    #[arg(long, default_value_t = 3)]
    before: u64,
    /// Most milliseconds from the restarted server's first answer to every client relaying
    /// again.
    #[arg(long, default_value_t = 1000)]
    limit_ms: u64,
}

/// When things happened, shared with the clients.
struct Clock {
    /// When the new server process was spawned.
    restarted: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

/// One client's result.
#[derive(Default, Debug)]
struct Recovery {
    relayed_before: u64,
    /// First echo after the restart, from the restart.
    back_after: Option<Duration>,
    allocations: u64,
}

/// A request, signed when a nonce is known.
fn request(
    m: u16,
    tid: [u8; 12],
    auth: &Option<(Vec<u8>, Vec<u8>, [u8; 16])>,
    user: &str,
    build: &dyn Fn(&mut Writer<'_>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out, Class::Request, m, tid);
    build(&mut w);
    if let Some((realm, nonce, key)) = auth {
        w.attr(attr::USERNAME, user.as_bytes())
            .attr(attr::REALM, realm)
            .attr(attr::NONCE, nonce)
            .integrity(Integrity::Sha1, key);
    }
    out
}

/// One client: Allocate and ChannelBind (each retried every 50 ms, relearning the nonce on a
/// 401/438), then ChannelData every `1/rate` s; 300 ms without an echo means the allocation is
/// gone: start over.
fn client(
    server: SocketAddr,
    peer: SocketAddr,
    rate: u64,
    clock: &Clock,
) -> anyhow::Result<Recovery> {
    let sock = UdpSocket::bind((ip(CLIENT_IP), 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(10)))?;
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cred = turnpike::proto::credentials::mint(SECRET.as_bytes(), "restart", now_unix, 86400);
    let mut auth: Option<(Vec<u8>, Vec<u8>, [u8; 16])> = None;
    let mut rec = Recovery::default();
    let mut buf = [0u8; 2048];
    let gap = Duration::from_nanos(1_000_000_000 / rate.max(1));
    while !clock.stop.load(Ordering::Relaxed) {
        // Set up: Allocate, then ChannelBind.
        let mut step = 0; // 0 Allocate, 1 ChannelBind, 2 done
        let mut tid: [u8; 12] = rand::random();
        let mut sent_at = Instant::now() - Duration::from_secs(1);
        while step < 2 && !clock.stop.load(Ordering::Relaxed) {
            if sent_at.elapsed() >= Duration::from_millis(50) {
                let req = if step == 0 {
                    request(method::ALLOCATE, tid, &auth, &cred.username, &|w| {
                        w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                    })
                } else {
                    request(method::CHANNEL_BIND, tid, &auth, &cred.username, &|w| {
                        w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])
                            .xor_addr(attr::XOR_PEER_ADDRESS, peer);
                    })
                };
                let _ = sock.send_to(&req, server);
                sent_at = Instant::now();
            }
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::parse(&buf[..n]) else {
                continue; // late ChannelData
            };
            if m.transaction_id() != tid {
                continue;
            }
            tid = rand::random();
            sent_at = Instant::now() - Duration::from_secs(1);
            match m.class() {
                Class::Success => {
                    if step == 0 {
                        rec.allocations += 1;
                    }
                    step += 1;
                }
                _ => {
                    let code = m
                        .get(attr::ERROR_CODE)
                        .map(|v| (v[2] & 7) as u16 * 100 + v[3] as u16)
                        .unwrap_or(0);
                    match (code, m.get(attr::REALM), m.get(attr::NONCE)) {
                        (401 | 438, Some(r), Some(nn)) => {
                            let key = long_term_key(
                                &cred.username,
                                &String::from_utf8_lossy(r),
                                &cred.password,
                            );
                            auth = Some((r.to_vec(), nn.to_vec(), key));
                        }
                        // 437: the old allocation still stands (the kill came between the
                        // release and ...): release it and start over.
                        (437, ..) => {
                            let rel = request(
                                method::REFRESH,
                                rand::random(),
                                &auth,
                                &cred.username,
                                &|w| {
                                    w.attr(attr::LIFETIME, &[0, 0, 0, 0]);
                                },
                            );
                            let _ = sock.send_to(&rel, server);
                            step = 0;
                        }
                        _ => anyhow::bail!("TURN error {code}"),
                    }
                }
            }
        }
        // Relay until 300 ms pass without an echo. Only an echo through an allocation made
        // after the restart counts as being back (not one the old process sent before dying).
        let allocated_at = Instant::now();
        let mut last_echo = Instant::now();
        let mut next = Instant::now();
        let mut seq = 0u32;
        while !clock.stop.load(Ordering::Relaxed)
            && last_echo.elapsed() < Duration::from_millis(300)
        {
            if Instant::now() >= next {
                seq += 1;
                let mut frame = vec![0x40, 0, 0, 100];
                frame.extend_from_slice(&[0; 100]);
                frame[4..8].copy_from_slice(&seq.to_be_bytes());
                let _ = sock.send_to(&frame, server);
                next += gap;
            }
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                if n >= 8 && buf[0] == 0x40 {
                    last_echo = Instant::now();
                    let restarted = *clock
                        .restarted
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?;
                    match restarted {
                        None => rec.relayed_before += 1,
                        Some(at) if rec.back_after.is_none() && allocated_at > at => {
                            rec.back_after = Some(at.elapsed())
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    Ok(rec)
}

/// Runs the bench; prints the table and fails when a check fails.
pub fn run(a: RestartArgs) -> anyhow::Result<()> {
    let peer = EchoPeer::start(ip(PEER_IP), 1)?;
    let spec = reliability::spec(false, peer.addr)?;
    let server = reliability::start(&spec)?;
    println!(
        "# turnpike-bench restart: {} clients at {} pkt/s, SIGKILL after {} s, restart on the same address",
        a.clients, a.rate, a.before
    );
    let clock = Arc::new(Clock {
        restarted: Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let clients: Vec<_> = (0..a.clients)
        .map(|_| {
            let clock = clock.clone();
            let (listen, peer, rate) = (spec.listen, peer.addr, a.rate);
            std::thread::spawn(move || client(listen, peer, rate, &clock))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(a.before));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.pid as libc::pid_t, libc::SIGKILL);
    }
    let killed = Instant::now();
    drop(server); // reaps it
    let restarted = Instant::now();
    *clock
        .restarted
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))? = Some(restarted);
    // `start` returns once the new process answers a Binding.
    let server = reliability::start(&spec)?;
    let ready = restarted.elapsed();
    // Every client has `limit_ms` to relay again, and a second more to be seen late.
    std::thread::sleep(Duration::from_millis(a.limit_ms) + Duration::from_secs(1));
    clock.stop.store(true, Ordering::Relaxed);
    let mut backs = Vec::new();
    let mut relayed_before = 0;
    let mut failed = 0;
    let mut first_error = None;
    let mut allocations = 0;
    for t in clients {
        match t.join().map_err(|_| anyhow::anyhow!("a client panicked"))? {
            Ok(r) => {
                relayed_before += r.relayed_before;
                allocations += r.allocations;
                match r.back_after {
                    Some(d) => backs.push(d),
                    None => failed += 1,
                }
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    backs.sort();
    let pct = |p: usize| {
        backs
            .get((backs.len().saturating_sub(1)) * p / 100)
            .map_or(0, |d| d.as_millis())
    };
    println!(
        "| figure | value |\n|---|---|\n| packets relayed before the kill | {relayed_before} |\n| kill to restart (process reaped) | {} ms |\n| restart to the first Binding answered | {} ms |\n| restart to first relayed packet, min / p50 / p99 / max | {} / {} / {} / {} ms |\n| clients back / not back | {} / {failed} |\n| allocations (before + after) | {allocations} |",
        restarted.duration_since(killed).as_millis(),
        ready.as_millis(),
        pct(0),
        pct(50),
        pct(99),
        pct(100),
        backs.len(),
    );
    if let Some(e) = &first_error {
        println!("  first client error: {e}");
    }
    let mut v = Verdict::default();
    v.check(
        relayed_before > 0,
        format!("the clients relayed before the kill ({relayed_before} packets)"),
    );
    v.check(
        failed == 0,
        format!(
            "every client relays again ({} of {})",
            backs.len(),
            a.clients
        ),
    );
    let worst = backs.last().copied().unwrap_or(Duration::MAX);
    v.check(
        worst <= ready + Duration::from_millis(a.limit_ms),
        format!(
            "every client back within {} ms of the server's first answer (slowest: {} ms after the restart, answer at {} ms)",
            a.limit_ms,
            worst.as_millis(),
            ready.as_millis()
        ),
    );
    drop(server);
    v.finish("restart")
}
