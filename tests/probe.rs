//! `turnpike probe` against real servers: turnpike over UDP, TCP and TLS (a test CA given with
//! --ca), Debian's coturn over UDP, TCP and TLS, and the failures an operator meets (a wrong
//! password, a server that does not answer, a certificate that is not trusted), each with a
//! clear message and a non-zero exit.

mod common;

use std::process::Command;

use common::coturn::{COTURN_SECRET, Coturn};
use common::pki::Pki;
use common::{Conf, SECRET_ONE, STATIC_PASSWORD, STATIC_USER, Server, turnpike_bin};

/// Runs `turnpike probe ARGS`; (exit code, stdout, stderr).
fn probe(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(turnpike_bin())
        .arg("probe")
        .args(args)
        .env_remove("TURNPIKE_SECRET")
        .env_remove("TURNPIKE_PASSWORD")
        .output()
        .expect("run turnpike probe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A successful JSON report: every step ran and succeeded, with a relayed round trip.
fn assert_works(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, stdout, stderr) = probe(&all);
    assert_eq!(code, 0, "probe {args:?}:\n{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["failed"].is_null());
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for step in [
        "binding",
        "allocate",
        "allocate 2",
        "permission",
        "relay",
        "release",
    ] {
        assert!(steps.contains(&step), "{step} missing: {report:#}");
    }
    assert!(report["relay_rtt_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        report["mapped_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(report["relayed_addresses"].as_array().unwrap().len(), 1);
    report
}

#[test]
fn turnpike_works_over_udp_tcp_and_tls() {
    let pki = Pki::temporary();
    let leaf = pki.leaf("server");
    let server = Server::start(Conf {
        tcp: true,
        tls: true,
        tls_files: leaf.tls_files(),
        ..Conf::default()
    });
    let udp = format!("turn:{}", server.udp);
    let report = assert_works(&[&udp, "--secret", SECRET_ONE]);
    assert_eq!(report["transport"], "udp");
    // A long-term user, and the table output.
    let (code, stdout, _) = probe(&[&udp, "--user", STATIC_USER, "--password", STATIC_PASSWORD]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("relay ") && stdout.contains("ok: STUN"),
        "{stdout}"
    );

    let tcp = format!("turn:{}?transport=tcp", server.tcp.unwrap());
    let report = assert_works(&[&tcp, "--secret", SECRET_ONE]);
    assert_eq!(report["steps"][0]["step"], "connect");

    let tls = format!("turns:localhost:{}", server.tls.unwrap().port());
    let ca = pki.ca_pem.to_str().unwrap();
    let report = assert_works(&[&tls, "--secret", SECRET_ONE, "--ca", ca]);
    assert_eq!(report["transport"], "tls");

    // Not trusted without the test CA: the TLS step fails and says so.
    let (code, stdout, _) = probe(&[&tls, "--secret", SECRET_ONE]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("connect") && stdout.contains("FAILED") && stdout.contains("certificate"),
        "{stdout}"
    );
}

#[test]
fn coturn_works_over_udp_tcp_and_tls() {
    let coturn = Coturn::start();
    assert_works(&[
        &format!("turn:{}", coturn.listen),
        "--secret",
        COTURN_SECRET,
    ]);
    assert_works(&[
        &format!("turn:{}?transport=tcp", coturn.listen),
        "--secret",
        COTURN_SECRET,
    ]);
    assert_works(&[
        &format!("turns:localhost:{}", coturn.tls.port()),
        "--secret",
        COTURN_SECRET,
        "--ca",
        coturn.pki.ca_pem.to_str().unwrap(),
    ]);
}

#[test]
fn failures_are_named() {
    let server = Server::start(Conf::default());
    let udp = format!("turn:{}", server.udp);

    // A wrong password: the allocation step fails with 401, explained; exit 1.
    let (code, stdout, _) = probe(&[&udp, "--user", STATIC_USER, "--password", "wrong"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAILED: allocate: 401") && stdout.contains("credentials were refused"),
        "{stdout}"
    );
    let (code, stdout, _) = probe(&[&udp, "--secret", "not-the-secret", "--json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["failed"]
            .as_str()
            .unwrap()
            .starts_with("allocate: 401"),
        "{report:#}"
    );
    assert!(report["mapped_address"].is_string(), "binding worked");

    // Nothing listening (the server's HTTP port answers no UDP): the binding step fails.
    let silent = format!("turn:{}", server.http);
    let (code, stdout, _) = probe(&[&silent, "--secret", SECRET_ONE]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAILED: binding: no answer"), "{stdout}");

    // A bad URL or missing credentials: exit 2 with the reason.
    let (code, _, stderr) = probe(&["stun:127.0.0.1", "--secret", SECRET_ONE]);
    assert_eq!(code, 2);
    assert!(stderr.contains("expected turn:HOST"), "{stderr}");
    let (code, _, stderr) = probe(&[&udp]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--secret, or --user and --password"),
        "{stderr}"
    );
}
