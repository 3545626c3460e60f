//! The TURN check page (`GET /check`) in headless Chromium (Debian's package, driven by
//! playwright-core; scripts/test installs both, no browser is downloaded): with an API key
//! after `#key=`, the page gets fresh credentials from /api/v1/ice-servers, gathers host and
//! relay candidates for the server's UDP, TCP and TLS TURN URLs, times a data channel relayed
//! through TURN at both ends, and says TURN works; with a wrong key it says why it cannot.
//! ICE stays on loopback; Chromium trusts the test CA through an NSS database in its HOME.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{browser_dir, require_chromium};
use common::*;
use serde_json::Value;

const API_KEY: &str = "check-page-test-api-key";

/// A HOME whose NSS database trusts `ca` for TLS servers (certutil from libnss3-tools), so
/// Chromium trusts the test server's certificate for turns:, as tests/browser.rs does.
fn nss_home(ca: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    for args in [
        vec!["-N", "-d", &db_arg, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db_arg,
            "-n",
            "turnpike-test-ca",
            "-t",
            "C,,",
            "-i",
            ca.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("certutil")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!("certutil: {e} (apt-get install libnss3-tools; scripts/test does)")
            });
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    }
    home
}

/// Runs tests/browser/check_page.mjs against `server` with `key` (Chromium's HOME is `home`);
/// its JSON line.
fn run_page(server: &Server, key: &str, home: &Path) -> Value {
    require_chromium();
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("check_page.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("KEY", key)
        .env("USER_DATA_DIR", profile.path())
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap());
    let mut child = KillOnDrop(command.spawn().expect("spawn node"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the check page did not end in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = std::fs::read_to_string(out.path()).unwrap();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the check page:\n{output}"));
    let result: Value = serde_json::from_str(line).unwrap();
    assert_eq!(result["ok"], true, "{output}\n{}", server.log());
    result
}

#[test]
fn chromium_finds_relay_candidates_on_every_transport_and_times_the_relay() {
    let pki = common::pki::Pki::temporary();
    let leaf = pki.leaf("localhost");
    let server = Server::start(Conf {
        tcp: true,
        tls: true,
        tls_files: leaf.tls_files(),
        // The TURN URLs the page gets name localhost, as the certificate does.
        http_extra: vec![
            format!("api_keys = [{API_KEY:?}]"),
            "public_host = \"localhost\"".into(),
        ],
        ..Conf::default()
    });
    let home = nss_home(&pki.ca_pem);
    let page = run_page(&server, API_KEY, home.path());
    let result = &page["result"];
    for transport in ["udp", "tcp", "tls"] {
        let t = &result["transports"][transport];
        assert_eq!(t["works"], true, "{transport}: {page:#}");
        assert!(t["relay"].as_u64().unwrap() >= 1, "{page:#}");
        assert!(t["host"].as_u64().unwrap() >= 1, "{page:#}");
    }
    assert_eq!(result["ok"], true, "{page:#}");
    let rtt = result["relay_rtt_ms"]
        .as_f64()
        .expect("a relayed round trip");
    assert!(rtt > 0.0 && rtt < 2000.0, "{rtt}");
    let verdict = page["verdict"].as_str().unwrap();
    assert!(verdict.starts_with("TURN works"), "{verdict}");
    eprintln!("check page: {verdict} | {}", page["rtt"]);
    assert!(page["rtt"].as_str().unwrap().contains("median round trip"));
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
}

#[test]
fn a_wrong_key_is_named_on_the_page() {
    let server = Server::start(Conf {
        http_extra: vec![format!("api_keys = [{API_KEY:?}]")],
        ..Conf::default()
    });
    let home = tempfile::tempdir().unwrap();
    let page = run_page(&server, "", home.path());
    assert_eq!(page["state"], "failed", "{page:#}");
    let verdict = page["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("TURN does not work: credentials refused (401)"),
        "{verdict}"
    );
    // The page itself: served to anyone, holds no secret, cannot be framed.
    let response = common::http::get(server.http, "/check");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert!(!response.body.contains(API_KEY));
}
