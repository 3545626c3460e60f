//! Connection hygiene of the TCP and TLS listeners: half-open connections (slowloris), the
//! per-source limit, a client that stops reading, allocations that end with their connection,
//! and input that cannot be framed. The real binary over loopback.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::stream_clients::*;
use common::*;

// ---------------------------------------------------------------------------------------------
// Connection hygiene
// ---------------------------------------------------------------------------------------------

/// A TCP connection from `source` to `to`.
fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    socket.into()
}

/// True when the server closed `s` (EOF or reset); false while it is open and silent.
fn closed_by_server(mut s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 64];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_thousand_half_open_connections_do_not_stop_a_real_client() {
    const ATTACKERS: usize = 1000;
    let server = Server::start(Conf {
        tls: true,
        handshake_timeout_secs: 8,
        max_connections_per_ip: ATTACKERS as u32,
        ..Conf::loopback_peers()
    });
    let tls = server.tls.unwrap();
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let before = rss_kib(server.pid());
    let started = Instant::now();
    let held: Vec<TcpStream> = (0..ATTACKERS)
        .map(|i| {
            let mut s = connect_from(attacker, tls);
            if i % 2 == 0 {
                // Half of them start a TLS record and never finish it.
                s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            }
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let during = rss_kib(server.pid());
    eprintln!(
        "server RSS: {before} KiB idle, {during} KiB with {ATTACKERS} half-open TLS connections \
         ({} bytes per connection)",
        (during.saturating_sub(before)) * 1024 / ATTACKERS as u64
    );
    // The per-source limit: the 1001st connection from the attacker is closed at once.
    let extra = connect_from(attacker, tls);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !closed_by_server(&extra) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(closed_by_server(&extra), "over the per-source limit");
    // A real client from another source allocates and relays while they are held open.
    let peer = Peer::start(LOCALHOST_V4);
    assert_uclient_relays(&server, tls.port(), &peer, 1, &["-t", "-S", "-c"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the check below needs the attackers inside their handshake timeout"
    );
    let still_open = held.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(
        still_open, ATTACKERS,
        "held open until the handshake timeout"
    );
    // Then the handshake timeout closes every one of them.
    let deadline = started + Duration::from_secs(8 + 10);
    let mut open = ATTACKERS;
    while open > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        open = held.iter().filter(|s| !closed_by_server(s)).count();
    }
    assert_eq!(
        open, 0,
        "half-open connections outlived the handshake timeout"
    );
}

#[test]
fn an_allocation_ends_with_its_tcp_connection() {
    let server = Server::start(Conf {
        tcp: true,
        allocations_per_user: 2,
        ..Conf::loopback_peers()
    });
    let peer = Peer::start(LOCALHOST_V4);
    let tcp = server.tcp.unwrap().port();
    // A uclient run holds two allocations (two connections). With a quota of two per user,
    // three runs in a row only work when each run's allocations were released as their
    // connections closed (their lifetime is 10 minutes).
    for _ in 0..3 {
        uclient(&to_peer(tcp, &peer, &["-t", "-c", "-n", "5", "-m", "1"]))
            .assert_relayed(5, &server);
    }
    // Garbage that cannot be framed closes the connection.
    let mut s = TcpStream::connect(server.tcp.unwrap()).unwrap();
    s.write_all(&[0xff; 16]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "closed after garbage"
    );
}

/// A minimal TURN-over-TCP client on turnpike's own codec, for what coturn's tools cannot do
/// (stop reading on purpose).
struct TcpTurn {
    stream: TcpStream,
    username: String,
    key: [u8; 16],
    nonce: Vec<u8>,
    tid: u8,
}

impl TcpTurn {
    fn connect(addr: SocketAddr) -> TcpTurn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let c = turnpike::proto::credentials::mint(SECRET_ONE.as_bytes(), "slow", unix_now(), 600);
        let key = turnpike::proto::server::long_term_key(&c.username, REALM, &c.password);
        TcpTurn {
            stream,
            username: c.username,
            key,
            nonce: Vec::new(),
            tid: 0,
        }
    }

    /// Sends a signed request (after learning the nonce from a 401) and returns the answer.
    fn call(
        &mut self,
        method: u16,
        attrs: &[(u16, SocketAddr)],
        raw: &[(u16, Vec<u8>)],
    ) -> Vec<u8> {
        use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr};
        for _ in 0..2 {
            self.tid += 1;
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf, Class::Request, method, [self.tid; 12]);
            for (t, v) in raw {
                w.attr(*t, v);
            }
            for (t, a) in attrs {
                w.xor_addr(*t, *a);
            }
            if !self.nonce.is_empty() {
                w.attr(attr::USERNAME, self.username.as_bytes())
                    .attr(attr::REALM, REALM.as_bytes())
                    .attr(attr::NONCE, &self.nonce)
                    .integrity(Integrity::Sha1, &self.key);
            }
            self.stream.write_all(&buf).unwrap();
            let answer = self.read_message();
            let msg = Message::parse(&answer).unwrap();
            if msg.class() == Class::Error && self.nonce.is_empty() {
                self.nonce = msg.get(attr::NONCE).expect("a 401 with a nonce").to_vec();
                continue;
            }
            return answer;
        }
        panic!("no answer after the nonce");
    }

    fn read_message(&mut self) -> Vec<u8> {
        let mut head = [0u8; 20];
        self.stream.read_exact(&mut head).unwrap();
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut whole = head.to_vec();
        whole.resize(20 + len, 0);
        self.stream.read_exact(&mut whole[20..]).unwrap();
        whole
    }
}

#[test]
fn a_client_that_stops_reading_costs_bounded_memory_and_is_closed() {
    use turnpike::proto::stun::{Class, Message, attr, method};
    let server = Server::start(Conf {
        tcp: true,
        idle_timeout_secs: 3,
        ..Conf::loopback_peers()
    });
    let mut client = TcpTurn::connect(server.tcp.unwrap());
    let answer = client.call(
        method::ALLOCATE,
        &[],
        &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])],
    );
    let msg = Message::parse(&answer).unwrap();
    assert_eq!(msg.class(), Class::Success, "{answer:02x?}");
    let relayed = msg
        .xor_address(msg.get(attr::XOR_RELAYED_ADDRESS).unwrap())
        .unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let answer = client.call(
        method::CREATE_PERMISSION,
        &[(attr::XOR_PEER_ADDRESS, peer.local_addr().unwrap())],
        &[],
    );
    assert_eq!(Message::parse(&answer).unwrap().class(), Class::Success);

    // The peer sends 40 MB; the client reads none of it.
    let before = rss_kib(server.pid());
    let payload = [0x5au8; 1000];
    const SENT: usize = 40_000;
    for i in 0..SENT {
        let _ = peer.send_to(&payload, relayed);
        if i % 500 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let after = rss_kib(server.pid());
    eprintln!(
        "server RSS {before} KiB before, {after} KiB after 40 MB for a client that does not read"
    );
    assert!(
        after < before + 16 * 1024,
        "memory grew by {} KiB for one stalled client",
        after - before
    );
    // Writes stall; after the idle timeout without write progress the server closes. The
    // client then finds what was in flight, then the end of the stream.
    std::thread::sleep(Duration::from_secs(5));
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = 0usize;
    let mut buf = vec![0u8; 65536];
    let outcome = loop {
        match client.stream.read(&mut buf) {
            Ok(0) => break "closed",
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "closed",
            Err(e) => {
                break if e.kind() == ErrorKind::WouldBlock {
                    "still open"
                } else {
                    "error"
                };
            }
        }
    };
    assert_eq!(
        outcome,
        "closed",
        "received {received} bytes\n{}",
        server.log()
    );
    assert!(
        received < SENT * payload.len(),
        "only what fitted in bounded buffers was delivered ({received} bytes)"
    );
}
