//! turnpike driven by coturn's own test clients (`turnutils_uclient`, `turnutils_peer`,
//! `turnutils_stunclient`) over real UDP sockets on loopback: what an operator replacing coturn
//! would run first.
//!
//! Message counts: `turnutils_uclient -m 2 -n N` runs two sessions of N messages, so it sends
//! 2N messages in all (with RTCP, the default, the two sessions are an RTP/RTCP pair allocated
//! with EVEN-PORT and RESERVATION-TOKEN; with `-c` they are two independent allocations).

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use turnpike::proto::credentials;

/// Messages per uclient session.
const N: u64 = 20;

/// `-p PORT -e PEER -r PEER_PORT` plus `extra`.
fn args_to_peer(server: &Server, peer: &Peer, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-p".to_string(),
        server.udp.port().to_string(),
        "-e".to_string(),
        peer.addr.ip().to_string(),
        "-r".to_string(),
        peer.addr.port().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn uclient(args: &[String], server_ip: IpAddr) -> Uclient {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Uclient::run(&args, server_ip)
}

#[test]
fn channel_data_relay_with_rest_credentials_computed_by_uclient() {
    let server = Server::start(Conf::loopback_peers());
    let peer = Peer::start(LOCALHOST_V4);
    // Default mode: ChannelData, RTP/RTCP allocation pair (EVEN-PORT + RESERVATION-TOKEN),
    // REST username `expiry:alice` and password computed by uclient from the secret.
    let n = N.to_string();
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &["-W", SECRET_ONE, "-u", "alice", "-n", &n, "-m", "2"],
        ),
        LOCALHOST_V4,
    );
    run.assert_relayed(2 * N, &server);
}

#[test]
fn channel_data_relay_with_a_static_user() {
    let server = Server::start(Conf::loopback_peers());
    let peer = Peer::start(LOCALHOST_V4);
    let n = N.to_string();
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &[
                "-u",
                STATIC_USER,
                "-w",
                STATIC_PASSWORD,
                "-c",
                "-n",
                &n,
                "-m",
                "2",
            ],
        ),
        LOCALHOST_V4,
    );
    run.assert_relayed(2 * N, &server);
}

#[test]
fn send_indications_relay_with_the_second_secret() {
    let server = Server::start(Conf::loopback_peers());
    let peer = Peer::start(LOCALHOST_V4);
    let n = N.to_string();
    // -s: Send/Data indications instead of ChannelData; -X: REQUESTED-ADDRESS-FAMILY IPv4.
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &[
                "-s", "-X", "-W", SECRET_TWO, "-u", "bob", "-c", "-n", &n, "-m", "2",
            ],
        ),
        LOCALHOST_V4,
    );
    run.assert_relayed(2 * N, &server);
}

#[test]
fn relay_to_relay_needs_no_peer_allow_list() {
    // The default policy denies loopback peers, but a peer that is one of the server's own
    // relayed addresses (here on 127.0.0.1) is always allowed: relay-to-relay traffic never
    // leaves the server.
    let server = Server::start(Conf::default());
    let n = N.to_string();
    // -y: pairs of clients send to each other's relayed address.
    let port = server.udp.port().to_string();
    let args: Vec<String> = [
        "-p", &port, "-y", "-W", SECRET_ONE, "-u", "carol", "-c", "-n", &n, "-m", "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let run = uclient(&args, LOCALHOST_V4);
    run.assert_relayed(2 * N, &server);
}

/// Asserts that uclient could not allocate at all.
fn assert_allocation_refused(run: &Uclient, server: &Server) {
    let context = format!("{}\n--- server log ---\n{}", run.run, server.log());
    assert!(!run.run.timed_out, "uclient hung:\n{context}");
    assert_ne!(run.run.code, Some(0), "uclient succeeded:\n{context}");
    assert!(
        run.run.output.contains("ERROR: Cannot complete Allocation"),
        "expected an allocation failure:\n{context}"
    );
    assert_eq!(run.summary, None, "uclient relayed data:\n{context}");
}

#[test]
fn wrong_password_is_refused() {
    let server = Server::start(Conf::loopback_peers());
    let peer = Peer::start(LOCALHOST_V4);
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &["-u", STATIC_USER, "-w", "not-the-password", "-n", "2"],
        ),
        LOCALHOST_V4,
    );
    assert_allocation_refused(&run, &server);

    // A REST username whose password was made with a secret the server does not have.
    let cred = credentials::mint(b"some-other-secret", "alice", unix_now(), 3600);
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &["-u", &cred.username, "-w", &cred.password, "-n", "2"],
        ),
        LOCALHOST_V4,
    );
    assert_allocation_refused(&run, &server);
}

#[test]
fn expired_rest_username_is_refused() {
    let server = Server::start(Conf::loopback_peers());
    let peer = Peer::start(LOCALHOST_V4);
    // Correctly signed with a configured secret, but the expiry is in the past.
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "alice", unix_now() - 7200, 3600);
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &["-u", &cred.username, "-w", &cred.password, "-n", "2"],
        ),
        LOCALHOST_V4,
    );
    assert_allocation_refused(&run, &server);

    // The same user with a fresh credential goes through: the refusal was the expiry.
    let cred = credentials::mint(SECRET_ONE.as_bytes(), "alice", unix_now(), 3600);
    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &[
                "-u",
                &cred.username,
                "-w",
                &cred.password,
                "-c",
                "-n",
                "5",
                "-m",
                "2",
            ],
        ),
        LOCALHOST_V4,
    );
    run.assert_relayed(10, &server);
}

/// Asserts that uclient got a 403 for `what` ("channel bind" or "create permission").
fn assert_forbidden(run: &Uclient, what: &str, server: &Server) {
    let context = format!("{}\n--- server log ---\n{}", run.run, server.log());
    assert!(!run.run.timed_out, "uclient hung:\n{context}");
    assert_ne!(run.run.code, Some(0), "uclient succeeded:\n{context}");
    assert!(
        run.errors
            .iter()
            .any(|l| l.contains(what) && l.contains("403")),
        "expected a {what} 403:\n{context}"
    );
    assert_eq!(run.summary, None, "uclient relayed data:\n{context}");
}

#[test]
fn loopback_peers_are_refused_by_default() {
    // Default policy: no peers.allow, loopback is denied.
    let server = Server::start(Conf::default());
    let peer = Peer::start(LOCALHOST_V4);
    let creds = ["-W", SECRET_ONE, "-u", "alice", "-c", "-n", "2"];

    let run = uclient(&args_to_peer(&server, &peer, &creds), LOCALHOST_V4);
    assert_forbidden(&run, "channel bind", &server);

    let mut send = creds.to_vec();
    send.push("-s");
    let run = uclient(&args_to_peer(&server, &peer, &send), LOCALHOST_V4);
    assert_forbidden(&run, "create permission", &server);
}

#[test]
fn a_denied_peer_stays_denied_next_to_an_allowed_one() {
    // 127.0.0.1 allowed, but the rest of 127.0.0.0/8 still denied by default.
    let conf = Conf {
        peers_allow: vec!["127.0.0.1/32".into()],
        ..Conf::default()
    };
    let server = Server::start(conf);
    let allowed = Peer::start(LOCALHOST_V4);
    let run = uclient(
        &args_to_peer(
            &server,
            &allowed,
            &["-W", SECRET_ONE, "-u", "dave", "-c", "-n", "5", "-m", "2"],
        ),
        LOCALHOST_V4,
    );
    run.assert_relayed(10, &server);

    // 127.0.0.2 is loopback too (no packet leaves the machine), not on the allow list.
    let denied: IpAddr = "127.0.0.2".parse().unwrap();
    let args = vec![
        "-p".to_string(),
        server.udp.port().to_string(),
        "-e".to_string(),
        denied.to_string(),
        "-r".to_string(),
        allowed.addr.port().to_string(),
        "-W".into(),
        SECRET_ONE.into(),
        "-u".into(),
        "dave".into(),
        "-c".into(),
        "-n".into(),
        "2".into(),
    ];
    let run = uclient(&args, LOCALHOST_V4);
    assert_forbidden(&run, "channel bind", &server);
}

/// Parses `... UDP reflexive addr: IP:PORT` (IPv6 addresses are printed without brackets).
fn reflexive_addr(output: &str) -> Option<SocketAddr> {
    let line = output
        .lines()
        .find(|l| l.contains("UDP reflexive addr: "))?;
    let text = line.split("UDP reflexive addr: ").nth(1)?.trim();
    let (ip, port) = text.rsplit_once(':')?;
    Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
}

fn stunclient(server: SocketAddr) -> (ToolRun, Option<SocketAddr>) {
    let args = vec![
        "-p".to_string(),
        server.port().to_string(),
        "-L".to_string(),
        server.ip().to_string(),
        server.ip().to_string(),
    ];
    let run = run_tool(
        &tool("turnutils_stunclient"),
        &args,
        Duration::from_secs(20),
    );
    let mapped = reflexive_addr(&run.output);
    (run, mapped)
}

#[test]
fn stunclient_gets_its_mapped_address() {
    let server = Server::start(Conf::default());
    let (run, mapped) = stunclient(server.udp);
    assert!(run.success(), "{run}\n--- server log ---\n{}", server.log());
    let mapped = mapped.unwrap_or_else(|| panic!("no reflexive address:\n{run}"));
    // The client binds an ephemeral port of its own choosing: the mapped address is that
    // loopback address and a real port, never the server's.
    assert_eq!(mapped.ip(), LOCALHOST_V4, "{run}");
    assert_ne!(mapped.port(), 0, "{run}");
    assert_ne!(mapped.port(), server.udp.port(), "{run}");
}

#[test]
fn ipv6_binding_and_relay() {
    let server = Server::start(Conf {
        ipv6: true,
        ..Conf::loopback_peers()
    });
    let udp6 = server.udp6.expect("an IPv6 listener");
    let (run, mapped) = stunclient(udp6);
    assert!(run.success(), "{run}\n--- server log ---\n{}", server.log());
    let mapped = mapped.unwrap_or_else(|| panic!("no reflexive address:\n{run}"));
    assert_eq!(mapped.ip(), LOCALHOST_V6, "{run}");
    assert_ne!(mapped.port(), 0, "{run}");

    // An IPv6 client asking for an IPv6 relay (-x) to an IPv6 peer.
    let peer = Peer::start(LOCALHOST_V6);
    let n = N.to_string();
    let args = vec![
        "-p".to_string(),
        udp6.port().to_string(),
        "-x".into(),
        "-e".into(),
        peer.addr.ip().to_string(),
        "-r".into(),
        peer.addr.port().to_string(),
        "-W".into(),
        SECRET_ONE.into(),
        "-u".into(),
        "erin".into(),
        "-c".into(),
        "-n".into(),
        n,
        "-m".into(),
        "2".into(),
    ];
    let run = uclient(&args, LOCALHOST_V6);
    run.assert_relayed(2 * N, &server);
}

/// The operator's path: `turnpike credentials` mints a credential from the server's config,
/// uclient relays with it, and SIGTERM stops the server cleanly. uclient leaves its
/// allocations to expire, so SIGTERM drains them for `server.drain_timeout_secs` (1 s here,
/// not the default 30 s) before the server exits with status 0.
#[test]
fn cli_credentials_relay_and_sigterm_stops_the_server() {
    let mut server = Server::start(Conf {
        extra_toml: "[server]\ndrain_timeout_secs = 1".into(),
        ..Conf::loopback_peers()
    });
    let peer = Peer::start(LOCALHOST_V4);
    let config = server.config_path.display().to_string();
    let run = run_tool(
        &turnpike_bin(),
        &[
            "credentials".into(),
            "--user".into(),
            "frank".into(),
            "--ttl".into(),
            "1h".into(),
            "--config".into(),
            config,
        ],
        Duration::from_secs(20),
    );
    assert!(run.success(), "{run}");
    let json: serde_json::Value = serde_json::from_str(&run.output)
        .unwrap_or_else(|e| panic!("credentials output is not JSON ({e}):\n{run}"));
    let username = json["username"].as_str().expect("username");
    let password = json["password"].as_str().expect("password");
    assert_eq!(json["ttl"], 3600, "{run}");
    let (expiry, user) = username.split_once(':').expect("EXPIRY:USER");
    assert_eq!(user, "frank");
    let expiry: u64 = expiry.parse().expect("a numeric expiry");
    let now = unix_now();
    assert!(
        (now + 3600 - 60..=now + 3600).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    // Signed with the first configured secret.
    assert_eq!(
        password,
        credentials::rest_password(SECRET_ONE.as_bytes(), username)
    );
    let uri = format!("turn:{}?transport=udp", server.udp);
    let uris: Vec<&str> = json["uris"]
        .as_array()
        .expect("uris")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    assert!(uris.contains(&uri.as_str()), "{uri} not in {uris:?}");

    let run = uclient(
        &args_to_peer(
            &server,
            &peer,
            &["-u", username, "-w", password, "-c", "-n", "10", "-m", "2"],
        ),
        LOCALHOST_V4,
    );
    run.assert_relayed(20, &server);

    let status = server.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: {status:?}\n--- server log ---\n{}",
        server.log()
    );
}

#[test]
fn check_config_accepts_the_test_config_and_points_at_a_bad_key() {
    let server = Server::start(Conf::default());
    let check = |path: &std::path::Path| {
        run_tool(
            &turnpike_bin(),
            &["check-config".into(), path.display().to_string()],
            Duration::from_secs(20),
        )
    };
    let run = check(&server.config_path);
    assert!(run.success(), "{run}");

    // An unknown key on line 3 is reported with its line.
    let bad = server.dir().join("bad.toml");
    std::fs::write(&bad, "realm = \"x\"\n\nno_such_key = 1\n").unwrap();
    let run = check(&bad);
    assert_eq!(run.code, Some(1), "{run}");
    let location = format!("{}:3:", bad.display());
    assert!(
        run.output.contains(&location),
        "expected {location} in:\n{run}"
    );
}
