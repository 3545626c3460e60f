//! Interop: a Python peer built on PyNaCl (libsodium's crypto_box) and the `websockets`
//! package talks to the Rust client through the real registry. Python opens what Rust sealed,
//! Rust opens what Python sealed, and a blob Python replays is rejected by the Rust client.
//! scripts/test installs PyNaCl and websockets; a missing module fails the test.

mod common;
mod registry_support;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::KillOnDrop;
use registry_support::*;
use turnpike::client::Event;

fn python() -> String {
    std::env::var("TURNPIKE_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynacl_peer_and_rust_client_open_each_others_blobs() {
    let check = Command::new(python())
        .args(["-c", "import nacl.public, websockets.sync.client"])
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "PyNaCl and websockets are needed (scripts/test installs them: pip install pynacl websockets): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let registry = TestRegistry::start("");
    // Peers with long ids first: the welcomes of `rust` and of the Python peer, and the blob
    // `rust` seals, are larger than a fragment (src/registry/ws.rs), so both read messages
    // sent in fragments.
    let mut fillers = Vec::new();
    for i in 0..20 {
        let id = format!("filler-{i:02}-{}", "x".repeat(50));
        fillers.push(registry.client(&id, "p1").await.0);
    }
    let (mut rust, peers) = registry.client("rust", "p1").await;
    assert_eq!(peers.len(), 20, "{peers:?}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/registry_peer.py");
    let child = Command::new(python())
        .args([script, "--url", &registry.url(), "--token"])
        .arg(registry.token("py", "p1"))
        .args(["--peer", "rust", "--reply", "hello from python"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the Python peer");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let line = |what: &str| {
        let line = lines
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("the Python peer printed no {what} line"));
        let value: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_ne!(value["event"], "error", "{value}");
        value
    };
    let joined = line("joined");
    assert_eq!(joined["peer_id"], "py");
    assert_eq!(joined["peers"], 21, "{joined}");
    match next(&mut rust).await {
        Event::PeerJoined {
            peer_id,
            public_key,
            ..
        } => {
            assert_eq!(
                (peer_id.as_str(), &public_key),
                ("py", &joined["public_key"].as_str().unwrap().to_owned())
            );
        }
        other => panic!("{other:?}"),
    }

    // Rust seals, PyNaCl opens.
    let hello = "hello from rust ✓ ".repeat(100);
    rust.relay("py", hello.as_bytes()).await.unwrap();
    let received = line("received");
    assert_eq!(received["sender"], "rust");
    assert_eq!(received["message"], hello.as_str());

    // PyNaCl seals, Rust opens; the replayed copy is rejected.
    match next(&mut rust).await {
        Event::Relay { from, message } => {
            assert_eq!(
                (from.as_str(), message.as_slice()),
                ("py", &b"hello from python"[..])
            );
        }
        other => panic!("{other:?}"),
    }
    match next(&mut rust).await {
        Event::RelayRejected { from, reason } => {
            assert_eq!(from, "py");
            assert!(reason.contains("replay"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(line("sent")["event"], "sent");
    assert_eq!(line("done")["event"], "done");
    let status = child.0.wait().expect("wait for the Python peer");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).ok();
    assert!(status.success(), "the Python peer failed: {stderr}");
    drop(fillers);
}

/// The registry on a TLS listener that also serves HTTP (port 443 shared with TURN): a Python
/// `websockets` client joins over wss:// and the Rust peer on plain ws:// sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_style_client_joins_over_wss_on_the_shared_tls_port() {
    let conf = common::Conf {
        tls_http: true,
        extra_toml: format!("[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n"),
        ..common::Conf::default()
    };
    let server = common::Server::start(conf);
    let tls = server.tls_http.expect("a TLS listener serving HTTP");
    let registry = TestRegistry {
        addr: server.http,
        server,
    };
    let (mut rust, _) = registry.client("rust", "p1").await;
    let keys = turnpike::client::KeyPair::generate();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/registry_wss.py");
    let run = common::run_tool(
        std::path::Path::new(&python()),
        &[
            script.to_owned(),
            format!("wss://{tls}/v1/registry"),
            registry.token("browser", "p1"),
            keys.public_base64(),
        ],
        Duration::from_secs(20),
    );
    assert!(run.success(), "{run}");
    let welcome: serde_json::Value = serde_json::from_str(run.output.trim()).expect("JSON");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["peers"][0]["peer_id"], "rust");
    match next(&mut rust).await {
        Event::PeerJoined {
            peer_id,
            public_key,
            ..
        } => {
            assert_eq!(
                (peer_id.as_str(), public_key),
                ("browser", keys.public_base64())
            );
        }
        other => panic!("{other:?}"),
    }
}
