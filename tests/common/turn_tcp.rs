//! A TURN client over TCP (RFC 8656 §3.1: STUN messages framed by their length) with RFC 6062's
//! Connect and ConnectionBind, for tests that need exact bytes on a TCP relay: requests come
//! from [`super::stun`] (the stun-types codec, not ours). Every read is bounded by a timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use stun_types::attribute::{Nonce, Realm};
use stun_types::message::{MessageClass, MessageWriteVec, Method, TransactionId};
use turn_client_proto::types::attribute::{ConnectionId, RequestedTransport, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CONNECT, CONNECTION_BIND, CREATE_PERMISSION};
use turnpike::proto::credentials;

use super::stun::{Auth, add, expect_error, expect_success, parse, relayed_address, request};
use super::{SECRET_ONE, Server, unix_now};

/// How long one read may wait.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One TCP connection to the server, speaking STUN.
pub struct TurnTcp {
    stream: TcpStream,
}

impl TurnTcp {
    /// Connects to the server's TCP listener.
    pub fn connect(server: &Server) -> TurnTcp {
        let addr = server.tcp.expect("a server with `Conf::tcp`");
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect over TCP");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        TurnTcp { stream }
    }

    /// Reads one STUN message: its 20-byte header, then the length it gives.
    pub fn read_message(&mut self, server: &Server) -> Vec<u8> {
        let mut message = vec![0u8; 20];
        let read = self.stream.read_exact(&mut message).and_then(|()| {
            let len = u16::from_be_bytes([message[2], message[3]]) as usize;
            message.resize(20 + len, 0);
            self.stream.read_exact(&mut message[20..])
        });
        if let Err(e) = read {
            panic!(
                "no STUN message over TCP: {e}\n--- server log ---\n{}",
                server.log()
            );
        }
        message
    }

    /// Sends `bytes` (a request, maybe followed by more) and returns the answer to the request
    /// that starts them, skipping indications (at most 8).
    pub fn transact(&mut self, bytes: &[u8], server: &Server) -> Vec<u8> {
        self.stream.write_all(bytes).expect("send over TCP");
        for _ in 0..8 {
            let message = self.read_message(server);
            if message[8..20] == bytes[8..20] {
                return message;
            }
        }
        panic!(
            "no answer among 8 messages\n--- server log ---\n{}",
            server.log()
        );
    }

    /// Writes raw bytes (ChannelData frames, say) on the connection.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send over TCP");
    }

    /// Sends `unauthenticated` (a `method` request without credentials), expects a 401 and
    /// returns REST credentials for `user` with the realm and nonce it carried.
    pub fn rest_auth(
        &mut self,
        user: &str,
        method: Method,
        unauthenticated: &[u8],
        server: &Server,
    ) -> Auth {
        let answer = self.transact(unauthenticated, server);
        let msg = expect_error(&answer, method, 401, server);
        let cred = credentials::mint(SECRET_ONE.as_bytes(), user, unix_now(), 3600);
        Auth {
            username: cred.username,
            password: cred.password,
            realm: msg
                .attribute::<Realm>()
                .expect("REALM in a 401")
                .realm()
                .to_owned(),
            nonce: msg
                .attribute::<Nonce>()
                .expect("NONCE in a 401")
                .nonce()
                .to_owned(),
        }
    }

    /// A signed request of `method` that must succeed.
    fn succeed(
        &mut self,
        method: Method,
        auth: &Auth,
        attrs: impl FnOnce(&mut MessageWriteVec, TransactionId),
        server: &Server,
    ) -> Vec<u8> {
        let answer = self.transact(&request(method, Some(auth), attrs), server);
        expect_success(&answer, method, auth, server);
        answer
    }
}

fn tcp_transport(msg: &mut MessageWriteVec, _: TransactionId) {
    add(msg, &RequestedTransport::new(RequestedTransport::TCP));
}

/// An RFC 6062 TCP relay, end to end: a control connection holding a TCP allocation, a peer
/// (a listener of the test's) that the allocation connected to with Connect, and the client's
/// data connection bound to it with ConnectionBind. Raw bytes written to `data` come out of
/// `peer` and the other way round, while `control` stays open.
pub struct TcpRelay {
    pub control: TurnTcp,
    pub data: TcpStream,
    pub peer: TcpStream,
    /// The allocation's relayed address, the local end of `peer`'s connection.
    pub relayed: SocketAddr,
}

impl TcpRelay {
    /// Sets it up for REST user `user`; `early` raw bytes go out in the same write as the
    /// ConnectionBind request (the server must relay them once bound). Needs a server with
    /// `Conf::tcp` that allows loopback peers.
    pub fn open(server: &Server, user: &str, early: &[u8]) -> TcpRelay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the peer listener");
        let peer_addr = listener.local_addr().unwrap();
        let mut control = TurnTcp::connect(server);
        let unauthenticated = request(ALLOCATE, None, tcp_transport);
        let auth = control.rest_auth(user, ALLOCATE, &unauthenticated, server);
        let answer = control.succeed(ALLOCATE, &auth, tcp_transport, server);
        let msg = parse(&answer, ALLOCATE);
        let relayed = relayed_address(&msg);
        control.succeed(
            CREATE_PERMISSION,
            &auth,
            |m, id| add(m, &XorPeerAddress::new(peer_addr, id)),
            server,
        );
        let answer = control.succeed(
            CONNECT,
            &auth,
            |m, id| add(m, &XorPeerAddress::new(peer_addr, id)),
            server,
        );
        let id = parse(&answer, CONNECT)
            .attribute::<ConnectionId>()
            .expect("CONNECTION-ID in the Connect answer")
            .id();
        let (peer, from) = accept(&listener, server);
        assert_eq!(
            from, relayed,
            "the peer connection comes from the relayed address"
        );

        let mut data = TurnTcp::connect(server);
        let bind = |auth: Option<&Auth>| {
            request(CONNECTION_BIND, auth, |m, _| add(m, &ConnectionId::new(id)))
        };
        let data_auth = data.rest_auth(user, CONNECTION_BIND, &bind(None), server);
        let mut bytes = bind(Some(&data_auth));
        bytes.extend_from_slice(early);
        let answer = data.transact(&bytes, server);
        let msg = expect_success(&answer, CONNECTION_BIND, &data_auth, server);
        assert!(msg.has_class(MessageClass::Success));
        TcpRelay {
            control,
            data: data.stream,
            peer,
            relayed,
        }
    }
}

/// Accepts one connection on `listener` within 5 s.
fn accept(listener: &TcpListener, server: &Server) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, from)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                return (stream, from);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!(
                "the relay did not connect to the peer: {e}\n--- server log ---\n{}",
                server.log()
            ),
        }
    }
}

/// Reads exactly `len` bytes from `stream` (each read bounded by the stream's timeout).
pub fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {len} relayed bytes: {e}"));
    buf
}
