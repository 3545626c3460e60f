//! A real browser through turnpike: headless Chromium (Debian's package, driven by
//! playwright-core from npm; scripts/test installs both, no browser is ever downloaded) with two
//! RTCPeerConnections restricted to relay candidates (iceTransportPolicy "relay"), over
//! `turn:…?transport=udp`, `turn:…?transport=tcp` and `turns:`. A DataChannel carries 200
//! messages that are echoed back, and getStats() must show a relay/relay pair whose local
//! candidate reached turnpike with the expected protocol.
//!
//! The two browser peers talk relay to relay: each sends to the other's relayed address on
//! 127.0.0.1, which turnpike allows because it is its own relay address, with the default peer
//! policy (loopback peers denied) left as it is. Chromium trusts the test CA through an NSS
//! database in a temporary HOME (certutil from libnss3-tools).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::browser::{browser_dir, require_chromium};
use common::pki::Pki;
use common::*;
use serde_json::Value;
use turnpike::proto::credentials;

const MESSAGES: u64 = 200;

/// A HOME whose NSS database trusts `ca` for TLS servers.
fn nss_home(ca: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let status = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("certutil: {e} (apt-get install libnss3-tools; scripts/test does)")
            });
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    };
    status(&["-N", "-d", &db_arg, "--empty-password"]);
    status(&[
        "-A",
        "-d",
        &db_arg,
        "-n",
        "turnpike-test-ca",
        "-t",
        "C,,",
        "-i",
        ca.to_str().unwrap(),
    ]);
    home
}

/// Runs the page once with `url`; returns the script's JSON.
fn relay_in_chromium(url: &str, home: &Path, server: &Server) -> Value {
    let script = browser_dir().join("webrtc_relay.mjs");
    require_chromium();
    let profile = tempfile::tempdir().unwrap();
    let credential = credentials::mint(SECRET_ONE.as_bytes(), "browser", unix_now(), 3600);
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("node")
        .arg(&script)
        .env("HOME", home)
        .env("ICE_URL", url)
        .env("ICE_USERNAME", &credential.username)
        .env("ICE_CREDENTIAL", &credential.password)
        .env("USER_DATA_DIR", profile.path())
        .env("MESSAGES", MESSAGES.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .spawn()
        .expect("spawn node");
    let mut child = KillOnDrop(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the browser run did not end in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = std::fs::read_to_string(out.path()).unwrap();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the browser run:\n{output}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert!(
        v["ok"] == Value::Bool(true),
        "browser run over {url} failed: {v}\n{output}\n--- server log ---\n{}",
        server.log()
    );
    v
}

#[test]
fn chromium_relays_a_data_channel_over_udp_tcp_and_tls() {
    let pki = Pki::temporary();
    let leaf = pki.leaf("browser");
    let server = Server::start(Conf {
        tcp: true,
        tls: true,
        tls_files: leaf.tls_files(),
        ..Conf::default()
    });
    let home = nss_home(&pki.ca_pem);
    let cases = [
        (format!("turn:{}?transport=udp", server.udp), "udp"),
        (format!("turn:{}?transport=tcp", server.tcp.unwrap()), "tcp"),
        (
            format!("turns:{}?transport=tcp", server.tls.unwrap()),
            "tls",
        ),
    ];
    for (url, protocol) in cases {
        let v = relay_in_chromium(&url, home.path(), &server);
        assert_eq!(v["received"], Value::from(MESSAGES), "{url}: {v}");
        assert_eq!(v["inOrder"], Value::Bool(true), "{url}: {v}");
        assert_eq!(v["local"]["type"], "relay", "{url}: {v}");
        assert_eq!(v["remote"]["type"], "relay", "{url}: {v}");
        assert_eq!(v["local"]["relayProtocol"], protocol, "{url}: {v}");
        // Both ends are turnpike's relayed addresses.
        assert_eq!(v["local"]["address"], "127.0.0.1", "{url}: {v}");
        assert_eq!(v["remote"]["address"], "127.0.0.1", "{url}: {v}");
        let port = v["remote"]["port"].as_u64().unwrap() as u16;
        assert!(server.relay_ports.contains(&port), "{url}: {v}");
    }
}
