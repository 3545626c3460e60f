//! `uclient`: TURN over TCP and TLS, turnpike against coturn, driven by coturn's own load
//! generator (`turnutils_uclient`) relaying to coturn's echo peer (`turnutils_peer`).
//!
//! Both servers run at once with equivalent settings (the same REST secret and realm, the same
//! self-signed certificate generated here, loopback peers allowed, no CLI), each with a TCP and
//! a TLS listener. Every round runs the same uclient load against each server and transport in
//! turn (interleaved), and reads the server's user + system CPU from `/proc` around the run.
//! The figure compared is relayed packets per server CPU-second: every message uclient gets
//! back was relayed twice (client → peer, peer → client).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::servers::Kind;
use crate::{SECRET, SERVER_IP, ip, proc};

/// Where turnutils_peer listens (its RTP port; it also binds the next one).
const PEER_IP: &str = "127.0.0.3";

/// Arguments of `turnpike-bench uclient`.
#[derive(clap::Args)]
pub struct UclientArgs {
    /// Servers, comma-separated (the ratios are the first one's against each):
    /// turnpike, turnpike-alt (TURNPIKE_BENCH_ALT_BIN), coturn, coturn-custom.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "turnpike,coturn"
    )]
    servers: Vec<Kind>,
    /// Transports, comma-separated: tcp (uclient -t), tls (uclient -t -S).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tcp,tls")]
    transports: Vec<Stream>,
    /// Sessions (uclient -m; each its own allocation, -c).
    #[arg(long, default_value_t = 50)]
    sessions: usize,
    /// Message bytes (uclient -l).
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Messages per session (uclient -n).
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Milliseconds between two messages of a session (uclient -z; its default is 20).
    #[arg(long, default_value_t = 20)]
    interval: u64,
    /// Rounds (each runs every server and transport once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// A stream transport uclient can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Stream {
    /// TURN over TCP.
    Tcp,
    /// TURN over TLS.
    Tls,
}

/// One running server with a TCP and a TLS listener.
struct Target {
    kind: Kind,
    tcp: SocketAddr,
    tls: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one uclient run gave.
#[derive(Clone, Copy, Debug, Default)]
struct Outcome {
    sent: u64,
    received: u64,
    lost: u64,
    cpu: Duration,
    wall: Duration,
}

/// Runs the comparison and prints each run and a summary table.
pub fn run(a: UclientArgs) -> anyhow::Result<()> {
    for kind in &a.servers {
        if !matches!(
            kind,
            Kind::Turnpike | Kind::TurnpikeAlt | Kind::Coturn | Kind::CoturnCustom
        ) {
            bail!(
                "uclient compares turnpike and coturn builds, not {}",
                kind.name()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("turnpike-bench-uclient-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = write_certificate(&dir)?;
    let peer = Peer::start()?;
    let mut targets = Vec::new();
    for (i, &kind) in a.servers.iter().enumerate() {
        let sub = dir.join(format!("server-{i}"));
        std::fs::create_dir_all(&sub)?;
        targets.push(start(kind, &sub, &cert, &key, 46000 + 2000 * i as u16)?);
    }
    println!(
        "# turnpike-bench uclient: sessions={} size={} messages={} interval={}ms rounds={}; {}",
        a.sessions,
        a.size,
        a.messages,
        a.interval,
        a.rounds,
        machine_load()
    );
    let mut totals = vec![vec![Outcome::default(); targets.len()]; a.transports.len()];
    for round in 1..=a.rounds {
        for (ti, &transport) in a.transports.iter().enumerate() {
            for (si, target) in targets.iter_mut().enumerate() {
                if let Some(status) = target.child.try_wait()? {
                    let log =
                        std::fs::read_to_string(target.dir.join("server.log")).unwrap_or_default();
                    bail!("{} exited ({status}):\n{log}", target.kind.name());
                }
                let o = run_uclient(target, transport, &a, peer.addr)?;
                println!(
                    "round {round} {:?} {:<13} {:>9.0} pkt/cpu-s  cpu {:>6.2}s  wall {:>5.1}s  sent {} received {} lost {}",
                    transport,
                    target.kind.name(),
                    per_cpu(&o),
                    o.cpu.as_secs_f64(),
                    o.wall.as_secs_f64(),
                    o.sent,
                    o.received,
                    o.lost
                );
                let t = &mut totals[ti][si];
                t.sent += o.sent;
                t.received += o.received;
                t.lost += o.lost;
                t.cpu += o.cpu;
                t.wall += o.wall;
            }
        }
    }
    println!("# after the runs: {}", machine_load());
    println!(
        "\n| transport | {} | ratios |",
        targets
            .iter()
            .map(|t| format!("{} pkt/CPU-s (lost of sent)", t.kind.name()))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    for (ti, transport) in a.transports.iter().enumerate() {
        let cells: Vec<String> = totals[ti]
            .iter()
            .map(|o| format!("{:.0} ({} of {})", per_cpu(o), o.lost, o.sent))
            .collect();
        let first = per_cpu(&totals[ti][0]);
        let ratios: Vec<String> = totals[ti]
            .iter()
            .zip(&targets)
            .skip(1)
            .map(|(o, t)| format!("x{:.2} vs {}", first / per_cpu(o).max(1.0), t.kind.name()))
            .collect();
        println!(
            "| {transport:?} | {} | {} |",
            cells.join(" | "),
            ratios.join(", ")
        );
    }
    drop(targets);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn per_cpu(o: &Outcome) -> f64 {
    let cpu = o.cpu.as_secs_f64();
    if cpu > 0.0 {
        (o.received * 2) as f64 / cpu
    } else {
        0.0
    }
}

/// The load average and how many compilers run now (the machine is shared).
fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rustc = Command::new("pgrep")
        .args(["-c", "rustc"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "loadavg {}, rustc processes {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        if rustc.is_empty() { "0" } else { &rustc }
    )
}

/// One self-signed certificate (ECDSA P-256, for localhost and 127.0.0.1) both servers use.
fn write_certificate(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    Ok((cert, key))
}

/// A free TCP port on the server address.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((ip(SERVER_IP), 0))?
        .local_addr()?
        .port())
}

fn start(kind: Kind, dir: &Path, cert: &Path, key: &Path, relay_lo: u16) -> anyhow::Result<Target> {
    let server_ip = ip(SERVER_IP);
    let tcp = SocketAddr::new(server_ip, free_port()?);
    let tls = SocketAddr::new(server_ip, free_port()?);
    let relay_hi = relay_lo + 1999;
    let mut cmd = match kind {
        Kind::Turnpike | Kind::TurnpikeAlt => {
            let http = SocketAddr::new(server_ip, free_port()?);
            let config = dir.join("turnpike.toml");
            std::fs::write(
                &config,
                format!(
                    "realm = \"bench\"\n\
                     [[listen]]\ntransport = \"tcp\"\naddress = \"{tcp}\"\n\
                     [[listen]]\ntransport = \"tls\"\naddress = \"{tls}\"\n\
                     [tls]\ncertificate = \"{cert}\"\nprivate_key = \"{key}\"\n\
                     [relay]\nbind_ip = \"{server_ip}\"\nbind_ipv6 = \"none\"\n\
                     ports = \"{relay_lo}-{relay_hi}\"\n\
                     [auth]\nsecrets = [\"{SECRET}\"]\n[peers]\nallow = [\"127.0.0.0/8\"]\n\
                     [limits]\nallocations_per_user = 0\n\
                     [log]\nlevel = \"warn\"\n[http]\naddress = \"{http}\"\n",
                    cert = cert.display(),
                    key = key.display(),
                ),
            )?;
            let program = if kind == Kind::TurnpikeAlt {
                PathBuf::from(
                    std::env::var_os("TURNPIKE_BENCH_ALT_BIN")
                        .context("turnpike-alt needs TURNPIKE_BENCH_ALT_BIN (a turnpike binary)")?,
                )
            } else {
                std::env::current_exe()?.with_file_name("turnpike")
            };
            let mut c = Command::new(program);
            c.arg("serve").arg("--config").arg(&config);
            c
        }
        _ => {
            let mut c = crate::servers::coturn_program(kind)?;
            c.args([
                "-n",
                "--no-cli",
                "--no-dtls",
                "--use-auth-secret",
                "--allow-loopback-peers",
                "--simple-log",
                "--log-file=stdout",
                "--no-software-attribute",
            ]);
            c.arg(format!("--listening-ip={server_ip}"))
                .arg(format!("--listening-port={}", tcp.port()))
                .arg(format!("--tls-listening-port={}", tls.port()))
                .arg(format!("--relay-ip={server_ip}"))
                .arg(format!("--min-port={relay_lo}"))
                .arg(format!("--max-port={relay_hi}"))
                .arg(format!("--static-auth-secret={SECRET}"))
                .arg("--realm=bench")
                .arg(format!("--cert={}", cert.display()))
                .arg(format!("--pkey={}", key.display()))
                .arg(format!(
                    "--pidfile={}",
                    dir.join("turnserver.pid").display()
                ))
                .arg(format!("--userdb={}", dir.join("turndb").display()));
            c
        }
    };
    let log = std::fs::File::create(dir.join("server.log"))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    let target = Target {
        kind,
        tcp,
        tls,
        child,
        dir: dir.to_path_buf(),
    };
    for addr in [tcp, tls] {
        wait_listening(addr).with_context(|| format!("{} at {addr}", kind.name()))?;
    }
    Ok(target)
}

/// Waits (at most 10 s) until something accepts TCP connections at `addr`.
fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens at {addr} after 10 s")
}

/// coturn's UDP echo peer, killed on drop.
struct Peer {
    addr: SocketAddr,
    child: Child,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn start() -> anyhow::Result<Peer> {
        // An even port whose successor is free too (it binds PORT and PORT + 1).
        for _ in 0..20 {
            let port = std::net::UdpSocket::bind((ip(PEER_IP), 0))?
                .local_addr()?
                .port()
                & !1;
            if std::net::UdpSocket::bind((ip(PEER_IP), port + 1)).is_err() {
                continue;
            }
            let child = Command::new("turnutils_peer")
                .args(["-p", &port.to_string(), "-L", PEER_IP])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting turnutils_peer (Debian package coturn)")?;
            let peer = Peer {
                addr: SocketAddr::new(ip(PEER_IP), port),
                child,
            };
            if echoes(peer.addr) {
                return Ok(peer);
            }
        }
        bail!("turnutils_peer did not start")
    }
}

/// True when a datagram sent to `addr` comes back within 5 s.
fn echoes(addr: SocketAddr) -> bool {
    let Ok(socket) = std::net::UdpSocket::bind((addr.ip(), 0)) else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 64];
    for _ in 0..50 {
        let _ = socket.send_to(b"ping", addr);
        if socket.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

fn run_uclient(
    target: &Target,
    transport: Stream,
    a: &UclientArgs,
    peer: SocketAddr,
) -> anyhow::Result<Outcome> {
    let port = match transport {
        Stream::Tcp => target.tcp.port(),
        Stream::Tls => target.tls.port(),
    };
    let mut cmd = Command::new("turnutils_uclient");
    cmd.arg("-t");
    if transport == Stream::Tls {
        cmd.arg("-S");
    }
    cmd.args(["-c", "-p", &port.to_string()])
        .args(["-m", &a.sessions.to_string()])
        .args(["-l", &a.size.to_string()])
        .args(["-n", &a.messages.to_string()])
        .args(["-z", &a.interval.to_string()])
        .args(["-e", &peer.ip().to_string(), "-r", &peer.port().to_string()])
        .args(["-W", SECRET, "-u", "bench"])
        .arg(SERVER_IP)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let pid = target.child.id();
    let before = proc::cpu_time(pid).context("reading the server's CPU time")?;
    let started = Instant::now();
    let output = cmd
        .output()
        .context("running turnutils_uclient (Debian package coturn)")?;
    let wall = started.elapsed();
    let cpu = proc::cpu_time(pid)
        .context("reading the server's CPU time")?
        .saturating_sub(before);
    let text = String::from_utf8_lossy(&output.stdout);
    let Some((sent, received, lost)) = parse_summary(&text) else {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "uclient against {} over {transport:?} printed no summary ({}):\n{}",
            target.kind.name(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    };
    Ok(Outcome {
        sent,
        received,
        lost,
        cpu,
        wall,
    })
}

/// `(sent, received, lost)` from uclient's closing lines
/// (`start_mclient: tot_send_msgs=N, tot_recv_msgs=M` and `Total lost packets L (...)`).
fn parse_summary(output: &str) -> Option<(u64, u64, u64)> {
    let mut counts = None;
    let mut lost = None;
    for line in output.lines() {
        if line.contains("start_mclient: tot_send_msgs=") {
            counts = Some((
                number_after(line, "tot_send_msgs=")?,
                number_after(line, "tot_recv_msgs=")?,
            ));
        }
        if line.contains("Total lost packets ") {
            lost = Some(number_after(line, "Total lost packets ")?);
        }
    }
    let (sent, received) = counts?;
    Some((sent, received, lost?))
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_parses() {
        let out = "2: : start_mclient: msz=2, tot_send_msgs=10, tot_recv_msgs=10\n\
                   4: : start_mclient: tot_send_msgs=20, tot_recv_msgs=19\n\
                   4: : Total lost packets 1 (5.000000%), total send dropped 0 (0.000000%)\n";
        assert_eq!(parse_summary(out), Some((20, 19, 1)));
        assert_eq!(parse_summary("nothing"), None);
    }
}
