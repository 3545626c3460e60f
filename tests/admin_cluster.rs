//! Revocations reaching every node through a real Redis (`[cluster] redis_url`): a revocation
//! made on one node refuses the user on the other and ends its allocations there; one made
//! while Redis is down reaches the other node once Redis is back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::request;
use common::turn::*;
use common::*;
use turn_client_proto::types::message::ALLOCATE;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

/// A redis-server on a port of its own, without persistence, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    _ports: PortBlock,
}

impl Redis {
    fn start() -> Redis {
        let ports = PortBlock::claim();
        let port = ports.port(0);
        let mut redis = Redis {
            child: Redis::spawn(port),
            port,
            _ports: ports,
        };
        redis.wait_up();
        redis
    }

    fn spawn(port: u16) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)")
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.child = Redis::spawn(self.port);
        self.wait_up();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node(redis: &Redis) -> Server {
    let mut conf = Conf::loopback_peers();
    conf.http_extra = vec![format!("admin_keys = [{ADMIN_KEY:?}]")];
    conf.extra_toml = format!("[cluster]\nredis_url = {:?}\n", redis.url());
    Server::start(conf)
}

fn revoke(server: &Server, user: &str) {
    let bearer = format!("Bearer {ADMIN_KEY}");
    let body = format!("{{\"user\":{user:?}}}");
    let r = request(
        server.http,
        "POST",
        "/admin/v1/revocations",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        Some(&body),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Allocate for `user` with fresh credentials: the answer's error code, or 0 on success.
fn allocate_code(server: &Server, user: &str) -> u16 {
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, user, server);
    let answer = client.transact(
        &common::stun::request(ALLOCATE, Some(&auth), udp_transport),
        server,
    );
    let msg = stun_types::message::Message::from_bytes(&answer).expect("a STUN answer");
    common::stun::error_code(&msg).unwrap_or(0)
}

/// Waits (at most `limit`) until `user` is refused by `server` with 403.
fn refused_within(server: &Server, user: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if allocate_code(server, user) == 403 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_revocation_on_one_node_reaches_the_other_through_redis() {
    let mut redis = Redis::start();
    let a = node(&redis);
    let b = node(&redis);
    let peer = EchoPeer::start();
    // carol holds an allocation on node b.
    let client = Client::new(b.udp);
    let auth = rest_auth(&client, "carol", &b);
    allocate(&client, &auth, &b);
    expect_success(
        &channel_bind(&client, &auth, 0x4000, peer.addr, &b),
        turn_client_proto::types::message::CHANNEL_BIND,
        &auth,
        &b,
    );
    assert!(channel_echo(&client, 0x4000, b"before"));

    revoke(&a, "carol");
    assert!(
        refused_within(&b, "carol", Duration::from_secs(5)),
        "node b still accepts carol\n{}",
        b.log()
    );
    assert!(!channel_echo(
        &client,
        0x4000,
        b"after the revocation on node a"
    ));
    assert_eq!(allocate_code(&b, "dave"), 0);

    // Redis down: a revocation on node a holds there, and reaches b once Redis is back.
    redis.stop();
    revoke(&a, "erin");
    assert_eq!(allocate_code(&a, "erin"), 403);
    assert_eq!(allocate_code(&b, "erin"), 0);
    redis.restart();
    assert!(
        refused_within(&b, "erin", Duration::from_secs(40)),
        "erin's revocation did not reach node b after Redis came back\n--- a ---\n{}\n--- b ---\n{}",
        a.log(),
        b.log()
    );
    // carol's revocation survived on both (Redis restarted empty: node a seeded it again).
    assert_eq!(allocate_code(&b, "carol"), 403);
}
