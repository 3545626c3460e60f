//! `turnpike-bench xdp`: turnpike with the XDP fast path against turnpike in user space, the
//! bare forwarder and coturn, interleaved round after round, in network namespaces this
//! command makes (as root) and removes:
//!
//! ```text
//!  load ns  c0 10.78.1.2 ── s1 10.78.1.1  server ns  s2 10.78.2.1 ── p0 10.78.2.2  peers ns
//! ```
//!
//! The load generator (client sockets) and the echo peers are threads of this process, each in
//! its namespace; the server under test runs alone in the server namespace, started for its
//! run and stopped after it. turnpike-xdp has its program native on s1 and s2; the others see
//! the same veths with no program.
//!
//! # What is counted as relaying CPU
//!
//! The XDP path's work runs in the kernel, outside the server process, so the server's own CPU
//! time cannot be the measure. Every kind is counted the same way, as the machine's CPU less
//! the load generator's and the echo peers':
//!
//! - Every veth end has NAPI (GRO on) in **threaded mode** (`/sys/class/net/DEV/threaded`),
//!   and the server's ends have TSO off, so the receive work of each end runs in its own kernel
//!   thread `napi/DEV-ID` instead of in softirq on behalf of whichever thread sent the packet
//!   (a veth's transmit schedules its peer's receive on the same CPU). The receive work (and
//!   the XDP program) of s1 and s2 is the server side's; that of c0 and p0 is the load
//!   generator's and the peers' receiving.
//! - Relaying CPU, over the measured window, = the scheduler run time
//!   (`/proc/PID/task/TID/schedstat`, first field, ns) of **every thread of the machine**,
//!   **less** the bench's own threads (load generator and echo peers: their sends, down to
//!   the veth transmit, and their socket receives) and **less** the NAPI threads of c0 and p0;
//!   **plus** the machine's busy time that is in no thread's run time ("unattributed"): wall
//!   time × CPUs − `/proc/stat` idle, iowait and steal (idle is measured exactly by nohz),
//!   less the run time of all threads. That is interrupts and softirqs on an otherwise idle
//!   CPU (the wake-ups of the threads above), the switches in and out of idle, IRQ time the
//!   kernel keeps out of run times (`CONFIG_IRQ_TIME_ACCOUNTING`), and threads that ended
//!   inside the window (their run time can no longer be read). It is charged to the server
//!   side whole, though the load generator's wake-ups cause some of it.
//! - So the server process, the NAPI threads of s1 and s2, kernel workers and every other
//!   process on the machine count: run it on a quiet machine and say how quiet it was. Each
//!   run prints the largest other threads, the /proc/stat softirq delta (about zero with
//!   threaded NAPI), and the sum of all threads next to /proc/stat's busy time (sampled at
//!   ticks) and not-idle time as a check.
//!
//! Known asymmetries of veth: an XDP program on a veth gets socket buffers, not driver pages,
//! and copies each locally sent packet into a page of its own (headroom) before running;
//! an XDP-redirected packet reaches p0 as a frame that p0's NAPI turns back into a socket
//! buffer (excluded, the peers' side), where the user-space path builds that buffer in the
//! server's send (counted).
//!
//! The figure compared is relayed packets per CPU-second (each round trip is two relayed
//! packets), with loss and round-trip percentiles per run, and the ratios of the totals over
//! all rounds against user-space turnpike.

mod cpu;
mod lab;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::load::{self, Carrier, EchoPeer, LoadResult, LoadSpec};
use crate::netns::in_namespace;
use crate::servers::{self, Kind, Netns, ServerSpec};
use cpu::{Breakdown, Meter};
use lab::Lab;

/// Arguments of `turnpike-bench xdp`.
#[derive(Args, Clone)]
pub struct XdpArgs {
    /// Servers, comma-separated, run in this order in every round (ratios are against
    /// `turnpike`, or the first when it is not listed).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "turnpike-xdp,turnpike,forwarder,coturn"
    )]
    servers: Vec<XdpServer>,
    /// Sessions (allocations).
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Packets per second per session (0 = flat out, limited by the window).
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Packets in flight per session when flat out (`--rate 0`).
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Paced sessions send in lock-step (one burst of a packet per session each interval)
    /// instead of spread evenly over the interval.
    #[arg(long)]
    aligned: bool,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Rounds (each runs every server once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Server threads: turnpike's workers, coturn's relay threads, the forwarder's threads
    /// (0 = each one's default, one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

/// A server kind of this mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpServer {
    /// turnpike with `relay.xdp = ["s1", "s2"]` (native XDP on both of its veths).
    TurnpikeXdp,
    /// turnpike, user space only.
    Turnpike,
    /// The bare recvmmsg/sendmmsg forwarder (no TURN; relay side on 10.78.2.1).
    Forwarder,
    /// coturn's turnserver (Debian's).
    Coturn,
}

impl XdpServer {
    fn name(self) -> &'static str {
        match self {
            XdpServer::TurnpikeXdp => "turnpike-xdp",
            XdpServer::Turnpike => "turnpike",
            XdpServer::Forwarder => "forwarder",
            XdpServer::Coturn => "coturn",
        }
    }

    fn kind(self) -> Kind {
        match self {
            XdpServer::TurnpikeXdp | XdpServer::Turnpike => Kind::Turnpike,
            XdpServer::Forwarder => Kind::Forwarder,
            XdpServer::Coturn => Kind::Coturn,
        }
    }
}

const SECRET: &str = "bench-secret";
const PORT: u16 = 3478;

/// One run's figures.
struct Run {
    r: LoadResult,
    cpu: Breakdown,
}

/// The totals of one server over the rounds.
#[derive(Default)]
struct Totals {
    packets: u64,
    cpu: Breakdown,
    lost: u64,
    sent: u64,
    p50: Vec<u64>,
    p99: Vec<u64>,
}

impl Totals {
    fn per_cpu_second(&self) -> f64 {
        let s = self.cpu.relaying().as_secs_f64();
        if s > 0.0 {
            self.packets as f64 / s
        } else {
            0.0
        }
    }
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Runs the comparison: a line per run, then the totals and ratios over all rounds.
pub fn compare(a: XdpArgs) -> anyhow::Result<()> {
    lab::clean_up_on_signal()?;
    let lab = Lab::build()?;
    let peer = in_namespace(&lab.peers, || EchoPeer::start(lab::PEER_IP.into(), 1))??;
    let spec = LoadSpec {
        sessions: a.sessions,
        size: a.size,
        carrier: Carrier::Channel,
        rate: a.rate,
        window: a.window,
        aligned: a.aligned,
        duration: Duration::from_secs(a.duration),
        relay_to_relay: false,
        raw: false,
    };
    print_header(&a, &lab);
    let mut totals: Vec<Totals> = a.servers.iter().map(|_| Totals::default()).collect();
    for round in 1..=a.rounds {
        for (i, &kind) in a.servers.iter().enumerate() {
            let started = Instant::now();
            let run = run_one(kind, &a, &lab, &spec, &peer)
                .with_context(|| format!("{} in round {round}", kind.name()))?;
            print_run(round, kind, &run, started.elapsed());
            let t = &mut totals[i];
            t.packets += run.r.delivered * 2;
            t.cpu.add(&run.cpu);
            t.lost += run.r.lost;
            t.sent += run.r.sent;
            t.p50.push(run.r.rtt_p50_us);
            t.p99.push(run.r.rtt_p99_us);
        }
    }
    print_summary(&a.servers, &totals);
    Ok(())
}

/// Starts `kind` in the server namespace, drives the load from the load namespace, stops it.
fn run_one(
    kind: XdpServer,
    a: &XdpArgs,
    lab: &Lab,
    spec: &LoadSpec,
    peer: &EchoPeer,
) -> anyhow::Result<Run> {
    let listen = SocketAddr::new(lab::SERVER_IP.into(), PORT);
    let server_spec = ServerSpec {
        listen,
        ports: (49152, 65535),
        secret: SECRET.into(),
        realm: "bench".into(),
        workers: a.workers,
        forward_to: Some(peer.addr),
        tcp: false,
        netns: Some(Netns {
            server: lab.server.clone(),
            clients: lab.load.clone(),
            client_ip: lab::LOAD_IP.into(),
            relay_ip: lab::RELAY_IP.into(),
            peers: lab::PEER_NET,
            xdp: if kind == XdpServer::TurnpikeXdp {
                lab::SERVER_DEVS.iter().map(|d| d.to_string()).collect()
            } else {
                Vec::new()
            },
        }),
    };
    // From this (the main) thread, so the server dies with the bench.
    let mut server = servers::start(kind.kind(), &server_spec)?;
    let meter = Meter::new(server.pid, &lab.client_napi, &lab.server_napi);
    let mut spec = spec.clone();
    spec.raw = kind == XdpServer::Forwarder;
    let peers = peer.addrs.clone();
    let client_ip: IpAddr = lab::LOAD_IP.into();
    let (r, meter) = in_namespace(&lab.load, move || {
        let r = load::run(&spec, listen, SECRET, &peers, client_ip, &|| {
            meter.reading()
        });
        (r, meter)
    })?;
    let r = r?;
    server.check_alive()?;
    drop(server);
    let cpu = meter
        .breakdown()
        .context("the load ended before its window")?;
    Ok(Run { r, cpu })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn print_header(a: &XdpArgs, lab: &Lab) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let names = |m: &std::collections::BTreeMap<u32, String>| {
        m.values().cloned().collect::<Vec<_>>().join(" ")
    };
    println!(
        "# turnpike-bench xdp: {} sessions, {}-byte ChannelData, {} packets/s per session{}{}, {} s per run, {} rounds; load average {}",
        a.sessions,
        a.size,
        a.rate,
        if a.rate == 0 {
            format!(" (window {})", a.window)
        } else {
            String::new()
        },
        if a.aligned { ", aligned bursts" } else { "" },
        a.duration,
        a.rounds,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "# relaying CPU = scheduler run time of every thread of the machine (/proc/*/task/*/schedstat) over the window, \
         less the bench's threads (load generator, echo peers) and the NAPI threads of c0/p0 [{}]; \
         threaded NAPI on every veth end: the NAPI threads of s1/s2 [{}] count, as do the server process and every other thread;",
        names(&lab.client_napi),
        names(&lab.server_napi)
    );
    println!(
        "# plus unattributed: wall time x CPUs - /proc/stat idle, iowait, steal - all threads' run time \
         (IRQs and softirqs on idle CPUs, idle entry/exit, threads that ended in the window)"
    );
}

fn print_run(round: usize, kind: XdpServer, run: &Run, wall: Duration) {
    let (r, c) = (&run.r, &run.cpu);
    println!(
        "round {round} {:<12} {:>8.0} pkt/CPU-s  CPU {:>5.2} s = server {:.2} + napi s1/s2 {:.2} + other {:.2} + unattributed {:.2}  {:>7.0} rt/s  lost {:>4} of {:>7}  rtt p50 {:>5} us p99 {:>6} us  ({:.1} s)",
        kind.name(),
        r.packets_per_cpu_second(),
        secs(c.relaying()),
        secs(c.server),
        secs(c.server_napi),
        secs(c.other),
        secs(c.unattributed),
        r.round_trips_per_second(),
        r.lost,
        r.sent,
        r.rtt_p50_us,
        r.rtt_p99_us,
        secs(wall)
    );
    let top: Vec<String> = c
        .top_other
        .iter()
        .map(|(n, d)| format!("{n} {:.3}", secs(*d)))
        .collect();
    println!(
        "        check: all threads {:.2} s vs /proc/stat busy {:.2} s, not idle {:.2} s (softirq {:.2}, irq {:.2}); not counted: bench {:.2}, napi c0/p0 {:.2}; largest other: {}",
        secs(c.all_threads),
        secs(c.stat_busy),
        secs(c.not_idle),
        secs(c.stat_softirq),
        secs(c.stat_irq),
        secs(c.bench),
        secs(c.client_napi),
        if top.is_empty() {
            "none".to_string()
        } else {
            top.join(", ")
        }
    );
    if !c.stray_napi.is_empty() {
        println!(
            "        warning: NAPI threads of no veth of ours ran (counted as other): {}",
            c.stray_napi.join(" ")
        );
    }
}

fn print_summary(servers: &[XdpServer], totals: &[Totals]) {
    let reference = servers
        .iter()
        .position(|&s| s == XdpServer::Turnpike)
        .unwrap_or(0);
    let (ref_pps, ref_p50) = (
        totals[reference].per_cpu_second(),
        median(&totals[reference].p50),
    );
    println!(
        "\nall rounds (ratios against {}; p50/p99: median of the rounds):",
        servers[reference].name()
    );
    println!(
        "| server | pkt/CPU-s | ratio | CPU s: server + napi s1/s2 + other + unattributed | lost/sent | p50 us | p50 ratio | p99 us |"
    );
    for (kind, t) in servers.iter().zip(totals) {
        let pps = t.per_cpu_second();
        let p50 = median(&t.p50);
        let ratio = |x: f64, y: f64| {
            if y > 0.0 {
                format!("{:.2}x", x / y)
            } else {
                "-".into()
            }
        };
        println!(
            "| {} | {:.0} | {} | {:.2} + {:.2} + {:.2} + {:.2} | {}/{} | {} | {} | {} |",
            kind.name(),
            pps,
            ratio(pps, ref_pps),
            secs(t.cpu.server),
            secs(t.cpu.server_napi),
            secs(t.cpu.other),
            secs(t.cpu.unattributed),
            t.lost,
            t.sent,
            p50,
            ratio(p50 as f64, ref_p50 as f64),
            median(&t.p99)
        );
    }
}
