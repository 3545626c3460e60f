//! Links end to end: two `turnpike link` processes (the real binary) through a real server
//! (p2p through its TURN, or its relay), and in-process sessions. Every wait is bounded.

mod common;
mod registry_support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use registry_support::TestRegistry;
use serde_json::Value;
use turnpike::client::{Incoming, KeyPair, Session, SessionConfig, TokenSource};
use turnpike::link::Mode;

/// A `turnpike link` process; killed when dropped.
struct LinkProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
}

impl Drop for LinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LinkProcess {
    fn start(registry: &TestRegistry, me: &str, to: &str, extra: &[&str]) -> LinkProcess {
        let mut child = Command::new(common::turnpike_bin())
            .args(["link", "--url", &registry.url(), "--to", to])
            .args(extra)
            .env("TURNPIKE_TOKEN", registry.token(me, "demo"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start turnpike link");
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
        LinkProcess {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Waits (bounded) for the exit status.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Reads events until `done` says so or `limit` passes; returns them all.
fn collect(process: &LinkProcess, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        match process.lines.recv_timeout(left) {
            Ok(value) => seen.push(value),
            Err(_) => break,
        }
    }
    seen
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn two_thousand_messages_each_way_exactly_once_in_order() {
    let registry = TestRegistry::start("");
    let fast = ["--fallback-after", "0.5"];
    let mut alice = LinkProcess::start(&registry, "alice", "bob", &fast);
    let mut bob = LinkProcess::start(&registry, "bob", "alice", &fast);
    const COUNT: usize = 2000;
    for (process, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let stdin = process.stdin.as_mut().unwrap();
        let mut text = String::new();
        for n in 0..COUNT {
            text.push_str(&format!("{name} {n:04}\n"));
        }
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let enough = |events: &[Value]| messages(events).len() >= COUNT;
    let at_alice = collect(&alice, Duration::from_secs(90), enough);
    let at_bob = collect(&bob, Duration::from_secs(90), enough);
    for (events, from) in [(&at_alice, "bob"), (&at_bob, "alice")] {
        let got = messages(events);
        let want: Vec<String> = (0..COUNT).map(|n| format!("{from} {n:04}")).collect();
        assert_eq!(got.len(), COUNT, "{} from {from}", got.len());
        assert_eq!(got, want, "in order, exactly once");
        // The CLI has the direct path now: the link goes p2p (through turnpike's TURN) or
        // falls back to the relay; either way every message arrives once, in order.
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "mode" && (e["mode"] == "p2p" || e["mode"] == "relay")),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .all(|e| e["from"].is_null() || e["from"] == from)
        );
    }
    // Standard input closes: each exits 0 once its messages are acknowledged.
    alice.stdin.take();
    bob.stdin.take();
    for process in [&mut alice, &mut bob] {
        let status = process.wait_exit(Duration::from_secs(30)).expect("exits");
        assert!(status.success(), "{status:?}");
    }
    // Nothing was delivered twice after the count was reached.
    for process in [&alice, &bob] {
        let rest = collect(process, Duration::from_millis(200), |_| false);
        assert!(messages(&rest).is_empty(), "{rest:?}");
    }
}

/// A flood both ways on the relay (no ICE servers, relay policy: p2p cannot start), while
/// each CLI is itself blocked on back-pressure: 1,500 lines of 1,000 bytes each way, written
/// at once. Each keeps reading its session's events and printing what arrives (no deadlock
/// between the session, the registry client and the printers), every line arrives once, in
/// order, and both exit 0 once standard input closed.
#[test]
fn a_flood_both_ways_on_the_relay_does_not_deadlock_the_cli() {
    let registry = TestRegistry::start("ice_servers = false");
    let flags = ["--fallback-after", "0.5", "--ice-transport-policy", "relay"];
    let mut alice = LinkProcess::start(&registry, "alice", "bob", &flags);
    let mut bob = LinkProcess::start(&registry, "bob", "alice", &flags);
    const COUNT: usize = 1500;
    let line = |name: &str, n: usize| format!("{name} {n:04} {}", "x".repeat(990));
    let writers: Vec<_> = [(&mut alice, "alice"), (&mut bob, "bob")]
        .into_iter()
        .map(|(process, name)| {
            let mut stdin = process.stdin.take().unwrap();
            let name = name.to_owned();
            std::thread::spawn(move || {
                for n in 0..COUNT {
                    // Blocks while the CLI applies back-pressure.
                    writeln!(stdin, "{}", line(&name, n)).unwrap();
                }
                // stdin drops: the CLI flushes and exits.
            })
        })
        .collect();
    let enough = |events: &[Value]| messages(events).len() >= COUNT;
    let at_alice = collect(&alice, Duration::from_secs(120), enough);
    let at_bob = collect(&bob, Duration::from_secs(120), enough);
    for writer in writers {
        writer.join().unwrap();
    }
    for (events, from) in [(&at_alice, "bob"), (&at_bob, "alice")] {
        let got = messages(events);
        assert_eq!(got.len(), COUNT, "{} lines from {from}", got.len());
        let want: Vec<String> = (0..COUNT).map(|n| line(from, n)).collect();
        assert!(got == want, "in order, exactly once");
        assert!(
            events.iter().all(|e| e["event"] != "error"),
            "no error: {:?}",
            events.iter().filter(|e| e["event"] == "error").collect::<Vec<_>>()
        );
    }
    for process in [&mut alice, &mut bob] {
        let status = process.wait_exit(Duration::from_secs(30)).expect("exits");
        assert!(status.success(), "{status:?}");
    }
}

#[test]
fn a_peer_that_never_answers_ends_with_an_error_not_a_hang() {
    let registry = TestRegistry::start("");
    let started = Instant::now();
    let mut alice = LinkProcess::start(
        &registry,
        "alice",
        "nobody",
        &["--fallback-after", "0.2", "--flush-timeout", "2"],
    );
    let stdin = alice.stdin.as_mut().unwrap();
    stdin.write_all(b"hello?\n").unwrap();
    alice.stdin.take();
    let status = alice.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    assert!(started.elapsed() < Duration::from_secs(15));
    let events = collect(&alice, Duration::from_secs(1), |_| false);
    let codes: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "error")
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(codes.contains(&"unknown_peer"), "{events:?}");
    assert_eq!(codes.last(), Some(&"unacknowledged"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_apply_back_pressure_and_flush() {
    let registry = TestRegistry::start("");
    let session = |me: &str| {
        let mut config = SessionConfig::new(
            registry.url(),
            TokenSource::Fixed(registry.token(me, "demo")),
            KeyPair::generate(),
        );
        config.fallback_after = Duration::from_millis(200);
        config.max_buffered_bytes = 64 * 1024;
        Session::connect(config)
    };
    let alice = session("alice").await.expect("alice");
    let bob = session("bob").await.expect("bob");
    let to_bob = alice.link("bob").await.unwrap();
    // 200 messages of 8 KiB: 25 times the buffer, so `send` has to wait for acks.
    let sender = tokio::spawn(async move {
        for n in 0..200u32 {
            let mut message = n.to_be_bytes().to_vec();
            message.resize(8192, n as u8);
            to_bob.send(message).await.expect("send");
        }
        tokio::time::timeout(Duration::from_secs(30), to_bob.flush())
            .await
            .expect("flushed in time")
            .expect("flushed");
        to_bob
    });
    // Bob's side of the link arrives as a session event with the first relay frame.
    let from_alice = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), bob.next_event())
            .await
            .expect("a link event")
            .expect("session open");
        if let turnpike::client::SessionEvent::Link(link) = event {
            break link;
        }
    };
    assert_eq!(from_alice.peer(), "alice");
    for n in 0..200u32 {
        let incoming = tokio::time::timeout(Duration::from_secs(20), from_alice.recv())
            .await
            .expect("in time")
            .expect("open");
        let Incoming::Message(message) = incoming else {
            panic!("{incoming:?}");
        };
        assert!(message.binary);
        assert_eq!(message.data.len(), 8192);
        assert_eq!(message.data[..4], n.to_be_bytes());
    }
    let to_bob = sender.await.unwrap();
    assert_eq!(*to_bob.mode().borrow(), Mode::Relay);
    let stats = to_bob.stats().await.unwrap();
    assert_eq!((stats.sent, stats.unacked_messages), (200, 0));
    assert!(stats.relay_bytes >= 200 * 8192);
    // Closing one end closes the other (`remote_closed`).
    to_bob.close().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), from_alice.recv())
        .await
        .expect("in time");
    assert_eq!(
        closed,
        Some(Incoming::Closed(turnpike::link::CloseReason::RemoteClosed))
    );
}
