//! The XDP fast path (`relay.xdp`) end to end, as root, in the namespace lab of
//! tests/xdp_support (client ↔ server ↔ peer joined by veths, the program native on the
//! server's two veths, redirecting between them): coturn's uclient relays with no loss and
//! nearly all bytes through the kernel; an entry goes when its allocation expires and when a
//! reload denies its peer; without the program, the server relays in user space.
//! tests/xdp_expiry.rs (channel and permission expiry) and tests/xdp_browser.rs (Chromium)
//! use the same lab.

mod common;
mod xdp_support;

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use xdp_support::*;

#[test]
fn uclient_relays_through_xdp_with_no_loss() {
    let lab = Lab::new();
    let server = NsTurnpike::start(&lab, &config(&["s1", "s2"], "", ""));
    server.assert_attached();
    let peer_port = 3480.to_string();
    let _peer = KillOnDrop(
        lab.peer
            .command(&tool("turnutils_peer"))
            .args(["-p", &peer_port, "-L", PEER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn turnutils_peer"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let n = 50;
    let run = lab.client.run(&[
        tool("turnutils_uclient").to_str().unwrap(),
        "-p",
        &TURN_PORT.to_string(),
        "-e",
        PEER,
        "-r",
        &peer_port,
        "-W",
        SECRET_ONE,
        "-u",
        "alice",
        "-n",
        &n.to_string(),
        "-m",
        "2",
        "-c",
        "-l",
        "1200",
        SERVER,
    ]);
    let summary = parse_uclient_summary(&run.output)
        .unwrap_or_else(|| panic!("no summary:\n{run}\n{}", server.log()));
    assert_eq!(
        (summary.sent, summary.received, summary.lost),
        (2 * n, 2 * n, 0),
        "uclient relayed every message:\n{run}\n{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(700)); // the workers read the kernel's counters
    let metrics = server.metrics(&lab);
    let xdp_out = sample(
        &metrics,
        "turnpike_xdp_relayed_bytes_total{direction=\"client_to_peer\"}",
    );
    let xdp_back = sample(
        &metrics,
        "turnpike_xdp_relayed_bytes_total{direction=\"peer_to_client\"}",
    );
    let all_out = relayed_bytes(&metrics, "client_to_peer");
    let all_back = relayed_bytes(&metrics, "peer_to_client");
    // uclient sends 1200-byte messages (its -l counts its own header too).
    let payload = 2 * n * 1000;
    assert!(
        all_out >= payload && all_back >= payload,
        "relayed_bytes counts the fast path: {all_out} / {all_back}\n{metrics}"
    );
    // The kernel carried nearly all of it (the first packets of a flow may go through user
    // space while neighbours resolve).
    assert!(
        xdp_out * 10 >= all_out * 9 && xdp_back * 10 >= all_back * 9,
        "XDP relayed {xdp_out} of {all_out} bytes out and {xdp_back} of {all_back} back\n{metrics}"
    );
}

#[test]
fn entries_go_when_the_allocation_expires_and_when_a_reload_denies_the_peer() {
    let lab = Lab::new();
    let limits = "max_allocation_lifetime_secs = 2\ndefault_allocation_lifetime_secs = 2";
    let server = NsTurnpike::start(&lab, &config(&["s1", "s2"], "", limits));
    let peer = EchoPeer::start(&lab);
    // Expiry: the entry is in the kernel while the allocation lives, gone after.
    let client = ChannelClient::bind(&lab, peer.addr, 0x4001);
    client.echo_until_back(b"warm-up: resolves the neighbours");
    let before = xdp_bytes(&server, &lab, "client_to_peer");
    for i in 0..20 {
        assert!(client.echo(format!("through the kernel {i}").as_bytes()));
    }
    eventually("fast-path bytes counted", &server, || {
        xdp_bytes(&server, &lab, "client_to_peer") >= before + 20 * 19
    });
    assert_eq!(server.metric(&lab, "turnpike_xdp_entries "), 1);
    std::thread::sleep(Duration::from_millis(2200));
    eventually("the expired entry removed", &server, || {
        server.metric(&lab, "turnpike_xdp_entries ") == 0
    });
    let received = peer.received.load(Ordering::Relaxed);
    assert!(!client.echo(b"after expiry"), "relayed after expiry");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        peer.received.load(Ordering::Relaxed),
        received,
        "a packet reached the peer after the allocation expired"
    );

    // Reload: a [peers] deny of the peer stops fast-path traffic at once.
    let client = ChannelClient::bind(&lab, peer.addr, 0x4002);
    client.echo_until_back(b"warm-up");
    assert!(client.echo(b"through the kernel"));
    assert_eq!(server.metric(&lab, "turnpike_xdp_entries "), 1);
    let reloads = server.metric(&lab, "turnpike_config_reloads_total{result=\"ok\"}");
    server.reload(&config(&["s1", "s2"], "\"10.77.2.2/32\"", limits));
    eventually("the reload applied", &server, || {
        server.metric(&lab, "turnpike_config_reloads_total{result=\"ok\"}") > reloads
    });
    // The workers take the new settings at their next loop turn, and remove the entry before
    // they read another packet.
    eventually("the denied peer's entry removed", &server, || {
        server.metric(&lab, "turnpike_xdp_entries ") == 0
    });
    let received = peer.received.load(Ordering::Relaxed);
    for _ in 0..5 {
        assert!(!client.echo(b"after the deny"), "relayed after the deny");
    }
    assert_eq!(
        peer.received.load(Ordering::Relaxed),
        received,
        "a packet reached the denied peer"
    );
    assert_eq!(server.metric(&lab, "turnpike_xdp_entries "), 0);
}

#[test]
fn without_xdp_the_server_says_so_and_relays_in_user_space() {
    let lab = Lab::new();
    let server = NsTurnpike::start(&lab, &config(&["s1", "nosuchif0"], "", ""));
    let log = server.log();
    assert!(
        log.contains("XDP fast path unavailable") && log.contains("nosuchif0"),
        "the log says why:\n{log}"
    );
    assert_eq!(
        server.metric(&lab, "turnpike_xdp_attached_interfaces "),
        0,
        "nothing stays attached"
    );
    let peer = EchoPeer::start(&lab);
    let client = ChannelClient::bind(&lab, peer.addr, 0x4001);
    client.echo_until_back(b"warm-up");
    for i in 0..10 {
        assert!(client.echo(format!("user space {i}").as_bytes()));
    }
    let text = server.metrics(&lab);
    assert!(
        !text.contains("turnpike_xdp_relayed_bytes_total"),
        "no fast path counters without the fast path:\n{text}"
    );
}
