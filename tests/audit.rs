//! `turnpike audit` against real servers on loopback: turnpike with its default peer policy
//! shows no exposure; turnpike told to allow loopback shows it (and the data really arrives);
//! Debian's coturn with its default configuration shows its exposures (private ranges, cloud
//! metadata, reflection).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs the audit against `url` with `--json`; returns its exit code and report.
fn audit(url: &str, secret: &str) -> (i32, serde_json::Value, String) {
    let args = vec![
        "audit".to_owned(),
        url.to_owned(),
        "--secret".to_owned(),
        secret.to_owned(),
        "--json".to_owned(),
    ];
    let run = run_tool(&turnpike_bin(), &args, Duration::from_secs(120));
    let code = run.code.unwrap_or(-1);
    let json = run.output.find('{').map_or("", |i| &run.output[i..]);
    let report = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    (code, report, run.output)
}

/// The findings of `report` for `check` and `category`: (target, result, exposed).
fn findings(
    report: &serde_json::Value,
    check: &str,
    category: &str,
) -> Vec<(String, String, bool)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == check && f["category"] == category)
        .map(|f| {
            (
                f["target"].as_str().unwrap_or_default().to_owned(),
                f["result"].as_str().unwrap_or_default().to_owned(),
                f["exposed"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn turnpikes_default_configuration_shows_no_exposure() {
    let server = Server::start(Conf {
        tcp: true,
        ..Conf::default()
    });
    for transport in ["udp", "tcp"] {
        let port = if transport == "udp" {
            server.udp.port()
        } else {
            server.tcp.expect("tcp").port()
        };
        let url = format!("turn:127.0.0.1:{port}?transport={transport}");
        let (code, report, output) = audit(&url, SECRET_ONE);
        assert_eq!(code, 0, "{output}\n--- server log ---\n{}", server.log());
        assert_eq!(report["exposures"], 0, "{output}");
        // Every target was really asked for (refused by the policy, not left untried): the
        // test relays are on 127.0.0.1 and ::1, so both families are checked.
        for category in [
            "loopback",
            "own address",
            "private",
            "metadata",
            "ipv4-in-ipv6",
        ] {
            let rows = findings(&report, "udp relay", category);
            assert!(!rows.is_empty(), "{category}: {output}");
            for (target, result, _) in rows {
                assert_eq!(result, "refused (403)", "{target}: {output}");
            }
        }
        // Over the TCP listener the TCP Allocate is refused; the UDP port has no TCP listener.
        let tcp = findings(&report, "tcp allocations", "rfc 6062");
        let expected = if transport == "tcp" {
            "not offered (442)"
        } else {
            "not offered (no TCP listener)"
        };
        assert_eq!(tcp[0].1, expected, "{output}");
        if transport == "udp" {
            for (target, result, exposed) in findings(&report, "amplification", "401")
                .into_iter()
                .chain(findings(&report, "amplification", "binding"))
            {
                assert!(
                    !exposed && result.contains("bytes back"),
                    "{target}: {result}"
                );
            }
        }
    }
}

#[test]
fn an_allowed_loopback_is_reported_and_really_reached() {
    let server = Server::start(Conf::loopback_peers());
    let url = format!("turn:127.0.0.1:{}?transport=udp", server.udp.port());
    let (code, report, output) = audit(&url, SECRET_ONE);
    assert_eq!(code, 1, "{output}");
    let loopback = findings(&report, "udp relay", "loopback");
    assert!(
        loopback.iter().any(|(t, r, exposed)| *exposed
            && t.starts_with("127.0.0.1:")
            && r.contains("data delivered")),
        "{output}"
    );
    // What the operator did not allow stays refused.
    for (target, result, exposed) in findings(&report, "udp relay", "private") {
        assert!(!exposed, "{target}: {result}");
    }
}

/// Debian's coturn, started with a REST secret on free loopback ports and nothing else that
/// changes its defaults: `-n` (no configuration file), `--no-cli`, the listening, relay and TLS
/// ports and addresses (to run unprivileged on loopback beside other tests), the secret and a
/// realm, and a PID file and log it can write.
struct Coturn {
    port: u16,
    _child: KillOnDrop,
    _ports: PortBlock,
    dir: tempfile::TempDir,
}

impl Coturn {
    fn start(secret: &str) -> Coturn {
        let ports = PortBlock::claim();
        let port = ports.port(0);
        let dir = tempfile::tempdir().expect("temp dir");
        let relays = ports.from(10);
        let args: Vec<String> = vec![
            "-n".into(),
            "--no-cli".into(),
            "--listening-ip=127.0.0.1".into(),
            format!("--listening-port={port}"),
            format!("--alt-listening-port={}", ports.port(1)),
            format!("--tls-listening-port={}", ports.port(2)),
            format!("--alt-tls-listening-port={}", ports.port(3)),
            "--relay-ip=127.0.0.1".into(),
            format!("--min-port={}", relays.start()),
            format!("--max-port={}", relays.end()),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={secret}"),
            "--realm=coturn.test".into(),
            format!("--pidfile={}", dir.path().join("turnserver.pid").display()),
            format!("--log-file={}", dir.path().join("turnserver.log").display()),
        ];
        let child = Command::new(tool("turnserver"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn turnserver");
        let coturn = Coturn {
            port,
            _child: KillOnDrop(child),
            _ports: ports,
            dir,
        };
        // Ready once it answers a Binding request (at most 10 s).
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let request = binding_request(1);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            let _ = socket.send_to(&request, ("127.0.0.1", port));
            if let Ok(n) = socket.recv(&mut buf) {
                if is_binding_success(&buf[..n], &request) {
                    return coturn;
                }
            }
        }
        panic!("coturn did not start:\n{}", coturn.log());
    }

    fn log(&self) -> String {
        // coturn adds the date to the log file's name.
        std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".log"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }
}

#[test]
fn coturns_default_configuration_shows_its_exposures() {
    let coturn = Coturn::start("coturn-secret");
    let url = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let (code, report, output) = audit(&url, "coturn-secret");
    assert_eq!(code, 1, "{output}\n--- coturn log ---\n{}", coturn.log());
    let exposed = |check: &str, category: &str, target: &str| {
        findings(&report, check, category)
            .iter()
            .any(|(t, _, e)| *e && t == target)
    };
    // Private ranges and cloud metadata, over UDP and over its RFC 6062 TCP relays.
    for check in ["udp relay", "tcp relay"] {
        assert!(
            exposed(check, "private", "10.0.0.1:80"),
            "{check}: {output}"
        );
        assert!(
            exposed(check, "private", "192.168.0.1:80"),
            "{check}: {output}"
        );
        assert!(
            exposed(check, "metadata", "169.254.169.254:80"),
            "{check}: {output}"
        );
        assert!(
            exposed(check, "metadata", "168.63.129.16:80"),
            "{check}: {output}"
        );
    }
    assert_eq!(
        findings(&report, "tcp allocations", "rfc 6062")[0].1,
        "offered",
        "{output}"
    );
    // And its unauthenticated answers amplify more than 3x.
    assert!(
        findings(&report, "amplification", "binding")
            .iter()
            .chain(&findings(&report, "amplification", "401"))
            .any(|(_, _, e)| *e),
        "{output}"
    );
}
