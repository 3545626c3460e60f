//! Smoke versions of the reliability benches (`turnpike-bench churn | flood-relay | tcp-flood |
//! restart`, docs/reliability.md): the same code at small counts against the real binary, a
//! few seconds each, failing when the bench's own checks fail (descriptors not back to their
//! baseline after 2,000 allocations, an authenticated session losing a packet under a flood,
//! memory growing without bound under a TCP flood, clients not relaying again after a
//! SIGKILL and restart). The full-scale runs are not part of the suite.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One bench at a time: they measure a server's memory and share loopback addresses.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `turnpike-bench ARGS` (bounded by `limit`) and returns whether it succeeded and its
/// output.
fn bench(args: &[&str], limit: Duration) -> (bool, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike-bench"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("turnpike-bench runs");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "turnpike-bench {args:?} did not finish within {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status.success(), text)
}

fn assert_passes(name: &str, args: &[&str]) {
    let (ok, out) = bench(args, Duration::from_secs(120));
    assert!(ok, "{name} failed:\n{out}");
    assert!(out.contains(&format!("{name}: ok")), "{out}");
    assert!(!out.contains(" FAIL "), "{out}");
}

#[test]
fn churn_of_2000_allocations_returns_descriptors_and_memory_to_baseline() {
    assert_passes(
        "churn",
        &[
            "churn",
            "--count",
            "2000",
            "--wave",
            "500",
            "--clients",
            "4",
        ],
    );
}

#[test]
fn sessions_lose_nothing_and_memory_stays_flat_under_an_allocate_flood() {
    assert_passes(
        "flood-relay",
        &[
            "flood-relay",
            "--rate",
            "5000",
            "--sources",
            "50",
            "--seconds",
            "2",
            "--sessions",
            "10",
        ],
    );
}

#[test]
fn tcp_clients_are_served_and_memory_bounded_under_a_tcp_flood() {
    assert_passes(
        "tcp-flood",
        &[
            "tcp-flood",
            "--connections",
            "300",
            "--sources",
            "10",
            "--seconds",
            "3",
            "--clients",
            "4",
        ],
    );
}

#[test]
fn clients_relay_again_soon_after_a_sigkill_and_restart() {
    assert_passes("restart", &["restart", "--clients", "5", "--before", "2"]);
}
