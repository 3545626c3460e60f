//! The server under test: a real `turnpike serve` on its own ports, ready once it answers a
//! Binding request on every listener, killed (and its log printed on failure) when dropped.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ports::{BLOCK_SIZE, PortBlock};
use super::{Conf, LOCALHOST_V4, LOCALHOST_V6, turnpike_bin};

/// How long the server gets to bind its listeners and answer a Binding request.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `wait_ready` sends a Binding request.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How long a restart waits for the server to say it drains (or to exit) after the first
/// SIGTERM, before it sends the second one anyway.
const DRAIN_NOTICE_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// Polls `addr` with STUN Binding requests, one every `PROBE_INTERVAL`, until one of them
    /// is answered (bounded by `READY_TIMEOUT`), failing early if the process exits.
    ///
    /// Between two probes it reads every datagram that arrives and accepts a Binding success
    /// from `addr` to any probe it sent, not only the last one: a server that binds its socket
    /// but reads it only later (a busy start) answers the queued probes in a burst, and a loop
    /// that sent a new probe per datagram and wanted the answer to that one would stay that
    /// many answers behind for good (it did, for 160k probes in 5 s). Anything else (a stray
    /// datagram, an error answer) is ignored, and described in the error if no answer comes.
    fn wait_ready(&mut self, addr: SocketAddr) -> Result<(), String> {
        let unspecified = match addr {
            SocketAddr::V4(_) => SocketAddr::new(LOCALHOST_V4, 0),
            SocketAddr::V6(_) => SocketAddr::new(LOCALHOST_V6, 0),
        };
        let socket = UdpSocket::bind(unspecified).expect("bind a probe socket");
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 1500];
        let mut probes = 0u32;
        let mut ignored = 0u32;
        let mut first_ignored = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll the server process") {
                return Err(format!("turnpike exited during start-up with {status}"));
            }
            probes += 1;
            // Nothing bound yet: the ICMP port unreachable is not reported on an unconnected
            // socket, and an error here only means this probe is lost.
            let _ = socket.send_to(&binding_request(probes), addr);
            let next_probe = (Instant::now() + PROBE_INTERVAL).min(deadline);
            loop {
                let now = Instant::now();
                if now >= next_probe {
                    break;
                }
                socket.set_read_timeout(Some(next_probe - now)).unwrap();
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) if from == addr && answers_a_probe(&buf[..n], probes) => {
                        return Ok(());
                    }
                    Ok((n, from)) => {
                        ignored += 1;
                        if ignored <= 3 {
                            let head = &buf[..n.min(24)];
                            write!(first_ignored, "; {n} bytes from {from}: {head:02x?}").unwrap();
                        }
                    }
                    Err(e)
                        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    }
                    Err(e) => {
                        ignored += 1;
                        if ignored <= 3 {
                            write!(first_ignored, "; recv error {e}").unwrap();
                        }
                    }
                }
            }
        }
        Err(format!(
            "no Binding answer from {addr} within {READY_TIMEOUT:?} ({probes} probes, \
             {ignored} other datagrams or errors{first_ignored})"
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
        self.wait_exit(limit)
    }

    /// Waits (at most `limit`) for the process to exit on its own (after a signal the test
    /// sent, say); `None` when it did not (it is then killed). An exit awaited here is not a
    /// crash.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
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

    /// Stops the server and starts it again with the same configuration, on the same ports;
    /// waits until it answers again. Its log goes on in the same file.
    ///
    /// The stop is a SIGTERM; when the server drains (it holds allocations, say a browser's
    /// TURN allocations), a second SIGTERM once it said so, which stops it at once (the drain's
    /// design): a restart does not wait out the drain. `limit` bounds the wait for the exit
    /// after the second signal; a server that did not stop by then fails the test.
    pub fn restart(&mut self, limit: Duration) {
        let drains_from = self.log().len();
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM): {}", std::io::Error::last_os_error());
        // The second SIGTERM must come after the first was handled (two pending signals are
        // one): wait for the drain notice in the log, or for the exit (nothing to drain).
        let notice_deadline = Instant::now() + DRAIN_NOTICE_TIMEOUT;
        let mut exited = None;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the server") {
                exited = Some(status);
                break;
            }
            let log = self.log();
            if log
                .get(drains_from..)
                .is_some_and(|l| l.contains("draining"))
            {
                break;
            }
            if Instant::now() >= notice_deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = match exited {
            Some(status) => {
                self.stop();
                Some(status)
            }
            None => self.terminate(limit),
        };
        match status {
            Some(status) if status.success() => {}
            other => panic!(
                "turnpike did not stop for the restart (SIGTERM twice): {other:?}\n{}",
                self.log()
            ),
        }
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("open the log file");
        self.child = Command::new(turnpike_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log file"))
            .stderr(log)
            .spawn()
            .expect("spawn turnpike again");
        self.stopped = false;
        let listen: Vec<SocketAddr> = std::iter::once(self.udp).chain(self.udp6).collect();
        for addr in listen {
            if let Err(e) = self.wait_ready(addr) {
                panic!(
                    "turnpike did not come back: {e}
{}",
                    self.log()
                );
            }
        }
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

/// True when `answer` is a Binding success response to one of the first `probes` requests
/// [`binding_request`] made in this process (header check only).
fn answers_a_probe(answer: &[u8], probes: u32) -> bool {
    if answer.len() < 20 || answer[0..2] != [0x01, 0x01] {
        return false;
    }
    let seq = u32::from_be_bytes(answer[12..16].try_into().unwrap());
    let first = binding_request(1);
    answer[4..12] == first[4..12] && answer[16..20] == first[16..20] && (1..=probes).contains(&seq)
}

/// True when `answer` is a Binding success response to `request` (header check only).
pub fn is_binding_success(answer: &[u8], request: &[u8]) -> bool {
    answer.len() >= 20 && answer[0..2] == [0x01, 0x01] && answer[4..20] == request[4..20]
}
