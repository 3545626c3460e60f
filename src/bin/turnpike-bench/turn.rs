//! A minimal blocking TURN client for setting up sessions: Allocate, CreatePermission,
//! ChannelBind with long-term (REST) credentials, learning the nonce from the 401.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context, bail};
use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

/// Credentials and the nonce learnt from the server, shared by the sessions of one host.
#[derive(Clone)]
pub struct Auth {
    username: String,
    password: String,
    realm: String,
    key: [u8; 16],
    nonce: Vec<u8>,
}

impl Auth {
    /// Credentials for a password; realm and nonce are learnt on the first 401.
    pub fn new(username: &str, password: &str) -> Self {
        Auth {
            username: username.into(),
            password: password.into(),
            realm: String::new(),
            key: [0; 16],
            nonce: Vec::new(),
        }
    }
}

/// One request/answer exchange with retries; handles 401/438 by learning realm and nonce.
pub fn transact(
    sock: &UdpSocket,
    server: SocketAddr,
    auth: &mut Auth,
    m: u16,
    attrs: &[(u16, Vec<u8>)],
) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    let mut answer = vec![0u8; 2048];
    for round in 0..3 {
        let tid: [u8; 12] = rand::random();
        let mut w = Writer::new(&mut buf, Class::Request, m, tid);
        for (t, v) in attrs {
            if *t == attr::XOR_PEER_ADDRESS {
                let addr: SocketAddr = std::str::from_utf8(v)?.parse()?;
                w.xor_addr(*t, addr);
            } else {
                w.attr(*t, v);
            }
        }
        if !auth.nonce.is_empty() {
            w.attr(attr::USERNAME, auth.username.as_bytes())
                .attr(attr::REALM, auth.realm.as_bytes())
                .attr(attr::NONCE, &auth.nonce)
                .integrity(Integrity::Sha1, &auth.key);
        }
        let len = exchange(sock, server, &buf, &mut answer, tid)?;
        let msg = Message::parse(&answer[..len]).map_err(|e| anyhow::anyhow!("bad answer: {e}"))?;
        if msg.class() == Class::Success {
            return Ok(answer[..len].to_vec());
        }
        let code = msg
            .get(attr::ERROR_CODE)
            .map(|v| (v[2] & 7) as u16 * 100 + v[3] as u16)
            .unwrap_or(0);
        if matches!(code, 401 | 438) && round < 2 {
            if let (Some(realm), Some(nonce)) = (msg.get(attr::REALM), msg.get(attr::NONCE)) {
                auth.realm = String::from_utf8_lossy(realm).into_owned();
                auth.nonce = nonce.to_vec();
                auth.key = long_term_key(&auth.username, &auth.realm, &auth.password);
                continue;
            }
        }
        bail!("TURN error {code} for method {m:#x}");
    }
    bail!("authentication did not converge")
}

fn exchange(
    sock: &UdpSocket,
    server: SocketAddr,
    req: &[u8],
    answer: &mut [u8],
    tid: [u8; 12],
) -> anyhow::Result<usize> {
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    for _ in 0..6 {
        sock.send_to(req, server).context("sending a request")?;
        loop {
            match sock.recv_from(answer) {
                Ok((n, _)) if n >= 20 && answer[8..20] == tid => return Ok(n),
                Ok(_) => continue, // relayed data or a stale answer
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => return Err(e).context("receiving an answer"),
            }
        }
    }
    bail!("no answer from {server}")
}

/// Allocates a UDP relay; returns the relayed address.
pub fn allocate(
    sock: &UdpSocket,
    server: SocketAddr,
    auth: &mut Auth,
) -> anyhow::Result<SocketAddr> {
    let answer = transact(
        sock,
        server,
        auth,
        method::ALLOCATE,
        &[(attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])],
    )?;
    let msg = Message::parse(&answer).map_err(|e| anyhow::anyhow!("{e}"))?;
    msg.get(attr::XOR_RELAYED_ADDRESS)
        .and_then(|v| msg.xor_address(v))
        .context("no XOR-RELAYED-ADDRESS")
}

/// Binds `channel` to `peer` (which also installs the permission).
pub fn channel_bind(
    sock: &UdpSocket,
    server: SocketAddr,
    auth: &mut Auth,
    channel: u16,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    let attrs = [
        (
            attr::CHANNEL_NUMBER,
            vec![(channel >> 8) as u8, channel as u8, 0, 0],
        ),
        (attr::XOR_PEER_ADDRESS, peer.to_string().into_bytes()),
    ];
    transact(sock, server, auth, method::CHANNEL_BIND, &attrs).map(|_| ())
}

/// Installs a permission for `peer`.
pub fn permit(
    sock: &UdpSocket,
    server: SocketAddr,
    auth: &mut Auth,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    transact(
        sock,
        server,
        auth,
        method::CREATE_PERMISSION,
        &[(attr::XOR_PEER_ADDRESS, peer.to_string().into_bytes())],
    )
    .map(|_| ())
}

/// Writes a Send indication carrying `payload` to `peer` into `out`.
pub fn send_indication(out: &mut Vec<u8>, peer: SocketAddr, payload: &[u8]) {
    let mut w = Writer::new(out, Class::Indication, method::SEND, rand::random());
    w.xor_addr(attr::XOR_PEER_ADDRESS, peer)
        .attr(attr::DATA, payload);
}

/// Deletes the allocation (Refresh with LIFETIME 0), so that a later run reusing the same
/// local port does not meet it (437).
pub fn release(sock: &UdpSocket, server: SocketAddr, auth: &mut Auth) -> anyhow::Result<()> {
    transact(
        sock,
        server,
        auth,
        method::REFRESH,
        &[(attr::LIFETIME, vec![0, 0, 0, 0])],
    )
    .map(|_| ())
}
