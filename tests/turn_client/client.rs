//! A minimal STUN client on a real UDP socket, and the requests the tests share.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use stun_types::attribute::{Nonce, Realm};
use stun_types::message::Method;
use turn_client_proto::types::attribute::{Lifetime, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CREATE_PERMISSION, REFRESH};
use turnpike::proto::credentials;

use crate::common::stun::*;
use crate::common::*;

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
    let cred = credentials::mint(SECRET_ONE.as_bytes(), user, unix_now(), 3600);
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
