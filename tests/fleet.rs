//! A stateless TURN fleet, with real turnpike nodes and a real `redis-server`:
//! - a nonce issued by node A authenticates on node B (shared `auth.nonce_key`), and not on a
//!   node with another key;
//! - node A drains: its new Allocates get a signed 300 Try Alternate naming node B, and the
//!   Rust TURN client follows it and allocates on B;
//! - `/api/v1/ice-servers` lists the least-loaded node first, the order flips when load moves,
//!   a draining node is left out, and with Redis down a node lists itself alone and says so in
//!   `/metrics`.

mod common;
mod fleet_support;
mod registry_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::scrape::Scrape;
use common::turn::{Client, allocate, rest_auth};
use common::{Conf, SECRET_ONE, Server, unix_now};
use fleet_support::{API_KEY, NONCE_KEY, Redis, node_conf};
use stun_types::attribute::AlternateServer;
use turn_client_proto::types::message::ALLOCATE;
use turnpike::client::turn::{TurnConfig, TurnRelay, TurnServer};

/// Waits (at most `limit`, polling every 100 ms) until `check` holds.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The STUN error code of a signed Allocate from `client` with `auth` to `server` (0: success),
/// and the answer.
fn allocate_answer(client: &Client, auth: &common::stun::Auth, server: &Server) -> (u16, Vec<u8>) {
    let answer = client.transact(
        &common::stun::request(ALLOCATE, Some(auth), common::stun::udp_transport),
        server,
    );
    let code = common::stun::error_code(&common::stun::parse(&answer, ALLOCATE)).unwrap_or(0);
    (code, answer)
}

/// A fleet gauge or counter of `server` (no realm label).
fn fleet_metric(server: &Server, sample: &str) -> u64 {
    let scrape = Scrape::take(server);
    match scrape.samples.get(sample) {
        Some(v) => *v as u64,
        None => panic!("no {sample} in\n{}", scrape.text),
    }
}

/// The UDP ports of the `turn:` URIs of each `iceServers` entry, in order.
fn ice_order(server: &Server) -> Vec<u16> {
    let r = common::http::request(
        server.http,
        "GET",
        "/api/v1/ice-servers?user=probe",
        &[("Authorization", &format!("Bearer {API_KEY}"))],
        None,
    )
    .expect("GET /api/v1/ice-servers");
    assert_eq!(r.status, 200, "{}", r.body);
    let json = r.json();
    let servers = json["iceServers"].as_array().expect("an iceServers array");
    servers
        .iter()
        .map(|s| {
            assert!(
                s["username"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(":probe"))
            );
            let urls = s["urls"].as_array().expect("urls");
            let turn = urls
                .iter()
                .filter_map(|u| u.as_str())
                .find(|u| u.starts_with("turn:"))
                .expect("a turn: URI");
            let port = turn
                .trim_start_matches("turn:127.0.0.1:")
                .trim_end_matches("?transport=udp");
            port.parse().unwrap_or_else(|_| panic!("{turn}"))
        })
        .collect()
}

/// The UDP ports of the `turn:` URIs of the `ice_servers` a registry `welcome` of `server`
/// carries, in order.
fn welcome_order(server: &Server) -> Vec<u16> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let url = format!("ws://{}/v1/registry", server.http);
        let keys = turnpike::client::KeyPair::generate();
        let (client, _) = tokio::time::timeout(
            Duration::from_secs(10),
            registry_support::join_client(&url, "peer-1", "fleet", keys),
        )
        .await
        .expect("joined in time");
        let ice = client
            .ice_servers()
            .expect("the welcome carries ice_servers");
        ice.iter()
            .map(|s| {
                let turn = s
                    .urls
                    .iter()
                    .find(|u| u.starts_with("turn:"))
                    .expect("a turn: URI");
                turn.trim_start_matches("turn:127.0.0.1:")
                    .trim_end_matches("?transport=udp")
                    .parse()
                    .unwrap_or_else(|_| panic!("{turn}"))
            })
            .collect()
    })
}

/// Holds `n` allocations on `server` (each its own client socket); they live while returned.
fn hold_allocations(server: &Server, n: usize, user: &str) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let client = Client::new(server.udp);
            let auth = rest_auth(&client, &format!("{user}{i}"), server);
            allocate(&client, &auth, server);
            client
        })
        .collect()
}

#[test]
fn a_nonce_from_node_a_authenticates_on_node_b_with_the_shared_key_only() {
    let a = Server::start(node_conf("a", None));
    let b = Server::start(node_conf("b", None));
    let stranger = Server::start(Conf {
        auth_extra: vec!["nonce_key = \"another-fleet-key-0123456789\"".into()],
        ..Conf::default()
    });
    let on_a = Client::new(a.udp);
    // The 401 of node A gives the nonce; node B has never seen this client.
    let auth = rest_auth(&on_a, "ann", &a);
    let on_b = Client::new(b.udp);
    let (code, answer) = allocate_answer(&on_b, &auth, &b);
    assert_eq!(code, 0, "node B refused node A's nonce\n{}", b.log());
    common::stun::expect_success(&answer, ALLOCATE, &auth, &b);
    // A node with another nonce key answers 438 Stale Nonce (with its own nonce).
    let on_stranger = Client::new(stranger.udp);
    let (code, _) = allocate_answer(&on_stranger, &auth, &stranger);
    assert_eq!(code, 438);
    assert!(!a.log().contains(NONCE_KEY) && !b.log().contains(NONCE_KEY));
}

#[test]
fn a_draining_node_sends_new_allocates_to_a_live_node_and_the_rust_client_follows() {
    let redis = Redis::start();
    let a = Server::start(node_conf("a", Some(&redis)));
    let b = Server::start(node_conf("b", Some(&redis)));
    // Node A knows node B as an alternate once both published.
    assert!(
        eventually(Duration::from_secs(10), || fleet_metric(
            &a,
            "turnpike_fleet_alternates"
        ) >= 1),
        "node A never learnt node B\n{}",
        a.log()
    );
    // An allocation on A keeps the drain going.
    let _held = hold_allocations(&a, 1, "held");
    let fresh = Client::new(a.udp);
    let auth = rest_auth(&fresh, "bob", &a);
    a.signal(libc::SIGTERM);
    assert!(
        eventually(Duration::from_secs(5), || common::http::get(
            a.http, "/readyz"
        )
        .status
            == 503),
        "node A did not drain"
    );

    // A raw client: a signed 300 naming node B's UDP listener.
    let (code, answer) = allocate_answer(&fresh, &auth, &a);
    assert_eq!(code, 300, "{}", a.log());
    let msg = common::stun::expect_error(&answer, ALLOCATE, 300, &a);
    let key = auth
        .credentials()
        .make_key(stun_types::message::IntegrityAlgorithm::Sha1);
    msg.validate_integrity_with_key(&key)
        .expect("the 300 is signed with the client's key");
    let alternate = msg
        .attribute::<AlternateServer>()
        .expect("ALTERNATE-SERVER")
        .server();
    assert_eq!(alternate, b.udp);

    // Our Rust TURN client, pointed at node A, ends up with a relay on node B.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let relay = runtime.block_on(async {
        let server = TurnServer::from_url(&format!("turn:{}?transport=udp", a.udp)).unwrap();
        let config = TurnConfig::rest(SECRET_ONE.as_bytes(), "sdk", unix_now(), 600, false);
        tokio::time::timeout(
            Duration::from_secs(15),
            TurnRelay::allocate(&server, config, None),
        )
        .await
        .expect("allocate in time")
        .expect("allocate after following the 300")
    });
    let relayed: SocketAddr = relay.relayed();
    assert!(
        b.relay_ports.contains(&relayed.port()),
        "relayed {relayed}: not in node B's relay range {:?}",
        b.relay_ports
    );
    let scrape = Scrape::take(&a);
    assert_eq!(
        scrape.get(
            "turnpike_requests_total",
            "method=\"allocate\",result=\"300\""
        ),
        2,
        "the raw client's and the SDK's"
    );
    assert_eq!(
        Scrape::take(&b).get("turnpike_allocations_active", "transport=\"udp\""),
        1
    );
    drop(relay);
    drop(runtime);
}

#[test]
fn ice_servers_list_the_least_loaded_node_first_and_leave_out_draining_and_unreachable_ones() {
    let mut redis = Redis::start();
    // Node A also runs the registry: its welcome carries the same ordered iceServers.
    let mut with_registry = node_conf("a", Some(&redis));
    with_registry.extra_toml.push_str(&format!(
        "\n[registry]\nenabled = true\njwt_secrets = [{:?}]\n",
        registry_support::JWT_SECRET
    ));
    let a = Server::start(with_registry);
    let b = Server::start(node_conf("b", Some(&redis)));
    let (pa, pb) = (a.udp.port(), b.udp.port());
    // No load: both listed, tie broken by node id, same order from either node.
    assert!(
        eventually(Duration::from_secs(10), || ice_order(&a) == [pa, pb]
            && ice_order(&b) == [pa, pb]),
        "A: {:?}, B: {:?} (a={pa}, b={pb})",
        ice_order(&a),
        ice_order(&b)
    );
    assert_eq!(fleet_metric(&a, "turnpike_fleet_redis_up"), 1);
    // Every fleet metric the node exposes is documented.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let scrape = Scrape::take(&a);
    let families: Vec<&str> = scrape
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE turnpike_fleet_"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(families.len(), 5, "{}", scrape.text);
    for family in families {
        let name = match scrape
            .text
            .contains(&format!("turnpike_fleet_{family}_total"))
        {
            true => format!("`turnpike_fleet_{family}_total`"),
            false => format!("`turnpike_fleet_{family}`"),
        };
        assert!(docs.contains(&name), "{name} is not in docs/metrics.md");
    }
    assert_eq!(fleet_metric(&a, "turnpike_fleet_nodes{state=\"ready\"}"), 2);

    // Load on A: B comes first, on both nodes.
    let held_a = hold_allocations(&a, 3, "load");
    assert!(
        eventually(Duration::from_secs(10), || ice_order(&a) == [pb, pa]
            && ice_order(&b) == [pb, pa]),
        "the order did not flip: A: {:?}, B: {:?}",
        ice_order(&a),
        ice_order(&b)
    );
    assert_eq!(welcome_order(&a), [pb, pa], "the registry's welcome");
    // More load on B than on A: back to A first.
    let _held_b = hold_allocations(&b, 5, "more");
    assert!(
        eventually(Duration::from_secs(10), || ice_order(&a) == [pa, pb]),
        "the order did not flip back: {:?}",
        ice_order(&a)
    );

    // B drains (its allocations keep the drain going): left out, A listed alone.
    b.signal(libc::SIGTERM);
    assert!(
        eventually(Duration::from_secs(10), || ice_order(&a) == [pa]),
        "draining node B still listed: {:?}",
        ice_order(&a)
    );
    assert!(
        eventually(Duration::from_secs(5), || fleet_metric(
            &a,
            "turnpike_fleet_nodes{state=\"draining\"}"
        ) == 1),
        "node A does not count node B as draining"
    );
    drop(held_a);

    // Redis gone: each node lists itself alone and says so.
    redis.kill();
    assert!(
        eventually(Duration::from_secs(10), || fleet_metric(
            &a,
            "turnpike_fleet_redis_up"
        ) == 0),
        "node A did not notice Redis is down"
    );
    assert_eq!(ice_order(&a), [pa]);
    assert!(fleet_metric(&a, "turnpike_fleet_local_only_answers_total") >= 1);
    assert!(fleet_metric(&a, "turnpike_fleet_publishes_total{result=\"error\"}") >= 1);
    assert!(
        a.log().contains("Redis unavailable"),
        "the log does not say why\n{}",
        a.log()
    );
}
