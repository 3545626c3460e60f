//! `churn`: a million allocations created and released, in waves held at once, from several
//! clients in parallel (each allocation on a fresh client socket, closed after its release, so
//! the client side stays within its descriptor limit). The server's RSS and open descriptors
//! must come back to their baseline.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::proc::{Sampler, Usage, mib};
use crate::reliability::{self, Verdict, within};
use crate::turn::{self, Auth};
use crate::{PEER_IP, SECRET, ip};

/// Arguments of `turnpike-bench churn`.
#[derive(clap::Args)]
pub struct ChurnArgs {
    /// Allocations to create and release after the warm-up wave.
    #[arg(long, default_value_t = 1_000_000)]
    count: usize,
    /// Allocations held at once (one wave), all clients together.
    #[arg(long, default_value_t = 5000)]
    wave: usize,
    /// Client threads (on 127.0.0.2 to 127.0.0.8).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Allowed distance of the final RSS and descriptor count from the baseline, in %.
    #[arg(long, default_value_t = 10.0)]
    tolerance_pct: f64,
}

/// What one client thread did.
#[derive(Default)]
struct Tally {
    allocated: u64,
    released: u64,
    failed: u64,
    first_error: Option<String>,
}

/// One client thread: `waves` times, when told to, allocates `per_wave` times (a fresh socket each), waits
/// with the others while the server is measured, releases them all.
fn client(
    server: SocketAddr,
    client_ip: IpAddr,
    mut auth: Auth,
    waves: usize,
    per_wave: usize,
    barrier: &Barrier,
) -> Tally {
    let mut t = Tally::default();
    let fail = |t: &mut Tally, e: anyhow::Error| {
        t.failed += 1;
        t.first_error.get_or_insert_with(|| format!("{e:#}"));
    };
    for _ in 0..waves {
        barrier.wait(); // the server was measured at rest: go
        let mut held = Vec::with_capacity(per_wave);
        for _ in 0..per_wave {
            match UdpSocket::bind((client_ip, 0)) {
                Ok(sock) => match turn::allocate(&sock, server, &mut auth) {
                    Ok(_) => {
                        t.allocated += 1;
                        held.push(sock);
                    }
                    Err(e) => fail(&mut t, e),
                },
                Err(e) => fail(&mut t, e.into()),
            }
        }
        barrier.wait(); // all held: the server is measured
        barrier.wait();
        for sock in held {
            match turn::release(&sock, server, &mut auth) {
                Ok(()) => t.released += 1,
                Err(e) => fail(&mut t, e),
            }
        }
        barrier.wait(); // all released
    }
    t
}

/// Runs the churn bench; prints the table and fails when a check fails.
pub fn run(a: ChurnArgs) -> anyhow::Result<()> {
    let clients = a.clients.max(1);
    let per_wave = (a.wave / clients).max(1);
    let wave = per_wave * clients;
    let waves = 1 + a.count.div_ceil(wave);
    let peer = crate::load::EchoPeer::start(ip(PEER_IP), 1)?;
    let spec = reliability::spec(false, peer.addr)?;
    let server = reliability::start(&spec)?;
    let pid = server.pid;
    std::thread::sleep(Duration::from_millis(500));
    let cold = Usage::of(pid);
    let sampler = Sampler::start(pid, Duration::from_millis(100));
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let barrier = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let cred =
                turnpike::proto::credentials::mint(SECRET.as_bytes(), "churn", now_unix, 86400);
            let auth = Auth::new(&cred.username, &cred.password);
            let client_ip = IpAddr::from([127, 0, 0, 2 + (i % 7) as u8]);
            let barrier = barrier.clone();
            let server = spec.listen;
            std::thread::spawn(move || client(server, client_ip, auth, waves, per_wave, &barrier))
        })
        .collect();
    println!(
        "# turnpike-bench churn: {} allocations after a warm-up wave, {wave} held at once, {clients} clients",
        (waves - 1) * wave
    );
    let mut baseline = cold;
    let mut peak = Usage::default();
    let mut held_peak = Usage::default();
    let mut churn_start = Instant::now();
    for w in 0..waves {
        barrier.wait(); // go
        barrier.wait(); // all held
        let held = Usage::of(pid);
        held_peak.rss = held_peak.rss.max(held.rss);
        held_peak.fds = held_peak.fds.max(held.fds);
        barrier.wait();
        barrier.wait();
        if w == 0 {
            // The warm-up wave sized the allocator's pools and the tables: the baseline is the
            // server at rest after it.
            std::thread::sleep(Duration::from_millis(500));
            baseline = Usage::of(pid);
            sampler.take_peak(baseline);
            churn_start = Instant::now();
        } else if w % 20 == 0 {
            let u = Usage::of(pid);
            println!(
                "  wave {w:>4}/{}: {} allocations, RSS {:.1} MiB, {} fds, {:.0} allocations/s",
                waves - 1,
                w * wave,
                mib(u.rss),
                u.fds,
                (w * wave) as f64 / churn_start.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = churn_start.elapsed();
    let mut tally = Tally::default();
    for t in threads {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        tally.allocated += r.allocated;
        tally.released += r.released;
        tally.failed += r.failed;
        if tally.first_error.is_none() {
            tally.first_error = r.first_error;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = Usage::of(pid);
    let p = sampler.take_peak(after);
    peak.rss = p.rss.max(held_peak.rss);
    peak.fds = p.fds.max(held_peak.fds);
    let churned = (waves - 1) * wave;
    println!(
        "| phase | RSS MiB | open fds |\n|---|---|---|\n| cold start | {:.1} | {} |\n| baseline (after the warm-up wave) | {:.1} | {} |\n| peak ({wave} held) | {:.1} | {} |\n| after {churned} allocations | {:.1} | {} |",
        mib(cold.rss),
        cold.fds,
        mib(baseline.rss),
        baseline.fds,
        mib(peak.rss),
        peak.fds,
        mib(after.rss),
        after.fds
    );
    println!(
        "  {} allocated, {} released, {} failed in {:.1} s = {:.0} allocations (and releases)/s{}",
        tally.allocated,
        tally.released,
        tally.failed,
        elapsed.as_secs_f64(),
        churned as f64 / elapsed.as_secs_f64().max(1e-9),
        tally
            .first_error
            .as_deref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default()
    );
    let mut v = Verdict::default();
    let expected = (waves * wave) as u64;
    v.check(
        tally.allocated == expected && tally.released == expected,
        format!(
            "every allocation made and released ({} + {} of {expected})",
            tally.allocated, tally.released
        ),
    );
    v.check(
        peak.fds >= baseline.fds + wave as u64,
        format!(
            "the held wave shows in the fds ({} >= {} + {wave}): the measure sees allocations",
            peak.fds, baseline.fds
        ),
    );
    v.check(
        within(after.fds, baseline.fds, a.tolerance_pct),
        format!(
            "open fds back to baseline ±{}% ({} vs {})",
            a.tolerance_pct, after.fds, baseline.fds
        ),
    );
    v.check(
        within(after.rss, baseline.rss, a.tolerance_pct),
        format!(
            "RSS back to baseline ±{}% ({:.1} vs {:.1} MiB)",
            a.tolerance_pct,
            mib(after.rss),
            mib(baseline.rss)
        ),
    );
    drop(server);
    v.finish("churn")
}
