//! Network namespaces for tests that need a real network failure, not a flag: namespaces and
//! veth pairs made with iproute2, NAT routers made with iptables (MASQUERADE), firewall rules
//! inserted and removed mid-test, and programs (turnpike, Chromium) run inside a namespace.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); a test that cannot create a namespace fails
//! with the reason, it never skips. Every namespace gets a unique name (`tpl<pid>n<k><role>`)
//! and is deleted when its [`Netns`] is dropped, on panic too; deleting a namespace deletes
//! its veth ends and their peers. Namespaces left behind by a test process that was killed
//! (so never dropped) are swept by the next one: a `tpl<pid>…` whose process is gone.
//!
//! Veth ends are created directly inside their namespaces, so their names only need to be
//! unique per namespace and nothing is ever added to the host's own network namespace.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::tools::{ToolRun, run_tool};

/// How long one `ip`/`iptables`/`sysctl` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(10);

/// The prefix of every namespace this harness creates.
const PREFIX: &str = "tpl";

/// A network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with its loopback up. `role` (a few letters) ends the name, so
    /// `ip netns list` shows what each is for. Panics with the reason when the machine does not
    /// allow it (not root, no CAP_NET_ADMIN): such a test fails, never skips.
    pub fn create(role: &str) -> Netns {
        static SWEEP: Once = Once::new();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        SWEEP.call_once(sweep_stale);
        assert!(
            role.len() <= 6 && role.bytes().all(|b| b.is_ascii_alphanumeric()),
            "role {role:?}: at most 6 letters or digits"
        );
        let name = format!(
            "{PREFIX}{}n{}{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let run = ip(&["netns", "add", &name]);
        assert!(
            run.success(),
            "cannot create network namespace {name}: this test needs root (CAP_NET_ADMIN, \
             CAP_SYS_ADMIN) and iproute2 (scripts/test installs it)\n{run}"
        );
        let ns = Netns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `args` inside the namespace (bounded); `Err` with the output when it fails.
    pub fn try_run(&self, args: &[&str]) -> Result<ToolRun, ToolRun> {
        let mut all = vec!["netns".to_owned(), "exec".into(), self.name.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        let run = run_tool(Path::new("ip"), &all, COMMAND_LIMIT);
        if run.success() { Ok(run) } else { Err(run) }
    }

    /// Runs `args` inside the namespace and panics with the output when it fails.
    pub fn run(&self, args: &[&str]) -> ToolRun {
        self.try_run(args)
            .unwrap_or_else(|run| panic!("in namespace {}: {run}", self.name))
    }

    /// A command that runs `program` inside the namespace (to spawn a long-lived process).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Writes an executable `dir/name` that runs `program` with its arguments inside the
    /// namespace: what playwright-core's `executablePath` takes to launch Chromium in it (its
    /// control pipe is inherited, so it does not cross the namespace boundary).
    pub fn wrapper(&self, dir: &Path, name: &str, program: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        let script = format!(
            "#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n",
            self.name,
            program.display()
        );
        std::fs::write(&path, script).expect("write the wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the wrapper");
        path
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it creates live in the
    /// namespace (and stay there when handed back), without a process of their own.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/run/netns").join(&self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        std::thread::spawn(move || {
            // SAFETY: setns(2) on a namespace file we hold open; it only changes this thread's
            // network namespace (the thread ends after `f`).
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, setting: &str) {
        self.run(&["sysctl", "-q", "-w", setting]);
    }

    /// Adds `rule` (iptables arguments after the command, such as `INPUT -p udp -j DROP`) at
    /// the top of its chain; the rule is deleted when the returned guard drops.
    pub fn iptables_insert<'a>(&'a self, table: &str, rule: &[&str]) -> IptablesRule<'a> {
        let mut args = vec!["iptables", "-w", "5", "-t", table, "-I"];
        args.extend_from_slice(rule);
        self.run(&args);
        IptablesRule {
            ns: self,
            table: table.to_owned(),
            rule: rule.iter().map(|s| s.to_string()).collect(),
            removed: false,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let run = ip(&["netns", "del", &self.name]);
        if !run.success() && !std::thread::panicking() {
            panic!("cannot delete network namespace {}: {run}", self.name);
        }
    }
}

/// An iptables rule in a namespace, deleted on drop (or by [`IptablesRule::remove`]).
pub struct IptablesRule<'a> {
    ns: &'a Netns,
    table: String,
    rule: Vec<String>,
    removed: bool,
}

impl IptablesRule<'_> {
    /// Deletes the rule now.
    pub fn remove(mut self) {
        self.delete();
    }

    fn delete(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        let mut args = vec!["iptables", "-w", "5", "-t", &self.table, "-D"];
        args.extend(self.rule.iter().map(String::as_str));
        if let Err(run) = self.ns.try_run(&args) {
            if !std::thread::panicking() {
                panic!("cannot delete the iptables rule {:?}: {run}", self.rule);
            }
        }
    }
}

impl Drop for IptablesRule<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A veth pair from `a` (end `a_name`, address `a_addr`/`prefix`) to `b`, both ends up.
pub fn veth(a: &Netns, a_name: &str, a_addr: &str, b: &Netns, b_name: &str, b_addr: &str) {
    a.run(&[
        "ip", "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", &b.name,
    ]);
    for (ns, dev, addr) in [(a, a_name, a_addr), (b, b_name, b_addr)] {
        ns.run(&["ip", "addr", "add", addr, "dev", dev]);
        ns.run(&["ip", "link", "set", dev, "up"]);
    }
}

/// Two peers, each behind a NAT router of its own, and a server namespace both routers reach:
///
/// ```text
///  peer 0 (192.168.10.2) ── router 0 (MASQUERADE as 10.1.0.2) ──┐
///                                                              server (10.0.0.1, forwards nothing)
///  peer 1 (192.168.11.2) ── router 1 (MASQUERADE as 10.2.0.2) ──┘
/// ```
///
/// The server does not forward between its links, so a peer reaches the server (10.0.0.1, on
/// the server's loopback) but neither the other peer nor the other router: WebRTC between the
/// peers works only through TURN on the server. Each peer's own address is private and
/// unreachable from outside, like a home network's.
pub struct NatLab {
    pub server: Netns,
    pub routers: [Netns; 2],
    pub peers: [Netns; 2],
}

/// The server's address, on its loopback, reached by both routers.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

impl NatLab {
    /// Builds the namespaces, links, routes and NAT rules.
    pub fn build() -> NatLab {
        let server = Netns::create("srv");
        let routers = [Netns::create("rt0"), Netns::create("rt1")];
        let peers = [Netns::create("peer0"), Netns::create("peer1")];
        server.run(&["ip", "addr", "add", &format!("{SERVER_IP}/32"), "dev", "lo"]);
        server.sysctl("net.ipv4.ip_forward=0");
        for i in 0..2 {
            let (router, peer) = (&routers[i], &peers[i]);
            veth(
                &server,
                &format!("to-rt{i}"),
                &format!("{}/24", Self::server_link_ip(i)),
                router,
                "wan",
                &format!("{}/24", Self::router_wan_ip(i)),
            );
            veth(
                router,
                "lan",
                &format!("{}/24", Self::router_lan_ip(i)),
                peer,
                "eth0",
                &format!("{}/24", Self::peer_ip(i)),
            );
            router.run(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &Self::server_link_ip(i).to_string(),
            ]);
            peer.run(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &Self::router_lan_ip(i).to_string(),
            ]);
            router.sysctl("net.ipv4.ip_forward=1");
            router.run(&[
                "iptables",
                "-w",
                "5",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                "wan",
                "-j",
                "MASQUERADE",
            ]);
        }
        NatLab {
            server,
            routers,
            peers,
        }
    }

    /// The server's end of its link to router `i`.
    pub fn server_link_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 1 + i as u8, 0, 1)
    }

    /// Router `i`'s public (WAN) address: what the server sees peer `i` as.
    pub fn router_wan_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 1 + i as u8, 0, 2)
    }

    /// Router `i`'s address on its peer's private network.
    pub fn router_lan_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 10 + i as u8, 1)
    }

    /// Peer `i`'s private address.
    pub fn peer_ip(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 10 + i as u8, 2)
    }
}

fn ip(args: &[&str]) -> ToolRun {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    run_tool(Path::new("ip"), &args, COMMAND_LIMIT)
}

/// Deletes namespaces named by a test process that no longer runs (killed before its drops).
fn sweep_stale() {
    let list = ip(&["netns", "list"]);
    for line in list.output.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('n').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
