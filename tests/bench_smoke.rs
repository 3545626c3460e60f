//! The load generator's smoke run: a few seconds of relaying through the real binary, over
//! ChannelData, Send indications and relay to relay, failing on any loss or on figures that make
//! no sense. Correctness only: performance is measured with `turnpike-bench compare`, never in
//! tests.

use std::process::Command;
use std::time::Duration;

#[test]
fn load_generator_smoke_run_relays_without_loss() {
    let (status, stdout, stderr) = run_bench(&["smoke"]);
    assert!(status.success(), "smoke failed:\n{stdout}\n{stderr}");
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

/// `turnpike-bench xdp` with every server kind, one short round each: namespaces and threaded
/// NAPI made and removed, the XDP program attached, coturn and the forwarder started in the
/// server's namespace, no loss, a CPU figure for each. Needs root (skipped, with a note, when
/// not); as root it fails when iproute2, ethtool, iptables or coturn is missing. Correctness
/// only: nothing is asserted on the figures.
#[test]
fn xdp_mode_smoke_run_with_every_server_kind() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: turnpike-bench xdp makes network namespaces, which needs root");
        return;
    }
    let servers = ["turnpike-xdp", "turnpike", "forwarder", "coturn"];
    let args = ["xdp", "--servers", &servers.join(",")];
    let more = ["--duration", "1", "--rounds", "1", "--sessions", "4"];
    let (status, stdout, stderr) = run_bench(&[&args[..], &more[..]].concat());
    assert!(
        status.success(),
        "turnpike-bench xdp failed:\n{stdout}\n{stderr}"
    );
    for name in servers {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("round 1 {name} ")))
            .unwrap_or_else(|| panic!("no run of {name}:\n{stdout}"));
        assert!(
            line.contains("lost    0 of"),
            "{name} lost packets:\n{stdout}"
        );
        assert!(
            !line.contains(" 0 pkt/CPU-s"),
            "{name}: no CPU counted:\n{stdout}"
        );
    }
    let left = namespaces_left_behind();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// Runs `turnpike-bench ARGS` for at most 60 s (a few seconds on an idle machine, a minute on a
/// loaded one); its exit status, stdout and stderr. Past the limit it gets SIGTERM (the xdp
/// mode then deletes its namespaces before it exits) and the test fails.
fn run_bench(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnpike-bench"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("turnpike-bench runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
            panic!("turnpike-bench {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (status, text(&out.stdout), text(&out.stderr))
}

/// Namespaces of `turnpike-bench xdp` runs (`tpb<pid>…`) whose process is gone.
fn namespaces_left_behind() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("tpb")
                .map(|r| {
                    r.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        })
        .collect()
}
