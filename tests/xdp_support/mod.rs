//! The namespace lab of the XDP fast-path tests (tests/xdp.rs, tests/xdp_expiry.rs,
//! tests/xdp_browser.rs), built by each test as root:
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
//! `/metrics` tells which bytes went through the kernel (`turnpike_xdp_relayed_bytes_total`);
//! the server's log (`turnpike::net::xdp=debug`) names each entry installed and removed.
//!
//! Every test makes its own lab: namespaces are named after the test process and a counter
//! (tests/common/netns.rs), so tests run in parallel, and they are deleted on drop, on panic
//! too. Without root the lab cannot be built and the test fails with the reason: it never
//! skips.
#![allow(dead_code)] // each test binary uses a different part

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::netns::{Netns, veth};
use crate::common::turn::{Auth, add, parse, request, udp_transport};
use crate::common::*;
use stun_types::attribute::Nonce;
use turn_client_proto::types::attribute::{ChannelNumber, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND};
use turnpike::proto::credentials;

/// The client's address, on `c0` in the client namespace.
pub const CLIENT: &str = "10.77.1.2";
/// The server's listener address (`s1`), the client namespace's next hop.
pub const SERVER: &str = "10.77.1.1";
/// The relay address (`s2`), the peer namespace's next hop.
pub const RELAY: &str = "10.77.2.1";
/// The peer's address, on `p0` in the peer namespace.
pub const PEER: &str = "10.77.2.2";
pub const TURN_PORT: u16 = 3478;
pub const HTTP_PORT: u16 = 8080;

/// The three namespaces and their veths; deleted on drop.
pub struct Lab {
    pub client: Netns,
    pub server: Netns,
    pub peer: Netns,
}

impl Lab {
    /// Builds the namespaces, veths, routes and the server's forwarding settings.
    pub fn new() -> Lab {
        let lab = Lab {
            client: Netns::create("xcli"),
            server: Netns::create("xsrv"),
            peer: Netns::create("xpeer"),
        };
        veth(
            &lab.server,
            "s1",
            &format!("{SERVER}/24"),
            &lab.client,
            "c0",
            &format!("{CLIENT}/24"),
        );
        veth(
            &lab.server,
            "s2",
            &format!("{RELAY}/24"),
            &lab.peer,
            "p0",
            &format!("{PEER}/24"),
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

    /// The TURN listener's address.
    pub fn turn() -> SocketAddr {
        format!("{SERVER}:{TURN_PORT}").parse().unwrap()
    }

    /// A UDP socket bound in the client namespace (`c0`, an ephemeral port), connected to the
    /// TURN listener, with a 50 ms read timeout.
    pub fn client_socket(&self) -> UdpSocket {
        let turn = Self::turn();
        let socket = self.client.enter(move || {
            let s = UdpSocket::bind(format!("{CLIENT}:0")).expect("bind in the client ns");
            s.connect(turn).expect("connect to the TURN listener");
            s
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        socket
    }
}

/// A configuration for turnpike in the lab: UDP TURN on [`SERVER`], relays on [`RELAY`]
/// (ports 49152-49200), the XDP program on the interfaces `xdp`, REST secret `SECRET_ONE`,
/// the peer network allowed unless `peers_deny` denies something, `limits` as `[limits]`
/// keys, `/metrics` on [`SERVER`]:[`HTTP_PORT`], the fast path's debug log on. More tables
/// (`[auth.users]`) may be appended.
pub fn config(xdp: &[&str], peers_deny: &str, limits: &str) -> String {
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

/// turnpike in the server namespace, killed on drop (its log printed when the test fails).
pub struct NsTurnpike {
    child: KillOnDrop,
    dir: tempfile::TempDir,
}

impl NsTurnpike {
    /// Starts `turnpike serve` with `config` and waits (at most 10 s) until it answers.
    pub fn start(lab: &Lab, config: &str) -> NsTurnpike {
        Self::start_with_env(lab, config, &[])
    }

    /// Fails, with the server's log, unless it attached the XDP program.
    pub fn assert_attached(&self) {
        let log = self.log();
        assert!(log.contains("XDP fast path attached"), "{log}");
    }

    /// [`NsTurnpike::start`] with `env` (`NAME=value`) set for turnpike alone (through
    /// env(1) inside the namespace, so `ip netns exec` does not get it).
    pub fn start_with_env(lab: &Lab, config: &str, env: &[String]) -> NsTurnpike {
        let dir = tempfile::Builder::new()
            .prefix("turnpike-xdp-")
            .tempdir()
            .unwrap();
        fs::write(dir.path().join("turnpike.toml"), config).unwrap();
        let log = fs::File::create(dir.path().join("turnpike.log")).unwrap();
        let mut command = if env.is_empty() {
            lab.server.command(&turnpike_bin())
        } else {
            let mut c = lab.server.command(Path::new("env"));
            c.args(env).arg(turnpike_bin());
            c
        };
        let child = command
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
            .enter(|| UdpSocket::bind(format!("{CLIENT}:0")).expect("bind a probe socket"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let turn = Lab::turn();
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

    /// The server's log so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("turnpike.log")).unwrap_or_default()
    }

    /// Writes `config` and sends SIGHUP (a reload).
    pub fn reload(&self, config: &str) {
        fs::write(self.dir.path().join("turnpike.toml"), config).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGHUP) };
    }

    /// `/metrics`, fetched from the client namespace.
    pub fn metrics(&self, lab: &Lab) -> String {
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
    pub fn metric(&self, lab: &Lab, name_and_labels: &str) -> u64 {
        sample(&self.metrics(lab), name_and_labels)
    }
}

impl Drop for NsTurnpike {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- turnpike log (server namespace) ---\n{}", self.log());
        }
    }
}

/// The value of the sample `name_and_labels` (up to the value) in a `/metrics` text, 0 when
/// absent.
pub fn sample(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `turnpike_xdp_relayed_bytes_total` in `direction` (`client_to_peer`, `peer_to_client`).
pub fn xdp_bytes(server: &NsTurnpike, lab: &Lab, direction: &str) -> u64 {
    server.metric(
        lab,
        &format!("turnpike_xdp_relayed_bytes_total{{direction=\"{direction}\"}}"),
    )
}

/// `turnpike_relayed_bytes_total` of UDP clients in `direction`, both paths together.
pub fn relayed_bytes(metrics: &str, direction: &str) -> u64 {
    sample(
        metrics,
        &format!(
            "turnpike_relayed_bytes_total{{direction=\"{direction}\",transport=\"udp\",\
             realm=\"{REALM}\"}}"
        ),
    )
}

/// Waits (at most 3 s) until `f` holds.
pub fn eventually(what: &str, server: &NsTurnpike, mut f: impl FnMut() -> bool) {
    for _ in 0..60 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within 3 s\n{}", server.log());
}

/// A UDP echo peer in the peer namespace that counts what it receives.
pub struct EchoPeer {
    pub addr: SocketAddr,
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl EchoPeer {
    /// Binds [`PEER`]:40000 and echoes every datagram until dropped (60 s at most).
    pub fn start(lab: &Lab) -> EchoPeer {
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
            let until = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < until {
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

/// Sends `request` and returns the answer with its transaction id: at most 4 sends, 500 ms
/// apart (the socket's read timeout must be short). Panics when nothing answers.
pub fn transact(socket: &UdpSocket, request: &[u8]) -> Vec<u8> {
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

/// A ChannelData frame of `payload` on `channel` (UDP: no padding).
pub fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = channel.to_be_bytes().to_vec();
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A TURN client in the client namespace with one allocation (REST credentials) and one
/// channel to `peer`.
pub struct ChannelClient {
    pub socket: UdpSocket,
    pub channel: u16,
}

impl ChannelClient {
    /// Allocates and binds `channel` to `peer`; panics unless both succeed.
    pub fn bind(lab: &Lab, peer: SocketAddr, channel: u16) -> ChannelClient {
        let socket = lab.client_socket();
        let challenge = transact(&socket, &request(ALLOCATE, None, udp_transport));
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
        let answer = transact(&socket, &request(ALLOCATE, Some(&auth), udp_transport));
        assert_eq!(&answer[..2], &[0x01, 0x03], "Allocate succeeds: {answer:?}");
        let answer = transact(
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
    pub fn echo(&self, payload: &[u8]) -> bool {
        let frame = channel_data(self.channel, payload);
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
    pub fn echo_until_back(&self, payload: &[u8]) {
        for _ in 0..20 {
            if self.echo(payload) {
                return;
            }
        }
        panic!("nothing came back through the relay");
    }
}
