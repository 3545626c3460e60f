//! The TURN core driven without sockets: a fake clock and a fake relay I/O, and the client
//! helpers the test modules share. The tests are grouped by purpose: authentication, allocations,
//! relaying, limits, counting and RFC 6062 TCP allocations.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::proto::credentials::mint;
use crate::proto::nonce::NonceKey;
use crate::proto::policy::{Cidr, PeerPolicy};
use crate::proto::stun::{Integrity, Message, Writer, attr, method};

mod admin;
mod allocate;
mod auth;
mod counting;
mod expiry;
mod fast_path;
mod limits;
mod relay;
mod reload;
mod route;
mod security;
mod tcp;
mod throttle;

const REALM: &str = "harness.test";
const UNIX0: u64 = 1_800_000_000;

/// Relay sockets as numbers: IPv4 relays on 203.0.113.1, IPv6 on 2001:db8::1.
#[derive(Default)]
struct FakeIo {
    next_port: u16,
    open: BTreeSet<u32>,
    held: BTreeSet<u16>,
    no_ports: bool,
}

impl RelayIo for FakeIo {
    fn open(&mut self, r: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        if self.no_ports {
            return Err(RelayOpenError::NoPort);
        }
        if self.next_port == 0 {
            self.next_port = 50000;
        }
        if r.even && self.next_port % 2 == 1 {
            self.next_port += 1;
        }
        let ip: IpAddr = match r.family {
            Family::V4 => "203.0.113.1".parse().unwrap(),
            Family::V6 => "2001:db8::1".parse().unwrap(),
        };
        let port = self.next_port;
        self.next_port += if r.reserve_next { 2 } else { 1 };
        self.open.insert(port as u32);
        let reserved = r.reserve_next.then(|| {
            self.held.insert(port + 1);
            SocketAddr::new(ip, port + 1)
        });
        Ok(OpenedRelay {
            id: RelayId(port as u32),
            addr: SocketAddr::new(ip, port),
            reserved,
        })
    }

    fn open_reserved(
        &mut self,
        addr: SocketAddr,
        _df: bool,
    ) -> Result<OpenedRelay, RelayOpenError> {
        assert!(self.held.remove(&addr.port()), "not reserved: {addr}");
        self.open.insert(addr.port() as u32);
        Ok(OpenedRelay {
            id: RelayId(addr.port() as u32),
            addr,
            reserved: None,
        })
    }

    fn release_reserved(&mut self, addr: SocketAddr) {
        assert!(self.held.remove(&addr.port()), "not reserved: {addr}");
    }

    fn close(&mut self, id: RelayId) {
        assert!(
            self.open.remove(&id.0),
            "closed twice or never opened: {id:?}"
        );
    }

    fn open_tcp(&mut self, family: Family) -> Result<OpenedRelay, RelayOpenError> {
        self.open(RelayRequest {
            family,
            even: false,
            reserve_next: false,
            dont_fragment: false,
            near: None,
        })
    }
}

struct Harness {
    server: Server,
    io: FakeIo,
    t0: Instant,
    elapsed: Duration,
}

fn settings(limits: Limits, allow: &[&str]) -> Settings {
    let users: HashMap<String, String> = [("alice".to_owned(), "wonderland".to_owned())].into();
    Settings {
        auth: Authenticator::new(
            REALM.into(),
            vec![b"new-secret".to_vec(), b"old-secret".to_vec()],
            &users,
            NonceKey::new([7; 32], 600),
        ),
        policy: PeerPolicy::new(
            allow.iter().map(|c| c.parse::<Cidr>().unwrap()).collect(),
            vec![],
        ),
        own_relay_ips: vec![
            "203.0.113.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ],
        relay_ports: (49152, 65535),
        own_addresses: vec![],
        tcp_allocations: true,
        limits,
        software: Some("turnpike-test".into()),
        families: [true, true],
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(settings(Limits::default(), &[]), Shared::new(10, 100))
    }

    fn with(settings: Settings, shared: Shared) -> Self {
        let t0 = Instant::now();
        Harness {
            server: Server::new(settings, Arc::new(shared), t0),
            io: FakeIo::default(),
            t0,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.t0 + self.elapsed,
            unix: UNIX0 + self.elapsed.as_secs(),
        }
    }

    fn advance(&mut self, secs: u64) {
        self.elapsed += Duration::from_secs(secs);
        let now = self.now();
        self.server.handle_timeout(now, &mut self.io);
    }

    /// Sends bytes from a client; returns the reply, if any.
    fn send(&mut self, ft: FiveTuple, data: &[u8]) -> Option<Vec<u8>> {
        let now = self.now();
        match self.server.handle_client(now, ft, data, &mut self.io) {
            ClientOutput::Reply => Some(self.server.reply().to_vec()),
            _ => None,
        }
    }

    fn client_out(&mut self, ft: FiveTuple, data: &[u8]) -> ClientOutput {
        let now = self.now();
        self.server.handle_client(now, ft, data, &mut self.io)
    }

    /// A peer sends `payload` to relay `relay`; returns the frame the client would get.
    fn peer_sends(
        &mut self,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let mut buf = vec![0xAAu8; PEER_HEADROOM + payload.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + payload.len()].copy_from_slice(payload);
        let now = self.now().instant;
        match self.server.handle_peer(
            now,
            RelayId(relay.port() as u32),
            peer,
            &mut buf,
            payload.len(),
        ) {
            PeerOutput::ToClient { frame, .. } => Some(buf[frame].to_vec()),
            PeerOutput::Nothing => None,
        }
    }
}

fn ft(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: client.parse().unwrap(),
        server: "192.0.2.100:3478".parse().unwrap(),
    }
}

/// A TURN client's view: its credentials and the current nonce.
struct Client {
    ft: FiveTuple,
    username: String,
    key: [u8; 16],
    nonce: Vec<u8>,
    integrity: Integrity,
    next_tid: u8,
}

impl Client {
    fn rest(ft: FiveTuple, user: &str, secret: &[u8], ttl: u64) -> Self {
        let c = mint(secret, user, UNIX0, ttl);
        Self::with_password(ft, &c.username, &c.password)
    }

    fn with_password(ft: FiveTuple, username: &str, password: &str) -> Self {
        Client {
            ft,
            username: username.into(),
            key: long_term_key(username, REALM, password),
            nonce: Vec::new(),
            integrity: Integrity::Sha1,
            next_tid: 1,
        }
    }

    fn tid(&mut self) -> [u8; 12] {
        self.next_tid = self.next_tid.wrapping_add(1);
        [self.next_tid; 12]
    }

    /// Builds a signed request.
    fn request(&self, m: u16, tid: [u8; 12], attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Request, m, tid);
        for (t, v) in attrs {
            w.attr(*t, v);
        }
        w.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &self.nonce)
            .integrity(self.integrity, &self.key)
            .fingerprint();
        buf
    }

    /// Sends a request, learning the nonce from a 401/438 first when needed. Returns the answer.
    fn call(&mut self, h: &mut Harness, m: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        for _ in 0..2 {
            let tid = self.tid();
            let answer = h
                .send(self.ft, &self.request(m, tid, attrs))
                .expect("an answer");
            let msg = Message::parse(&answer).unwrap();
            if msg.class() == Class::Error
                && matches!(error_code(&answer), 401 | 438)
                && msg.get(attr::NONCE).is_some()
            {
                let nonce = msg.get(attr::NONCE).unwrap().to_vec();
                if nonce != self.nonce {
                    self.nonce = nonce;
                    continue;
                }
            }
            return answer;
        }
        panic!("no answer after a nonce refresh");
    }

    fn allocate(&mut self, h: &mut Harness) -> Vec<u8> {
        self.call(h, method::ALLOCATE, &[udp()])
    }
}

fn udp() -> (u16, Vec<u8>) {
    (attr::REQUESTED_TRANSPORT, vec![17, 0, 0, 0])
}

/// Builds XOR-PEER-ADDRESS for a given tid (XOR depends on it for IPv6).
fn xor_peer(peer: &str, tid: [u8; 12]) -> (u16, Vec<u8>) {
    let mut out = [0u8; 20];
    let n = crate::proto::stun::encode_xor_address(peer.parse().unwrap(), &tid, &mut out);
    (attr::XOR_PEER_ADDRESS, out[..n].to_vec())
}

fn error_code(answer: &[u8]) -> u16 {
    let m = Message::parse(answer).unwrap();
    match m.get(attr::ERROR_CODE) {
        Some(v) => (v[2] & 7) as u16 * 100 + v[3] as u16,
        None => 0,
    }
}

fn relayed(answer: &[u8]) -> Vec<SocketAddr> {
    let m = Message::parse(answer).unwrap();
    m.attributes()
        .filter(|(t, _)| *t == attr::XOR_RELAYED_ADDRESS)
        .map(|(_, v)| m.xor_address(v).unwrap())
        .collect()
}

/// Sends a request whose XOR-PEER-ADDRESS attributes are encoded for its own tid.
fn call_with_peers(
    c: &mut Client,
    h: &mut Harness,
    m: u16,
    peers: &[&str],
    extra: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    for _ in 0..2 {
        let tid = c.tid();
        let mut attrs: Vec<(u16, Vec<u8>)> = extra.to_vec();
        attrs.extend(peers.iter().map(|p| xor_peer(p, tid)));
        let answer = h.send(c.ft, &c.request(m, tid, &attrs)).expect("an answer");
        if error_code(&answer) == 438 {
            c.nonce = Message::parse(&answer)
                .unwrap()
                .get(attr::NONCE)
                .unwrap()
                .to_vec();
            continue;
        }
        return answer;
    }
    panic!("nonce loop");
}

fn permit(c: &mut Client, h: &mut Harness, peers: &[&str]) -> u16 {
    error_code(&call_with_peers(
        c,
        h,
        method::CREATE_PERMISSION,
        peers,
        &[],
    ))
}

fn bind(c: &mut Client, h: &mut Harness, number: u16, peer: &str) -> u16 {
    let ch = (
        attr::CHANNEL_NUMBER,
        vec![(number >> 8) as u8, number as u8, 0, 0],
    );
    error_code(&call_with_peers(c, h, method::CHANNEL_BIND, &[peer], &[ch]))
}
