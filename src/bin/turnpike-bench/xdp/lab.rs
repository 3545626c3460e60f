//! The network of `turnpike-bench xdp`: three namespaces joined by two veth pairs, every veth
//! end with NAPI (GRO on) in threaded mode, and the kernel threads that poll them.
//!
//! ```text
//!  load ns  c0 10.78.1.2 ── s1 10.78.1.1  server ns  s2 10.78.2.1 ── p0 10.78.2.2  peers ns
//! ```
//!
//! A veth's transmit hands the packet to its peer's receive queue and schedules the peer's NAPI
//! (or, without NAPI or from a sending end with TSO on, the CPU's backlog) on the same CPU;
//! without NAPI in threaded mode the receive work would run in softirq in the *sender's*
//! context, so it would be charged to whoever sent (the load generator, the server
//! or an XDP redirect), differently for each path. With threaded NAPI the receive work of each
//! end runs in its own kernel thread `napi/DEV-ID`, which [`Lab::build`] identifies when it
//! turns threaded mode on (the threads that appear then), so the CPU accounting can say whose
//! receive work it is.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The load generator's address (c0).
pub const LOAD_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 2);
/// The server's listener address (s1).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 1);
/// The server's relay address, on the peers' side (s2).
pub const RELAY_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 1);
/// The echo peers' address (p0).
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 2);
/// The peers' network.
pub const PEER_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 78, 2, 0), 24);
/// The server's veth ends (where turnpike-xdp attaches its program).
pub const SERVER_DEVS: [&str; 2] = ["s1", "s2"];

/// Prefix of the namespaces' names: `tpb<pid>load`, `tpb<pid>srv`, `tpb<pid>peer`.
const PREFIX: &str = "tpb";

/// The namespaces (deleted on drop, which deletes the veths) and the NAPI threads of the veths.
pub struct Lab {
    /// The load generator's namespace.
    pub load: String,
    /// The server's namespace.
    pub server: String,
    /// The echo peers' namespace.
    pub peers: String,
    /// NAPI threads of c0 and p0 (pid → name): the receive work of the load generator and
    /// of the echo peers.
    pub client_napi: BTreeMap<u32, String>,
    /// NAPI threads of s1 and s2 (pid → name): the server side's receive work, where the XDP
    /// program runs.
    pub server_napi: BTreeMap<u32, String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.load, &self.server, &self.peers] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed ({}): {}; this mode needs root, iproute2, iptables and ethtool",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

impl Lab {
    /// Makes the namespaces and veths (root), turns GRO and threaded NAPI on on every veth end,
    /// and records which NAPI threads belong to which end.
    pub fn build() -> anyhow::Result<Lab> {
        sweep_stale();
        let pid = std::process::id();
        let mut lab = Lab {
            load: format!("{PREFIX}{pid}load"),
            server: format!("{PREFIX}{pid}srv"),
            peers: format!("{PREFIX}{pid}peer"),
            client_napi: BTreeMap::new(),
            server_napi: BTreeMap::new(),
        };
        for n in [&lab.load, &lab.server, &lab.peers] {
            run(&["ip", "netns", "add", n])?;
            in_ns(n, &["ip", "link", "set", "lo", "up"])?;
        }
        let (load, srv, peer) = (&lab.load, &lab.server, &lab.peers);
        for (mine, other, theirs, my_ip, their_ip) in [
            ("s1", load, "c0", "10.78.1.1/24", "10.78.1.2/24"),
            ("s2", peer, "p0", "10.78.2.1/24", "10.78.2.2/24"),
        ] {
            in_ns(
                srv,
                &[
                    "ip", "link", "add", mine, "type", "veth", "peer", "name", theirs, "netns",
                    other,
                ],
            )?;
            in_ns(srv, &["ip", "addr", "add", my_ip, "dev", mine])?;
            in_ns(srv, &["ip", "link", "set", mine, "up"])?;
            in_ns(other, &["ip", "addr", "add", their_ip, "dev", theirs])?;
            in_ns(other, &["ip", "link", "set", theirs, "up"])?;
            // NAPI on every end (GRO on): the receiving end of a redirect needs it, and it is
            // what threaded mode moves into a kernel thread. Complete UDP checksums from the
            // local senders of the client and peer ends (a veth never finishes a partial one,
            // and the XDP program rewrites them); that also turns their TSO off. A veth passes
            // a sender's packet to its peer's NAPI only when the sending end has no TSO
            // (`veth_skb_is_eligible_for_gro`), otherwise to the backlog, in softirq in the
            // sender's context: so TSO off on the server's ends too (UDP does not use it).
            in_ns(other, &["ethtool", "-K", theirs, "gro", "on", "tx", "off"])?;
            in_ns(srv, &["ethtool", "-K", mine, "gro", "on", "tso", "off"])?;
            in_ns(
                srv,
                &[
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("net.ipv4.conf.{mine}.forwarding=1"),
                ],
            )?;
        }
        in_ns(srv, &["iptables", "-w", "5", "-P", "FORWARD", "DROP"])?;
        in_ns(load, &["ip", "route", "add", "default", "via", "10.78.1.1"])?;
        in_ns(peer, &["ip", "route", "add", "default", "via", "10.78.2.1"])?;
        let (load, srv, peer) = (lab.load.clone(), lab.server.clone(), lab.peers.clone());
        for (ns, dev) in [(&load, "c0"), (&peer, "p0")] {
            lab.client_napi.extend(threaded_napi(ns, dev)?);
        }
        for dev in SERVER_DEVS {
            lab.server_napi.extend(threaded_napi(&srv, dev)?);
        }
        Ok(lab)
    }
}

/// Turns threaded NAPI on for `dev` in `ns` and returns the kernel threads that appeared.
fn threaded_napi(ns: &str, dev: &str) -> anyhow::Result<BTreeMap<u32, String>> {
    let before = napi_threads();
    // /sys/class/net shows the namespace of whoever mounted it: `ip netns exec` mounts the
    // namespace's own.
    in_ns(
        ns,
        &[
            "sh",
            "-c",
            &format!("echo 1 > /sys/class/net/{dev}/threaded"),
        ],
    )?;
    let prefix = format!("napi/{dev}-");
    let new: BTreeMap<u32, String> = napi_threads()
        .into_iter()
        .filter(|(pid, name)| !before.contains_key(pid) && name.starts_with(&prefix))
        .collect();
    if new.is_empty() {
        bail!("no NAPI thread appeared for {dev} after `echo 1 > /sys/class/net/{dev}/threaded`");
    }
    Ok(new)
}

/// Every thread whose name starts with `napi/` (threaded NAPI pollers are kernel threads,
/// each a process of its own).
pub fn napi_threads() -> BTreeMap<u32, String> {
    let mut found = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if comm.starts_with("napi/") {
                found.insert(pid, comm.trim_end().to_string());
            }
        }
    }
    found
}

/// Deletes the namespaces of earlier runs whose process is gone (killed before it could).
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    let names: BTreeSet<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for name in names {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let role = &rest[digits.len()..];
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        if matches!(role, "load" | "srv" | "peer")
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            eprintln!("deleting network namespace {name}, left by a run that was killed");
            let _ = run(&["ip", "netns", "del", &name]);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP: deletes this run's namespaces and server directories, then
/// exits (status 130); the servers die with the bench (`PR_SET_PDEATHSIG`). Call it before any
/// other thread starts: it blocks those signals in this thread, which every thread started
/// later inherits, and waits for them on a thread of its own.
pub fn clean_up_on_signal() -> anyhow::Result<()> {
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset, which initialises it; the
    // set is then only passed to pthread_sigmask and sigwait by pointer.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `set` is a valid, initialised sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("pthread_sigmask failed");
        }
    }
    std::thread::spawn(move || {
        let mut sig = 0;
        // SAFETY: `set` is initialised and its signals are blocked in every thread.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        eprintln!("signal {sig}: deleting the namespaces and stopping");
        let pid = std::process::id();
        for role in ["load", "srv", "peer"] {
            let _ = run(&["ip", "netns", "del", &format!("{PREFIX}{pid}{role}")]);
        }
        let tmp = std::env::temp_dir();
        if let Ok(dir) = std::fs::read_dir(&tmp) {
            let mine = format!("turnpike-bench-{pid}-");
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&mine) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        std::process::exit(130);
    });
    Ok(())
}
