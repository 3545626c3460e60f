//! A minimal STUN/TURN client on a real UDP socket, built on codecs that are not ours
//! (`stun-types`, and the TURN attributes of `turn-types`), and a UDP echo peer: what the tests
//! that need exact answers (error codes, attributes) share. The request building and answer
//! checks themselves are in [`super::stun`], re-exported here.
//!
//! Requests are signed with MESSAGE-INTEGRITY (HMAC-SHA1, long-term key
//! MD5(username:realm:password)) only: stun-types derives its MESSAGE-INTEGRITY-SHA256 key with
//! SHA-256, which RFC 8489 §9.2.2 does not do without PASSWORD-ALGORITHM.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use stun_types::attribute::{Nonce, Realm};
use stun_types::message::Method;
use turn_client_proto::types::attribute::{ChannelNumber, Lifetime, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};
use turnpike::proto::credentials;

pub use super::stun::*;
use super::{SECRET_ONE, Server, unix_now};

/// One UDP socket (one 5-tuple) talking to one server.
pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
}

impl Client {
    pub fn new(server: SocketAddr) -> Client {
        let local = SocketAddr::new(server.ip(), 0);
        let socket = UdpSocket::bind(local).expect("bind a client socket");
        socket.connect(server).expect("connect the client socket");
        Client { socket, server }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    pub fn send(&self, bytes: &[u8]) {
        self.socket.send(bytes).expect("send to the server");
    }

    /// Waits at most `timeout` for one datagram.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = vec![0u8; 65536];
        match self.socket.recv(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Some(buf)
            }
            Err(_) => None,
        }
    }

    /// Sends a request and returns the answer with the same transaction id, retransmitting
    /// (at most 4 sends, 500 ms apart). Panics when nothing answers.
    pub fn transact(&self, request: &[u8], server: &Server) -> Vec<u8> {
        let id = &request[8..20];
        for _ in 0..4 {
            self.send(request);
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                match self.recv(left) {
                    Some(answer) if answer.len() >= 20 && &answer[8..20] == id => return answer,
                    Some(_) => continue, // a late answer to an earlier request
                    None => break,
                }
            }
        }
        panic!(
            "no answer from {} to a {}-byte request\n--- server log ---\n{}",
            self.server,
            request.len(),
            server.log()
        );
    }
}

/// Sends `method` without credentials and returns the realm and nonce of the 401.
pub fn challenge(client: &Client, method: Method, server: &Server) -> (String, String) {
    let answer = client.transact(&request(method, None, udp_transport), server);
    let msg = expect_error(&answer, method, 401, server);
    let realm = msg
        .attribute::<Realm>()
        .expect("REALM in a 401")
        .realm()
        .to_owned();
    let nonce = msg
        .attribute::<Nonce>()
        .expect("NONCE in a 401")
        .nonce()
        .to_owned();
    (realm, nonce)
}

/// REST credentials for `user` (valid one hour) with the server's realm and a fresh nonce.
pub fn rest_auth(client: &Client, user: &str, server: &Server) -> Auth {
    rest_auth_with(client, SECRET_ONE, user, server)
}

/// REST credentials for `user` signed with `secret` (valid one hour), with the server's realm
/// and a fresh nonce.
pub fn rest_auth_with(client: &Client, secret: &str, user: &str, server: &Server) -> Auth {
    let cred = credentials::mint(secret.as_bytes(), user, unix_now(), 3600);
    let (realm, nonce) = challenge(client, ALLOCATE, server);
    Auth {
        username: cred.username,
        password: cred.password,
        realm,
        nonce,
    }
}

/// Allocates (UDP) with `auth`; returns the relayed address.
pub fn allocate(client: &Client, auth: &Auth, server: &Server) -> SocketAddr {
    let answer = client.transact(&request(ALLOCATE, Some(auth), udp_transport), server);
    let msg = expect_success(&answer, ALLOCATE, auth, server);
    let relayed = relayed_address(&msg);
    let mapped = mapped_address(&msg);
    assert_eq!(
        mapped,
        client.local_addr(),
        "XOR-MAPPED-ADDRESS of the Allocate answer"
    );
    assert_eq!(relayed.ip(), server.udp.ip(), "the relay binds 127.0.0.1");
    assert!(
        server.relay_ports.contains(&relayed.port()),
        "relayed port {} outside the configured range {:?}",
        relayed.port(),
        server.relay_ports
    );
    let lifetime = msg.attribute::<Lifetime>().expect("LIFETIME").seconds();
    assert!(lifetime > 0 && lifetime <= 3600, "LIFETIME {lifetime}");
    relayed
}

/// CreatePermission for `peer` with `auth`; returns the answer.
pub fn create_permission(
    client: &Client,
    auth: &Auth,
    peer: SocketAddr,
    server: &Server,
) -> Vec<u8> {
    client.transact(
        &request(CREATE_PERMISSION, Some(auth), |m, id| {
            add(m, &XorPeerAddress::new(peer, id))
        }),
        server,
    )
}

pub fn refresh(client: &Client, auth: &Auth, lifetime: u32, server: &Server) -> Vec<u8> {
    client.transact(
        &request(REFRESH, Some(auth), |m, _| add(m, &Lifetime::new(lifetime))),
        server,
    )
}

/// Binds `channel` to `peer` (ChannelBind, which also installs the permission); returns the
/// answer.
pub fn channel_bind(
    client: &Client,
    auth: &Auth,
    channel: u16,
    peer: SocketAddr,
    server: &Server,
) -> Vec<u8> {
    client.transact(
        &request(CHANNEL_BIND, Some(auth), |m, id| {
            add(m, &ChannelNumber::new(channel));
            add(m, &XorPeerAddress::new(peer, id));
        }),
        server,
    )
}

/// Sends `payload` as ChannelData on `channel` and waits for the same payload to come back on
/// it (through an echo peer): at most 4 sends, 500 ms apart. True when it came back.
pub fn channel_echo(client: &Client, channel: u16, payload: &[u8]) -> bool {
    let mut frame = channel.to_be_bytes().to_vec();
    frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(payload);
    for _ in 0..4 {
        client.send(&frame);
        let until = Instant::now() + Duration::from_millis(500);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match client.recv(left.max(Duration::from_millis(1))) {
                // ChannelData over UDP is not padded: the same bytes come back.
                Some(back) if back == frame => return true,
                Some(_) => continue,
                None => break,
            }
        }
    }
    false
}

/// A UDP echo peer on 127.0.0.1 in a thread, stopped on drop.
pub struct EchoPeer {
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoPeer {
    pub fn start() -> EchoPeer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Bounded: stops on drop, and after 60 s whatever happens.
            let until = Instant::now() + Duration::from_secs(60);
            while !flag.load(Ordering::Relaxed) && Instant::now() < until {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        EchoPeer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
