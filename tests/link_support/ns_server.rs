//! turnpike (TURN and the registry) inside a network namespace: the real binary run through
//! `ip netns exec`, on fixed ports of the namespace's own address (nothing else listens in a
//! namespace the test made), ready once it answers a Binding request and accepts a TCP
//! connection on its HTTP port from inside the namespace. Killed on drop; its log is printed
//! when the test fails.

use std::fs::{self, File};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::netns::Netns;
use crate::common::{Conf, KillOnDrop, binding_request, is_binding_success, turnpike_bin};

/// The TURN (UDP) port, the relay ports and the HTTP port inside the namespace.
pub const TURN_PORT: u16 = 3478;
pub const RELAY_PORTS: RangeInclusive<u16> = 49152..=49200;
pub const HTTP_PORT: u16 = 8080;

/// A running `turnpike serve` inside a namespace.
pub struct NsServer {
    /// UDP TURN listener.
    pub turn: SocketAddr,
    /// HTTP API and registry (ws://…/v1/registry).
    pub http: SocketAddr,
    child: KillOnDrop,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NsServer {
    /// Starts the server in `ns` on `ip` (one of its addresses) with `conf` (its `relay_ip` is
    /// set to `ip`), and waits until it serves.
    pub fn start(ns: &Netns, ip: IpAddr, mut conf: Conf) -> NsServer {
        let dir = tempfile::Builder::new()
            .prefix("turnpike-ns-")
            .tempdir()
            .unwrap();
        conf.relay_ip = ip.to_string();
        let turn = SocketAddr::new(ip, TURN_PORT);
        let http = SocketAddr::new(ip, HTTP_PORT);
        let config_path = dir.path().join("turnpike.toml");
        fs::write(&config_path, conf.to_toml(&[turn], &[], &RELAY_PORTS, http)).unwrap();
        let log_path = dir.path().join("turnpike.log");
        let log = File::create(&log_path).unwrap();
        let child = ns
            .command(&turnpike_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn turnpike in the namespace");
        let mut server = NsServer {
            turn,
            http,
            child: KillOnDrop(child),
            log_path,
            _dir: dir,
        };
        server.wait_ready(ns);
        server
    }

    fn wait_ready(&mut self, ns: &Netns) {
        let (turn, http) = (self.turn, self.http);
        let bind = SocketAddr::new(turn.ip(), 0);
        let socket = ns.enter(move || UdpSocket::bind(bind).expect("bind a probe socket"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 1500];
        let mut probe = 0;
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!(
                    "turnpike exited during start-up with {status}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "turnpike in the namespace did not answer within 10 s\n{}",
                self.log()
            );
            probe += 1;
            let request = binding_request(probe);
            let _ = socket.send_to(&request, turn);
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if from == turn && is_binding_success(&buf[..n], &request) {
                    let up = ns.enter(move || {
                        TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_ok()
                    });
                    if up {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The registry's URL.
    pub fn registry_url(&self) -> String {
        format!("ws://{}/v1/registry", self.http)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- turnpike log (in a namespace) ---\n{}\n--- end ---",
                self.log()
            );
        }
    }
}
