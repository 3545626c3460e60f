//! The browser SDK's session paths in headless Chromium against the real server (Debian's
//! chromium driven by playwright-core from npm; scripts/test installs both, no browser is ever
//! downloaded). tests/browser/link_session.mjs runs two pages of one project, alice opening the
//! link to bob; `getToken` asks the driver, which mints the tokens (so the lifetimes are the
//! test's) and counts the calls.
//!
//! - reconnect: the server restarts on the same ports while both sides send on the (forced)
//!   relay; both sessions reconnect with back-off and a fresh token, the messages sent before,
//!   during and after the outage arrive exactly once, in order, and the link returns to p2p.
//! - reauth: tokens that live 4 s and `registry.token_warning_secs = 2`: the SDK answers every
//!   `token_expiring` with `reauth` and a token from `getToken`; the connection outlives three
//!   token lifetimes without a disconnect, and relayed messages flow all along.
//! - attest: with `trustedIssuerKeys`, two peers with tokens and attestations from `turnpike
//!   token --attest --signing-key` reach the relay (ICE cannot connect) and exchange messages;
//!   alice's link to a third peer without an attestation is refused the relay
//!   (`not_attested`), and that peer gets nothing.
//! - reload: bob reloads his page mid-link; alice's link (the same object) goes on with bob's
//!   new incarnation (a new epoch): what alice sent while bob was away arrives once, messages
//!   flow both ways, and the link is p2p again.
//! - disconnect: an operator disconnects bob through the admin API (close code 4006): bob's
//!   session reports `disconnected` and closes for good (it reconnects after other closes),
//!   alice sees `peer_left`, and the admin API no longer lists bob.
//!
//! The cases share the machine's two cores with other work, so they run one at a time.

mod common;
mod registry_support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::browser::{browser_dir, require_chromium};
use common::*;
use registry_support::JWT_SECRET;
use serde_json::Value;

const FALLBACK_MS: u64 = 2000;
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const ADMIN_KEY: &str = "admin-key-for-the-disconnect-case";

/// What the driver may ask the test to do mid-case, through files in its control directory.
#[derive(Clone, Copy, PartialEq)]
enum Control {
    /// Nothing.
    None,
    /// Restart the server on the same ports (`restart` → `restarted`).
    Restart,
    /// Disconnect bob through the admin API (`disconnect` → `disconnected`).
    Disconnect,
}

fn start_server(registry_extra: &str) -> Server {
    Server::start(Conf {
        extra_toml: format!(
            "[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n{registry_extra}"
        ),
        http_extra: vec![format!("admin_keys = [{ADMIN_KEY:?}]")],
        ..Conf::default()
    })
}

/// The admin API's answer to `method` on the registry peers of `project` (with `query`).
fn admin_peers(server: &Server, method: &str, project: &str, query: &str) -> (u16, Value) {
    let bearer = format!("Bearer {ADMIN_KEY}");
    let path = format!("/admin/v1/registry/peers?project={project}{query}");
    let r = common::http::request(
        server.http,
        method,
        &path,
        &[("Authorization", bearer.as_str())],
        None,
    )
    .expect("admin API");
    (r.status, r.json())
}

/// Runs the driver with `case`, doing what `control` names when the driver asks for it (a
/// server restart, an admin disconnect). Returns its JSON, asserting `ok`.
fn run_case(server: &mut Server, case: &str, extra: &[(&str, String)], control: Control) -> Value {
    require_chromium();
    let profile = tempfile::tempdir().unwrap();
    let control_dir = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("link_session.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("REGISTRY", format!("ws://{}/v1/registry", server.http))
        .env("CASE", case)
        .env("JWT_SECRET", JWT_SECRET)
        .env("PROJECT", format!("session-{case}"))
        .env("FALLBACK_MS", FALLBACK_MS.to_string())
        .env("CONTROL", control_dir.path())
        .env("USER_DATA_DIR", profile.path())
        .stdin(std::process::Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap());
    for (k, v) in extra {
        command.env(k, v);
    }
    let mut child = KillOnDrop(command.spawn().expect("spawn node"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = false;
    let mut peers_after = Value::Null;
    let (ask, answer) = match control {
        Control::None => ("", ""),
        Control::Restart => ("restart", "restarted"),
        Control::Disconnect => ("disconnect", "disconnected"),
    };
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the browser run did not end in 120 s"
        );
        if control != Control::None && !done && control_dir.path().join(ask).exists() {
            match control {
                Control::Restart => server.restart(Duration::from_secs(10)),
                Control::Disconnect => {
                    let project = format!("session-{case}");
                    let (status, body) = admin_peers(server, "DELETE", &project, "&peer=bob");
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["close_code"], 4006, "{body}");
                }
                Control::None => unreachable!(),
            }
            std::fs::write(control_dir.path().join(answer), "").unwrap();
            done = true;
        }
        if control == Control::Disconnect
            && peers_after.is_null()
            && control_dir.path().join("check").exists()
        {
            let (status, body) = admin_peers(server, "GET", &format!("session-{case}"), "");
            peers_after = serde_json::json!({ "status": status, "body": body });
            std::fs::write(control_dir.path().join("checked"), "").unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = std::fs::read_to_string(out.path()).unwrap();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the browser run:\n{output}"));
    let mut v: Value = serde_json::from_str(line).unwrap();
    v["peersAfter"] = peers_after;
    assert!(
        v["ok"] == Value::Bool(true),
        "browser case {case} failed: {v}\n{output}\n--- server log ---\n{}",
        server.log()
    );
    assert_eq!(
        control != Control::None,
        done,
        "the control step {ask:?}: {v}"
    );
    v
}

fn events(v: &Value, side: &str) -> Vec<String> {
    v[side]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn chromium_session_reconnects_after_a_server_restart_and_the_link_carries_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server("");
    let v = run_case(&mut server, "reconnect", &[], Control::Restart);
    for side in ["a", "b"] {
        let ev = events(&v, side);
        assert!(
            ev.contains(&"disconnected".to_owned()) && ev.contains(&"reconnected".to_owned()),
            "{side}: {v}"
        );
        assert_eq!(v[side]["mode"], "p2p", "{side}: {v}");
    }
    // A fresh token for every reconnect.
    for (peer, side) in [("alice", "a"), ("bob", "b")] {
        let before = v["tokenCallsBefore"][peer].as_u64().unwrap();
        let after = v["tokenCalls"][peer].as_u64().unwrap();
        assert!(after > before, "{peer} asked getToken again: {v}");
        assert!(v[side]["stats"]["relayBytes"].as_u64().unwrap() > 0, "{v}");
    }
}

#[test]
fn chromium_session_reauths_before_its_tokens_expire() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server("token_warning_secs = 2\n");
    let v = run_case(
        &mut server,
        "reauth",
        &[("TOKEN_TTL_SECS", "4".into())],
        Control::None,
    );
    for (peer, side) in [("alice", "a"), ("bob", "b")] {
        let ev = events(&v, side);
        assert!(
            !ev.iter().any(|e| e == "disconnected" || e == "close"),
            "{peer} was never cut off: {v}"
        );
        // The first token, then one per warning: 12 s of 4 s tokens warned 2 s early.
        let calls = v["tokenCalls"][peer].as_u64().unwrap();
        assert!(calls >= 4, "{peer} asked getToken {calls} times: {v}");
        assert_eq!(v[side]["mode"], "relay", "{v}");
    }
    assert!(v["seconds"].as_f64().unwrap() >= 12.0, "{v}");
    let log = server.log();
    assert!(!log.contains("token_expired"), "{log}");
}

#[test]
fn chromium_attested_peers_use_the_relay_and_an_unattested_one_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let issuer = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let key = dir.path().join("issuer.key");
    let public = dir.path().join("issuer.pub.pem");
    std::fs::write(&key, issuer.serialize_pem()).unwrap();
    std::fs::write(&public, issuer.public_key_pem()).unwrap();
    let project = "session-attest";
    let cli = |args: &[&str]| -> String {
        let out = Command::new(turnpike_bin())
            .arg("token")
            .arg("--signing-key")
            .arg(&key)
            .args(args)
            .output()
            .expect("run turnpike token");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let attest_a = cli(&["--attest", "--sub", "alice", "--project", project]);
    let attest_b = cli(&["--attest", "--sub", "bob", "--project", project]);
    let trusted = cli(&["--issuer-public-key"]);
    let mut server = start_server(&format!(
        "jwt_public_keys = [{:?}]\n",
        public.display().to_string()
    ));
    let v = run_case(
        &mut server,
        "attest",
        &[
            ("ATTEST_A", attest_a),
            ("ATTEST_B", attest_b),
            ("TRUSTED_KEY", trusted),
        ],
        Control::None,
    );
    assert_eq!(v["a"]["mode"], "relay", "{v}");
    assert_eq!(v["b"]["mode"], "relay", "{v}");
    for side in ["a", "b"] {
        assert!(
            v[side]["errors"].as_array().unwrap().is_empty(),
            "{side}: {v}"
        );
        assert_eq!(v[side]["received"], 10, "{v}");
    }
    let to_carol = &v["a"]["others"]["carol"];
    assert!(
        to_carol["errors"].to_string().contains("not_attested: "),
        "{v}"
    );
    assert_ne!(to_carol["mode"], "relay", "{v}");
}

#[test]
fn chromium_link_goes_on_with_the_peers_new_incarnation_after_a_reload() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server("");
    let v = run_case(&mut server, "reload", &[], Control::None);
    assert_ne!(v["oldEpoch"], v["newEpoch"], "{v}");
    assert_eq!(v["a"]["mode"], "p2p", "{v}");
    assert_eq!(v["b"]["mode"], "p2p", "{v}");
}

#[test]
fn chromium_session_disconnected_by_an_operator_reports_it_and_stays_away() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = start_server("");
    let v = run_case(&mut server, "disconnect", &[], Control::Disconnect);
    let bob = events(&v, "b");
    assert!(
        v["b"]["errors"]
            .to_string()
            .contains("session disconnected: an operator disconnected this peer"),
        "{v}"
    );
    assert!(bob.contains(&"close".to_owned()), "{v}");
    assert!(
        !bob.iter()
            .any(|e| e == "reconnected" || e == "disconnected"),
        "bob came back or treated 4006 as an outage: {v}"
    );
    assert!(events(&v, "a").contains(&"peer_left".to_owned()), "{v}");
    // Read 3 s after the disconnect, alice still connected.
    let peers = v["peersAfter"]["body"]["peers"].to_string();
    assert!(
        v["peersAfter"]["status"] == 200 && peers.contains("alice") && !peers.contains("bob"),
        "{v}"
    );
}
