//! `flood-relay`: a spoofed flood of unauthenticated Allocates (many loopback source
//! addresses, a fixed total rate) while authenticated sessions relay ChannelData to echo
//! peers. The server's RSS must stay flat and the sessions must lose nothing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use turnpike::net::batch::SendBatch;
use turnpike::proto::stun::{Class, Writer, attr, method};

use crate::load::{Carrier, EchoPeer, LoadSpec};
use crate::proc::{Sampler, Usage, mib};
use crate::reliability::{self, Verdict};
use crate::{CLIENT_IP, PEER_IP, SECRET, ip};

/// Arguments of `turnpike-bench flood-relay`.
#[derive(clap::Args)]
pub struct FloodRelayArgs {
    /// Unauthenticated Allocates per second, all sources together.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Flooding source addresses (127.1.x.y).
    #[arg(long, default_value_t = 500)]
    sources: usize,
    /// Seconds of flood (the sessions relay for as long).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Authenticated sessions relaying meanwhile.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// ChannelData packets per second per session.
    #[arg(long, default_value_t = 50)]
    session_rate: u64,
    /// Allowed RSS growth during the flood, in % of the RSS when it started.
    #[arg(long, default_value_t = 10.0)]
    max_growth_pct: f64,
}

/// The `i`th flooding address: 127.1.x.y, never a .0 or .255.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// What the flood did.
#[derive(Default)]
struct Flood {
    sent: u64,
    answered: u64,
    elapsed: Duration,
}

/// Floods `server` at `rate` requests per second from `sources` addresses until `phase`
/// becomes 2 (or `limit` passes), in 10 ms ticks of one `sendmmsg` per source.
fn flood(
    server: SocketAddr,
    sources: usize,
    rate: u64,
    phase: &AtomicU8,
    limit: Duration,
) -> anyhow::Result<Flood> {
    let socks = (0..sources.max(1))
        .map(|i| {
            let s =
                UdpSocket::bind((source(i), 0)).with_context(|| format!("bind {}", source(i)))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = SendBatch::new(64, 64);
    let mut req = Vec::new();
    let mut buf = [0u8; 1500];
    let mut f = Flood::default();
    let tick = Duration::from_millis(10);
    while phase.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let mut due = 0u64;
    let mut n = 0u64;
    while phase.load(Ordering::Relaxed) == 1 && start.elapsed() < limit {
        let target = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut missing = target.saturating_sub(due);
        due = target;
        let per_source = missing.div_ceil(socks.len() as u64).min(64);
        for s in &socks {
            let k = per_source.min(missing);
            for _ in 0..k {
                n += 1;
                let mut tid = [0u8; 12];
                tid[..8].copy_from_slice(&n.to_be_bytes());
                Writer::new(&mut req, Class::Request, method::ALLOCATE, tid)
                    .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                out.push(&req, server);
            }
            missing -= k;
            f.sent += out.flush(s.as_raw_fd()) as u64;
            while s.recv_from(&mut buf).is_ok() {
                f.answered += 1;
            }
        }
        std::thread::sleep(tick);
    }
    f.elapsed = start.elapsed();
    Ok(f)
}

/// Runs the bench; prints the table and fails when a check fails.
pub fn run(a: FloodRelayArgs) -> anyhow::Result<()> {
    let peer = EchoPeer::start(ip(PEER_IP), 4)?;
    let spec = reliability::spec(false, peer.addr)?;
    let server = reliability::start(&spec)?;
    let pid = server.pid;
    let sampler = Arc::new(Sampler::start(pid, Duration::from_millis(100)));
    // 0: sessions setting up, 1: measuring (flood on), 2: over.
    let phase = Arc::new(AtomicU8::new(0));
    let at_start = Arc::new(AtomicU64::new(0));
    let flood_thread = {
        let phase = phase.clone();
        let (listen, sources, rate) = (spec.listen, a.sources, a.rate);
        let limit = Duration::from_secs(a.seconds + 5);
        std::thread::spawn(move || flood(listen, sources, rate, &phase, limit))
    };
    let load = LoadSpec {
        sessions: a.sessions,
        size: 100,
        carrier: Carrier::Channel,
        rate: a.session_rate,
        window: 8,
        aligned: false,
        duration: Duration::from_secs(a.seconds),
        relay_to_relay: false,
        raw: false,
    };
    println!(
        "# turnpike-bench flood-relay: {} unauthenticated Allocates/s from {} addresses for {} s, {} sessions at {} pkt/s",
        a.rate, a.sources, a.seconds, a.sessions, a.session_rate
    );
    // The load calls this at the start and at the end of its measured window: the flood runs
    // exactly then, and the RSS at its start is the baseline.
    let marks = {
        let (phase, at_start, sampler) = (phase.clone(), at_start.clone(), sampler.clone());
        move || {
            if phase.load(Ordering::Relaxed) == 0 {
                let u = Usage::of(pid);
                at_start.store(u.rss, Ordering::Relaxed);
                sampler.take_peak(u);
                phase.store(1, Ordering::Relaxed);
            } else {
                phase.store(2, Ordering::Relaxed);
            }
            crate::proc::cpu_time(pid).unwrap_or_default()
        }
    };
    let result = crate::load::run(
        &load,
        spec.listen,
        SECRET,
        &peer.addrs,
        ip(CLIENT_IP),
        &marks,
    );
    phase.store(2, Ordering::Relaxed);
    let f = flood_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the flood thread panicked"))??;
    let r = result?;
    let after = Usage::of(pid);
    let base = at_start.load(Ordering::Relaxed);
    let peak_rss = sampler.take_peak(after).rss;
    println!(
        "| figure | value |\n|---|---|\n| flood sent | {} in {:.1} s = {:.0}/s |\n| flood answers (401s, rate-limited) | {} |\n| session packets sent / lost | {} / {} |\n| session round trips p50 / p99 | {} / {} us |\n| server RSS at flood start / peak / end | {:.1} / {:.1} / {:.1} MiB |",
        f.sent,
        f.elapsed.as_secs_f64(),
        f.sent as f64 / f.elapsed.as_secs_f64().max(1e-9),
        f.answered,
        r.sent,
        r.lost,
        r.rtt_p50_us,
        r.rtt_p99_us,
        mib(base),
        mib(peak_rss),
        mib(after.rss)
    );
    let mut v = Verdict::default();
    v.check(
        f.sent > 0 && r.sent > 0,
        format!(
            "flood and sessions both ran ({} and {} packets)",
            f.sent, r.sent
        ),
    );
    // turnpike's default limits.unauthenticated_rate: 20 answers a second per source, bursts
    // of 40.
    let allowed = a.sources as f64 * (40.0 + 20.0 * f.elapsed.as_secs_f64());
    v.check(
        f.answered as f64 <= allowed,
        format!(
            "the flood answered within the 401 rate limit ({} <= {allowed:.0})",
            f.answered
        ),
    );
    v.check(
        r.lost == 0,
        format!("the sessions lost nothing ({} of {})", r.lost, r.sent),
    );
    v.check(
        peak_rss as f64 <= base as f64 * (1.0 + a.max_growth_pct / 100.0),
        format!(
            "RSS flat: peak {:.1} MiB within {}% of {:.1} MiB",
            mib(peak_rss),
            a.max_growth_pct,
            mib(base)
        ),
    );
    drop(server);
    v.finish("flood-relay")
}
