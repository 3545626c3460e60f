//! Third-party tools: finding coturn's, running one with a hard time limit, and
//! `turnutils_peer` as a UDP echo peer.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::ports::PortBlock;

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
