//! The server's life after start-up, on the real binary with real sockets on loopback:
//!
//! - SIGHUP reloads the configuration file: a rotated REST secret and API key apply at once,
//!   allocations made with the old secret keep relaying, a file that does not load is refused
//!   as a whole, keys that need a restart keep their values, and
//!   `turnpike_config_reloads_total` counts every outcome;
//! - SIGTERM drains: `/readyz` turns 503, new allocations get 508, the existing ones keep
//!   relaying and refreshing, and the process exits with 0 once the last one is gone, at
//!   `server.drain_timeout_secs`, or at a second SIGTERM.
//!
//! Every wait is bounded in count and time.

mod common;

use std::fs;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::turn::*;
use common::*;
use stun_types::attribute::{Nonce, Realm};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, REFRESH};

const SECRET_A: &str = "rotation-secret-a-51f0c2";
const SECRET_B: &str = "rotation-secret-b-9e7d44";
const KEY_ONE: &str = "api-key-one-0123456789abcdef";
const KEY_TWO: &str = "api-key-two-fedcba9876543210";

/// Polls `check` every 50 ms until it holds, at most `limit`; false when it never did.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of one sample of `/metrics` (`name{labels}` exactly as exposed), if present.
fn metric(server: &Server, sample: &str) -> Option<u64> {
    let r = common::http::get(server.http, "/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse::<f64>().ok().map(|v| v as u64))?
    })
}

fn reloads(server: &Server, result: &str) -> u64 {
    metric(
        server,
        &format!("turnpike_config_reloads_total{{result=\"{result}\"}}"),
    )
    .unwrap_or_else(|| panic!("no reload counter in /metrics"))
}

/// Writes `text` as the server's configuration file, sends SIGHUP and waits until the reload
/// counter for `expect` ("ok" or "error") went up by one.
fn reload(server: &Server, text: &str, expect: &str) {
    let before = reloads(server, expect);
    fs::write(&server.config_path, text).expect("rewrite the configuration");
    server.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || reloads(server, expect) > before),
        "no reload counted as {expect}\n--- log ---\n{}",
        server.log()
    );
}

/// A fresh client, authenticated for `user` with `secret` (the 401 challenge done).
fn client_with(server: &Server, secret: &str, user: &str) -> (Client, Auth) {
    let client = Client::new(server.udp);
    let auth = rest_auth_with(&client, secret, user, server);
    (client, auth)
}

/// Allocates (it must succeed), binds channel 0x4000 to `peer` and checks a round trip.
fn relaying_client(server: &Server, secret: &str, user: &str, peer: SocketAddr) -> (Client, Auth) {
    let (client, auth) = client_with(server, secret, user);
    allocate(&client, &auth, server);
    let answer = channel_bind(&client, &auth, 0x4000, peer, server);
    expect_success(&answer, CHANNEL_BIND, &auth, server);
    assert!(
        channel_echo(&client, 0x4000, b"before"),
        "no echo through the relay\n--- log ---\n{}",
        server.log()
    );
    (client, auth)
}

/// The error code of a signed Allocate (0 for a success).
fn allocate_code(client: &Client, auth: &Auth, server: &Server) -> u16 {
    let answer = client.transact(&request(ALLOCATE, Some(auth), udp_transport), server);
    error_code(&parse(&answer, ALLOCATE)).unwrap_or(0)
}

/// A TCP connection to the server's TCP listener, speaking STUN framed by its own length
/// (RFC 8656 §3.1). Its allocation, if any, ends when it is dropped.
struct TcpClient(std::net::TcpStream);

impl TcpClient {
    fn connect(server: &Server) -> TcpClient {
        let addr = server.tcp.expect("a TCP listener");
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .expect("connect to the TCP listener");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        TcpClient(stream)
    }

    /// Sends a request and reads one answer (at most 5 s).
    fn transact(&mut self, request: &[u8]) -> Vec<u8> {
        use std::io::{Read, Write};
        self.0.write_all(request).expect("send over TCP");
        let mut answer = vec![0u8; 20];
        self.0
            .read_exact(&mut answer)
            .expect("a STUN header over TCP");
        let len = u16::from_be_bytes([answer[2], answer[3]]) as usize;
        answer.resize(20 + len, 0);
        self.0
            .read_exact(&mut answer[20..])
            .expect("a STUN body over TCP");
        answer
    }

    /// Allocates with REST credentials for `user` signed with `secret`, after the 401
    /// challenge; returns the error code (0 for a success).
    fn allocate_code(&mut self, secret: &str, user: &str) -> u16 {
        let answer = self.transact(&request(ALLOCATE, None, udp_transport));
        let msg = parse(&answer, ALLOCATE);
        let realm = msg.attribute::<Realm>().expect("REALM").realm().to_owned();
        let nonce = msg.attribute::<Nonce>().expect("NONCE").nonce().to_owned();
        let cred = turnpike::proto::credentials::mint(secret.as_bytes(), user, unix_now(), 600);
        let auth = Auth {
            username: cred.username,
            password: cred.password,
            realm,
            nonce,
        };
        let answer = self.transact(&request(ALLOCATE, Some(&auth), udp_transport));
        error_code(&parse(&answer, ALLOCATE)).unwrap_or(0)
    }
}

fn ice_servers(server: &Server, key: &str) -> common::http::Response {
    common::http::request(
        server.http,
        "POST",
        "/api/v1/ice-servers",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"user": "ida", "ttl": 600}"#),
    )
    .expect("POST /api/v1/ice-servers")
}

#[test]
fn sighup_rotates_secrets_and_keys_without_dropping_allocations() {
    let server = Server::start(Conf {
        secrets: vec![SECRET_A.into()],
        users: Vec::new(),
        tcp: true,
        http_extra: vec![format!("api_keys = [{KEY_ONE:?}]")],
        ..Conf::loopback_peers()
    });
    let echo = EchoPeer::start();
    let (old, _) = relaying_client(&server, SECRET_A, "ann", echo.addr);
    assert_eq!(reloads(&server, "ok"), 0);
    assert_eq!(ice_servers(&server, KEY_ONE).status, 200);
    // TCP connections opened before the reload: their cores must follow it.
    let mut tcp_b = TcpClient::connect(&server);
    let mut tcp_a = TcpClient::connect(&server);
    assert_eq!(
        tcp_b.transact(&binding_request(1)).len(),
        32,
        "a Binding answer"
    );
    assert_eq!(
        tcp_a.transact(&binding_request(2)).len(),
        32,
        "a Binding answer"
    );

    // Rotation: the new secret and key replace the old ones.
    let original = server.config_text();
    let rotated = original
        .replace(&format!("[{SECRET_A:?}]"), &format!("[{SECRET_B:?}]"))
        .replace(&format!("[{KEY_ONE:?}]"), &format!("[{KEY_TWO:?}]"));
    assert_ne!(rotated, original, "the secrets line was not found");
    reload(&server, &rotated, "ok");

    let (b, b_auth) = client_with(&server, SECRET_B, "bob");
    assert_eq!(allocate_code(&b, &b_auth, &server), 0, "the new secret");
    let (a, a_auth) = client_with(&server, SECRET_A, "cid");
    assert_eq!(
        allocate_code(&a, &a_auth, &server),
        401,
        "the removed secret"
    );
    assert_eq!(tcp_b.allocate_code(SECRET_B, "tom"), 0, "over TCP");
    assert_eq!(tcp_a.allocate_code(SECRET_A, "tim"), 401, "over TCP");
    assert!(
        channel_echo(&old, 0x4000, b"after the rotation"),
        "the allocation made with the old secret stopped relaying"
    );
    // The credential endpoint follows too: the new key, and credentials signed with the new
    // secret, which the relay accepts.
    assert_eq!(ice_servers(&server, KEY_ONE).status, 401);
    let answer = ice_servers(&server, KEY_TWO);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let entry = &answer.json()["iceServers"][0];
    let minted = Client::new(server.udp);
    let (realm, nonce) = challenge(&minted, ALLOCATE, &server);
    let minted_auth = Auth {
        username: entry["username"].as_str().unwrap().to_owned(),
        password: entry["credential"].as_str().unwrap().to_owned(),
        realm,
        nonce,
    };
    assert_eq!(allocate_code(&minted, &minted_auth, &server), 0);

    // Files that do not load are refused as a whole: a secret of the wrong type (whose value
    // must not reach the log), then a value out of range.
    let wrong_type = rotated.replace(&format!("[{SECRET_B:?}]"), &format!("{SECRET_A:?}"));
    reload(&server, &wrong_type, "error");
    let out_of_range = original.replace("nonce_lifetime_secs = 600", "nonce_lifetime_secs = 0");
    assert_ne!(out_of_range, original);
    reload(&server, &out_of_range, "error");
    // No secret and no user would lock every client out: refused too.
    let no_credentials = rotated.replace(&format!("[{SECRET_B:?}]"), "[]");
    assert_ne!(no_credentials, rotated);
    reload(&server, &no_credentials, "error");
    let (b2, b2_auth) = client_with(&server, SECRET_B, "dan");
    assert_eq!(allocate_code(&b2, &b2_auth, &server), 0, "B still works");
    let (a2, a2_auth) = client_with(&server, SECRET_A, "eve");
    assert_eq!(allocate_code(&a2, &a2_auth, &server), 401, "A is still out");

    // A key that needs a restart keeps its value; the rest of the file applies (here a new
    // log level, unless RUST_LOG, which takes precedence, or TURNPIKE_TEST_LOG chose one).
    let check_level = server.conf.log_level == "info" && std::env::var_os("RUST_LOG").is_none();
    let new_realm = rotated
        .replace(&format!("realm = {REALM:?}"), "realm = \"other.example\"")
        .replace("level = \"info\"", "level = \"info,turnpike=debug\"");
    assert_ne!(new_realm, rotated);
    reload(&server, &new_realm, "ok");
    if check_level {
        // A TCP connection that closes is logged at debug level only.
        assert!(!server.log().contains("connection closed"));
        let mut tcp = TcpClient::connect(&server);
        assert_eq!(
            tcp.transact(&binding_request(3)).len(),
            32,
            "a Binding answer"
        );
        drop(tcp);
        assert!(
            eventually(Duration::from_secs(5), || server
                .log()
                .contains("connection closed")),
            "log.level did not apply\n{}",
            server.log()
        );
    }
    let probe = Client::new(server.udp);
    let answer = probe.transact(&request(ALLOCATE, None, udp_transport), &server);
    let msg = expect_error(&answer, ALLOCATE, 401, &server);
    assert_eq!(msg.attribute::<Realm>().unwrap().realm(), REALM);
    assert!(
        channel_echo(&old, 0x4000, b"after three reloads"),
        "the first allocation stopped relaying"
    );

    assert_eq!(reloads(&server, "ok"), 2);
    assert_eq!(reloads(&server, "error"), 3);
    let log = server.log();
    for expected in [
        "configuration reloaded",
        "configuration reload refused",
        "turnpike.toml:",
        "auth.nonce_lifetime_secs",
        "no secrets and no users",
        "realm changed but need a restart",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
    for secret in [SECRET_A, SECRET_B, KEY_ONE, KEY_TWO] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

#[test]
fn sigterm_drains_until_the_last_allocation_ends_then_exits_0() {
    let mut server = Server::start(Conf {
        extra_toml: "[server]\ndrain_timeout_secs = 30".into(),
        tcp: true,
        ..Conf::loopback_peers()
    });
    let echo = EchoPeer::start();
    let (old, old_auth) = relaying_client(&server, SECRET_ONE, "ann", echo.addr);
    assert_eq!(common::http::get(server.http, "/readyz").status, 200);
    assert_eq!(metric(&server, "turnpike_draining"), Some(0));
    // A TCP connection open before the drain: its core must learn of it.
    let mut tcp = TcpClient::connect(&server);
    assert_eq!(
        tcp.transact(&binding_request(1)).len(),
        32,
        "a Binding answer"
    );

    server.signal(libc::SIGTERM);
    assert!(
        eventually(Duration::from_secs(5), || {
            common::http::get(server.http, "/readyz").status == 503
        }),
        "/readyz did not turn 503"
    );
    assert!(
        common::http::get(server.http, "/readyz")
            .body
            .contains("draining")
    );
    assert_eq!(metric(&server, "turnpike_draining"), Some(1));

    // New allocations are refused with 508; the one that exists carries on.
    let (fresh, fresh_auth) = client_with(&server, SECRET_ONE, "bob");
    assert_eq!(allocate_code(&fresh, &fresh_auth, &server), 508);
    assert_eq!(tcp.allocate_code(SECRET_ONE, "tom"), 508, "over TCP too");
    for round in 0..3 {
        assert!(
            channel_echo(&old, 0x4000, format!("draining {round}").as_bytes()),
            "the allocation stopped relaying during the drain"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    expect_success(
        &refresh(&old, &old_auth, 600, &server),
        REFRESH,
        &old_auth,
        &server,
    );
    assert!(server.is_running(), "exited with an allocation left");

    // The last allocation ends: the server stops by itself.
    let ended = Instant::now();
    expect_success(
        &refresh(&old, &old_auth, 0, &server),
        REFRESH,
        &old_auth,
        &server,
    );
    let status = server.wait_exit(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("still running\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        ended.elapsed() < Duration::from_secs(5),
        "{:?}",
        ended.elapsed()
    );
    let log = server.log();
    assert!(log.contains("draining: 1 allocations left"), "{log}");
    assert!(log.contains("drain complete"), "{log}");
}

#[test]
fn the_drain_ends_at_its_timeout() {
    let mut server = Server::start(Conf {
        extra_toml: "[server]\ndrain_timeout_secs = 2".into(),
        ..Conf::default()
    });
    let (client, auth) = client_with(&server, SECRET_ONE, "ann");
    allocate(&client, &auth, &server);
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15));
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(10),
        "stopped after {took:?}"
    );
    assert!(server.log().contains("drain timeout"), "{}", server.log());
}

#[test]
fn a_second_sigterm_stops_the_drain_at_once() {
    let mut server = Server::start(Conf {
        extra_toml: "[server]\ndrain_timeout_secs = 600".into(),
        ..Conf::default()
    });
    let (client, auth) = client_with(&server, SECRET_ONE, "ann");
    allocate(&client, &auth, &server);
    server.signal(libc::SIGTERM);
    assert!(
        eventually(Duration::from_secs(5), || {
            common::http::get(server.http, "/readyz").status == 503
        }),
        "/readyz did not turn 503"
    );
    assert!(server.is_running(), "did not drain");
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(10));
    let status = status.unwrap_or_else(|| panic!("still running\n{}", server.log()));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(5));
    assert!(
        server
            .log()
            .contains("SIGTERM during the drain: stopping now"),
        "{}",
        server.log()
    );
}

/// A reload that denies a range revokes what exists at once: a channel to a peer that was
/// allowed carries nothing more, and a new permission there is refused. (The peer is on
/// 127.0.0.2, allowed by a range: not one of the server's addresses, whose packets are judged
/// one by one anyway.)
#[test]
fn a_reload_that_denies_a_range_revokes_existing_channels_at_once() {
    let server = Server::start(Conf {
        peers_allow: vec!["127.0.0.0/8".into()],
        ..Conf::default()
    });
    let echo = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    echo.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let peer = echo.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(30);
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
            if let Ok((n, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..n], from);
            }
        }
    });
    let (client, auth) = client_with(&server, SECRET_ONE, "rev");
    allocate(&client, &auth, &server);
    let answer = channel_bind(&client, &auth, 0x4002, peer, &server);
    common::stun::expect_success(&answer, CHANNEL_BIND, &auth, &server);
    assert!(channel_echo(&client, 0x4002, b"before"), "{}", server.log());
    let text = server
        .config_text()
        .replace("allow = [\"127.0.0.0/8\"]", "allow = []");
    assert!(text.contains("allow = []"), "{text}");
    reload(&server, &text, "ok");
    let after = channel_echo(&client, 0x4002, b"after");
    let answer = create_permission(&client, &auth, peer, &server);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = thread.join();
    assert!(
        !after,
        "the channel outlived the reload that denied its peer\n{}",
        server.log()
    );
    common::stun::expect_error(
        &answer,
        turn_client_proto::types::message::CREATE_PERMISSION,
        403,
        &server,
    );
}
