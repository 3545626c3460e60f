//! A minimal blocking TURN client over TCP (RFC 8656 §3.4 framing: STUN messages and
//! ChannelData back to back, ChannelData padded to 4 bytes), for the TCP flood bench.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use turnpike::proto::server::long_term_key;
use turnpike::proto::stun::{Class, Integrity, Message, Writer, attr, method};

/// Length of the frame at the start of `buf` (STUN or padded ChannelData), if complete.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let body = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let n = match buf[0] {
        0x00..=0x3f => 20 + body,
        0x40..=0x4f => 4 + body.div_ceil(4) * 4,
        _ => return Some(usize::MAX), // not a frame of ours: the caller fails
    };
    (buf.len() >= n).then_some(n)
}

/// One authenticated TURN-over-TCP session.
pub struct TcpClient {
    stream: TcpStream,
    inbox: Vec<u8>,
    username: String,
    password: String,
    realm: String,
    nonce: Vec<u8>,
    key: [u8; 16],
}

impl TcpClient {
    /// Connects from `local` (port 0 = any) to `server`.
    pub fn connect(server: SocketAddr, username: &str, password: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(TcpClient {
            stream,
            inbox: Vec::new(),
            username: username.into(),
            password: password.into(),
            realm: String::new(),
            nonce: Vec::new(),
            key: [0; 16],
        })
    }

    /// The next frame from the server (bounded by the read timeout).
    pub fn read_frame(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(n) = frame_len(&self.inbox) {
                if n == usize::MAX {
                    bail!("the server sent something that is not a frame");
                }
                return Ok(self.inbox.drain(..n).collect());
            }
            let got = self
                .stream
                .read(&mut chunk)
                .context("reading from the server")?;
            if got == 0 {
                bail!("the server closed the connection");
            }
            self.inbox.extend_from_slice(&chunk[..got]);
        }
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream
            .write_all(bytes)
            .context("writing to the server")
    }

    /// One request (signed once realm and nonce are known) and its answer; learns realm and
    /// nonce from a 401/438 and tries again.
    pub fn transact(&mut self, m: u16, build: &dyn Fn(&mut Writer<'_>)) -> anyhow::Result<Vec<u8>> {
        for _ in 0..3 {
            let tid: [u8; 12] = rand::random();
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out, Class::Request, m, tid);
            build(&mut w);
            if !self.nonce.is_empty() {
                w.attr(attr::USERNAME, self.username.as_bytes())
                    .attr(attr::REALM, self.realm.as_bytes())
                    .attr(attr::NONCE, &self.nonce)
                    .integrity(Integrity::Sha1, &self.key);
            }
            self.write(&out)?;
            let answer = loop {
                let f = self.read_frame()?;
                if f.len() >= 20 && f[0] < 0x40 && f[8..20] == tid {
                    break f;
                }
            };
            let msg = Message::parse(&answer).map_err(|e| anyhow::anyhow!("bad answer: {e}"))?;
            if msg.class() == Class::Success {
                return Ok(answer);
            }
            let code = msg
                .get(attr::ERROR_CODE)
                .map(|v| (v[2] & 7) as u16 * 100 + v[3] as u16)
                .unwrap_or(0);
            match (code, msg.get(attr::REALM), msg.get(attr::NONCE)) {
                (401 | 438, Some(realm), Some(nonce)) => {
                    self.realm = String::from_utf8_lossy(realm).into_owned();
                    self.nonce = nonce.to_vec();
                    self.key = long_term_key(&self.username, &self.realm, &self.password);
                }
                _ => bail!("TURN error {code} for method {m:#x}"),
            }
        }
        bail!("authentication did not converge")
    }

    /// Allocates a UDP relay.
    pub fn allocate(&mut self) -> anyhow::Result<()> {
        self.transact(method::ALLOCATE, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        })
        .map(|_| ())
    }

    /// Binds `channel` to `peer`.
    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> anyhow::Result<()> {
        self.transact(method::CHANNEL_BIND, &|w| {
            w.attr(
                attr::CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            )
            .xor_addr(attr::XOR_PEER_ADDRESS, peer);
        })
        .map(|_| ())
    }

    /// Ends the allocation (Refresh with LIFETIME 0).
    pub fn release(&mut self) -> anyhow::Result<()> {
        self.transact(method::REFRESH, &|w| {
            w.attr(attr::LIFETIME, &[0, 0, 0, 0]);
        })
        .map(|_| ())
    }
}

/// A ChannelData frame for TCP (padded to 4 bytes).
pub fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(4 + payload.len() + 3);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() % 4 != 0 {
        f.push(0);
    }
    f
}
