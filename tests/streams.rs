//! TURN over TCP and TLS, RFC 6062 TCP relays, TLS shared with HTTPS, certificate reload and
//! connection hygiene: the real binary over loopback, driven by coturn's `turnutils_uclient`
//! and by Python's `ssl` (OpenSSL) as a TLS client independent of the rustls we serve with.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::pki::{Pki, install};
use common::stream_clients::*;
use common::*;
use serde_json::Value;

/// A STUN Binding over a plain TCP connection: returns true on a Binding success answer.
fn tcp_binding(addr: SocketAddr) -> bool {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = binding_request(7);
    // Two requests in one write: the server frames them by their length.
    let mut two = request.to_vec();
    two.extend_from_slice(&request);
    s.write_all(&two).unwrap();
    let mut answers = 0;
    for _ in 0..2 {
        let mut head = [0u8; 20];
        if s.read_exact(&mut head).is_err() {
            return false;
        }
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return false;
        }
        let mut whole = head.to_vec();
        whole.extend_from_slice(&body);
        answers += usize::from(is_binding_success(&whole, &request));
    }
    answers == 2
}

// ---------------------------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------------------------

/// Runs tests/tls_probe.py (Python's ssl) with `args`; returns its JSON.
fn probe(port: u16, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls_probe.py");
    let mut all = vec![
        script.display().to_string(),
        "--port".into(),
        port.to_string(),
    ];
    all.extend(strings(args));
    let run = run_tool(Path::new("/usr/bin/python3"), &all, Duration::from_secs(20));
    assert!(run.success(), "tls_probe.py failed:\n{run}");
    serde_json::from_str(run.output.trim()).unwrap_or_else(|e| panic!("{e}: {run}"))
}

fn ok(v: &Value) -> bool {
    v["ok"] == Value::Bool(true)
}

/// The certificate a new handshake presents, as its SHA-256.
fn presented(port: u16, ca: &Path) -> String {
    let v = probe(port, &["--ca", ca.to_str().unwrap()]);
    assert!(ok(&v), "{v}");
    v["cert_sha256"].as_str().unwrap().to_owned()
}

/// Polls `presented` until it is `want` (at most `limit`).
fn wait_presented(port: u16, ca: &Path, want: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if presented(port, ca) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

// ---------------------------------------------------------------------------------------------
// TURN over TCP and TLS
// ---------------------------------------------------------------------------------------------

#[test]
fn turn_over_tcp_relays_without_loss_and_answers_binding() {
    let server = Server::start(Conf {
        tcp: true,
        ..Conf::loopback_peers()
    });
    let tcp = server.tcp.unwrap();
    assert!(tcp_binding(tcp), "Binding over TCP\n{}", server.log());
    let peer = Peer::start(LOCALHOST_V4);
    // ChannelData (padded over TCP), an RTP/RTCP pair with EVEN-PORT.
    assert_uclient_relays(&server, tcp.port(), &peer, 2, &["-t"]);
    // Send and Data indications.
    assert_uclient_relays(&server, tcp.port(), &peer, 2, &["-t", "-s", "-c"]);
}

#[test]
fn turn_over_tls_relays_without_loss() {
    let server = Server::start(Conf {
        tls: true,
        ..Conf::loopback_peers()
    });
    let tls = server.tls.unwrap();
    let peer = Peer::start(LOCALHOST_V4);
    assert_uclient_relays(&server, tls.port(), &peer, 2, &["-t", "-S"]);
    assert_uclient_relays(&server, tls.port(), &peer, 2, &["-t", "-S", "-s", "-c"]);
}

#[test]
fn rfc6062_tcp_relays_over_tcp_and_tls_with_the_default_peer_policy() {
    // -T: TCP relays (RFC 6062), clients in pairs connecting to each other's relayed address
    // (Connect on one side, ConnectionAttempt on the other, ConnectionBind on both). Loopback
    // peers are denied by default; the peers here are turnpike's own relayed addresses.
    let server = Server::start(Conf {
        tcp: true,
        tls: true,
        tcp_allocations: true,
        ..Conf::default()
    });
    let n = N.to_string();
    for (port, tls) in [
        (server.tcp.unwrap().port(), false),
        (server.tls.unwrap().port(), true),
    ] {
        let mut args = strings(&[
            "-T",
            "-p",
            &port.to_string(),
            "-W",
            SECRET_ONE,
            "-u",
            "dave",
            "-n",
            &n,
            "-m",
            "2",
        ]);
        if tls {
            args.push("-S".into());
        }
        uclient(&args).assert_relayed(2 * N, &server);
    }
}

// ---------------------------------------------------------------------------------------------
// Certificates seen by an independent client
// ---------------------------------------------------------------------------------------------

#[test]
fn turns_certificate_verifies_with_hostname_checks_in_an_independent_client() {
    let pki = Pki::temporary();
    let leaf = pki.leaf("one");
    let server = Server::start(Conf {
        tls: true,
        tls_files: leaf.tls_files(),
        ..Conf::default()
    });
    let port = server.tls.unwrap().port();
    let ca = pki.ca_pem.to_str().unwrap();
    for version in ["1.2", "1.3"] {
        let v = probe(
            port,
            &["--ca", ca, "--tls-version", version, "--mode", "binding"],
        );
        assert!(ok(&v), "TLS {version}: {v}");
        assert_eq!(v["cert_sha256"], Value::from(leaf.sha256.clone()));
        assert_eq!(v["version"], Value::from(format!("TLSv{version}")));
        assert_eq!(v["answer"], "binding success", "{v}");
        assert_eq!(v["alpn"], Value::Null, "no ALPN offered, none chosen");
    }
    let v = probe(
        port,
        &["--ca", ca, "--alpn", "stun.turn", "--mode", "binding"],
    );
    assert!(ok(&v), "{v}");
    assert_eq!(v["alpn"], "stun.turn");
    assert_eq!(v["answer"], "binding success");
    // The IP address SAN verifies too.
    let v = probe(port, &["--ca", ca, "--server-name", "127.0.0.1"]);
    assert!(ok(&v), "{v}");
    // A name the certificate does not carry fails the hostname check.
    let v = probe(port, &["--ca", ca, "--server-name", "turn.example.net"]);
    assert!(!ok(&v), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("CERTIFICATE_VERIFY_FAILED") && error.contains("ostname mismatch"),
        "{v}"
    );
    // Without our CA the chain does not verify.
    let stranger = Pki::temporary();
    let v = probe(port, &["--ca", stranger.ca_pem.to_str().unwrap()]);
    assert!(!ok(&v), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATE_VERIFY_FAILED"),
        "{v}"
    );
    // A TURN-only port offers no HTTP: a client that insists on it is refused in the handshake.
    let v = probe(port, &["--ca", ca, "--alpn", "http/1.1"]);
    assert!(!ok(&v), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no application protocol"),
        "{v}"
    );
}

#[test]
fn the_generated_certificate_serves_turns_and_is_not_trusted() {
    let server = Server::start(Conf {
        tls: true,
        ..Conf::loopback_peers()
    });
    let port = server.tls.unwrap().port();
    let v = probe(port, &["--no-verify", "--mode", "binding"]);
    assert!(ok(&v), "{v}");
    assert_eq!(v["answer"], "binding success");
    let stranger = Pki::temporary();
    let v = probe(port, &["--ca", stranger.ca_pem.to_str().unwrap()]);
    assert!(!ok(&v), "a self-signed certificate is not trusted: {v}");
    assert!(
        server.log().contains("self-signed certificate"),
        "the operator is warned:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------------------------------------
// One TLS port for TURN and HTTPS
// ---------------------------------------------------------------------------------------------

#[test]
fn one_tls_port_answers_http_and_turn() {
    let pki = Pki::temporary();
    let leaf = pki.leaf("shared");
    let server = Server::start(Conf {
        tls_http: true,
        tls_files: leaf.tls_files(),
        ..Conf::loopback_peers()
    });
    let port = server.tls_http.unwrap().port();
    let ca = pki.ca_pem.to_str().unwrap();
    // HTTP without ALPN: routed by its first byte to the HTTP API.
    let v = probe(port, &["--ca", ca, "--mode", "http", "--path", "/healthz"]);
    assert!(ok(&v), "{v}");
    assert_eq!(v["answer"], "HTTP/1.1 200 OK", "{v}");
    assert_eq!(v["body"], r#"{"status":"alive"}"#, "{v}");
    // HTTP by ALPN.
    let v = probe(
        port,
        &[
            "--ca", ca, "--alpn", "http/1.1", "--mode", "http", "--path", "/readyz",
        ],
    );
    assert!(ok(&v), "{v}");
    assert_eq!(v["alpn"], "http/1.1");
    assert_eq!(v["answer"], "HTTP/1.1 200 OK", "{v}");
    assert_eq!(v["body"], r#"{"status":"ready"}"#, "{v}");
    let v = probe(
        port,
        &["--ca", ca, "--mode", "http", "--path", "/nothing-here"],
    );
    assert_eq!(v["answer"], "HTTP/1.1 404 Not Found", "{v}");
    // /metrics needs no token: it stays on the [http] listener, not on a public TLS port.
    let v = probe(port, &["--ca", ca, "--mode", "http", "--path", "/metrics"]);
    assert_eq!(v["answer"], "HTTP/1.1 404 Not Found", "{v}");
    // TURN by ALPN and by first byte.
    let v = probe(
        port,
        &[
            "--ca",
            ca,
            "--alpn",
            "stun.turn",
            "--alpn",
            "http/1.1",
            "--mode",
            "binding",
        ],
    );
    assert_eq!(
        (v["alpn"].as_str(), v["answer"].as_str()),
        (Some("stun.turn"), Some("binding success")),
        "{v}"
    );
    let v = probe(port, &["--ca", ca, "--mode", "binding"]);
    assert_eq!(v["answer"], "binding success", "{v}");
    // A real TURN client allocates and relays on the same port.
    let peer = Peer::start(LOCALHOST_V4);
    assert_uclient_relays(&server, port, &peer, 2, &["-t", "-S"]);
}

// ---------------------------------------------------------------------------------------------
// Certificate reload
// ---------------------------------------------------------------------------------------------

#[test]
fn a_certificate_replaced_on_disk_is_reloaded_while_a_tls_allocation_relays() {
    let pki = Pki::temporary();
    let live = pki.leaf("live");
    let renewed = pki.leaf("renewed");
    let server = Server::start(Conf {
        tls: true,
        tls_files: live.tls_files(),
        tls_reload_secs: 1,
        ..Conf::loopback_peers()
    });
    let port = server.tls.unwrap().port();
    let first = presented(port, &pki.ca_pem);
    assert_eq!(first, live.sha256);
    let peer = Peer::start(LOCALHOST_V4);
    // 150 messages, one every 20 ms: about three seconds of relaying over one TLS session.
    let args = to_peer(port, &peer, &["-t", "-S", "-c", "-n", "150", "-m", "1"]);
    let traffic = std::thread::spawn(move || uclient(&args));
    std::thread::sleep(Duration::from_millis(700));
    install(&renewed, &live);
    assert!(
        wait_presented(port, &pki.ca_pem, &renewed.sha256, Duration::from_secs(10)),
        "new handshakes never saw the renewed certificate\n{}",
        server.log()
    );
    let run = traffic.join().unwrap();
    run.assert_relayed(150, &server);
    assert!(
        server.log().contains("TLS certificate reloaded"),
        "{}",
        server.log()
    );
}

#[test]
fn sighup_reloads_the_certificate_and_a_bad_one_keeps_the_old() {
    let pki = Pki::temporary();
    let live = pki.leaf("live");
    let renewed = pki.leaf("renewed");
    let server = Server::start(Conf {
        tls: true,
        tls_files: live.tls_files(),
        tls_reload_secs: 0, // only SIGHUP
        ..Conf::loopback_peers()
    });
    let port = server.tls.unwrap().port();
    install(&renewed, &live);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        presented(port, &pki.ca_pem),
        live.sha256,
        "no reload without SIGHUP"
    );
    server.signal(libc::SIGHUP);
    assert!(
        wait_presented(port, &pki.ca_pem, &renewed.sha256, Duration::from_secs(5)),
        "SIGHUP did not reload\n{}",
        server.log()
    );
    // A key that does not match the certificate: refused, the renewed pair stays.
    let stray = pki.leaf("stray");
    std::fs::copy(&stray.key, &live.key).unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("NOT reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = server.log();
    assert!(log.contains("TLS certificate NOT reloaded"), "{log}");
    assert!(
        !log.contains("BEGIN PRIVATE KEY"),
        "a key never reaches the log"
    );
    assert_eq!(presented(port, &pki.ca_pem), renewed.sha256);
    let v = probe(
        port,
        &["--ca", pki.ca_pem.to_str().unwrap(), "--mode", "binding"],
    );
    assert_eq!(v["answer"], "binding success", "{v}");
}
