//! The Debian package (`scripts/deb`, cargo-deb, `[package.metadata.deb]`): built from the
//! binary under test, its contents, conffiles and maintainer scripts checked, installed,
//! removed and purged in a throwaway root (`dpkg --root` with the scripts run outside a chroot
//! under DPKG_ROOT, so the system user is made in the throwaway root, never on this machine),
//! and its systemd unit accepted by `systemd-analyze verify`. Needs root (dpkg), cargo-deb,
//! dpkg-deb, useradd and systemd-analyze (scripts/test installs what is missing).

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command; its output, or a panic with it when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/test installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// dpkg on the throwaway root, scripts run outside a chroot with DPKG_ROOT set.
fn dpkg(root: &Path, args: &[&str]) -> String {
    let root_arg = format!("--root={}", root.display());
    let mut all = vec![
        root_arg.as_str(),
        "--force-script-chrootless",
        // libc6, adduser and passwd are not "installed" in an empty root.
        "--force-depends",
        "--log=/dev/null",
    ];
    all.extend_from_slice(args);
    run("dpkg", &all)
}

/// The package built from the binary under test (`--profile dev`: the debug build).
fn build_package(out: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = manifest.join("scripts/deb");
    run(
        script.to_str().unwrap(),
        &[
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--quiet",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let debs: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    debs[0].clone()
}

/// An empty root dpkg can install into, with the account files useradd needs.
fn throwaway_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for d in [
        "etc",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/info",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    for (file, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("etc/group", "root:x:0:\n"),
        ("etc/shadow", "root:*:19000:0:99999:7:::\n"),
        ("etc/gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.join(file), text).unwrap();
    }
    root
}

/// The turnpike entry of an account file of the root (`passwd` or `group`), if any.
fn account(root: &Path, file: &str) -> Option<Vec<String>> {
    std::fs::read_to_string(root.join("etc").join(file))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("turnpike:"))
        .map(|l| l.split(':').map(str::to_owned).collect())
}

#[test]
fn the_package_builds_installs_and_purges_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let deb = build_package(dir.path());
    let deb_s = deb.to_str().unwrap();

    // The control file and the conffile.
    let info = run("dpkg-deb", &["-I", deb_s]);
    for expected in [
        "Package: turnpike",
        "Section: net",
        "adduser",
        "conffiles",
        "postinst",
        "prerm",
        "postrm",
    ] {
        assert!(info.contains(expected), "`{expected}` missing:\n{info}");
    }
    let control = dir.path().join("control");
    run("dpkg-deb", &["-e", deb_s, control.to_str().unwrap()]);
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/turnpike/turnpike.toml");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{script} executable");
        run("sh", &["-n", path.to_str().unwrap()]);
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system"), "{postinst}");
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(
        postrm.contains("purge") && postrm.contains("deluser"),
        "{postrm}"
    );

    // The files, their modes and owners.
    let contents = run("dpkg-deb", &["-c", deb_s]);
    let entry = |path: &str| -> String {
        contents
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")) || l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{contents}"))
            .to_owned()
    };
    assert!(entry("usr/bin/turnpike").starts_with("-rwxr-xr-x 0/0"));
    assert!(entry("etc/turnpike/turnpike.toml").starts_with("-rw-r----- 0/0"));
    assert!(entry("lib/systemd/system/turnpike.service").starts_with("-rw-r--r-- 0/0"));
    for doc in [
        "usr/share/doc/turnpike/README.md",
        "usr/share/doc/turnpike/copyright",
        "usr/share/doc/turnpike/docs/admin-api.md",
        "usr/share/doc/turnpike/dashboards/turnpike.json",
    ] {
        entry(doc);
    }

    // Install into the throwaway root; this machine's accounts stay as they are.
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let root = throwaway_root(dir.path());
    dpkg(&root, &["-i", deb_s]);
    let installed = root.join("usr/bin/turnpike");
    // The binary under test (stripped by cargo-deb): the same version answers.
    assert_eq!(
        run(installed.to_str().unwrap(), &["--version"]),
        run(common::turnpike_bin().to_str().unwrap(), &["--version"]),
    );
    let user = account(&root, "passwd").expect("postinst made the turnpike user");
    let group = account(&root, "group").expect("postinst made the turnpike group");
    assert_eq!(user[3], group[2], "the user's primary group is turnpike");
    assert_eq!(user[5], "/var/lib/turnpike");
    assert_eq!(user[6], "/usr/sbin/nologin");
    let gid: u32 = group[2].parse().unwrap();
    for (path, mode) in [
        ("etc/turnpike", 0o750),
        ("etc/turnpike/turnpike.toml", 0o640),
    ] {
        let meta = std::fs::metadata(root.join(path)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
        assert_eq!((meta.uid(), meta.gid()), (0, gid), "{path}: root:turnpike");
    }
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
    let config = root.join("etc/turnpike/turnpike.toml");
    let checked = run(
        installed.to_str().unwrap(),
        &["check-config", config.to_str().unwrap()],
    );
    assert!(checked.contains(": ok"), "{checked}");
    let status = run(
        "dpkg",
        &[&format!("--root={}", root.display()), "-s", "turnpike"],
    );
    assert!(status.contains("Status: install ok installed"), "{status}");

    // The unit, against the installed tree (ExecStart= names /usr/bin/turnpike). systemd's
    // own targets and slices, and /bin/kill of ExecReload=, come from this machine.
    let units = root.join("lib/systemd/system");
    for entry in std::fs::read_dir("/lib/systemd/system").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let keep = path
            .extension()
            .is_some_and(|e| e == "target" || e == "slice");
        if keep && path.is_file() && !units.join(&name).exists() {
            std::fs::copy(&path, units.join(&name)).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.join("bin/kill")).unwrap();
    // It prints nothing for a sound unit; a warning (an unknown value, a missing file) fails.
    let said = run(
        "systemd-analyze",
        &[
            "verify",
            &format!("--root={}", root.display()),
            "/lib/systemd/system/turnpike.service",
        ],
    );
    assert!(said.trim().is_empty(), "systemd-analyze verify:\n{said}");

    // Remove: the binary goes, the configuration (a conffile) and the user stay.
    std::fs::create_dir_all(root.join("var/lib/turnpike")).unwrap();
    std::fs::write(root.join("var/lib/turnpike/revocations.json"), "[]").unwrap();
    dpkg(&root, &["-r", "turnpike"]);
    assert!(!installed.exists());
    assert!(!root.join("lib/systemd/system/turnpike.service").exists());
    assert!(config.exists(), "a removed package keeps its conffile");
    assert!(account(&root, "passwd").is_some());

    // Purge: the configuration, the state directory, the user and the group go.
    dpkg(&root, &["-P", "turnpike"]);
    assert!(!config.exists());
    assert!(!root.join("etc/turnpike").exists());
    assert!(!root.join("var/lib/turnpike").exists());
    assert!(account(&root, "passwd").is_none());
    assert!(account(&root, "group").is_none());
    let listed = Command::new("dpkg")
        .args([&format!("--root={}", root.display()), "-s", "turnpike"])
        .output()
        .unwrap();
    assert!(!listed.status.success(), "dpkg no longer knows the package");
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
}
