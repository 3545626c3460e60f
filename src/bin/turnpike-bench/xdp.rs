//! `turnpike-bench xdp`: the XDP fast path against the user-space path, interleaved, in network
//! namespaces this command makes (as root) and removes:
//!
//! ```text
//!  load ns  c0 10.78.1.2 ── s1 10.78.1.1  server ns (turnpike)  s2 10.78.2.1 ── p0 10.78.2.2  peers ns
//! ```
//!
//! The load generator (client sockets) and the echo peers are threads of this process, each
//! in its namespace. The XDP path's work runs in softirq, outside the server process, so the
//! CPU counted is the whole machine's (`/proc/stat`, all CPUs, busy time) minus this process's
//! own (load generator and echo peers), the same way for both paths. Other processes on the
//! machine count too: run it on a quiet machine and say how quiet it was.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::load::{self, Carrier, EchoPeer, LoadSpec};

/// Arguments of `turnpike-bench xdp`.
#[derive(Args, Clone)]
pub struct XdpArgs {
    /// Sessions (allocations).
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Packets per second per session (0 = flat out, limited by the window).
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Rounds (each runs both paths once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const SECRET: &str = "bench-secret";

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {args:?}"))?;
    if !status.success() {
        bail!("{args:?} failed ({status}): this mode needs root, iproute2, iptables and ethtool");
    }
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

fn lab() -> anyhow::Result<(Namespaces, [String; 3])> {
    let pid = std::process::id();
    let names = [
        format!("tpb{pid}load"),
        format!("tpb{pid}srv"),
        format!("tpb{pid}peer"),
    ];
    let guard = Namespaces(Vec::new());
    let mut guard = guard;
    for n in &names {
        run(&["ip", "netns", "add", n])?;
        guard.0.push(n.clone());
        in_ns(n, &["ip", "link", "set", "lo", "up"])?;
    }
    let [load, srv, peer] = &names;
    for (mine, other, theirs, my_ip, their_ip) in [
        ("s1", load, "c0", "10.78.1.1/24", "10.78.1.2/24"),
        ("s2", peer, "p0", "10.78.2.1/24", "10.78.2.2/24"),
    ] {
        in_ns(
            srv,
            &[
                "ip", "link", "add", mine, "type", "veth", "peer", "name", theirs, "netns", other,
            ],
        )?;
        in_ns(srv, &["ip", "addr", "add", my_ip, "dev", mine])?;
        in_ns(srv, &["ip", "link", "set", mine, "up"])?;
        in_ns(other, &["ip", "addr", "add", their_ip, "dev", theirs])?;
        in_ns(other, &["ip", "link", "set", theirs, "up"])?;
        // NAPI on the receiving end of redirects; complete UDP checksums from local senders.
        in_ns(other, &["ethtool", "-K", theirs, "gro", "on", "tx", "off"])?;
        in_ns(
            srv,
            &[
                "sysctl",
                "-q",
                "-w",
                &format!("net.ipv4.conf.{mine}.forwarding=1"),
            ],
        )?;
    }
    in_ns(srv, &["iptables", "-w", "5", "-P", "FORWARD", "DROP"])?;
    in_ns(load, &["ip", "route", "add", "default", "via", "10.78.1.1"])?;
    in_ns(peer, &["ip", "route", "add", "default", "via", "10.78.2.1"])?;
    Ok((guard, names))
}

/// Runs `f` on a thread inside namespace `ns` (threads it spawns stay there too).
fn in_namespace<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let file = File::open(format!("/run/netns/{ns}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a namespace file we hold open; it changes this thread only.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(anyhow::anyhow!(
                "setns: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

/// Busy CPU time of the whole machine (all CPUs: everything but idle and iowait).
fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return Duration::ZERO;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(busy * 1_000_000_000 / ticks)
}

struct Turnpike(Child);

impl Drop for Turnpike {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_turnpike(srv: &str, xdp: bool, dir: &std::path::Path) -> anyhow::Result<Turnpike> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("turnpike");
    let config = format!(
        "realm = \"bench\"\n[[listen]]\ntransport = \"udp\"\naddress = \"10.78.1.1:3478\"\n\
         [relay]\nbind_ip = \"10.78.2.1\"\nbind_ipv6 = \"none\"\nports = \"49152-65535\"\n\
         xdp = [{}]\n[auth]\nsecrets = [\"{SECRET}\"]\n[peers]\nallow = [\"10.78.2.0/24\"]\n\
         [limits]\nallocations_per_user = 0\n[http]\nenabled = false\n[log]\nlevel = \"info\"\n",
        if xdp { "\"s1\", \"s2\"" } else { "" }
    );
    let path = dir.join(if xdp { "xdp.toml" } else { "user.toml" });
    std::fs::write(&path, config)?;
    let log_path = dir.join(if xdp { "xdp.log" } else { "user.log" });
    let log = File::create(&log_path)?;
    let child = Command::new("ip")
        .args(["netns", "exec", srv])
        .arg(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut server = Turnpike(child);
    // Ready once it logged so (at most 10 s), plus a moment for the attached veths to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains(" ready ") {
            if xdp && !text.contains("XDP fast path attached") {
                bail!("the XDP fast path did not attach:\n{text}");
            }
            break;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            bail!("turnpike exited with {status}:\n{text}");
        }
        if Instant::now() > deadline {
            bail!("turnpike did not start within 10 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(server)
}

/// Runs the comparison and prints one line per run and the ratios.
pub fn compare(a: XdpArgs) -> anyhow::Result<()> {
    let (_guard, [load_ns, srv, peer_ns]) = lab()?;
    let dir = std::env::temp_dir().join(format!("turnpike-bench-xdp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let peer = in_namespace(&peer_ns, || {
        EchoPeer::start("10.78.2.2".parse().expect("address"), 1)
    })??;
    let peers = peer.addrs.clone();
    let spec = LoadSpec {
        sessions: a.sessions,
        size: a.size,
        carrier: Carrier::Channel,
        rate: a.rate,
        window: 8,
        aligned: false,
        duration: Duration::from_secs(a.duration),
        relay_to_relay: false,
        raw: false,
    };
    println!(
        "{} sessions, {}-byte ChannelData, {} packets/s per session, {} s per run; CPU = whole machine minus the load generator and echo peers",
        a.sessions, a.size, a.rate, a.duration
    );
    let mut totals = [(0u64, 0.0f64); 2];
    for round in 1..=a.rounds {
        for (i, xdp) in [(0, true), (1, false)] {
            let server = start_turnpike(&srv, xdp, &dir)?;
            let me = std::process::id();
            let (spec, peers) = (spec.clone(), peers.clone());
            let started = Instant::now();
            let r = in_namespace(&load_ns, move || {
                let cpu = move || {
                    machine_busy().saturating_sub(crate::proc::cpu_time(me).unwrap_or_default())
                };
                load::run(
                    &spec,
                    "10.78.1.1:3478".parse().expect("address"),
                    SECRET,
                    &peers,
                    "10.78.1.2".parse().expect("address"),
                    &cpu,
                )
            })??;
            drop(server);
            let pps = r.packets_per_cpu_second();
            totals[i].0 += r.delivered * 2;
            totals[i].1 += r.server_cpu.as_secs_f64();
            println!(
                "round {round} {:<10} {:>9.0} packets/CPU-s  relaying CPU {:>5.2} s  delivered {:>7} round trips  lost {:>4}  rtt p50 {:>5} us p99 {:>6} us  ({:.1} s)",
                if xdp { "xdp" } else { "user-space" },
                pps,
                r.server_cpu.as_secs_f64(),
                r.delivered,
                r.lost,
                r.rtt_p50_us,
                r.rtt_p99_us,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let per = |(p, c): (u64, f64)| if c > 0.0 { p as f64 / c } else { 0.0 };
    let (x, u) = (per(totals[0]), per(totals[1]));
    println!(
        "all rounds: xdp {x:.0} packets/CPU-s, user-space {u:.0}: {:.2}x",
        if u > 0.0 { x / u } else { 0.0 }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
