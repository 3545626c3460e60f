//! Entry points for the fuzz targets in `fuzz/`: a core with a fake relay I/O, fed bytes as a
//! client datagram, as a stream of framed messages, and as a peer datagram, after setting up an
//! allocation with a permission and a channel so that the deep paths are reachable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::Transport;
use crate::proto::credentials::mint;
use crate::proto::nonce::NonceKey;
use crate::proto::policy::PeerPolicy;
use crate::proto::server::{
    Authenticator, ClientOutput, FiveTuple, Limits, Now, OpenedRelay, PEER_HEADROOM, PEER_TAILROOM,
    RelayId, RelayIo, RelayOpenError, RelayRequest, Server, Settings, Shared, long_term_key,
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

fn server(now: Instant) -> Server {
    let settings = Settings {
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
    };
    Server::new(settings, Arc::new(Shared::new(10, 100)), now)
}

/// Sets up an allocation with a permission and a channel, then feeds `data` to every entry
/// point. Panics only if the core panics.
pub fn datagram(data: &[u8]) {
    let (mut core, mut io, now, ft, peer) = prepared();
    let t0 = now.instant;
    // As a client datagram, and the same bytes split into stream-framed pieces.
    core.handle_client(now, ft, data, &mut io);
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
        let n = match crate::proto::framing::next_frame(rest) {
            crate::proto::framing::Frame::Complete(n) => n,
            _ => rest.len(),
        };
        let (piece, tail) = rest.split_at(n);
        core.handle_client(now, tcp, piece, &mut io);
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
    core.handle_client(later, ft, data, &mut io);
}

/// A core with one dual-stack allocation, a permission and channel 0x4000 to the returned peer.
fn prepared() -> (Server, NullIo, Now, FiveTuple, SocketAddr) {
    let t0 = Instant::now();
    let now = Now {
        instant: t0,
        unix: 1_800_000_000,
    };
    let mut io = NullIo(0);
    let mut core = server(t0);
    let ft = FiveTuple {
        transport: Transport::Udp,
        client: "192.0.2.1:4000".parse().unwrap(),
        server: "192.0.2.2:3478".parse().unwrap(),
    };
    let cred = mint(b"s", "fuzzer", now.unix, 3600);
    let key = long_term_key(&cred.username, REALM, &cred.password);
    let nonce = core_nonce(&mut core, now, ft, &mut io);
    let peer: SocketAddr = "203.0.113.9:7000".parse().unwrap();
    let signed = |m: u16, tid: u8, extra: &dyn Fn(&mut Writer<'_>)| {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Request, m, [tid; 12]);
        extra(&mut w);
        w.attr(attr::USERNAME, cred.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, &nonce)
            .integrity(crate::proto::stun::Integrity::Sha1, &key);
        buf
    };
    for msg in [
        signed(method::ALLOCATE, 1, &|w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .attr(attr::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
        }),
        signed(method::CHANNEL_BIND, 2, &|w| {
            w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])
                .xor_addr(attr::XOR_PEER_ADDRESS, peer);
        }),
    ] {
        core.handle_client(now, ft, &msg, &mut io);
    }
    (core, io, now, ft, peer)
}

fn core_nonce(core: &mut Server, now: Now, ft: FiveTuple, io: &mut NullIo) -> Vec<u8> {
    let mut buf = Vec::new();
    Writer::new(&mut buf, Class::Request, method::ALLOCATE, [0; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    match core.handle_client(now, ft, &buf, io) {
        ClientOutput::Reply => Message::parse(core.reply())
            .ok()
            .and_then(|m| m.get(attr::NONCE).map(<[u8]>::to_vec))
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::server::ClientOutput;

    #[test]
    fn the_harness_reaches_an_allocation() {
        // The set-up must really allocate and bind, or the fuzzer only ever sees 401s.
        let (mut core, mut io, now, ft, peer) = super::prepared();
        assert_eq!(core.allocation_count(), 1);
        let out = core.handle_client(now, ft, &[0x40, 0x00, 0x00, 0x02, 1, 2], &mut io);
        assert!(
            matches!(out, ClientOutput::Relay { peer: p, .. } if p == peer),
            "{out:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            super::datagram(&data);
        }
    }
}
