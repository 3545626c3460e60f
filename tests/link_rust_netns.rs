//! A real failure, not a flag, between two Rust agents: two `turnpike link` processes (the real
//! binary, the Rust SDK with the str0m WebRTC connector), each run with `ip netns exec` in a
//! network namespace of its own behind its own NAT router, reach each other only through
//! turnpike's TURN in a server namespace (`--ice-transport-policy relay`). A firewall rule that
//! drops TURN (its listener and relay ports, not the registry's HTTP port) mid-session moves
//! the link to the registry's relay; removing it brings the link back to p2p; numbered lines
//! sent on standard input all the while arrive once each, in order. The allocations live 12 s
//! and the block lasts longer, so the server forgets them: p2p comes back only because each
//! agent allocates again (a fresh Allocate, new nonce) once TURN is reachable. Standard input
//! then closes and both agents exit 0 (every line acknowledged). Root only (the namespaces,
//! veths and iptables rules are made by the test and removed on drop): without the rights, the
//! test fails, it does not skip. Every wait is bounded.
//!
//! Timings seen (debug build): block -> relay about 31 s (str0m gives up on the pair after 9
//! unanswered binding requests, about 22 s, then `--fallback-after 10`); unblock -> p2p about
//! 32 s (the ICE restart back-off). `AGENT_LOG=is::agent=debug,turnpike=debug` passes a
//! `RUST_LOG` filter to both agents (their logs on standard error).

mod common;
mod link_support;
mod registry_support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::netns::{NatLab, Netns, SERVER_IP};
use common::turnpike_bin;
use link_support::calls::assert_exactly_once_in_order;
use link_support::ns_server::{NsServer, RELAY_PORTS, TURN_PORT};
use link_support::{peer_token, registry_conf};
use serde_json::Value;

/// The TURN allocations' lifetime on the server (the block lasts longer).
const LIFETIME: Duration = Duration::from_secs(12);

/// How often each side writes a line while the path fails and comes back.
const PUMP_EVERY: Duration = Duration::from_millis(50);

/// A `turnpike link` process inside a namespace; killed when dropped.
struct Agent {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    events: Vec<Value>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} events ---", self.name);
            for event in self.events.iter().filter(|e| e["event"] != "message") {
                eprintln!("{event}");
            }
        }
    }
}

impl Agent {
    fn start(ns: &Netns, url: &str, me: &'static str, to: &str) -> Agent {
        let mut child = ns
            .command(&turnpike_bin())
            .args(["link", "--url", url, "--to", to])
            .args(["--ice-transport-policy", "relay", "--fallback-after", "10"])
            .env("TURNPIKE_TOKEN", peer_token(me))
            .env(
                "RUST_LOG",
                std::env::var("AGENT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start turnpike link in the namespace");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("not JSON on stdout: {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Agent {
            name: me,
            stdin: child.stdin.take(),
            child,
            lines,
            events: Vec::new(),
        }
    }

    /// Reads events until `done` holds or `limit` passes; whether it holds.
    fn wait(&mut self, limit: Duration, done: impl Fn(&Agent) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Ok(value) = self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                if value["event"] != "message" {
                    eprintln!("{}: {value}", self.name);
                }
                self.events.push(value);
            }
        }
        true
    }

    /// The last mode reported.
    fn mode(&self) -> Option<&str> {
        self.events
            .iter()
            .rev()
            .find(|e| e["event"] == "mode")
            .and_then(|e| e["mode"].as_str())
    }

    fn received(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "message")
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }

    fn wait_mode(&mut self, mode: &str, limit: Duration) {
        let reached = self.wait(limit, |a| a.mode() == Some(mode));
        assert!(
            reached,
            "{} not in {mode} within {limit:?} (last: {:?})",
            self.name,
            self.mode()
        );
    }

    /// Waits until `count` lines in all arrived.
    fn wait_received(&mut self, count: usize, limit: Duration, what: &str) {
        let got = self.wait(limit, |a| a.received().len() >= count);
        assert!(
            got,
            "{} {what}: {} lines, {count} expected within {limit:?}",
            self.name,
            self.received().len()
        );
    }

    /// Writes `prefix0`, `prefix1`, … one line every [`PUMP_EVERY`] until `stop`; how many.
    fn pump(&mut self, prefix: &'static str, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
        let mut stdin = self.stdin.take().unwrap();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                writeln!(stdin, "{prefix}{sent}").expect("write a line");
                stdin.flush().unwrap();
                sent += 1;
                std::thread::sleep(PUMP_EVERY);
            }
            sent // stdin drops: the process flushes and exits
        })
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            while let Ok(value) = self.lines.try_recv() {
                self.events.push(value);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

#[test]
fn rust_agents_move_to_the_relay_when_turn_is_blocked_and_back_when_it_returns() {
    let lab = NatLab::build();
    let mut conf = registry_conf("");
    // Allocations live 12 s (refreshed every 6 s): the block below outlasts them, so p2p can
    // only come back through fresh allocations.
    conf.limits_extra = vec![format!(
        "default_allocation_lifetime_secs = {}",
        LIFETIME.as_secs()
    )];
    let server = NsServer::start(&lab.server, SERVER_IP.into(), conf);
    let url = server.registry_url();
    let mut agents = [
        Agent::start(&lab.peers[0], &url, "alice", "bob"),
        Agent::start(&lab.peers[1], &url, "bob", "alice"),
    ];
    let started = Instant::now();
    for agent in agents.iter_mut() {
        // Only relay candidates, and the peers cannot reach each other: p2p runs through
        // turnpike's TURN.
        agent.wait_mode("p2p", Duration::from_secs(60));
    }
    let to_p2p = started.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let pumps = [
        agents[0].pump("a", stop.clone()),
        agents[1].pump("b", stop.clone()),
    ];
    for agent in agents.iter_mut() {
        agent.wait_received(20, Duration::from_secs(20), "on p2p");
    }

    // The failure: TURN (its listener and relay ports) dropped in the server's namespace; the
    // registry's TCP port stays open.
    let relay_range = format!("{}:{}", RELAY_PORTS.start(), RELAY_PORTS.end());
    let turn_port = TURN_PORT.to_string();
    let block = [
        lab.server.iptables_insert(
            "filter",
            &["INPUT", "-p", "udp", "--dport", &turn_port, "-j", "DROP"],
        ),
        lab.server.iptables_insert(
            "filter",
            &["INPUT", "-p", "udp", "--dport", &relay_range, "-j", "DROP"],
        ),
    ];
    let blocked = Instant::now();
    let mut to_relay = Vec::new();
    for agent in agents.iter_mut() {
        agent.wait_mode("relay", Duration::from_secs(60));
        to_relay.push(blocked.elapsed());
    }
    for agent in agents.iter_mut() {
        // Lines keep arriving on the relay: 20 more each way.
        let before = agent.received().len();
        agent.wait_received(before + 20, Duration::from_secs(20), "on the relay");
        assert_eq!(agent.mode(), Some("relay"), "{}", agent.name);
    }
    let block_held = blocked.elapsed();
    assert!(
        block_held > LIFETIME + LIFETIME / 2,
        "the block outlasted the allocations: {block_held:?}"
    );

    // The repair: the rules go; both ends return to p2p (ICE restarts with back-off).
    for rule in block {
        rule.remove();
    }
    let unblocked = Instant::now();
    let mut back = Vec::new();
    for agent in agents.iter_mut() {
        agent.wait_mode("p2p", Duration::from_secs(90));
        back.push(unblocked.elapsed());
    }
    for agent in agents.iter_mut() {
        let before = agent.received().len();
        agent.wait_received(before + 20, Duration::from_secs(20), "on p2p again");
    }

    // The pumps stop and standard input closes; everything written arrives, each line once,
    // in order, and each process exits 0 once its lines are acknowledged.
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<u64> = pumps.into_iter().map(|p| p.join().unwrap()).collect();
    let (sent_a, sent_b) = (sent[0], sent[1]);
    for (agent, (prefix, count)) in agents.iter_mut().zip([("b", sent_b), ("a", sent_a)]) {
        agent.wait_received(count as usize, Duration::from_secs(30), "in the end");
        let got = agent.received();
        assert_exactly_once_in_order(agent.name, &got, prefix, count);
        let errors: Vec<&Value> = agent
            .events
            .iter()
            .filter(|e| e["event"] == "error")
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", agent.name);
    }
    for agent in agents.iter_mut() {
        let status = agent.wait_exit(Duration::from_secs(40));
        assert!(
            status.is_some_and(|s| s.success()),
            "{}: {status:?}",
            agent.name
        );
    }
    println!(
        "Rust agents over NAT: start -> p2p {to_p2p:?}; block -> relay {to_relay:?} (alice, \
         bob), block held {block_held:?}; unblock -> p2p {back:?}; {sent_a} + {sent_b} lines, \
         each delivered once in order"
    );
}
