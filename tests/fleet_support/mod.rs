//! A real `redis-server` (Debian's) for the fleet tests, on a loopback port of its own
//! [`PortBlock`], killed on drop; and the fleet's configuration for a test node.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{Conf, PortBlock};

/// A running `redis-server`, killed on drop.
pub struct Redis {
    child: Child,
    pub addr: SocketAddr,
    _ports: PortBlock,
}

impl Redis {
    /// Starts `redis-server` on 127.0.0.1 (no persistence) and waits (at most 10 s) until it
    /// answers PING.
    pub fn start() -> Redis {
        let ports = PortBlock::claim();
        let addr: SocketAddr = ([127, 0, 0, 1], ports.port(0)).into();
        let child = Redis::spawn(addr);
        let redis = Redis {
            child,
            addr,
            _ports: ports,
        };
        redis.wait_pong();
        redis
    }

    /// Starts a fresh (empty) Redis on the same port after [`Redis::kill`] (at most three
    /// attempts, should one exit at once).
    pub fn restart(&mut self) {
        for _ in 0..3 {
            self.child = Redis::spawn(self.addr);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.pings() {
                    return;
                }
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            self.kill();
        }
        panic!("redis-server did not start again on {}", self.addr);
    }

    fn spawn(addr: SocketAddr) -> Child {
        Command::new("redis-server")
            .args(["--port", &addr.port().to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/test installs it)")
    }

    fn wait_pong(&self) {
        let redis = self;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL nodes are given.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Stops Redis (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nonce key every node of the test fleets shares.
pub const NONCE_KEY: &str = "fleet-test-nonce-key-0123456789";
/// The API key of the nodes' credential endpoint.
pub const API_KEY: &str = "fleet-test-api-key";

/// A node named `id` of the fleet on `redis` (or of no Redis), sharing the nonce key, its
/// load living `load_ttl_secs`, draining up to 60 s.
pub fn node_conf(id: &str, redis: Option<&Redis>) -> Conf {
    let mut extra =
        String::from("[server]\ndrain_timeout_secs = 60\n\n[fleet]\nload_ttl_secs = 2\n");
    if let Some(redis) = redis {
        extra.push_str(&format!(
            "\n[cluster]\nredis_url = {:?}\nnode_id = {id:?}\n",
            redis.url()
        ));
    }
    Conf {
        auth_extra: vec![format!("nonce_key = {NONCE_KEY:?}")],
        http_extra: vec![format!("api_keys = [{API_KEY:?}]")],
        extra_toml: extra,
        ..Conf::default()
    }
}
