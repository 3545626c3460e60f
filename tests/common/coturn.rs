//! coturn's `turnserver` as a second, independent TURN server for our client tests: started on
//! a port block of its own on 127.0.0.1 with a REST secret, no CLI, loopback peers allowed, and
//! TLS with a test certificate; killed when dropped.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::pki::Pki;
use super::{KillOnDrop, LOCALHOST_V4, PortBlock, REALM, binding_request, is_binding_success};

/// The REST secret coturn is started with.
pub const COTURN_SECRET: &str = "coturn-secret";

/// A running coturn (`turnserver`), killed on drop.
pub struct Coturn {
    /// UDP and TCP listener (the same port).
    pub listen: SocketAddr,
    /// TLS listener.
    pub tls: SocketAddr,
    /// The CA that signed its certificate (PEM file inside).
    pub pki: Pki,
    dir: tempfile::TempDir,
    child: Option<KillOnDrop>,
    _ports: PortBlock,
}

impl Coturn {
    /// Starts coturn and waits (at most 5 s) for it to answer a Binding request.
    pub fn start() -> Coturn {
        let ports = PortBlock::claim();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::temporary();
        let leaf = pki.leaf("coturn");
        // coturn also takes listening port + 1 for RFC 5780 (the alternative port).
        let listen = SocketAddr::new(LOCALHOST_V4, ports.port(0));
        let tls = SocketAddr::new(LOCALHOST_V4, ports.port(2));
        let relay = ports.from(100);
        let d = dir.path();
        let args: Vec<String> = vec![
            "-n".into(),
            "--no-cli".into(),
            // One relay thread: with one per core, coturn 4.6 opens a UDP listener socket per
            // thread on the same port (SO_REUSEPORT), and here one of them sometimes never
            // answers (seen in about half the runs); the kernel hashes a client to it for good.
            "--relay-threads=1".into(),
            "--listening-ip=127.0.0.1".into(),
            format!("--listening-port={}", listen.port()),
            format!("--tls-listening-port={}", tls.port()),
            "--relay-ip=127.0.0.1".into(),
            format!("--min-port={}", relay.start()),
            format!("--max-port={}", relay.end()),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={COTURN_SECRET}"),
            format!("--realm={REALM}"),
            "--allow-loopback-peers".into(),
            "--no-dtls".into(),
            "--no-tlsv1".into(),
            "--no-tlsv1_1".into(),
            format!("--cert={}", leaf.cert.display()),
            format!("--pkey={}", leaf.key.display()),
            format!("--userdb={}", d.join("turndb").display()),
            format!("--pidfile={}", d.join("turnserver.pid").display()),
            format!("--log-file={}", d.join("turn.log").display()),
            "--simple-log".into(),
            "--no-stdout-log".into(),
        ];
        let child = Command::new("turnserver")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn turnserver (coturn; scripts/test installs it)");
        let mut c = Coturn {
            listen,
            tls,
            pki,
            dir,
            child: Some(KillOnDrop(child)),
            _ports: ports,
        };
        c.wait_ready();
        c
    }

    /// Probes with Binding requests, each from a new socket: coturn (net engine 3) gives each
    /// client 5-tuple a connected socket of its own at its first packet, and a packet that
    /// comes while the listener is still starting leaves that 5-tuple unanswered for good.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        let mut buf = [0u8; 1500];
        for probe in 0..100u32 {
            if Instant::now() > deadline {
                break;
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.0.try_wait().unwrap() {
                    panic!("turnserver exited with {status}:\n{}", self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let request = binding_request(probe);
            let _ = socket.send_to(&request, self.listen);
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if from == self.listen && is_binding_success(&buf[..n], &request) {
                    // The TCP/TLS listeners come up with the UDP one; give them a moment.
                    std::thread::sleep(Duration::from_millis(200));
                    return;
                }
            }
        }
        panic!("turnserver did not answer within 10 s:\n{}", self.log());
    }

    /// coturn's log so far (its log file, whatever name it chose for it).
    pub fn log(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("turn") && name.ends_with(".log") {
                out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        self.child.take();
        if std::thread::panicking() {
            eprintln!("--- coturn log ---\n{}", self.log());
        }
    }
}
