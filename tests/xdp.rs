//! The XDP fast path (`relay.xdp`) end to end, as root, in namespaces this test makes:
//!
//! ```text
//!  client ns  c0 10.77.1.2 ── s1 10.77.1.1  server ns (turnpike, XDP native on s1 and s2)
//!                                s2 10.77.2.1 ── p0 10.77.2.2  peer ns
//! ```
//!
//! Channel data crosses the server namespace by XDP_REDIRECT between s1 and s2. The client's
//! and the peer's veth ends get GRO (a veth receives redirected frames only with NAPI on) and
//! no transmit checksum offload (a local sender's UDP checksum is otherwise left partial for
//! the device to finish, which a veth never does; real NICs deliver full checksums).
//! `/metrics` tells which bytes went through the kernel (`turnpike_xdp_relayed_bytes_total`).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::netns::{Netns, veth};
use common::turn::{Auth, add, parse, request, udp_transport};
use common::*;
use stun_types::attribute::Nonce;
use turn_client_proto::types::attribute::{ChannelNumber, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND};
use turnpike::proto::credentials;

const SERVER: &str = "10.77.1.1";
const RELAY: &str = "10.77.2.1";
const PEER: &str = "10.77.2.2";
const TURN_PORT: u16 = 3478;
const HTTP_PORT: u16 = 8080;

struct Lab {
    client: Netns,
    server: Netns,
    peer: Netns,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            client: Netns::create("xcli"),
            server: Netns::create("xsrv"),
            peer: Netns::create("xpeer"),
        };
        veth(
            &lab.server,
            "s1",
            "10.77.1.1/24",
            &lab.client,
            "c0",
            "10.77.1.2/24",
        );
        veth(
            &lab.server,
            "s2",
            "10.77.2.1/24",
            &lab.peer,
            "p0",
            "10.77.2.2/24",
        );
        for (ns, dev) in [(&lab.client, "c0"), (&lab.peer, "p0")] {
            ns.run(&["ethtool", "-K", dev, "gro", "on", "tx", "off"]);
        }
        // bpf_fib_lookup answers only for interfaces with forwarding on; nothing is forwarded
        // by the stack (FORWARD policy DROP).
        for dev in ["s1", "s2"] {
            lab.server
                .sysctl(&format!("net.ipv4.conf.{dev}.forwarding=1"));
        }
        lab.server
            .run(&["iptables", "-w", "5", "-P", "FORWARD", "DROP"]);
        lab.client
            .run(&["ip", "route", "add", "default", "via", SERVER]);
        lab.peer
            .run(&["ip", "route", "add", "default", "via", RELAY]);
        lab
    }
}

/// turnpike in the server namespace, killed on drop.
struct NsTurnpike {
    child: KillOnDrop,
    dir: tempfile::TempDir,
}

fn config(xdp: &[&str], peers_deny: &str, limits: &str) -> String {
    let xdp: Vec<String> = xdp.iter().map(|i| format!("{i:?}")).collect();
    // An allow entry wins over a deny: a denying reload drops it.
    let allow = if peers_deny.is_empty() {
        "\"10.77.2.0/24\""
    } else {
        ""
    };
    format!(
        "realm = {REALM:?}\n\
         [[listen]]\ntransport = \"udp\"\naddress = \"{SERVER}:{TURN_PORT}\"\n\
         [relay]\nbind_ip = \"{RELAY}\"\nbind_ipv6 = \"none\"\nports = \"49152-49200\"\n\
         xdp = [{}]\n\
         [auth]\nsecrets = [{SECRET_ONE:?}]\n\
         [peers]\nallow = [{allow}]\ndeny = [{peers_deny}]\n\
         [limits]\n{limits}\n\
         [http]\naddress = \"{SERVER}:{HTTP_PORT}\"\n\
         [log]\nlevel = \"info,turnpike::net::xdp=debug\"\n",
        xdp.join(", ")
    )
}

impl NsTurnpike {
    fn start(lab: &Lab, config: &str) -> NsTurnpike {
        let dir = tempfile::Builder::new()
            .prefix("turnpike-xdp-")
            .tempdir()
            .unwrap();
        fs::write(dir.path().join("turnpike.toml"), config).unwrap();
        let log = fs::File::create(dir.path().join("turnpike.log")).unwrap();
        let child = lab
            .server
            .command(&turnpike_bin())
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("turnpike.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn turnpike in the server namespace");
        let mut server = NsTurnpike {
            child: KillOnDrop(child),
            dir,
        };
        server.wait_ready(lab);
        server
    }

    fn wait_ready(&mut self, lab: &Lab) {
        let socket = lab
            .client
            .enter(|| UdpSocket::bind("10.77.1.2:0").expect("bind a probe socket"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let turn: SocketAddr = format!("{SERVER}:{TURN_PORT}").parse().unwrap();
        let mut buf = [0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut probe = 0;
        while Instant::now() < deadline {
            probe += 1;
            if let Ok(Some(status)) = self.child.0.try_wait() {
                panic!("turnpike exited with {status}\n{}", self.log());
            }
            let request = binding_request(probe);
            let _ = socket.send_to(&request, turn);
            // Answers to earlier probes may come late: any of them will do.
            while let Ok((n, _)) = socket.recv_from(&mut buf) {
                if (1..=probe).any(|p| is_binding_success(&buf[..n], &binding_request(p))) {
                    return;
                }
            }
            // A send to a neighbour still unresolved fails at once: pace the probes.
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("turnpike did not answer within 10 s\n{}", self.log());
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("turnpike.log")).unwrap_or_default()
    }

    fn reload(&self, config: &str) {
        fs::write(self.dir.path().join("turnpike.toml"), config).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGHUP) };
    }

    /// `/metrics`, fetched from the client namespace.
    fn metrics(&self, lab: &Lab) -> String {
        let addr: SocketAddr = format!("{SERVER}:{HTTP_PORT}").parse().unwrap();
        let mut stream = lab.client.enter(move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect /metrics")
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = stream.read_to_string(&mut out);
        out
    }

    /// A sample of `/metrics` (0 when absent).
    fn metric(&self, lab: &Lab, name_and_labels: &str) -> u64 {
        let text = self.metrics(lab);
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A UDP echo peer in the peer namespace that counts what it receives.
struct EchoPeer {
    addr: SocketAddr,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl EchoPeer {
    fn start(lab: &Lab) -> EchoPeer {
        let socket = lab
            .peer
            .enter(|| UdpSocket::bind(format!("{PEER}:40000")).expect("bind the peer"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    r.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        EchoPeer {
            addr: format!("{PEER}:40000").parse().unwrap(),
            received,
            stop,
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A TURN client in the client namespace with one allocation and one channel to `peer`.
struct ChannelClient {
    socket: UdpSocket,
    channel: u16,
}

impl ChannelClient {
    fn transact(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 1500];
        for _ in 0..4 {
            socket.send(request).unwrap();
            let until = Instant::now() + Duration::from_millis(500);
            while Instant::now() < until {
                if let Ok(n) = socket.recv(&mut buf) {
                    if n >= 20 && buf[8..20] == request[8..20] {
                        return buf[..n].to_vec();
                    }
                }
            }
        }
        panic!("no answer to a {}-byte request", request.len());
    }

    fn bind(lab: &Lab, peer: SocketAddr, channel: u16) -> ChannelClient {
        let turn: SocketAddr = format!("{SERVER}:{TURN_PORT}").parse().unwrap();
        let socket = lab.client.enter(move || {
            let s = UdpSocket::bind("10.77.1.2:0").unwrap();
            s.connect(turn).unwrap();
            s
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let challenge = Self::transact(&socket, &request(ALLOCATE, None, udp_transport));
        let nonce = parse(&challenge, ALLOCATE)
            .attribute::<Nonce>()
            .expect("NONCE in the 401")
            .nonce()
            .to_owned();
        let cred = credentials::mint(SECRET_ONE.as_bytes(), "xdp", unix_now(), 3600);
        let auth = Auth {
            username: cred.username,
            password: cred.password,
            realm: REALM.to_owned(),
            nonce,
        };
        let answer = Self::transact(&socket, &request(ALLOCATE, Some(&auth), udp_transport));
        assert_eq!(&answer[..2], &[0x01, 0x03], "Allocate succeeds: {answer:?}");
        let answer = Self::transact(
            &socket,
            &request(CHANNEL_BIND, Some(&auth), |m, id| {
                add(m, &ChannelNumber::new(channel));
                add(m, &XorPeerAddress::new(peer, id));
            }),
        );
        assert_eq!(
            &answer[..2],
            &[0x01, 0x09],
            "ChannelBind succeeds: {answer:?}"
        );
        ChannelClient { socket, channel }
    }

    /// Sends one ChannelData frame of `payload`; true when the same frame comes back within
    /// 300 ms.
    fn echo(&self, payload: &[u8]) -> bool {
        let mut frame = self.channel.to_be_bytes().to_vec();
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(payload);
        self.socket.send(&frame).unwrap();
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            if let Ok(n) = self.socket.recv(&mut buf) {
                if buf[..n] == frame[..] {
                    return true;
                }
            }
        }
        false
    }

    /// Echoes until one comes back (the first ones may go through user space while the
    /// kernel resolves neighbours): at most 20 tries.
    fn echo_until_back(&self, payload: &[u8]) {
        for _ in 0..20 {
            if self.echo(payload) {
                return;
            }
        }
        panic!("nothing came back through the relay");
    }
}

fn xdp_bytes(server: &NsTurnpike, lab: &Lab, direction: &str) -> u64 {
    server.metric(
        lab,
        &format!("turnpike_xdp_relayed_bytes_total{{direction=\"{direction}\"}}"),
    )
}

/// Waits (at most 3 s) until `f` holds.
fn eventually(what: &str, server: &NsTurnpike, mut f: impl FnMut() -> bool) {
    for _ in 0..60 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 3 s\n{}", server.log());
}

#[test]
fn uclient_relays_through_xdp_with_no_loss() {
    let lab = Lab::new();
    let server = NsTurnpike::start(&lab, &config(&["s1", "s2"], "", ""));
    assert!(
        server.log().contains("XDP fast path attached"),
        "{}",
        server.log()
    );
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
    let get = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let xdp_out = get("turnpike_xdp_relayed_bytes_total{direction=\"client_to_peer\"}");
    let xdp_back = get("turnpike_xdp_relayed_bytes_total{direction=\"peer_to_client\"}");
    let all_out = get(
        "turnpike_relayed_bytes_total{direction=\"client_to_peer\",transport=\"udp\",realm=\"harness.test\"}",
    );
    let all_back = get(
        "turnpike_relayed_bytes_total{direction=\"peer_to_client\",transport=\"udp\",realm=\"harness.test\"}",
    );
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
