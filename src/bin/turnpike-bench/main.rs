//! turnpike-bench: the relay load generator. Drives N TURN allocations with REST credentials
//! against turnpike, coturn or the bare forwarder, and compares them side by side.
//!
//! Performance is reported as ratios of runs interleaved in one invocation (A B A B ...),
//! because the machines it runs on are shared and noisy. See docs/performance.md.

mod alloc;
mod churn;
mod flood;
mod flood_relay;
mod forwarder;
mod kmem;
mod load;
mod netns;
mod proc;
mod registry;
mod registry_servers;
mod reliability;
mod restart;
mod servers;
mod tcp_flood;
mod tcp_turn;
mod turn;
mod uclient;
mod xdp;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use load::{Carrier, EchoPeer, LoadResult, LoadSpec};
use servers::{Kind, ServerSpec};

const SECRET: &str = "bench-secret";
const SERVER_IP: &str = "127.0.0.1";
const CLIENT_IP: &str = "127.0.0.2";
const PEER_IP: &str = "127.0.0.3";

#[derive(Parser)]
#[command(
    name = "turnpike-bench",
    version,
    about = "Load generator and side-by-side benchmark for TURN relays"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One load against one server.
    Run {
        /// Server to start and measure.
        #[arg(long, value_enum, default_value = "turnpike")]
        server: Kind,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// The matrix of loads against several servers, interleaved, with ratios.
    Compare {
        /// Servers, comma-separated (the first is the one the ratios are for).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "turnpike,coturn,forwarder"
        )]
        servers: Vec<Kind>,
        /// Session counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
        sessions: Vec<usize>,
        /// Payload sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "100,1200")]
        sizes: Vec<usize>,
        /// Carriers, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "channel,send"
        )]
        carriers: Vec<Carrier>,
        /// Rounds per point (each round runs every server once).
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Allocation rate and memory per allocation.
    Alloc {
        /// Server to start and measure.
        #[arg(long, value_enum, default_value = "turnpike")]
        server: Kind,
        /// Allocations to make and hold.
        #[arg(long, default_value_t = 10000)]
        count: usize,
        /// After allocating, relay this many sessions for `--duration` to check for loss.
        #[arg(long, default_value_t = 0)]
        then_sessions: usize,
        /// Seconds of relaying after allocating.
        #[arg(long, default_value_t = 3)]
        duration: u64,
        /// After allocating, watch the server idle this many seconds and report its CPU.
        #[arg(long, default_value_t = 0)]
        idle: u64,
    },
    /// Allocations from one source address, each client handshaking on its own (a 401, then
    /// a signed Allocate), as the clients of one NAT do: the servers interleaved, round after
    /// round.
    Handshakes {
        /// Servers, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "turnpike")]
        servers: Vec<Kind>,
        /// Clients (allocations) per run.
        #[arg(long, default_value_t = 10000)]
        count: usize,
        /// Clients in their handshake at once.
        #[arg(long, default_value_t = 256)]
        window: usize,
        /// Rounds (each runs every server once).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds a run may take at most.
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// A spoofed flood: unauthenticated Allocates from many loopback addresses (127.1.x.y), none
    /// of which authenticates; reports the most answers one source got against what the
    /// default limit allows (a burst of 40, then 20 a second).
    Flood {
        /// Servers, comma-separated.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "turnpike")]
        servers: Vec<Kind>,
        /// Source addresses.
        #[arg(long, default_value_t = 1000)]
        sources: usize,
        /// Requests each source sends.
        #[arg(long, default_value_t = 200)]
        per_source: usize,
        /// Seconds the requests are spread over.
        #[arg(long, default_value_t = 2)]
        duration: u64,
    },
    /// Reliability: allocations created and released (a million by default); the server's
    /// RSS and open descriptors must come back to their baseline.
    Churn(churn::ChurnArgs),
    /// Reliability: a spoofed flood of unauthenticated Allocates while authenticated sessions
    /// relay; RSS must stay flat and the sessions lose nothing.
    FloodRelay(flood_relay::FloodRelayArgs),
    /// Reliability: thousands of TCP connections sending garbage or guessing passwords while
    /// authenticated TCP clients allocate and relay; memory bounded, the clients served.
    TcpFlood(tcp_flood::TcpFloodArgs),
    /// Reliability: SIGKILL the server while clients relay, restart it; every client relays
    /// again soon after.
    Restart(restart::RestartArgs),
    /// The registry against a room relay on Node's `ws` (benches/node-ws-relay): signaling
    /// throughput (messages per server CPU-second, wall time) and RSS per idle connection,
    /// the servers interleaved round after round.
    Registry {
        /// Servers, comma-separated (the ratios are the first one's against each).
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "turnpike,node-ws"
        )]
        servers: Vec<registry::RegistryServer>,
        /// Nodes of `turnpike-cluster` (each with the registry, sharing one `redis-server`
        /// the bench starts; its CPU counts as the server's).
        #[arg(long, default_value_t = 2)]
        nodes: usize,
        /// Peers of the one project that exchange offers.
        #[arg(long, default_value_t = 200)]
        peers: usize,
        /// Offers each peer sends.
        #[arg(long, default_value_t = 1000)]
        offers: usize,
        /// Idle joined peers held for the memory measure (0: none).
        #[arg(long, default_value_t = 10000)]
        idle: usize,
        /// Peers per project among the idle ones.
        #[arg(long, default_value_t = 100)]
        idle_project: usize,
        /// Rounds (each runs every server once).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds one measure may take at most.
        #[arg(long, default_value_t = 120)]
        limit: u64,
    },
    /// TURN over TCP and TLS, turnpike against coturn under coturn's own load generator
    /// (`turnutils_uclient` to a `turnutils_peer` echo peer), interleaved round after round:
    /// relayed packets per server CPU-second and loss.
    Uclient(uclient::UclientArgs),
    /// A few seconds of relaying through turnpike, failing on loss or nonsense (for tests).
    Smoke,
    /// The XDP fast path (`relay.xdp`) against the user-space path, the bare forwarder and
    /// coturn, interleaved, in network namespaces it makes (root); CPU: every thread of the
    /// machine but the load generator's, with threaded NAPI (docs/performance.md).
    Xdp(xdp::XdpArgs),
    /// (internal) The bare UDP forwarder process.
    Forwarder {
        /// Listen address.
        #[arg(long)]
        listen: SocketAddr,
        /// Destination of everything received.
        #[arg(long)]
        to: SocketAddr,
        /// Threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// Address of the upstream sockets (default: the listener's).
        #[arg(long)]
        relay_ip: Option<IpAddr>,
    },
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Sessions (allocations).
    #[arg(long, default_value_t = 10)]
    sessions_n: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// ChannelData or Send indications.
    #[arg(long, value_enum, default_value = "channel")]
    carrier: Carrier,
    /// Packets per second per session (0 = flat out, limited by the window).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Packets in flight per session when flat out.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Paced sessions send in lock-step (one burst of a packet per session each interval)
    /// instead of spread evenly over the interval as independent sessions are.
    #[arg(long)]
    aligned: bool,
    /// Every session relays to its own echo peer address instead of all sharing one (coturn's
    /// --multiplex-peer admits a peer address for only one allocation per thread).
    #[arg(long)]
    distinct_peers: bool,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 3)]
    duration: u64,
    /// Both ends are clients of the server (relay to relay), as two browsers on relay policy.
    #[arg(long)]
    relay_to_relay: bool,
    /// Server worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("constant address")
}

/// A started server with its echo peer, ready for loads.
struct Target {
    kind: Kind,
    listen: SocketAddr,
    server: servers::Server,
}

/// Starts server `index` of `count`, each with a relay port block of its own in 40000-63999
/// (above the test suite's blocks, 10000-31999).
fn start(
    kind: Kind,
    index: usize,
    count: usize,
    workers: usize,
    peer: &EchoPeer,
) -> anyhow::Result<Target> {
    let block = 24_000 / count.max(1);
    let lo = 40_000 + index * block;
    let (lo, hi) = (lo as u16, (lo + block - 1) as u16);
    start_with_ports(kind, workers, peer, (lo, hi))
}

fn start_with_ports(
    kind: Kind,
    workers: usize,
    peer: &EchoPeer,
    ports: (u16, u16),
) -> anyhow::Result<Target> {
    // A free port, not a fixed one: other servers (test suites) may run on this machine.
    let port = std::net::UdpSocket::bind((ip(SERVER_IP), 0))?
        .local_addr()?
        .port();
    let spec = ServerSpec {
        listen: SocketAddr::new(ip(SERVER_IP), port),
        ports,
        secret: SECRET.into(),
        realm: "bench".into(),
        workers,
        forward_to: Some(peer.addr),
        tcp: false,
        netns: None,
    };
    let server = servers::start(kind, &spec)?;
    Ok(Target {
        kind,
        listen: spec.listen,
        server,
    })
}

fn measure(t: &mut Target, spec: &LoadSpec, peer: &EchoPeer) -> anyhow::Result<LoadResult> {
    t.server.check_alive()?;
    let mut spec = spec.clone();
    spec.raw = t.kind == Kind::Forwarder;
    let pid = t.server.pid;
    let cpu = move || proc::cpu_time(pid).unwrap_or_default();
    load::run(&spec, t.listen, SECRET, &peer.addrs, ip(CLIENT_IP), &cpu)
}

fn spec_of(a: &LoadArgs, sessions: usize, size: usize, carrier: Carrier) -> LoadSpec {
    LoadSpec {
        sessions: if a.relay_to_relay {
            sessions.max(2) & !1
        } else {
            sessions
        },
        size,
        carrier,
        rate: a.rate,
        window: a.window,
        aligned: a.aligned,
        duration: Duration::from_secs(a.duration),
        relay_to_relay: a.relay_to_relay,
        raw: false,
    }
}

fn print_result(kind: Kind, r: &LoadResult) {
    println!(
        "  {:<10} {:>10.0} rt/s {:>11.0} pkt/cpu-s  cpu {:>6.2}s  loss {:>6} of {:>8}  rtt p50 {:>6} us p99 {:>7} us (to peer p50 {} us)",
        kind.name(),
        r.round_trips_per_second(),
        r.packets_per_cpu_second(),
        r.server_cpu.as_secs_f64(),
        r.lost,
        r.sent,
        r.rtt_p50_us,
        r.rtt_p99_us,
        r.forward_p50_us
    );
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() -> anyhow::Result<()> {
    raise_fd_limit();
    let cli = Cli::parse();
    match cli.command {
        Command::Forwarder {
            listen,
            to,
            workers,
            relay_ip,
        } => forwarder::run(listen, to, workers, relay_ip),
        Command::Run { server, load } => {
            let peers = if load.distinct_peers {
                load.sessions_n
            } else {
                1
            };
            let peer = EchoPeer::start(ip(PEER_IP), peers)?;
            let mut target = start(server, 0, 3, load.workers, &peer)?;
            let spec = spec_of(&load, load.sessions_n, load.size, load.carrier);
            let r = measure(&mut target, &spec, &peer)?;
            print_result(server, &r);
            Ok(())
        }
        Command::Compare {
            servers,
            sessions,
            sizes,
            carriers,
            rounds,
            load,
        } => compare(&servers, &sessions, &sizes, &carriers, rounds, &load),
        Command::Flood {
            servers,
            sources,
            per_source,
            duration,
        } => {
            let peer = EchoPeer::start(ip(PEER_IP), 1)?;
            for &server in &servers {
                let target = start_with_ports(server, 0, &peer, (10000, 65000))?;
                let r = flood::run(
                    target.listen,
                    sources,
                    per_source,
                    Duration::from_secs(duration),
                )?;
                // turnpike's default limits.unauthenticated_rate: 20 a second, bursts of 40.
                let allowed = 40.0 + 20.0 * r.elapsed.as_secs_f64();
                println!(
                    "{:<13} {sources} sources, {} requests in {:.2} s: {} answered, at most {} to one source (the limit allows {:.0})",
                    server.name(),
                    r.sent,
                    r.elapsed.as_secs_f64(),
                    r.answered,
                    r.max_per_source,
                    allowed
                );
                drop(target);
            }
            Ok(())
        }
        Command::Handshakes {
            servers,
            count,
            window,
            rounds,
            limit,
        } => {
            let peer = EchoPeer::start(ip(PEER_IP), 1)?;
            for round in 1..=rounds {
                for &server in &servers {
                    let target = start_with_ports(server, 0, &peer, (10000, 65000))?;
                    let (r, held) = alloc::run_handshakes(
                        target.listen,
                        SECRET,
                        count,
                        ip(CLIENT_IP),
                        window,
                        Duration::from_secs(limit),
                    )?;
                    println!(
                        "round {round} {:<13} {:>6} of {count} allocated from one address in {:.3} s = {:>8.0} allocations/s ({} retransmissions)",
                        server.name(),
                        r.allocated,
                        r.elapsed.as_secs_f64(),
                        r.rate(),
                        r.retransmits
                    );
                    drop(held);
                    drop(target);
                }
            }
            Ok(())
        }
        Command::Alloc {
            server,
            count,
            then_sessions,
            duration,
            idle,
        } => {
            let peer = EchoPeer::start(ip(PEER_IP), 1)?;
            // Relays on 127.0.0.1 across most of the port space; clients on 127.0.0.2-8.
            let mut target = start_with_ports(server, 0, &peer, (10000, 65000))?;
            let pid = target.server.pid;
            let client_ips: Vec<IpAddr> = (2..=8).map(|i| IpAddr::from([127, 0, 0, i])).collect();
            // The kernel's memory is read with the RSS (after the client sockets exist).
            let kernel = std::cell::RefCell::new(Vec::new());
            let (r, _held) = alloc::run(target.listen, SECRET, count, &client_ips, &|| {
                kernel.borrow_mut().push(kmem::snapshot());
                proc::rss_bytes(pid).unwrap_or(0)
            })?;
            println!(
                "{}: {} of {} allocations in {:.3} s = {:.0} allocations/s, {:.0} bytes RSS per allocation",
                server.name(),
                r.allocated,
                count,
                r.elapsed.as_secs_f64(),
                r.rate(),
                r.rss_per_allocation
            );
            kmem::report(&kernel.borrow(), r.allocated, r.rss_per_allocation);
            kmem::idle_cpu(pid, idle, r.allocated);
            if then_sessions > 0 {
                let args = LoadArgs {
                    sessions_n: then_sessions,
                    size: 100,
                    carrier: Carrier::Channel,
                    rate: 50,
                    window: 8,
                    aligned: false,
                    distinct_peers: false,
                    duration,
                    relay_to_relay: false,
                    workers: 0,
                };
                let res = measure(
                    &mut target,
                    &spec_of(&args, then_sessions, 100, Carrier::Channel),
                    &peer,
                )?;
                println!("while holding them, {then_sessions} sessions paced at 50 pkt/s:");
                print_result(server, &res);
            }
            Ok(())
        }
        Command::Registry {
            servers,
            nodes,
            peers,
            offers,
            idle,
            idle_project,
            rounds,
            limit,
        } => registry::run(&registry::RegistrySpec {
            servers,
            nodes,
            peers,
            offers,
            idle,
            idle_project,
            rounds,
            limit,
        }),
        Command::Smoke => smoke(),
        Command::Xdp(a) => xdp::compare(a),
        Command::Churn(a) => churn::run(a),
        Command::FloodRelay(a) => flood_relay::run(a),
        Command::TcpFlood(a) => tcp_flood::run(a),
        Command::Restart(a) => restart::run(a),
        Command::Uclient(a) => uclient::run(a),
    }
}

fn compare(
    servers: &[Kind],
    sessions: &[usize],
    sizes: &[usize],
    carriers: &[Carrier],
    rounds: usize,
    load: &LoadArgs,
) -> anyhow::Result<()> {
    let peers = if load.distinct_peers {
        sessions.iter().copied().max().unwrap_or(1)
    } else {
        1
    };
    let peer = EchoPeer::start(ip(PEER_IP), peers)?;
    let mut targets: Vec<Target> = servers
        .iter()
        .enumerate()
        .map(|(i, k)| start(*k, i, servers.len(), load.workers, &peer))
        .collect::<anyhow::Result<_>>()?;
    println!(
        "# turnpike-bench compare: rounds={rounds} duration={}s window={} rate={} relay_to_relay={}",
        load.duration, load.window, load.rate, load.relay_to_relay
    );
    let mut summary = Vec::new();
    for &n in sessions {
        for &size in sizes {
            for &carrier in carriers {
                let spec = spec_of(load, n, size, carrier);
                println!("sessions={n} size={size} carrier={carrier:?}");
                let mut totals: Vec<(u64, f64, u64, u64, Vec<u64>)> =
                    vec![(0, 0.0, 0, 0, Vec::new()); targets.len()];
                for _ in 0..rounds {
                    for (i, t) in targets.iter_mut().enumerate() {
                        if t.kind == Kind::Forwarder
                            && (carrier == Carrier::Send || load.relay_to_relay)
                        {
                            continue;
                        }
                        let r = measure(t, &spec, &peer)
                            .with_context(|| format!("{} at sessions={n}", t.kind.name()))?;
                        print_result(t.kind, &r);
                        totals[i].0 += r.delivered * 2;
                        totals[i].1 += r.server_cpu.as_secs_f64();
                        totals[i].2 += r.lost;
                        totals[i].3 += r.sent;
                        totals[i].4.push(r.rtt_p99_us);
                    }
                }
                let per_cpu: Vec<f64> = totals
                    .iter()
                    .map(|t| if t.1 > 0.0 { t.0 as f64 / t.1 } else { 0.0 })
                    .collect();
                let mut line = format!(
                    "  => {} pkt/cpu-s {:.0}",
                    targets[0].kind.name(),
                    per_cpu[0]
                );
                for (i, t) in targets.iter().enumerate().skip(1) {
                    if per_cpu[i] > 0.0 {
                        line += &format!(", x{:.2} vs {}", per_cpu[0] / per_cpu[i], t.kind.name());
                    }
                }
                let losses: Vec<String> = targets
                    .iter()
                    .zip(&totals)
                    .map(|(t, x)| format!("{} lost {}/{}", t.kind.name(), x.2, x.3))
                    .collect();
                println!("{line}; {}", losses.join(", "));
                summary.push((
                    n,
                    size,
                    carrier,
                    per_cpu,
                    totals.iter().map(|t| t.2).collect::<Vec<_>>(),
                ));
            }
        }
    }
    println!(
        "\n| sessions | size | carrier | {} |",
        targets
            .iter()
            .map(|t| format!("{} pkt/cpu-s (lost)", t.kind.name()))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for (n, size, carrier, per_cpu, lost) in summary {
        let cells: Vec<String> = per_cpu
            .iter()
            .zip(&lost)
            .map(|(p, l)| format!("{p:.0} ({l})"))
            .collect();
        let ratios: Vec<String> = per_cpu
            .iter()
            .skip(1)
            .map(|p| {
                if *p > 0.0 {
                    format!("x{:.2}", per_cpu[0] / p)
                } else {
                    "-".into()
                }
            })
            .collect();
        println!(
            "| {n} | {size} | {carrier:?} | {} | ratios {} |",
            cells.join(" | "),
            ratios.join(" ")
        );
    }
    Ok(())
}

fn smoke() -> anyhow::Result<()> {
    // Sessions spread over a few echo addresses (several peers per allocation's worker).
    let peer = EchoPeer::start(ip(PEER_IP), 3)?;
    let mut target = start(Kind::Turnpike, 0, 3, 2, &peer)?;
    for (carrier, r2r) in [
        (Carrier::Channel, false),
        (Carrier::Send, false),
        (Carrier::Channel, true),
    ] {
        let args = LoadArgs {
            sessions_n: 10,
            size: 200,
            carrier,
            rate: 200,
            window: 8,
            aligned: false,
            distinct_peers: false,
            duration: 1,
            relay_to_relay: r2r,
            workers: 2,
        };
        let r = measure(&mut target, &spec_of(&args, 10, 200, carrier), &peer)?;
        print_result(Kind::Turnpike, &r);
        if r.delivered == 0
            || r.lost != 0
            || r.server_cpu.is_zero()
            || r.rtt_p50_us == 0
            || r.rtt_p99_us < r.rtt_p50_us
        {
            bail!("smoke run failed for {carrier:?} relay_to_relay={r2r}: {r:?}");
        }
    }
    println!("smoke: ok");
    Ok(())
}
