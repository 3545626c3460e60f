//! What the reliability benches share: the server under test (the real turnpike binary, on a
//! fixed listener address so it can be restarted in place), a table of figures and a verdict
//! that becomes the exit status.

use std::net::SocketAddr;

use anyhow::bail;

use crate::servers::{self, Kind, ServerSpec};
use crate::{SECRET, SERVER_IP, ip};

/// The settings of a reliability run's server: UDP (and TCP when `tcp`) on one free port of
/// 127.0.0.1, relays on 32000-65000, loopback peers allowed.
pub fn spec(tcp: bool, forward_to: SocketAddr) -> anyhow::Result<ServerSpec> {
    // A port free for UDP and TCP alike (other servers may run on this machine).
    let port = loop {
        let p = std::net::UdpSocket::bind((ip(SERVER_IP), 0))?
            .local_addr()?
            .port();
        if !tcp || std::net::TcpListener::bind((ip(SERVER_IP), p)).is_ok() {
            break p;
        }
    };
    Ok(ServerSpec {
        listen: SocketAddr::new(ip(SERVER_IP), port),
        // Above the test suite's port blocks (10000-31999): these runs are part of it.
        ports: (32000, 65000),
        secret: SECRET.into(),
        realm: "bench".into(),
        workers: 0,
        forward_to: Some(forward_to),
        tcp,
        netns: None,
    })
}

/// Starts turnpike with `spec`.
pub fn start(spec: &ServerSpec) -> anyhow::Result<servers::Server> {
    servers::start(Kind::Turnpike, spec)
}

/// The checks of one run: each one printed as `PASS`/`FAIL` with what it compared.
#[derive(Default)]
pub struct Verdict {
    failed: Vec<String>,
}

impl Verdict {
    /// Records and prints one check.
    pub fn check(&mut self, ok: bool, what: String) {
        println!("  {} {what}", if ok { "PASS" } else { "FAIL" });
        if !ok {
            self.failed.push(what);
        }
    }

    /// Ok when every check passed; otherwise an error naming the failed ones (a non-zero exit).
    pub fn finish(self, name: &str) -> anyhow::Result<()> {
        if self.failed.is_empty() {
            println!("{name}: ok");
            Ok(())
        } else {
            bail!("{name} failed: {}", self.failed.join("; "))
        }
    }
}

/// True when `after` is within `pct` % of `base` (either way).
pub fn within(after: u64, base: u64, pct: f64) -> bool {
    (after as f64 - base as f64).abs() <= base as f64 * pct / 100.0
}
