//! Entry points for the fuzz targets in `fuzz/`: a core with a fake relay I/O, after setting up
//! an allocation with a permission and a channel so that the deep paths are reachable, fed
//! bytes as a client datagram and as a peer datagram (`datagram`), or as a TCP/TLS byte stream
//! cut into arbitrary chunks, framed as the stream listeners frame it (`stream`). Besides "no
//! panic", every answer must be a well-formed STUN response to the request's transaction, of
//! bounded size (and small when the request was not authenticated: no amplification).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::Transport;
use crate::proto::credentials::mint;
use crate::proto::framing::{Frame, MAX_FRAME, next_frame};
use crate::proto::nonce::NonceKey;
use crate::proto::policy::PeerPolicy;
use crate::proto::server::{
    Authenticator, ClientOutput, FiveTuple, Limits, Now, OpenedRelay, PEER_HEADROOM, PEER_TAILROOM,
    RelayId, RelayIo, RelayOpenError, RelayRequest, Server, Settings, Shared, Stats, long_term_key,
};
use crate::proto::stun::{Class, Message, Writer, attr, method};

struct NullIo(u32);

impl RelayIo for NullIo {
    fn open(&mut self, r: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        self.0 += 1;
        let ip = match r.family {
            crate::proto::server::Family::V4 => "198.51.100.1".parse().unwrap(),
            crate::proto::server::Family::V6 => "2001:db8::1".parse().unwrap(),
        };
        let reserved = r.reserve_next.then(|| SocketAddr::new(ip, 50001));
        Ok(OpenedRelay {
            id: RelayId(self.0),
            addr: SocketAddr::new(ip, 50000),
            reserved,
        })
    }
    fn open_reserved(&mut self, addr: SocketAddr, _: bool) -> Result<OpenedRelay, RelayOpenError> {
        self.0 += 1;
        Ok(OpenedRelay {
            id: RelayId(self.0),
            addr,
            reserved: None,
        })
    }
    fn close(&mut self, _: RelayId) {}
    fn release_reserved(&mut self, _: SocketAddr) {}
}

const REALM: &str = "fuzz";

/// Largest answer to an authenticated request.
const MAX_REPLY: usize = 1280;
/// Largest answer to a request without MESSAGE-INTEGRITY (a 401, a Binding answer, an error):
/// what a spoofed source could make the server reflect.
const MAX_UNAUTHENTICATED_REPLY: usize = 256;

fn settings() -> Settings {
    Settings {
        auth: Authenticator::new(
            REALM.into(),
            vec![b"s".to_vec()],
            &Default::default(),
            NonceKey::new([1; 32], 600),
        ),
        policy: PeerPolicy::new(vec![], vec![]),
        own_relay_ips: vec![],
        relay_ports: (49152, 65535),
        own_addresses: vec![],
        tcp_allocations: true,
        limits: Limits {
            bandwidth_bps: 1_000_000,
            // A small limiter table: a core is built for every input.
            rate_limit_table_size: 64,
            ..Limits::default()
        },
        software: None,
        families: [true, true],
    }
}

fn server(now: Instant) -> Server {
    Server::new(settings(), Arc::new(Shared::new(10, 100)), now)
}

/// A core as a TCP/TLS connection task has one.
fn stream_server(now: Instant) -> Server {
    Server::for_stream(
        Arc::new(settings()),
        Arc::new(Shared::new(10, 100)),
        now,
        Arc::new(Stats::shared()),
    )
}

/// Feeds `data` as a client message and checks what comes out: an answer is a well-formed STUN
/// response to the request (same transaction), of bounded size; a relayed payload lies inside
/// the input.
fn client(core: &mut Server, now: Now, ft: FiveTuple, data: &[u8], io: &mut NullIo) -> bool {
    match core.handle_client(now, ft, data, io) {
        ClientOutput::Reply => {
            check_reply(data, core.reply());
            true
        }
        ClientOutput::Relay { payload, .. } => {
            assert!(payload.start <= payload.end && payload.end <= data.len());
            true
        }
        ClientOutput::Nothing => true,
        // A data connection from now on (RFC 6062): the stream leaves the core.
        ClientOutput::ConnectionBind { .. } => false,
        ClientOutput::Connect { .. } => true,
    }
}

/// An answer to `request`: STUN, a response of the request's transaction, bounded in size.
pub fn check_reply(request: &[u8], reply: &[u8]) {
    let answer = Message::parse(reply).unwrap_or_else(|e| panic!("bad answer {e:?}: {reply:02x?}"));
    assert!(
        matches!(answer.class(), Class::Success | Class::Error),
        "the answer is a {:?}",
        answer.class()
    );
    assert_eq!(next_frame(reply), Frame::Complete(reply.len()), "one frame");
    assert!(
        reply.len() <= MAX_REPLY,
        "an answer of {} bytes",
        reply.len()
    );
    if let Ok(request) = Message::parse(request) {
        assert_eq!(answer.transaction_id(), request.transaction_id());
        assert_eq!(answer.method(), request.method());
        if !request.has_integrity() {
            assert!(
                reply.len() <= MAX_UNAUTHENTICATED_REPLY,
                "an unauthenticated request of {} bytes answered with {}",
                request.as_bytes().len(),
                reply.len()
            );
        }
    }
}

/// Sets up an allocation with a permission and a channel, then feeds `data` to every entry
/// point. Panics only if the core panics.
pub fn datagram(data: &[u8]) {
    let ft = FT;
    let (mut core, mut io, now, peer) = prepared(server, ft);
    let t0 = now.instant;
    // As a client datagram, and the same bytes split into stream-framed pieces.
    client(&mut core, now, ft, data, &mut io);
    let tcp = FiveTuple {
        transport: Transport::Tcp,
        ..ft
    };
    let mut rest = data;
    for _ in 0..64 {
        if rest.is_empty() {
            break;
        }
        // Framed as the TCP/TLS listeners frame a stream (a piece that cannot be framed, or
        // is incomplete, is fed whole).
        let n = match next_frame(rest) {
            Frame::Complete(n) => n,
            _ => rest.len(),
        };
        let (piece, tail) = rest.split_at(n);
        client(&mut core, now, tcp, piece, &mut io);
        rest = tail;
    }
    // As a peer datagram on the relay, from the permitted peer and from others.
    let mut buf = vec![0u8; PEER_HEADROOM + data.len() + PEER_TAILROOM];
    buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
    for from in [
        peer,
        "203.0.113.9:7001".parse().unwrap(),
        "198.51.100.7:1".parse().unwrap(),
    ] {
        core.handle_peer(t0, RelayId(1), from, &mut buf, data.len());
    }
    let later = Now {
        instant: t0 + Duration::from_secs(4000),
        unix: now.unix + 4000,
    };
    core.handle_timeout(later, &mut io);
    client(&mut core, later, ft, data, &mut io);
}

/// `stream`: bytes as a TCP client sends them, read in chunks of arbitrary sizes (the first two
/// bytes seed the chunk sizes), framed by [`next_frame`] into a stream core that already holds
/// an allocation, exactly as a connection task does: complete frames go to the core,
/// an incomplete one waits for more bytes, an unframeable one closes the connection. Checks
/// the framer's answers against the bytes and every answer of the core.
pub fn stream(data: &[u8]) {
    let Some((seed, bytes)) = data.split_first_chunk::<2>() else {
        return;
    };
    let ft = FiveTuple {
        transport: Transport::Tcp,
        ..FT
    };
    let (mut core, mut io, now, _) = prepared(stream_server, ft);
    let chunks = Chunks {
        state: u32::from(u16::from_be_bytes(*seed)) | 0x1_0000,
        max: usize::from(seed[0] % 64) * 64 + 1,
        rest: bytes,
    };
    let mut input: Vec<u8> = Vec::new();
    for chunk in chunks {
        input.extend_from_slice(chunk);
        let mut used = 0;
        loop {
            let pending = &input[used..];
            match next_frame(pending) {
                Frame::Complete(n) => {
                    assert!(n >= 4 && n <= pending.len() && n <= MAX_FRAME, "{n}");
                    let frame = &pending[..n];
                    assert_eq!(next_frame(frame), Frame::Complete(n), "self-contained");
                    if frame[0] >> 6 == 0 {
                        let body = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
                        assert_eq!(n, 20 + body, "a STUN frame is its header's length");
                    }
                    used += n;
                    if !client(&mut core, now, ft, frame, &mut io) {
                        return;
                    }
                }
                Frame::Incomplete(total) => {
                    assert!(total > pending.len() && total <= MAX_FRAME, "{total}");
                    break;
                }
                // The connection is closed.
                Frame::Invalid => return,
            }
        }
        input.drain(..used);
        // What waits is less than one frame: the connection's buffer is bounded.
        assert!(input.len() < MAX_FRAME);
    }
}

/// Cuts a byte string into chunks of pseudo-random sizes from 1 to `max` (a xorshift: the
/// same input always cuts the same way).
struct Chunks<'a> {
    state: u32,
    max: usize,
    rest: &'a [u8],
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        let size = 1 + self.state as usize % self.max;
        let (chunk, rest) = self.rest.split_at(size.min(self.rest.len()));
        self.rest = rest;
        Some(chunk)
    }
}

/// The client's 5-tuple over UDP.
const FT: FiveTuple = FiveTuple {
    transport: Transport::Udp,
    client: SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        4000,
    ),
    server: SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)),
        3478,
    ),
};

/// A core (made by `make`) with one dual-stack allocation for `ft`, a permission and channel
/// 0x4000 to the returned peer.
fn prepared(make: fn(Instant) -> Server, ft: FiveTuple) -> (Server, NullIo, Now, SocketAddr) {
    let t0 = Instant::now();
    let now = Now {
        instant: t0,
        unix: 1_800_000_000,
    };
    let mut io = NullIo(0);
    let mut core = make(t0);
    for msg in setup_messages() {
        core.handle_client(now, ft, msg, &mut io);
    }
    (core, io, now, PEER)
}

/// The signed Allocate (dual-stack) and ChannelBind (0x4000 to [`PEER`]) that prepare a core.
/// Made once: the nonce is stateless and the harness's wall clock fixed, so they are the same
/// for every core, and signing them for every input would halve the fuzzer's speed.
fn setup_messages() -> &'static [Vec<u8>; 2] {
    static MESSAGES: std::sync::OnceLock<[Vec<u8>; 2]> = std::sync::OnceLock::new();
    MESSAGES.get_or_init(|| {
        let now = Now {
            instant: Instant::now(),
            unix: 1_800_000_000,
        };
        let signer = Signer::new(&mut server(now.instant), now, FT, &mut NullIo(0));
        [
            signer.sign(method::ALLOCATE, 1, &|w| {
                w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                    .attr(attr::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
            }),
            signer.sign(method::CHANNEL_BIND, 2, &|w| {
                w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])
                    .xor_addr(attr::XOR_PEER_ADDRESS, PEER);
            }),
        ]
    })
}

/// The permitted peer, with channel 0x4000.
const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 9)),
    7000,
);

/// Signs requests as the harness's user, with the nonce the core hands out (stateless: the
/// same for every core at the harness's fixed wall-clock time).
struct Signer {
    username: String,
    key: Vec<u8>,
    nonce: Vec<u8>,
}

impl Signer {
    fn new(core: &mut Server, now: Now, ft: FiveTuple, io: &mut NullIo) -> Signer {
        let cred = mint(b"s", "fuzzer", now.unix, 3600);
        let key = long_term_key(&cred.username, REALM, &cred.password);
        let mut buf = Vec::new();
        Writer::new(&mut buf, Class::Request, method::ALLOCATE, [0; 12])
            .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        let nonce = match core.handle_client(now, ft, &buf, io) {
            ClientOutput::Reply => Message::parse(core.reply())
                .ok()
                .and_then(|m| m.get(attr::NONCE).map(<[u8]>::to_vec))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Signer {
            username: cred.username,
            key: key.to_vec(),
            nonce,
        }
    }

    fn sign(&self, m: u16, tid: u8, extra: &dyn Fn(&mut Writer<'_>)) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Request, m, [tid; 12]);
        extra(&mut w);
        w.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &self.nonce)
            .integrity(crate::proto::stun::Integrity::Sha1, &self.key);
        buf
    }
}

/// Hand-made seeds for `datagram` (and, framed, for `stream`): each kind of request, signed
/// as the harness's user where the method needs it, an indication and ChannelData.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut core = server(Instant::now());
    let now = Now {
        instant: Instant::now(),
        unix: 1_800_000_000,
    };
    let signer = Signer::new(&mut core, now, FT, &mut NullIo(0));
    let plain = |class, m: u16, extra: &dyn Fn(&mut Writer<'_>)| {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, class, m, [9; 12]);
        extra(&mut w);
        buf
    };
    let other_peer: SocketAddr = "203.0.113.10:9".parse().expect("an address");
    vec![
        (
            "binding",
            plain(Class::Request, method::BINDING, &|w| {
                w.fingerprint();
            }),
        ),
        (
            "allocate-unauthenticated",
            plain(Class::Request, method::ALLOCATE, &|w| {
                w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            }),
        ),
        (
            "allocate-again",
            signer.sign(method::ALLOCATE, 3, &|w| {
                w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                    .attr(attr::EVEN_PORT, &[0x80, 0, 0, 0]);
            }),
        ),
        (
            "allocate-tcp",
            signer.sign(method::ALLOCATE, 4, &|w| {
                w.attr(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
            }),
        ),
        (
            "refresh",
            signer.sign(method::REFRESH, 5, &|w| {
                w.u32_attr(attr::LIFETIME, 600);
            }),
        ),
        (
            "refresh-zero",
            signer.sign(method::REFRESH, 6, &|w| {
                w.u32_attr(attr::LIFETIME, 0);
            }),
        ),
        (
            "create-permission",
            signer.sign(method::CREATE_PERMISSION, 7, &|w| {
                w.xor_addr(attr::XOR_PEER_ADDRESS, other_peer);
            }),
        ),
        (
            "channel-bind",
            signer.sign(method::CHANNEL_BIND, 8, &|w| {
                w.attr(attr::CHANNEL_NUMBER, &[0x40, 1, 0, 0])
                    .xor_addr(attr::XOR_PEER_ADDRESS, other_peer);
            }),
        ),
        (
            "connect",
            signer.sign(method::CONNECT, 10, &|w| {
                w.xor_addr(attr::XOR_PEER_ADDRESS, PEER);
            }),
        ),
        (
            "send-indication",
            plain(Class::Indication, method::SEND, &|w| {
                w.xor_addr(attr::XOR_PEER_ADDRESS, PEER)
                    .attr(attr::DATA, b"hello peer");
            }),
        ),
        (
            "channel-data",
            vec![
                0x40, 0x00, 0x00, 0x05, b'h', b'e', b'l', b'l', b'o', 0, 0, 0,
            ],
        ),
        (
            "unknown-required",
            plain(Class::Request, method::BINDING, &|w| {
                w.attr(0x0031, b"????");
            }),
        ),
    ]
}

/// Each seed of [`seeds`] fed to a fresh harness core over UDP: the error code of the answer
/// (`None`: success, or no answer), to check that the signed seeds pass authentication.
#[cfg(test)]
pub(crate) fn seed_answers() -> Vec<(&'static str, Option<u16>)> {
    seeds()
        .into_iter()
        .map(|(name, bytes)| {
            let (mut core, mut io, now, _) = prepared(server, FT);
            let code = match core.handle_client(now, FT, &bytes, &mut io) {
                ClientOutput::Reply => Message::parse(core.reply())
                    .ok()
                    .and_then(|m| m.get(attr::ERROR_CODE).map(<[u8]>::to_vec))
                    .map(|v| u16::from(v[2] & 7) * 100 + u16::from(v[3])),
                _ => None,
            };
            (name, code)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harnesses_reach_an_allocation() {
        // The set-up must really allocate and bind, or the fuzzer only ever sees 401s.
        let tcp = FiveTuple {
            transport: Transport::Tcp,
            ..FT
        };
        for (make, ft) in [(server as fn(Instant) -> Server, FT), (stream_server, tcp)] {
            let (mut core, mut io, now, peer) = prepared(make, ft);
            assert_eq!(core.allocation_count(), 1);
            let out = core.handle_client(now, ft, &[0x40, 0x00, 0x00, 0x02, 1, 2], &mut io);
            assert!(
                matches!(out, ClientOutput::Relay { peer: p, .. } if p == peer),
                "{out:?}"
            );
        }
    }

    #[test]
    fn chunks_cover_the_input() {
        let data: Vec<u8> = (0..=255).collect();
        for seed in [0u32, 1, 0xffff] {
            let chunks = Chunks {
                state: seed | 0x1_0000,
                max: 7,
                rest: &data,
            };
            let pieces: Vec<&[u8]> = chunks.collect();
            assert!(pieces.iter().all(|p| (1..=7).contains(&p.len())));
            assert_eq!(pieces.concat(), data);
        }
    }

    #[test]
    #[should_panic(expected = "the answer is a Request")]
    fn a_request_is_not_an_answer() {
        let mut request = Vec::new();
        Writer::new(&mut request, Class::Request, method::BINDING, [3; 12]);
        check_reply(&request, &request);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            datagram(&data);
            stream(&data);
        }
    }
}
