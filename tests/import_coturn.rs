//! `turnpike import-coturn` on real coturn configurations: the example Debian's coturn package
//! ships (as shipped, and with every option it documents uncommented), and a few written the
//! way operators write them (tests/data/coturn/). Each import must pass `check-config`; one is
//! then served and probed, so the imported file is not only valid but works.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{KillOnDrop, PortBlock, turnpike_bin};

/// Runs the binary with `args`; (exit code, stdout, stderr).
fn turnpike(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(turnpike_bin())
        .args(args)
        .output()
        .expect("run turnpike");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Imports `input` into DIR/NAME.toml and checks it with check-config; the TOML and stderr.
fn import_and_check(input: &Path, dir: &Path) -> (String, String) {
    let name = input.file_name().unwrap().to_string_lossy().into_owned();
    let out = dir.join(format!("{name}.toml"));
    let out_s = out.to_str().unwrap();
    let (code, _, notes) = turnpike(&[
        "import-coturn",
        input.to_str().unwrap(),
        "-o",
        out_s,
        "--force",
    ]);
    assert_eq!(code, 0, "import of {}: {notes}", input.display());
    let (code, stdout, stderr) = turnpike(&["check-config", out_s]);
    assert_eq!(code, 0, "check-config {out_s}: {stdout}{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the output may hold secrets");
    (std::fs::read_to_string(&out).unwrap(), notes)
}

/// Debian's example configuration (coturn is installed by scripts/test).
fn debian_example() -> PathBuf {
    for path in [
        "/usr/share/doc/coturn/examples/etc/turnserver.conf",
        "/etc/turnserver.conf",
    ] {
        if Path::new(path).is_file() {
            return PathBuf::from(path);
        }
    }
    panic!(
        "no turnserver.conf from Debian's coturn package: apt-get install coturn (scripts/test does)"
    );
}

#[test]
fn debian_example_imports_as_shipped_and_with_every_option_on() {
    let dir = tempfile::tempdir().unwrap();
    let example = debian_example();
    let (toml, stderr) = import_and_check(&example, dir.path());
    assert!(toml.contains("# What did not carry over"), "{toml}");
    assert!(stderr.contains("note:"), "{stderr}");

    // Every option the example documents, uncommented (`#option=value` lines; prose comments
    // start with "# "): conflicting and placeholder values included, the import must still
    // give a valid file and a note for each option it cannot carry.
    let text = std::fs::read_to_string(&example).unwrap();
    let all: String = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        all.lines().count() > 80,
        "expected the documented options:\n{all}"
    );
    let every = dir.path().join("every-option.conf");
    std::fs::write(&every, &all).unwrap();
    let (toml, _) = import_and_check(&every, dir.path());
    for expected in [
        "secrets = [\"north\"]",
        "realm = \"mycompany.org\"",
        "external_ips = [\"60.70.80.91/172.17.19.101\", \"60.70.80.92/172.17.19.102\"]",
        "line ",
        "oauth: no equivalent",
        "psql-userdb=…",
        "hashed key",
        "private (RFC 1918",
    ] {
        assert!(toml.contains(expected), "`{expected}` missing:\n{toml}");
    }
    // Values of secret-bearing options never appear in the notes.
    assert!(!toml.contains("qwerty"), "{toml}");
    assert!(!toml.contains("<database-user-password>"), "{toml}");
}

#[test]
fn real_world_configurations_import_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coturn");
    let mut seen = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            seen += 1;
            import_and_check(&path, dir.path());
        }
    }
    assert!(seen >= 3, "tests/data/coturn/*.conf");

    let (toml, _) = import_and_check(&data.join("cloud-nat-tls.conf"), dir.path());
    for expected in [
        "address = \"10.0.1.17:443\"",
        "bind_ip = \"10.0.1.17\"",
        "external_ips = [\"198.51.100.23/10.0.1.17\"]",
        "ports = \"50000-59999\"",
        "\"legacy\" = \"An0ther-pass\"",
        "bandwidth_bps = 1250000",
        "max_allocation_lifetime_secs = 1800",
        "allow = [\"10.0.2.5\"]",
        "workers = 4",
        "level = \"debug\"",
        "certificate = \"/etc/letsencrypt/live/meet.example.net/fullchain.pem\"",
    ] {
        assert!(toml.contains(expected), "`{expected}` missing:\n{toml}");
    }
    assert!(
        !toml.contains("0x5c1b"),
        "a hashed key is named, never copied"
    );

    let (toml, _) = import_and_check(&data.join("nextcloud-talk.conf"), dir.path());
    assert!(toml.contains("\"100.64.0.0/10\""), "{toml}");
    assert!(toml.contains("\"fc00::/7\""), "{toml}");
    assert!(toml.contains("nonce_lifetime_secs = 600"), "{toml}");

    let (toml, _) = import_and_check(&data.join("matrix-synapse.conf"), dir.path());
    assert!(
        toml.contains(
            "secrets = [\"n0t-a-real-secret-but-long-enough-0123456789\", \"the-previous-secret\"]"
        ),
        "{toml}"
    );
    assert!(!toml.contains("transport = \"tcp\""), "no-tcp: {toml}");
    assert!(toml.contains("address = \"[::]:3478\""), "{toml}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = turnpike(&["import-coturn", "/nonexistent/turnserver.conf"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read /nonexistent/turnserver.conf"),
        "{stderr}"
    );
    // An existing output is never overwritten without --force.
    let input = dir.path().join("in.conf");
    std::fs::write(&input, "realm=a.example\n").unwrap();
    let out = dir.path().join("out.toml");
    std::fs::write(&out, "keep me").unwrap();
    let (code, _, stderr) = turnpike(&[
        "import-coturn",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    let (code, _, stderr) = turnpike(&[
        "import-coturn",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("realm = \"a.example\"")
    );
    // Without -o the TOML goes to standard output, the notes to standard error.
    let (code, stdout, stderr) = turnpike(&["import-coturn", input.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("realm = \"a.example\"") && !stdout.contains("note:"));
    assert!(stderr.contains("note:"));
}

/// A coturn configuration for loopback, imported, served by turnpike and probed: the
/// migration works end to end.
#[test]
fn an_imported_configuration_serves() {
    let ports = PortBlock::claim();
    let dir = tempfile::tempdir().unwrap();
    let port = ports.port(0);
    let http = ports.port(199);
    let conf = format!(
        "listening-ip=127.0.0.1\nlistening-port={port}\nrelay-ip=127.0.0.1\nmin-port={}\n\
         max-port={}\nuse-auth-secret\nstatic-auth-secret=imported-secret\nrealm=import.test\n\
         no-tls\nno-dtls\nfingerprint\nprometheus\nprometheus-port={http}\nno-cli\n",
        ports.port(100),
        ports.port(150),
    );
    let input = dir.path().join("turnserver.conf");
    std::fs::write(&input, conf).unwrap();
    let (toml, _) = import_and_check(&input, dir.path());
    // IPv6 relays would bind to an interface address; keep the test on loopback.
    let toml = toml.replace("[relay]\n", "[relay]\nbind_ipv6 = \"none\"\n");
    let config = dir.path().join("served.toml");
    std::fs::write(&config, toml).unwrap();
    let child = Command::new(turnpike_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _child = KillOnDrop(child);
    let url = format!("turn:127.0.0.1:{port}");
    let mut last = String::new();
    for _ in 0..50 {
        let (code, stdout, stderr) =
            turnpike(&["probe", &url, "--secret", "imported-secret", "--json"]);
        if code == 0 {
            let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(report["ok"], true);
            return;
        }
        last = format!("{stdout}{stderr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the imported configuration does not serve:\n{last}");
}
