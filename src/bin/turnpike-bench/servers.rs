//! Starting the servers under test with equivalent settings: turnpike, coturn's turnserver, and
//! the bare forwarder (the ceiling), each as a child process whose CPU time we can read.
//!
//! On loopback by default; with [`ServerSpec::netns`], inside a network namespace of
//! `turnpike-bench xdp` instead (listener on the clients' side, relay on the peers' side).
//! A server started from the main thread is killed by the kernel when the bench dies
//! (`PR_SET_PDEATHSIG`), so an interrupted run leaves no server behind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Which server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// turnpike (the sibling binary of this one).
    Turnpike,
    /// turnpike with /metrics scraped every second (the cost of live metrics).
    TurnpikeScraped,
    /// Another turnpike build, named by `TURNPIKE_BENCH_ALT_BIN`, with the same settings (to
    /// compare a change against the build before it in one interleaved run).
    TurnpikeAlt,
    /// coturn's turnserver from Debian's package.
    Coturn,
    /// Another coturn build: the binary named by `TURNPIKE_BENCH_COTURN_BIN`, with the same
    /// settings as `coturn` plus the whitespace-separated `TURNPIKE_BENCH_COTURN_ARGS` (for
    /// example `--multiplex-peer --udp-gso` of a newer upstream release).
    CoturnCustom,
    /// The bare recvmmsg/sendmmsg forwarder: no TURN, the kernel's cost only.
    Forwarder,
}

impl Kind {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Turnpike => "turnpike",
            Kind::TurnpikeScraped => "turnpike+scrape",
            Kind::TurnpikeAlt => "turnpike-alt",
            Kind::Coturn => "coturn",
            Kind::CoturnCustom => "coturn-custom",
            Kind::Forwarder => "forwarder",
        }
    }
}

/// Settings shared by every server kind.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Listener address.
    pub listen: SocketAddr,
    /// Relay port range.
    pub ports: (u16, u16),
    /// REST secret.
    pub secret: String,
    /// Realm.
    pub realm: String,
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// For the forwarder: where it sends everything.
    pub forward_to: Option<SocketAddr>,
    /// turnpike only: a TCP listener on the same address as the UDP one.
    pub tcp: bool,
    /// Run inside network namespaces instead of on loopback.
    pub netns: Option<Netns>,
}

/// Where a server runs in the namespaces of `turnpike-bench xdp` (instead of on loopback).
#[derive(Clone, Debug)]
pub struct Netns {
    /// The server's network namespace (a name under /run/netns).
    pub server: String,
    /// The clients' namespace, from which readiness is probed.
    pub clients: String,
    /// The clients' address there.
    pub client_ip: IpAddr,
    /// The relay address (turnpike's `relay.bind_ip`, coturn's and the forwarder's
    /// `--relay-ip`), on the peers' side.
    pub relay_ip: IpAddr,
    /// The peers' network, allowed as peers: IPv4 address and prefix length.
    pub peers: (Ipv4Addr, u8),
    /// turnpike only: interfaces to attach the XDP program to (`relay.xdp`).
    pub xdp: Vec<String>,
}

impl Netns {
    /// The peers' network as coturn's `--allowed-peer-ip` range (`first-last`).
    fn peer_range(&self) -> String {
        let (net, len) = self.peers;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let first = u32::from(net) & mask;
        format!(
            "{}-{}",
            Ipv4Addr::from(first),
            Ipv4Addr::from(first | !mask)
        )
    }
}

impl Server {
    /// Fails with the server's log when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            bail!(
                "server exited ({status}); its log ends with:\n{}",
                tail(&log, 20)
            );
        }
        Ok(())
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running server; killed on drop.
pub struct Server {
    /// Its process.
    pub child: Child,
    /// Its pid, for /proc.
    pub pid: u32,
    dir: PathBuf,
    scraper: Option<Scraper>,
}

/// Fetches /metrics once a second, as Prometheus would, until dropped.
struct Scraper {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scraper {
    fn start(http: SocketAddr) -> Scraper {
        use std::io::{Read, Write};
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut conn) =
                    std::net::TcpStream::connect_timeout(&http, Duration::from_secs(1))
                {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let req = format!(
                        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
                    );
                    let mut body = Vec::new();
                    if conn.write_all(req.as_bytes()).is_ok() {
                        let _ = conn.read_to_end(&mut body);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Scraper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh private directory for a server's files.
fn scratch_dir() -> anyhow::Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("turnpike-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to {}: build it with `cargo build --release`",
            name,
            me.display()
        );
    }
    Ok(path)
}

/// Starts `kind` with `spec` and waits until it answers a STUN Binding (the forwarder, which
/// does not speak STUN, gets a moment instead). Inside namespaces, also waits until the XDP
/// program is attached when asked for, then half a second more for every kind alike.
pub fn start(kind: Kind, spec: &ServerSpec) -> anyhow::Result<Server> {
    let dir = scratch_dir()?;
    let mut http = None;
    let mut cmd = match kind {
        Kind::Turnpike | Kind::TurnpikeScraped | Kind::TurnpikeAlt => {
            let (cmd, address) = turnpike_command(kind, spec, &dir)?;
            http = address;
            cmd
        }
        Kind::Coturn | Kind::CoturnCustom => coturn_command(kind, spec, &dir)?,
        Kind::Forwarder => {
            let to = spec
                .forward_to
                .context("the forwarder needs a destination")?;
            let mut c = Command::new(std::env::current_exe()?);
            c.arg("forwarder")
                .arg("--listen")
                .arg(spec.listen.to_string())
                .arg("--to")
                .arg(to.to_string());
            c.arg("--workers").arg(spec.workers.to_string());
            if let Some(n) = &spec.netns {
                c.arg("--relay-ip").arg(n.relay_ip.to_string());
            }
            c
        }
    };
    let log = std::fs::File::create(dir.join("server.log"))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(n) = &spec.netns {
        crate::netns::spawn_inside(&mut cmd, &n.server)?;
    }
    die_with_the_bench(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    let pid = child.id();
    let mut server = Server {
        child,
        pid,
        dir,
        scraper: None,
    };
    if kind != Kind::Forwarder {
        match &spec.netns {
            None => wait_for_binding(spec.listen, spec.listen.ip())?,
            Some(n) => {
                let (listen, from) = (spec.listen, n.client_ip);
                crate::netns::in_namespace(&n.clients, move || wait_for_binding(listen, from))??
            }
        }
    } else {
        std::thread::sleep(Duration::from_millis(200));
    }
    if kind == Kind::TurnpikeScraped {
        let http = http.context("turnpike+scrape runs on loopback only")?;
        server.scraper = Some(Scraper::start(http));
    }
    if let Some(n) = &spec.netns {
        if !n.xdp.is_empty() {
            server.wait_for_log("XDP fast path attached", Duration::from_secs(3))?;
        }
        // The same settling time for every kind (XDP or not) before any traffic.
        std::thread::sleep(Duration::from_millis(500));
    }
    server.check_alive()?;
    Ok(server)
}

impl Server {
    /// Waits until the server's log contains `text` (at most `limit`), failing with the log.
    fn wait_for_log(&mut self, text: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            if log.contains(text) {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "the server did not log {text:?}; its log ends with:\n{}",
                    tail(&log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// When called from the main thread, has the kernel SIGKILL the child when the bench dies
/// (PR_SET_PDEATHSIG fires when the *thread* that forked exits, so not from other threads).
fn die_with_the_bench(cmd: &mut Command) {
    // SAFETY: gettid and getpid have no preconditions.
    let main_thread = unsafe { libc::gettid() == libc::getpid() };
    if !main_thread {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let bench = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl(2),
    // getppid(2) and _exit(2), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != bench {
                libc::_exit(1); // the bench died before the prctl
            }
            Ok(())
        });
    }
}

/// turnpike's command line and config file, and the address of its HTTP listener (on a free
/// port on loopback, for turnpike+scrape; none in namespaces).
fn turnpike_command(
    kind: Kind,
    spec: &ServerSpec,
    dir: &std::path::Path,
) -> anyhow::Result<(Command, Option<SocketAddr>)> {
    let mut address = None;
    let (relay_ip, allow, xdp, http, level) = match &spec.netns {
        None => {
            let port = std::net::TcpListener::bind((spec.listen.ip(), 0))?
                .local_addr()?
                .port();
            let http = SocketAddr::new(spec.listen.ip(), port);
            address = Some(http);
            (
                spec.listen.ip(),
                "127.0.0.0/8".to_string(),
                String::new(),
                format!("address = \"{http}\""),
                "warn",
            )
        }
        Some(n) => {
            let xdp = if n.xdp.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = n.xdp.iter().map(|i| format!("\"{i}\"")).collect();
                format!("xdp = [{}]\n", names.join(", "))
            };
            // info: the log says when the XDP program is attached (nothing per packet).
            (
                n.relay_ip,
                format!("{}/{}", n.peers.0, n.peers.1),
                xdp,
                "enabled = false".to_string(),
                "info",
            )
        }
    };
    let config = dir.join("turnpike.toml");
    std::fs::write(
        &config,
        format!(
            "realm = \"{realm}\"\n[[listen]]\ntransport = \"udp\"\naddress = \"{listen}\"\n\
             [relay]\nbind_ip = \"{relay_ip}\"\nbind_ipv6 = \"none\"\nports = \"{lo}-{hi}\"\n{xdp}\
             [auth]\nsecrets = [\"{secret}\"]\n[peers]\nallow = [\"{allow}\"]\n\
             [limits]\nallocations_per_user = 0\nallocations_total = 1000000\n\
             [server]\nworkers = {workers}\n[log]\nlevel = \"{level}\"\n\
             [http]\n{http}\n{tcp}",
            realm = spec.realm,
            listen = spec.listen,
            lo = spec.ports.0,
            hi = spec.ports.1,
            secret = spec.secret,
            workers = spec.workers,
            tcp = if spec.tcp {
                format!(
                    "[[listen]]\ntransport = \"tcp\"\naddress = \"{}\"\n",
                    spec.listen
                )
            } else {
                String::new()
            },
        ),
    )?;
    let program = if kind == Kind::TurnpikeAlt {
        PathBuf::from(
            std::env::var_os("TURNPIKE_BENCH_ALT_BIN")
                .context("turnpike-alt needs TURNPIKE_BENCH_ALT_BIN (a turnpike binary)")?,
        )
    } else {
        sibling("turnpike")?
    };
    let mut c = Command::new(program);
    c.arg("serve").arg("--config").arg(&config);
    Ok((c, address))
}

/// coturn's command for `kind` with the extra arguments of `coturn-custom`: Debian's
/// `turnserver`, or the binary and arguments named by `TURNPIKE_BENCH_COTURN_BIN` and
/// `TURNPIKE_BENCH_COTURN_ARGS`.
pub fn coturn_program(kind: Kind) -> anyhow::Result<Command> {
    let (program, extra) = if kind == Kind::CoturnCustom {
        let program = std::env::var("TURNPIKE_BENCH_COTURN_BIN")
            .context("coturn-custom needs TURNPIKE_BENCH_COTURN_BIN (a turnserver binary)")?;
        let extra = std::env::var("TURNPIKE_BENCH_COTURN_ARGS").unwrap_or_default();
        (program, extra)
    } else {
        ("turnserver".to_string(), String::new())
    };
    let mut c = Command::new(program);
    c.args(extra.split_whitespace());
    Ok(c)
}

fn coturn_command(kind: Kind, spec: &ServerSpec, dir: &std::path::Path) -> anyhow::Result<Command> {
    let mut c = coturn_program(kind)?;
    c.args([
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--no-tcp",
        "--no-tcp-relay",
        "--use-auth-secret",
        "--simple-log",
        "--log-file=stdout",
        "--no-software-attribute",
    ]);
    let relay_ip = match &spec.netns {
        None => {
            c.arg("--allow-loopback-peers");
            spec.listen.ip()
        }
        Some(n) => {
            c.arg("--no-multicast-peers")
                .arg(format!("--allowed-peer-ip={}", n.peer_range()));
            n.relay_ip
        }
    };
    c.arg(format!("--listening-ip={}", spec.listen.ip()))
        .arg(format!("--listening-port={}", spec.listen.port()))
        .arg(format!("--relay-ip={relay_ip}"))
        .arg(format!("--min-port={}", spec.ports.0))
        .arg(format!("--max-port={}", spec.ports.1))
        .arg(format!("--static-auth-secret={}", spec.secret))
        .arg(format!("--realm={}", spec.realm))
        .arg(format!(
            "--pidfile={}",
            dir.join("turnserver.pid").display()
        ))
        .arg(format!("--userdb={}", dir.join("turndb").display()));
    if spec.workers > 0 {
        c.arg(format!("--relay-threads={}", spec.workers));
    }
    Ok(c)
}

/// Sends STUN Bindings to `server` from an ephemeral port of `from` until one is answered.
fn wait_for_binding(server: SocketAddr, from: IpAddr) -> anyhow::Result<()> {
    let sock = std::net::UdpSocket::bind((from, 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut req = Vec::new();
    turnpike::proto::stun::Writer::new(
        &mut req,
        turnpike::proto::stun::Class::Request,
        turnpike::proto::stun::method::BINDING,
        [7; 12],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        sock.send_to(&req, server)?;
        if sock.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("server at {server} did not answer a Binding within 10 s")
}
