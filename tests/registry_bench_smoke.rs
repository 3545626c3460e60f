//! The registry bench's smoke run: `turnpike-bench registry` with small counts against the
//! real binary, a two-node cluster of it on a `redis-server` the bench starts (Debian's;
//! scripts/test installs it) and the Node `ws` relay (benches/node-ws-relay), so that the
//! bench stays runnable. Correctness only (every offer delivered, figures that make sense): performance
//! is measured with the full bench (docs/performance.md), never in tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn registry_bench_smoke_run_delivers_every_offer() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike-bench"))
        .args([
            "registry",
            "--servers",
            "turnpike,turnpike-cluster,node-ws",
            "--nodes",
            "2",
            "--peers",
            "10",
            "--offers",
            "20",
            "--idle",
            "50",
            "--rounds",
            "1",
            "--limit",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("turnpike-bench runs");
    // Bounded: a few seconds; a minute on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("turnpike-bench registry did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "the bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for server in ["turnpike ", "turnpike-cluster ", "node-ws "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("round 1 {server}")) && l.contains("200 offers")),
            "{server}: every offer delivered:\n{stdout}"
        );
    }
    // A figure for each node.
    let cluster = stdout
        .lines()
        .find(|l| l.starts_with("round 1 turnpike-cluster "))
        .expect("the cluster's line");
    let per_node = cluster
        .split("per node: ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("per-node figures: {cluster}"));
    assert_eq!(per_node.split(", ").count(), 2, "{cluster}");
    assert!(stdout.contains("registry bench: ok"), "{stdout}");
}
