//! The demo page (`/demo`, `[http] demo = true`) used as a person would, in headless Chromium
//! (Debian's package, driven by playwright-core from npm; scripts/test installs both, no browser
//! is ever downloaded): tests/browser/link_demo.mjs opens /demo in two pages, connects as alice
//! and bob (tokens from the page's own POST /demo/token), picks bob in alice's peer list, chats
//! both ways, sends a file through the file picker, presses "Force relay" and "Allow p2p";
//! then the server restarts, both pages say they lost it and reconnected, and chat goes on.
//! Every check reads what the pages show: the path badge of each tab, the chat lines, the
//! received file's download link (whose bytes are hashed and compared with what was sent).

mod common;
mod registry_support;

use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{browser_dir, require_chromium};
use common::*;
use registry_support::JWT_SECRET;
use serde_json::Value;

#[test]
fn chromium_uses_the_demo_page_chat_file_and_forced_relay() {
    require_chromium();
    let mut server = Server::start(Conf {
        http_extra: vec!["demo = true".into()],
        extra_toml: format!("[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n"),
        ..Conf::default()
    });
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let control = tempfile::tempdir().unwrap();
    let mut command = Command::new("node");
    command
        .arg(browser_dir().join("link_demo.mjs"))
        .env("BASE", format!("http://{}", server.http))
        .env("USER_DATA_DIR", profile.path())
        .env("FILE_BYTES", "300000")
        .env("CONTROL", control.path())
        .env_remove("LOCAL")
        .stdin(std::process::Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap());
    let mut child = KillOnDrop(command.spawn().expect("spawn node"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut restarted = false;
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the demo run did not end in 120 s"
        );
        if !restarted && control.path().join("restart").exists() {
            server.restart(Duration::from_secs(10));
            std::fs::write(control.path().join("restarted"), "").unwrap();
            restarted = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = std::fs::read_to_string(out.path()).unwrap();
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from the demo run:\n{output}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert!(
        v["ok"] == Value::Bool(true),
        "the demo run failed: {v}\n{output}\n--- server log ---\n{}",
        server.log()
    );
    // What the driver saw, checked again here so the test states it.
    assert_eq!(v["file"]["bytes"], 300_000, "{v}");
    assert_eq!(v["file"]["name"], "notes.bin", "{v}");
    assert_eq!(v["forced"]["a"]["mode"], "relay", "{v}");
    assert_eq!(v["forced"]["b"]["mode"], "p2p", "{v}");
    assert_eq!(v["back"]["a"]["mode"], "p2p", "{v}");
    assert!(restarted, "the server restarted: {v}");
    let bob_log: Vec<&str> = v["restarted"]["b"]["log"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let said: Vec<&str> = bob_log
        .iter()
        .copied()
        .filter(|l| l.starts_with("alice: "))
        .collect();
    assert_eq!(
        said,
        [
            "alice: hello bob",
            "alice: now through the relay",
            "alice: direct again",
            "alice: me too"
        ],
        "bob's page shows alice's lines once each, in order: {v}"
    );
}
