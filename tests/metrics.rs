//! `/metrics` of the real binary while real clients use it: counters move as packets are
//! relayed (not when the session ends), failures and drops show under their reasons, the
//! output parses with the Prometheus project's own OpenMetrics parser (Python
//! `prometheus_client`), and every metric the Grafana dashboard queries exists.

mod common;
#[allow(dead_code)] // the metrics test uses Redis and node_conf only
mod fleet_support;

use common::scrape::Scrape;
use common::stun::{Auth, add, error_code, relayed_address, request, udp_transport};
use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use stun_types::attribute::{Nonce, Realm};
use stun_types::message::{Message, MessageClass, MessageWriteVec, Method, TransactionId};
use turn_client_proto::types::attribute::{ChannelNumber, Lifetime, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};
use turnpike::proto::credentials;

// ---------------------------------------------------------------------------------------------
// A small STUN/TURN client (stun-types and turn-types codecs, not ours)
// ---------------------------------------------------------------------------------------------

struct Client {
    socket: UdpSocket,
    auth: Auth,
}

impl Client {
    /// A client on its own socket with REST credentials for `user`, after the 401 handshake.
    fn new(server: &Server, user: &str) -> Client {
        let cred = credentials::mint(SECRET_ONE.as_bytes(), user, unix_now(), 3600);
        Client::with(server, &cred.username, &cred.password)
    }

    fn with(server: &Server, username: &str, password: &str) -> Client {
        let socket = UdpSocket::bind((LOCALHOST_V4, 0)).unwrap();
        socket.connect(server.udp).unwrap();
        let mut c = Client {
            socket,
            auth: Auth {
                username: username.into(),
                password: password.into(),
                realm: String::new(),
                nonce: String::new(),
            },
        };
        let answer = c.transact(request(ALLOCATE, None, udp_transport));
        let msg = Message::from_bytes(&answer).unwrap();
        c.auth.realm = msg.attribute::<Realm>().unwrap().realm().to_owned();
        c.auth.nonce = msg.attribute::<Nonce>().unwrap().nonce().to_owned();
        c
    }

    /// Sends a request, returns the answer with its transaction id (4 tries, 500 ms apart).
    fn transact(&self, request: Vec<u8>) -> Vec<u8> {
        for _ in 0..4 {
            self.socket.send(&request).unwrap();
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.recv(left) {
                    Some(a) if a.len() >= 20 && a[8..20] == request[8..20] => return a,
                    Some(_) => continue,
                    None => break,
                }
            }
        }
        panic!("no answer to a request");
    }

    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = vec![0u8; 2048];
        let n = self.socket.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// A signed request; returns the error code (0 for success).
    fn signed(
        &self,
        method: Method,
        attrs: impl FnOnce(&mut MessageWriteVec, TransactionId),
    ) -> u16 {
        let answer = self.transact(request(method, Some(&self.auth), attrs));
        let msg = Message::from_bytes(&answer).unwrap();
        if msg.has_class(MessageClass::Success) {
            0
        } else {
            error_code(&msg).unwrap_or(1)
        }
    }

    /// Allocates; returns the relayed address.
    fn allocate(&self) -> SocketAddr {
        let answer = self.transact(request(ALLOCATE, Some(&self.auth), udp_transport));
        let msg = Message::from_bytes(&answer).unwrap();
        assert!(
            msg.has_class(MessageClass::Success),
            "Allocate failed: {msg}"
        );
        relayed_address(&msg)
    }

    fn allocate_code(&self) -> u16 {
        self.signed(ALLOCATE, udp_transport)
    }

    fn channel_bind(&self, channel: u16, peer: SocketAddr) -> u16 {
        self.signed(CHANNEL_BIND, |m, id| {
            add(m, &ChannelNumber::new(channel));
            add(m, &XorPeerAddress::new(peer, id));
        })
    }

    fn create_permission(&self, peer: SocketAddr) -> u16 {
        self.signed(CREATE_PERMISSION, |m, id| {
            add(m, &XorPeerAddress::new(peer, id));
        })
    }

    fn send_channel_data(&self, channel: u16, payload: &[u8]) {
        let mut frame = channel.to_be_bytes().to_vec();
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(payload);
        self.socket.send(&frame).unwrap();
    }
}

/// Receives exactly `count` datagrams of `len` bytes on `socket` (at most 2 s each).
fn receive_all(socket: &UdpSocket, count: usize, len: usize) {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..count {
        let (n, _) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i} of {count} not received: {e}"));
        assert_eq!(n, len, "datagram {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn byte_counters_grow_while_the_allocation_lives() {
    let server = Server::start(Conf::loopback_peers());
    let peer = UdpSocket::bind((LOCALHOST_V4, 0)).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let client = Client::new(&server, "alice");
    let relay = client.allocate();
    assert_eq!(client.channel_bind(0x4000, peer_addr), 0);

    let before = Scrape::take(&server);
    assert_eq!(before.relayed("bytes", "client_to_peer"), 0);
    assert_eq!(
        before.get("turnpike_allocations_active", "transport=\"udp\""),
        1
    );
    assert_eq!(
        before.get("turnpike_allocations_created_total", "transport=\"udp\""),
        1
    );

    // Client → peer: 5 × 100 bytes over the channel.
    for _ in 0..5 {
        client.send_channel_data(0x4000, &[7u8; 100]);
    }
    receive_all(&peer, 5, 100);
    let during = Scrape::take(&server);
    assert_eq!(during.relayed("bytes", "client_to_peer"), 500);
    assert_eq!(during.relayed("packets", "client_to_peer"), 5);

    // Peer → client: 3 × 200 bytes, arriving as ChannelData (4-byte header).
    for _ in 0..3 {
        peer.send_to(&[9u8; 200], relay).unwrap();
    }
    for i in 0..3 {
        let frame = client
            .recv(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("ChannelData {i} not received"));
        assert_eq!((&frame[..2], frame.len()), (&[0x40, 0x00][..], 204));
    }
    let later = Scrape::take(&server);
    assert_eq!(later.relayed("bytes", "peer_to_client"), 600);
    assert_eq!(later.relayed("packets", "peer_to_client"), 3);
    assert_eq!(later.relayed("bytes", "client_to_peer"), 500, "unchanged");
    assert_eq!(
        later.get("turnpike_allocations_active", "transport=\"udp\""),
        1,
        "the allocation still lives: the counters moved before it ended"
    );
    assert_eq!(
        later.get("turnpike_allocation_lifetime_seconds_count", ""),
        0
    );
    assert_eq!(
        later.samples.get("turnpike_relay_ports_in_use").copied(),
        Some(1.0),
        "{}",
        later.text
    );

    // Ending the allocation moves the gauges and the histogram, not the byte counters.
    assert_eq!(client.signed(REFRESH, |m, _| add(m, &Lifetime::new(0))), 0);
    let after = Scrape::take(&server);
    assert_eq!(
        after.get("turnpike_allocations_active", "transport=\"udp\""),
        0
    );
    assert_eq!(
        after.get("turnpike_allocation_lifetime_seconds_count", ""),
        1
    );
    assert_eq!(
        after.get("turnpike_allocation_lifetime_seconds_bucket", "le=\"10.0\""),
        1
    );
    assert_eq!(after.relayed("bytes", "peer_to_client"), 600);
    assert_eq!(
        after.samples.get("turnpike_relay_ports_in_use").copied(),
        Some(0.0)
    );
    assert_eq!(
        after.get(
            "turnpike_requests_total",
            "method=\"allocate\",result=\"success\""
        ),
        1
    );
    assert_eq!(
        after.get(
            "turnpike_requests_total",
            "method=\"refresh\",result=\"success\""
        ),
        1
    );
}

#[test]
fn auth_failures_and_drops_show_under_their_reasons() {
    let server = Server::start(Conf {
        allocations_per_user: 1,
        ..Conf::loopback_peers()
    });
    let base = Scrape::take(&server);
    for reason in ["bad_integrity", "unknown_user", "expired", "stale_nonce"] {
        assert_eq!(base.auth_failures(reason), 0, "{reason}");
    }

    // Authentication failures.
    assert_eq!(
        Client::with(&server, STATIC_USER, "wrong").allocate_code(),
        401
    );
    assert_eq!(Client::with(&server, "mallory", "x").allocate_code(), 401);
    let old = credentials::mint(SECRET_ONE.as_bytes(), "bob", unix_now() - 7200, 3600);
    assert_eq!(
        Client::with(&server, &old.username, &old.password).allocate_code(),
        401
    );
    let mut stale = Client::new(&server, "carol");
    stale.auth.nonce = "not-a-nonce-of-ours".into();
    assert_eq!(stale.allocate_code(), 438);

    // Drops: malformed datagrams, a peer the policy denies, a peer without permission, the
    // per-user quota.
    let client = Client::new(&server, "dave");
    let relay = client.allocate();
    for _ in 0..3 {
        client.socket.send(&[0xffu8; 24]).unwrap();
    }
    assert_eq!(
        client.create_permission("127.0.0.3:5000".parse().unwrap()),
        403,
        "127.0.0.3 is not in peers.allow"
    );
    let stranger = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    stranger.send_to(b"no permission", relay).unwrap();
    assert_eq!(Client::new(&server, "dave").allocate_code(), 486);

    // The stranger's datagram is counted when the worker reads it: wait for it (at most 2 s).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut s = Scrape::take(&server);
    while s.dropped("no_permission") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        s = Scrape::take(&server);
    }
    for (reason, n) in [
        ("bad_integrity", 1),
        ("unknown_user", 1),
        ("expired", 1),
        ("stale_nonce", 1),
        ("wrong_realm", 0),
        ("incomplete", 0),
    ] {
        assert_eq!(
            s.auth_failures(reason),
            n,
            "auth failures {reason}\n{}",
            s.text
        );
    }
    for (reason, n) in [
        ("malformed", 3),
        ("peer_denied", 1),
        ("no_permission", 1),
        ("quota", 1),
        ("bandwidth_cap", 0),
        ("rate_limit", 0),
    ] {
        assert_eq!(s.dropped(reason), n, "drops {reason}\n{}", s.text);
    }
    assert_eq!(
        s.get(
            "turnpike_requests_total",
            "method=\"allocate\",result=\"486\""
        ),
        1
    );
    assert_eq!(
        s.get(
            "turnpike_requests_total",
            "method=\"create_permission\",result=\"403\""
        ),
        1
    );
}

#[test]
fn suppressed_401s_count_as_rate_limit_drops() {
    let server = Server::start(Conf {
        unauthenticated_rate: 5,
        ..Conf::default()
    });
    let socket = UdpSocket::bind((LOCALHOST_V4, 0)).unwrap();
    socket.connect(server.udp).unwrap();
    // 40 unauthenticated Allocates (28 bytes: header + REQUESTED-TRANSPORT UDP).
    for i in 0..40u32 {
        let mut m = vec![0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[0u8; 8]);
        m.extend_from_slice(&i.to_be_bytes());
        m.extend_from_slice(&[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
        socket.send(&m).unwrap();
    }
    // Count the answers until the socket stays quiet for 300 ms (at most 60 reads).
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 512];
    for _ in 0..60 {
        if socket.recv(&mut buf).is_err() {
            break;
        }
        answered += 1;
    }
    let s = Scrape::take(&server);
    assert!((1..40).contains(&answered), "{answered} answered");
    assert_eq!(s.dropped("rate_limit"), 40 - answered, "{}", s.text);
    assert_eq!(
        s.get(
            "turnpike_requests_total",
            "method=\"allocate\",result=\"401\""
        ),
        answered
    );
}

/// Runs the Prometheus project's OpenMetrics parser (Debian's python3-prometheus-client,
/// installed by scripts/test) on `text`; returns every sample name it read.
fn openmetrics_sample_names(text: &str) -> Vec<String> {
    const PARSE: &str = "import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(family.type, sample.name)
";
    let python = "/usr/bin/python3";
    let mut child = std::process::Command::new(python)
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e} (scripts/test installs it)"));
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once(' ').expect("TYPE NAME").1.to_owned())
        .collect()
}

#[test]
fn exposition_is_valid_openmetrics_and_covers_the_dashboard() {
    // With the registry on, so that the dashboard's registry row has its metrics.
    let server = Server::start(Conf {
        extra_toml:
            "[registry]\nenabled = true\njwt_secrets = [\"metrics-test-registry-secret\"]\n".into(),
        ..Conf::loopback_peers()
    });
    // Some traffic, so that error results appear too.
    let client = Client::new(&server, "erin");
    client.allocate();
    assert_eq!(Client::with(&server, "nobody", "x").allocate_code(), 401);
    let scrape = Scrape::take(&server);
    assert!(scrape.text.ends_with("# EOF\n"));
    let names = openmetrics_sample_names(&scrape.text);
    for expected in [
        "turnpike_relayed_bytes_total",
        "turnpike_relayed_packets_total",
        "turnpike_allocations_active",
        "turnpike_allocations_created_total",
        "turnpike_allocation_lifetime_seconds_bucket",
        "turnpike_allocation_lifetime_seconds_sum",
        "turnpike_allocation_lifetime_seconds_count",
        "turnpike_requests_total",
        "turnpike_auth_failures_total",
        "turnpike_dropped_packets_total",
        "turnpike_relay_ports_in_use",
        "turnpike_relay_ports_capacity",
        "turnpike_draining",
        "turnpike_config_reloads_total",
        "turnpike_build_info",
        "turnpike_admin_allocations_ended_total",
        "turnpike_registry_peers",
        "turnpike_registry_signaling_messages_total",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} not parsed");
    }

    // Every metric a dashboard query names exists in the exposition, except the fleet row's,
    // which a node has only in a cluster (the next test).
    for name in dashboard_metrics() {
        if name.starts_with("turnpike_fleet_") {
            continue;
        }
        assert!(
            names.iter().any(|n| n == &name),
            "the dashboard queries {name}, which /metrics does not have"
        );
    }
}

/// A node of a cluster (a real redis-server) has every metric the dashboard queries, the fleet
/// row's included.
#[test]
fn a_clustered_node_covers_the_whole_dashboard() {
    let redis = fleet_support::Redis::start();
    let mut conf = fleet_support::node_conf("metrics-node", Some(&redis));
    conf.extra_toml.push_str(
        "\n[registry]\nenabled = true\njwt_secrets = [\"metrics-test-registry-secret\"]\n",
    );
    let server = Server::start(conf);
    let used = dashboard_metrics();
    assert!(
        used.iter()
            .filter(|n| n.starts_with("turnpike_fleet_"))
            .count()
            >= 5,
        "the fleet row: {used:?}"
    );
    // The node publishes its load at start; the fleet's samples appear with the first one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scrape = Scrape::take(&server);
        let names = openmetrics_sample_names(&scrape.text);
        let missing: Vec<&String> = used
            .iter()
            .filter(|name| !names.iter().any(|n| n == *name))
            .collect();
        if missing.is_empty() {
            assert!(
                scrape.text.contains("turnpike_fleet_redis_up 1"),
                "{}",
                scrape.text
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard queries {missing:?}, which a clustered node's /metrics does not have"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `turnpike_*` metrics the dashboard's queries name.
fn dashboard_metrics() -> std::collections::BTreeSet<String> {
    let dashboard_path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/turnpike.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dashboard_path).unwrap())
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(
        exprs.len() >= 8,
        "only {} queries in the dashboard",
        exprs.len()
    );
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            used.insert(name);
        }
    }
    assert!(used.len() >= 8, "the dashboard uses only {used:?}");
    used
}

/// Every `expr` string in a Grafana dashboard.
fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    // Panel queries, and the template variables' label_values(...) queries.
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// The `turnpike_*` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("turnpike_") {
        let start = i + pos;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            names.push(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// TCP/TLS clients' relay sends are counted when the kernel refuses them, as the UDP workers'
/// batched sends are: a ChannelData frame from a TCP client to 127.255.255.255 (the loopback
/// broadcast address, which a socket without SO_BROADCAST may not send to: EACCES) shows as
/// `turnpike_dropped_packets_total{reason="send_failed"}`.
#[test]
fn a_tcp_clients_datagram_the_kernel_refuses_counts_as_send_failed() {
    use common::turn_tcp::TurnTcp;
    let server = Server::start(Conf {
        tcp: true,
        peers_allow: vec!["127.0.0.0/8".into()],
        ..Conf::default()
    });
    let mut tcp = TurnTcp::connect(&server);
    let auth = tcp.rest_auth(
        "erin",
        ALLOCATE,
        &request(ALLOCATE, None, udp_transport),
        &server,
    );
    let answer = tcp.transact(&request(ALLOCATE, Some(&auth), udp_transport), &server);
    assert!(
        Message::from_bytes(&answer)
            .unwrap()
            .has_class(MessageClass::Success),
        "Allocate over TCP"
    );
    let broadcast: SocketAddr = "127.255.255.255:9".parse().unwrap();
    let answer = tcp.transact(
        &request(CHANNEL_BIND, Some(&auth), |m, id| {
            add(m, &ChannelNumber::new(0x4000));
            add(m, &XorPeerAddress::new(broadcast, id));
        }),
        &server,
    );
    assert!(
        Message::from_bytes(&answer)
            .unwrap()
            .has_class(MessageClass::Success),
        "ChannelBind to {broadcast} (127.0.0.0/8 allowed)"
    );
    assert_eq!(Scrape::take(&server).dropped("send_failed"), 0);
    let frame = [0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4];
    for _ in 0..3 {
        tcp.write(&frame);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut s = Scrape::take(&server);
    while s.dropped("send_failed") < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        s = Scrape::take(&server);
    }
    assert_eq!(s.dropped("send_failed"), 3, "{}", s.text);
}
