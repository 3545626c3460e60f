//! A small blocking STUN/TURN client for the audit: UDP or TCP (RFC 8656 §3.1 framing), one
//! request at a time, bounded waits. Built on the core's codec.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::proto::stun::{Class, Integrity, Message, Writer, attr, method};

/// How long one request waits for its answer (UDP retransmits within it).
const ANSWER_WAIT: Duration = Duration::from_millis(1500);
/// UDP retransmissions of one request.
const UDP_TRIES: u32 = 3;

/// The connection to the audited (or probed) server.
pub enum Conn {
    /// UDP, connected to the server.
    Udp(UdpSocket),
    /// TCP (STUN messages framed by their length).
    Tcp(TcpStream),
    /// TLS over TCP (`turns:`), framed like TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

/// A byte stream whose reads can time out: TCP or TLS over TCP.
trait Stream: Read + Write {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))
    }
}

impl Stream for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_read_timeout(Some(timeout))
    }
}

/// An answer: the whole message and its error code (0 for success).
pub struct Answer {
    /// The bytes received.
    pub bytes: Vec<u8>,
    /// The ERROR-CODE, or 0.
    pub code: u16,
}

impl Answer {
    /// The message (the answer was parsed when it arrived).
    pub fn message(&self) -> Message<'_> {
        Message::parse(&self.bytes).expect("parsed when received")
    }
}

impl Conn {
    /// A UDP socket connected to `server`.
    pub fn udp(server: SocketAddr) -> io::Result<Conn> {
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(server)?;
        Ok(Conn::Udp(socket))
    }

    /// A TCP connection to `server`.
    pub fn tcp(server: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&server, ANSWER_WAIT)?;
        stream.set_nodelay(true)?;
        Ok(Conn::Tcp(stream))
    }

    /// A TLS connection to `server`, checking its certificate for `name` with `config`; the
    /// handshake completes before this returns (at most [`ANSWER_WAIT`] for the TCP connect
    /// and as long again for the handshake).
    pub fn tls(
        server: SocketAddr,
        name: rustls::pki_types::ServerName<'static>,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&server, ANSWER_WAIT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(ANSWER_WAIT))?;
        stream.set_write_timeout(Some(ANSWER_WAIT))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Conn::Tls(Box::new(tls)))
    }

    /// The stream of a TCP or TLS connection.
    fn stream(&mut self) -> Option<&mut dyn Stream> {
        match self {
            Conn::Udp(_) => None,
            Conn::Tcp(s) => Some(s),
            Conn::Tls(s) => Some(s.as_mut()),
        }
    }

    /// Sends a message that gets no answer (an indication).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(bytes).map(|_| ()),
            other => match other.stream() {
                Some(s) => s.write_all(bytes).and_then(|()| s.flush()),
                None => Ok(()),
            },
        }
    }

    /// Waits up to `wait` for the next STUN message from the server (of any class).
    /// `None`: nothing arrived, or the connection failed.
    pub fn receive(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match self {
            Conn::Udp(socket) => {
                let mut buf = vec![0u8; 65536];
                socket
                    .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                    .ok()?;
                let n = socket.recv(&mut buf).ok()?;
                buf.truncate(n);
                Some(buf)
            }
            other => read_framed(other.stream()?, wait),
        }
    }

    /// Sends `request` (transaction `tid`) and waits for its answer. `None`: no answer.
    pub fn exchange(&mut self, request: &[u8], tid: [u8; 12]) -> Option<Answer> {
        match self {
            Conn::Udp(socket) => {
                let mut buf = vec![0u8; 65536];
                for _ in 0..UDP_TRIES {
                    socket.send(request).ok()?;
                    let deadline = Instant::now() + ANSWER_WAIT / UDP_TRIES;
                    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                        socket
                            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                            .ok()?;
                        let Ok(n) = socket.recv(&mut buf) else { break };
                        if let Some(answer) = answer_for(&buf[..n], tid) {
                            return Some(answer);
                        }
                    }
                }
                None
            }
            other => {
                let stream = other.stream()?;
                stream.write_all(request).ok()?;
                stream.flush().ok()?;
                let deadline = Instant::now() + ANSWER_WAIT;
                // Bounded: at most 16 messages that are not the answer (indications).
                for _ in 0..16 {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    let bytes = read_framed(stream, left)?;
                    if let Some(answer) = answer_for(&bytes, tid) {
                        return Some(answer);
                    }
                }
                None
            }
        }
    }
}

/// Reads one STUN message framed by its length from a TCP or TLS stream, waiting at most
/// `wait` for each read.
fn read_framed(stream: &mut dyn Stream, wait: Duration) -> Option<Vec<u8>> {
    stream
        .set_timeout(wait.max(Duration::from_millis(1)))
        .ok()?;
    let mut header = [0u8; 20];
    stream.read_exact(&mut header).ok()?;
    let len = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut bytes = header.to_vec();
    bytes.resize(20 + len, 0);
    stream.read_exact(&mut bytes[20..]).ok()?;
    Some(bytes)
}

/// The answer to `tid` in `bytes`, if that is what they are.
fn answer_for(bytes: &[u8], tid: [u8; 12]) -> Option<Answer> {
    let msg = Message::parse(bytes).ok()?;
    if msg.transaction_id() != tid || !matches!(msg.class(), Class::Success | Class::Error) {
        return None;
    }
    let code = msg
        .get(attr::ERROR_CODE)
        .filter(|v| v.len() >= 4)
        .map_or(0, |v| u16::from(v[2] & 7) * 100 + u16::from(v[3]));
    Some(Answer {
        bytes: bytes.to_vec(),
        code,
    })
}

/// A random transaction id.
pub fn tid() -> [u8; 12] {
    let mut t = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut t);
    t
}

/// An attribute for a request: type and value, or an XOR address encoded for the request's
/// transaction id.
pub enum Attr {
    /// A raw attribute.
    Raw(u16, Vec<u8>),
    /// An XOR-encoded address attribute.
    Address(u16, SocketAddr),
}

/// A long-term-credential session: username, key, realm and nonce learnt from the first 401.
pub struct Session {
    /// The connection.
    pub conn: Conn,
    username: String,
    password: String,
    realm: Vec<u8>,
    nonce: Vec<u8>,
}

impl Session {
    /// A session over `conn` with these credentials (realm and nonce learnt on first use).
    pub fn new(conn: Conn, username: String, password: String) -> Session {
        Session {
            conn,
            username,
            password,
            realm: Vec::new(),
            nonce: Vec::new(),
        }
    }

    /// Sends an authenticated request, learning the realm and nonce from a 401/438 and trying
    /// once more. `None`: no answer.
    pub fn call(&mut self, m: u16, attrs: &[Attr]) -> Option<Answer> {
        for _ in 0..3 {
            let t = tid();
            let mut buf = Vec::new();
            let mut w = Writer::new(&mut buf, Class::Request, m, t);
            for a in attrs {
                match a {
                    Attr::Raw(ty, v) => w.attr(*ty, v),
                    Attr::Address(ty, addr) => w.xor_addr(*ty, *addr),
                };
            }
            if !self.nonce.is_empty() {
                let realm = String::from_utf8_lossy(&self.realm).into_owned();
                let key =
                    crate::proto::server::long_term_key(&self.username, &realm, &self.password);
                w.attr(attr::USERNAME, self.username.as_bytes())
                    .attr(attr::REALM, &self.realm)
                    .attr(attr::NONCE, &self.nonce)
                    .integrity(Integrity::Sha1, &key);
            }
            w.fingerprint();
            let answer = self.conn.exchange(&buf, t)?;
            if matches!(answer.code, 401 | 438) {
                let msg = answer.message();
                let (Some(realm), Some(nonce)) = (msg.get(attr::REALM), msg.get(attr::NONCE))
                else {
                    return Some(answer);
                };
                let fresh = nonce != self.nonce.as_slice();
                self.realm = realm.to_vec();
                self.nonce = nonce.to_vec();
                if fresh || answer.code == 438 {
                    continue;
                }
            }
            return Some(answer);
        }
        None
    }

    /// Allocate with REQUESTED-TRANSPORT `proto` (17 UDP, 6 TCP) and `extra` attributes.
    pub fn allocate(&mut self, proto: u8, extra: &[Attr]) -> Option<Answer> {
        let mut attrs = vec![Attr::Raw(attr::REQUESTED_TRANSPORT, vec![proto, 0, 0, 0])];
        for a in extra {
            attrs.push(match a {
                Attr::Raw(t, v) => Attr::Raw(*t, v.clone()),
                Attr::Address(t, addr) => Attr::Address(*t, *addr),
            });
        }
        self.call(method::ALLOCATE, &attrs)
    }

    /// Sends a Send indication carrying `data` to `peer` (no answer).
    pub fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Indication, method::SEND, tid());
        w.xor_addr(attr::XOR_PEER_ADDRESS, peer)
            .attr(attr::DATA, data);
        let _ = self.conn.send(&buf);
    }
}

/// The relayed addresses of a successful Allocate answer.
pub fn relayed(answer: &Answer) -> Vec<SocketAddr> {
    let msg = answer.message();
    msg.attributes()
        .filter(|(t, _)| *t == attr::XOR_RELAYED_ADDRESS)
        .filter_map(|(_, v)| msg.xor_address(v))
        .collect()
}
