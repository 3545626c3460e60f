//! The integration-test harness: runs the real `turnpike` binary on loopback and drives it with
//! real clients (coturn's `turnutils_*` tools, and Rust STUN/TURN codecs that are not ours).
//!
//! Every test gets its own server with its own config file, listener port and relay port range,
//! so tests run in parallel (threads of one test binary, or processes under cargo-nextest)
//! without colliding, and never touch the default port 3478. Every process this harness starts
//! is killed when its handle is dropped, and every wait is bounded in count and time.
//!
//! When a test fails, the server's log (stdout and stderr) is printed from `Drop`, so the
//! failure report shows what the server said.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod http;

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod pki;
pub mod scrape;
pub mod stream_clients;
pub mod stun;
pub mod turn_tcp;

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// The realm every test server uses.
pub const REALM: &str = "harness.test";
/// The REST secrets every test server accepts (a rotation list: both validate).
pub const SECRET_ONE: &str = "secret-one";
pub const SECRET_TWO: &str = "secret-two";
/// A static long-term user every test server knows.
pub const STATIC_USER: &str = "alice";
pub const STATIC_PASSWORD: &str = "alicepass";

/// How long the server gets to bind its listeners and answer a Binding request.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The path of the binary under test. `TURNPIKE_BIN` overrides it (to test a release build, or
/// any other binary that takes `serve --config FILE`).
pub fn turnpike_bin() -> PathBuf {
    match std::env::var_os("TURNPIKE_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_BIN_EXE_turnpike")),
    }
}

/// The current UNIX time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// A free UDP port on `ip`: the kernel picks one for a socket bound to port 0, which is then
/// closed. For clients only: servers take their ports from a [`PortBlock`].
pub fn free_udp_port(ip: IpAddr) -> u16 {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).expect("bind an ephemeral UDP port");
    socket.local_addr().expect("local address").port()
}

/// First port of the first block, block size and number of blocks: ports 10000-31999, below
/// the Linux ephemeral range (32768-60999), so no `bind(0)` on the machine lands in a block.
const BLOCK_BASE: u16 = 10_000;
const BLOCK_SIZE: u16 = 200;
const BLOCKS: u16 = 110;

/// An exclusive block of 200 ports (starting at an even port) for one test server or peer,
/// held by an advisory file lock (`flock`) until dropped, so that concurrent tests in this
/// process and in other processes (cargo-nextest runs every test in a process of its own)
/// never get the same ports.
///
/// Why not `bind(0)` for server ports: turnpike binds with SO_REUSEPORT, and two servers that
/// both set it on the same port would share it silently (the kernel splits the datagrams).
/// Ports from a locked block are never handed to a second test.
pub struct PortBlock {
    pub first: u16,
    _lock: File,
}

impl PortBlock {
    pub fn claim() -> PortBlock {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join("turnpike-test-ports");
        fs::create_dir_all(&dir).expect("create the port lock directory");
        // Start at a different block in each process so that processes rarely contend.
        let start = std::process::id().wrapping_add(NEXT.fetch_add(7, Ordering::Relaxed));
        for i in 0..u32::from(BLOCKS) {
            let block = (start.wrapping_add(i) % u32::from(BLOCKS)) as u16;
            let path = dir.join(format!("block-{block}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .expect("open a port lock file");
            // SAFETY: flock on a file descriptor we own; it does not touch memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return PortBlock {
                    first: BLOCK_BASE + block * BLOCK_SIZE,
                    _lock: file,
                };
            }
        }
        panic!("all {BLOCKS} port blocks are taken");
    }

    /// The `i`-th port of the block.
    pub fn port(&self, i: u16) -> u16 {
        assert!(i < BLOCK_SIZE);
        self.first + i
    }

    /// The block's ports from the `i`-th on.
    pub fn from(&self, i: u16) -> RangeInclusive<u16> {
        self.port(i)..=self.first + BLOCK_SIZE - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Server configuration
// ---------------------------------------------------------------------------------------------

/// What a test wants from its server. `Conf::default()` is the common case: UDP on 127.0.0.1,
/// both REST secrets, the static user, loopback peers denied (the product default).
#[derive(Clone, Debug)]
pub struct Conf {
    /// Also listen on [::1] (relays are on 127.0.0.1 and ::1 either way).
    pub ipv6: bool,
    /// `peers.allow`: empty means the default policy (loopback denied).
    pub peers_allow: Vec<String>,
    pub peers_deny: Vec<String>,
    pub secrets: Vec<String>,
    pub users: Vec<(String, String)>,
    pub nonce_lifetime_secs: u64,
    pub allocations_per_user: u32,
    pub allocations_total: u32,
    pub unauthenticated_rate: u32,
    /// `limits.bandwidth_bps` (0: no cap).
    pub bandwidth_bps: u64,
    pub log_level: String,
    /// Also listen for TCP (`Server::tcp`).
    pub tcp: bool,
    /// Also listen for TLS (`Server::tls`).
    pub tls: bool,
    /// Also a TLS listener with `serve_http = true` (`Server::tls_http`).
    pub tls_http: bool,
    /// `[tls] certificate` and `private_key`; `None`: the generated self-signed certificate.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// `[tls] reload_interval_secs`.
    pub tls_reload_secs: u64,
    /// `[connections]` handshake_timeout_secs and max_per_ip.
    pub handshake_timeout_secs: u64,
    pub max_connections_per_ip: u32,
    /// `[connections] idle_timeout_secs`.
    pub idle_timeout_secs: u64,
    /// Extra `key = value` lines for the `[http]` section (the harness sets `address`).
    pub http_extra: Vec<String>,
    /// Extra TOML appended at the end (whole sections, such as `[server]`).
    pub extra_toml: String,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            ipv6: false,
            peers_allow: Vec::new(),
            peers_deny: Vec::new(),
            secrets: vec![SECRET_ONE.into(), SECRET_TWO.into()],
            users: vec![(STATIC_USER.into(), STATIC_PASSWORD.into())],
            nonce_lifetime_secs: 600,
            allocations_per_user: 10,
            allocations_total: 100_000,
            // High enough that no test meets it by accident; the rate-limit test lowers it.
            unauthenticated_rate: 1000,
            bandwidth_bps: 0,
            log_level: std::env::var("TURNPIKE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            tcp: false,
            tls: false,
            tls_http: false,
            tls_files: None,
            tls_reload_secs: 5,
            handshake_timeout_secs: 10,
            max_connections_per_ip: 256,
            idle_timeout_secs: 60,
            http_extra: Vec::new(),
            extra_toml: String::new(),
        }
    }
}

impl Conf {
    /// Loopback peers allowed (what relaying to a `turnutils_peer` on 127.0.0.1 needs).
    pub fn loopback_peers() -> Conf {
        Conf {
            peers_allow: vec!["127.0.0.1/32".into(), "::1/128".into()],
            ..Conf::default()
        }
    }

    /// The configuration file the harness writes for this server.
    pub fn to_toml(
        &self,
        listen: &[SocketAddr],
        streams: &[(&str, SocketAddr, bool)],
        relay: &RangeInclusive<u16>,
        http: SocketAddr,
    ) -> String {
        fn list(items: &[String]) -> String {
            let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", quoted.join(", "))
        }
        let mut t = String::new();
        writeln!(t, "realm = {REALM:?}").unwrap();
        for addr in listen {
            writeln!(t, "\n[[listen]]\ntransport = \"udp\"\naddress = \"{addr}\"").unwrap();
        }
        for (transport, addr, serve_http) in streams {
            writeln!(
                t,
                "\n[[listen]]\ntransport = \"{transport}\"\naddress = \"{addr}\"\nserve_http = {serve_http}"
            )
            .unwrap();
        }
        // Relays on loopback only, IPv6 included (left out, the server would pick an interface
        // address for IPv6 relays).
        writeln!(t, "\n[relay]\nbind_ip = \"127.0.0.1\"\nbind_ipv6 = \"::1\"").unwrap();
        writeln!(t, "ports = \"{}-{}\"", relay.start(), relay.end()).unwrap();
        writeln!(t, "\n[auth]\nsecrets = {}", list(&self.secrets)).unwrap();
        let users: Vec<String> = self
            .users
            .iter()
            .map(|(u, p)| format!("{u:?} = {p:?}"))
            .collect();
        writeln!(t, "users = {{ {} }}", users.join(", ")).unwrap();
        writeln!(t, "nonce_lifetime_secs = {}", self.nonce_lifetime_secs).unwrap();
        writeln!(
            t,
            "\n[peers]\nallow = {}\ndeny = {}",
            list(&self.peers_allow),
            list(&self.peers_deny)
        )
        .unwrap();
        writeln!(
            t,
            "\n[limits]\nallocations_per_user = {}\nallocations_total = {}\nunauthenticated_rate = {}\nbandwidth_bps = {}",
            self.allocations_per_user,
            self.allocations_total,
            self.unauthenticated_rate,
            self.bandwidth_bps
        )
        .unwrap();
        writeln!(t, "\n[log]\nlevel = {:?}", self.log_level).unwrap();
        writeln!(
            t,
            "\n[tls]\nreload_interval_secs = {}",
            self.tls_reload_secs
        )
        .unwrap();
        if let Some((cert, key)) = &self.tls_files {
            writeln!(t, "certificate = {:?}\nprivate_key = {:?}", cert, key).unwrap();
        }
        writeln!(
            t,
            "\n[connections]\nhandshake_timeout_secs = {}\nmax_per_ip = {}\nidle_timeout_secs = {}",
            self.handshake_timeout_secs, self.max_connections_per_ip, self.idle_timeout_secs
        )
        .unwrap();
        writeln!(t, "\n[http]\naddress = \"{http}\"").unwrap();
        for line in &self.http_extra {
            writeln!(t, "{line}").unwrap();
        }
        writeln!(t, "\n{}", self.extra_toml).unwrap();
        t
    }
}

// ---------------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------------

/// A running `turnpike serve`, killed on drop.
pub struct Server {
    child: Child,
    /// The UDP listener on 127.0.0.1.
    pub udp: SocketAddr,
    /// The UDP listener on [::1] (when `Conf::ipv6`).
    pub udp6: Option<SocketAddr>,
    /// The TCP listener on 127.0.0.1 (when `Conf::tcp`).
    pub tcp: Option<SocketAddr>,
    /// The TLS listener on 127.0.0.1 (when `Conf::tls`).
    pub tls: Option<SocketAddr>,
    /// The TLS listener shared with HTTPS on 127.0.0.1 (when `Conf::tls_http`).
    pub tls_http: Option<SocketAddr>,
    /// The relay port range given to this server.
    pub relay_ports: RangeInclusive<u16>,
    /// The HTTP API (TCP, the last port of the block).
    pub http: SocketAddr,
    pub conf: Conf,
    pub config_path: PathBuf,
    log_path: PathBuf,
    /// Set once the harness killed the process (a kill is not a crash).
    stopped: bool,
    _ports: PortBlock,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits until it answers a Binding request on every listener. A
    /// listener port can be taken by another process between our probe and the server's bind;
    /// then the start is retried with new ports (at most 3 attempts).
    pub fn start(conf: Conf) -> Server {
        let mut failures = String::new();
        for attempt in 1..=3 {
            match Server::try_start(conf.clone()) {
                Ok(server) => return server,
                Err(e) => writeln!(failures, "attempt {attempt}: {e}").unwrap(),
            }
        }
        panic!("turnpike did not start:\n{failures}");
    }

    fn try_start(conf: Conf) -> Result<Server, String> {
        let dir = tempfile::Builder::new()
            .prefix("turnpike-test-")
            .tempdir()
            .expect("create a temp dir");
        // Port 0 of the block listens on 127.0.0.1, port 1 on [::1], ports 2-4 for TCP, TLS
        // and shared TLS, ports 8 and up relay.
        let ports = PortBlock::claim();
        let udp = SocketAddr::new(LOCALHOST_V4, ports.port(0));
        let udp6 = conf
            .ipv6
            .then(|| SocketAddr::new(LOCALHOST_V6, ports.port(1)));
        let tcp = conf
            .tcp
            .then(|| SocketAddr::new(LOCALHOST_V4, ports.port(2)));
        let tls = conf
            .tls
            .then(|| SocketAddr::new(LOCALHOST_V4, ports.port(3)));
        let tls_http = conf
            .tls_http
            .then(|| SocketAddr::new(LOCALHOST_V4, ports.port(4)));
        let relay_ports = ports.from(8);
        // TCP: the UDP relay range may hold the same number (an RFC 6062 TCP relay that meets
        // it takes another port).
        let http = SocketAddr::new(LOCALHOST_V4, ports.port(BLOCK_SIZE - 1));
        let listen: Vec<SocketAddr> = std::iter::once(udp).chain(udp6).collect();
        let streams: Vec<(&str, SocketAddr, bool)> = [
            tcp.map(|a| ("tcp", a, false)),
            tls.map(|a| ("tls", a, false)),
            tls_http.map(|a| ("tls", a, true)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let config_path = dir.path().join("turnpike.toml");
        fs::write(
            &config_path,
            conf.to_toml(&listen, &streams, &relay_ports, http),
        )
        .expect("write the config");
        let log_path = dir.path().join("turnpike.log");
        let log = File::create(&log_path).expect("create the log file");
        let child = Command::new(turnpike_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log file"))
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", turnpike_bin().display()))?;
        let mut server = Server {
            child,
            udp,
            udp6,
            tcp,
            tls,
            tls_http,
            relay_ports,
            http,
            conf,
            config_path,
            log_path,
            stopped: false,
            _ports: ports,
            dir,
        };
        for addr in listen {
            if let Err(e) = server.wait_ready(addr) {
                let message = format!(
                    "{e}\n--- config ---\n{}\n--- log ---\n{}",
                    server.config_text(),
                    server.log()
                );
                server.stop();
                return Err(message);
            }
        }
        Ok(server)
    }

    /// Polls `addr` with STUN Binding requests until one is answered (bounded by
    /// `READY_TIMEOUT`), failing early if the process exits.
    fn wait_ready(&mut self, addr: SocketAddr) -> Result<(), String> {
        let unspecified = match addr {
            SocketAddr::V4(_) => SocketAddr::new(LOCALHOST_V4, 0),
            SocketAddr::V6(_) => SocketAddr::new(LOCALHOST_V6, 0),
        };
        let socket = UdpSocket::bind(unspecified).expect("bind a probe socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 1500];
        let mut probe = 0u32;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                return Err(format!("turnpike exited during start-up with {status}"));
            }
            probe += 1;
            let request = binding_request(probe);
            // ICMP port unreachable (nothing bound yet) surfaces as an error here or on recv.
            let _ = socket.send_to(&request, addr);
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == addr && is_binding_success(&buf[..n], &request) => {
                    return Ok(());
                }
                _ => {}
            }
        }
        Err(format!(
            "no Binding answer from {addr} within {READY_TIMEOUT:?} ({probe} probes)"
        ))
    }

    /// The server's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (such as `libc::SIGHUP`) to the server process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit; `None` when it did
    /// not (it is then killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stop();
        status
    }

    fn stop(&mut self) {
        self.stopped = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let crashed = if self.stopped {
            None
        } else {
            self.child.try_wait().ok().flatten()
        };
        self.stop();
        if std::thread::panicking() || crashed.is_some() {
            eprintln!(
                "--- turnpike log ({}; exited on its own: {crashed:?}) ---\n{}\n--- end of turnpike log ---",
                self.udp,
                self.log()
            );
        }
        // A server that died during a test fails that test, whatever the test saw.
        if let Some(status) = crashed {
            if !std::thread::panicking() {
                panic!("turnpike exited during the test with {status}");
            }
        }
    }
}

/// A 20-byte STUN Binding request with no attributes, transaction id derived from `seq`.
pub fn binding_request(seq: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..2].copy_from_slice(&0x0001u16.to_be_bytes());
    m[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    m[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    m[12..16].copy_from_slice(&seq.to_be_bytes());
    m[16..20].copy_from_slice(b"prob");
    m
}

/// True when `answer` is a Binding success response to `request` (header check only).
pub fn is_binding_success(answer: &[u8], request: &[u8]) -> bool {
    answer.len() >= 20 && answer[0..2] == [0x01, 0x01] && answer[4..20] == request[4..20]
}

// ---------------------------------------------------------------------------------------------
// Third-party tools
// ---------------------------------------------------------------------------------------------

/// The path of a coturn tool; panics with the fix when it is missing (scripts/test installs
/// coturn, a test must not pass by skipping).
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("{name} not found on PATH: install coturn (scripts/test does: apt-get install coturn)");
}

/// The outcome of one tool run.
#[derive(Debug)]
pub struct ToolRun {
    pub command: String,
    /// `None` when the tool was killed (timeout or signal).
    pub code: Option<i32>,
    pub timed_out: bool,
    /// stdout and stderr, interleaved as written.
    pub output: String,
}

impl ToolRun {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ToolRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit code: {:?}{}\n{}",
            self.command,
            self.code,
            if self.timed_out {
                " (killed: timeout)"
            } else {
                ""
            },
            self.output
        )
    }
}

/// A child process killed on drop.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `program args` with a hard time limit, output captured to a temp file (a pipe could
/// fill up and block the tool).
pub fn run_tool(program: &Path, args: &[String], limit: Duration) -> ToolRun {
    let out = tempfile::tempfile().expect("temp file for tool output");
    let command = format!("{} {}", program.display(), args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {command}: {e}"));
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + limit;
    let status: Option<ExitStatus> = loop {
        if let Some(status) = child.0.try_wait().expect("poll the tool") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(child); // kills it when it is still running
    let output = read_all(out);
    ToolRun {
        command,
        code: status.and_then(|s| s.code()),
        timed_out: status.is_none(),
        output,
    }
}

fn read_all(mut file: File) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).expect("rewind");
    file.read_to_end(&mut bytes).expect("read tool output");
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `turnutils_peer`: coturn's UDP echo peer, on a free port of `ip`, killed on drop.
pub struct Peer {
    pub addr: SocketAddr,
    _child: KillOnDrop,
    _log: tempfile::NamedTempFile,
    _ports: PortBlock,
}

impl Peer {
    /// turnutils_peer binds PORT and PORT+1 (RTP and RTCP): both come from a port block.
    pub fn start(ip: IpAddr) -> Peer {
        let mut failures = String::new();
        for attempt in 1..=3 {
            let ports = PortBlock::claim();
            let port = ports.port(0);
            let log = tempfile::NamedTempFile::new().expect("temp file");
            let child = Command::new(tool("turnutils_peer"))
                .args(["-p", &port.to_string(), "-L", &ip.to_string()])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("reopen"))
                .stderr(log.reopen().expect("reopen"))
                .spawn()
                .expect("spawn turnutils_peer");
            let mut child = KillOnDrop(child);
            let addr = SocketAddr::new(ip, port);
            match wait_echo(&mut child.0, addr) {
                Ok(()) => {
                    return Peer {
                        addr,
                        _child: child,
                        _log: log,
                        _ports: ports,
                    };
                }
                Err(e) => {
                    let output = fs::read_to_string(log.path()).unwrap_or_default();
                    writeln!(failures, "attempt {attempt}: {e}\n{output}").unwrap();
                }
            }
        }
        panic!("turnutils_peer did not start:\n{failures}");
    }
}

/// Waits (at most 5 s) until a UDP echo server at `addr` echoes a datagram.
fn wait_echo(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let local = SocketAddr::new(addr.ip(), 0);
    let socket = UdpSocket::bind(local).expect("bind a probe socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("poll the peer") {
            return Err(format!("exited with {status}"));
        }
        let _ = socket.send_to(b"echo?", addr);
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == addr && &buf[..n] == b"echo?" => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    Err(format!("no echo from {addr} within 5 s"))
}

// ---------------------------------------------------------------------------------------------
// turnutils_uclient
// ---------------------------------------------------------------------------------------------

/// The summary `turnutils_uclient` prints at the end of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UclientSummary {
    /// From `start_mclient: tot_send_msgs=N, tot_recv_msgs=M` (the final line).
    pub sent: u64,
    pub received: u64,
    /// From `Total lost packets N (...), total send dropped M (...)`.
    pub lost: u64,
    pub send_dropped: u64,
}

/// A finished `turnutils_uclient` run.
#[derive(Debug)]
pub struct Uclient {
    pub run: ToolRun,
    /// `None` when the run did not print its closing summary (it failed before relaying).
    pub summary: Option<UclientSummary>,
    /// Lines that report an error (`ERROR: ...`, `... error 403 (...)`).
    pub errors: Vec<String>,
}

impl Uclient {
    /// Runs `turnutils_uclient ARGS SERVER_IP` with at most 60 s.
    pub fn run(args: &[&str], server: IpAddr) -> Uclient {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push(server.to_string());
        let run = run_tool(&tool("turnutils_uclient"), &all, Duration::from_secs(60));
        let summary = parse_uclient_summary(&run.output);
        let errors = run
            .output
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("error"))
            .map(str::to_owned)
            .collect();
        Uclient {
            run,
            summary,
            errors,
        }
    }

    /// Asserts a clean relay run: exit 0, no error line, `expected` messages sent, every one
    /// received back, nothing lost or dropped.
    pub fn assert_relayed(&self, expected: u64, server: &Server) {
        let context = || format!("{}\n--- server log ---\n{}", self.run, server.log());
        assert!(self.run.success(), "uclient failed:\n{}", context());
        assert!(
            self.errors.is_empty(),
            "uclient reported errors {:?}:\n{}",
            self.errors,
            context()
        );
        let summary = self
            .summary
            .as_ref()
            .unwrap_or_else(|| panic!("no uclient summary:\n{}", context()));
        assert_eq!(
            summary,
            &UclientSummary {
                sent: expected,
                received: expected,
                lost: 0,
                send_dropped: 0
            },
            "uclient summary:\n{}",
            context()
        );
    }
}

/// Parses the closing summary of `turnutils_uclient`.
pub fn parse_uclient_summary(output: &str) -> Option<UclientSummary> {
    let mut summary = UclientSummary::default();
    let mut have_counts = false;
    let mut have_loss = false;
    for line in output.lines() {
        // The final totals line has no "msz=" (the per-tick progress lines do).
        if line.contains("start_mclient: tot_send_msgs=") {
            summary.sent = number_after(line, "tot_send_msgs=")?;
            summary.received = number_after(line, "tot_recv_msgs=")?;
            have_counts = true;
        }
        if line.contains("Total lost packets ") {
            summary.lost = number_after(line, "Total lost packets ")?;
            summary.send_dropped = number_after(line, "total send dropped ")?;
            have_loss = true;
        }
    }
    (have_counts && have_loss).then_some(summary)
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod harness_tests {
    use super::*;

    #[test]
    fn uclient_summary_parses() {
        let output = "\
2: : start_mclient: msz=2, tot_send_msgs=10, tot_recv_msgs=10, tot_send_bytes ~ 1000, tot_recv_bytes ~ 1000
4: : start_mclient: tot_send_msgs=20, tot_recv_msgs=19
4: : start_mclient: tot_send_bytes ~ 2000, tot_recv_bytes ~ 1900
4: : Total transmit time is 4
4: : Total lost packets 1 (5.000000%), total send dropped 2 (0.000000%)
";
        assert_eq!(
            parse_uclient_summary(output),
            Some(UclientSummary {
                sent: 20,
                received: 19,
                lost: 1,
                send_dropped: 2
            })
        );
        assert_eq!(
            parse_uclient_summary("0: : ERROR: Cannot complete Allocation"),
            None
        );
    }

    #[test]
    fn relay_blocks_are_exclusive() {
        let a = PortBlock::claim();
        let b = PortBlock::claim();
        assert_ne!(a.first, b.first);
        assert!(a.from(0).end() < b.from(0).start() || b.from(0).end() < a.from(0).start());
        assert!(*a.from(0).end() < 32768 && *b.from(0).end() < 32768);
        assert_eq!(a.first % 2, 0, "turnutils_peer wants an even port");
    }
}
