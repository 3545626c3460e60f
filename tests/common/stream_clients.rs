//! Running coturn's `turnutils_uclient` over TCP and TLS, shared by the stream test binaries.
#![allow(dead_code)] // each test binary uses a different part

use super::*;

/// Messages per uclient session.
pub const N: u64 = 20;

/// Runs `turnutils_uclient`. Over TLS (-S) it first tries TLS 1.0 and 1.1, which turnpike
/// refuses on purpose (TLS 1.2 and 1.3 only): those attempts print an error line before the
/// TLS 1.2 session connects. Such lines are dropped here, once the output shows that the
/// session did connect with TLS 1.2 or 1.3; every other error line stays and fails the test.
pub fn uclient(args: &[String]) -> Uclient {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = Uclient::run(&args, LOCALHOST_V4);
    if args.contains(&"-S") {
        let connected =
            run.run.output.contains("method=TLSv1.2") || run.run.output.contains("method=TLSv1.3");
        assert!(connected, "no TLS 1.2/1.3 session:\n{}", run.run);
        run.errors.retain(|line| {
            !(line.contains("alert handshake failure") || line.contains("alert protocol version"))
        });
    }
    run
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `uclient` arguments relaying to `peer` through `port` (`extra` adds -t, -S, ...).
pub fn to_peer(port: u16, peer: &Peer, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "-p",
        &port.to_string(),
        "-e",
        &peer.addr.ip().to_string(),
        "-r",
        &peer.addr.port().to_string(),
        "-W",
        SECRET_ONE,
        "-u",
        "alice",
    ]);
    args.extend(strings(extra));
    args
}

/// Has `turnutils_uclient` relay `sessions` sessions of [`N`] messages to `peer` through `port`
/// (`extra`: -t, -S, -s, -c, ...) and asserts that every message came back.
pub fn assert_uclient_relays(
    server: &Server,
    port: u16,
    peer: &Peer,
    sessions: u64,
    extra: &[&str],
) {
    let (n, m) = (N.to_string(), sessions.to_string());
    let mut args = extra.to_vec();
    args.extend(["-n", &n, "-m", &m]);
    uclient(&to_peer(port, peer, &args)).assert_relayed(sessions * N, server);
}
