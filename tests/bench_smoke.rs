//! The load generator's smoke run: a few seconds of relaying through the real binary, over
//! ChannelData, Send indications and relay to relay, failing on any loss or on figures that make
//! no sense. Correctness only: performance is measured with `turnpike-bench compare`, never in
//! tests.

use std::process::Command;
use std::time::Duration;

#[test]
fn load_generator_smoke_run_relays_without_loss() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike-bench"))
        .arg("smoke")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("turnpike-bench runs");
    // Bounded: the smoke run takes a few seconds; give it a minute on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("turnpike-bench smoke did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "smoke failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("loss      0 of"))
            .count(),
        3,
        "{stdout}"
    );
    assert!(stdout.contains("smoke: ok"), "{stdout}");
}
