//! Micro-benchmarks of the relay's hot functions, on the sans-IO core (no sockets):
//! ChannelData forwarding decision, Send indication handling, peer → client framing,
//! integrity checking, and the allocation lookup with many allocations.
//!
//! Run: `cargo bench --bench core`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use turnpike::proto::Transport;
use turnpike::proto::credentials::mint;
use turnpike::proto::server::{
    ClientOutput, Family, FiveTuple, Now, OpenedRelay, PEER_HEADROOM, PEER_TAILROOM, RelayId,
    RelayIo, RelayOpenError, RelayRequest, Server, Shared, long_term_key,
};
use turnpike::proto::stun::{Class, Message, Writer, attr, method};

mod support;
use support::{REALM, UNIX, settings};

struct CountingIo(u32);

impl RelayIo for CountingIo {
    fn open(&mut self, r: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        self.0 += 1;
        let ip = if r.family == Family::V4 {
            "198.51.100.1"
        } else {
            "2001:db8::1"
        };
        let addr = SocketAddr::new(ip.parse().unwrap(), 10000 + (self.0 % 50000) as u16);
        Ok(OpenedRelay {
            id: RelayId(self.0),
            addr,
            reserved: None,
        })
    }
    fn open_reserved(&mut self, a: SocketAddr, _: bool) -> Result<OpenedRelay, RelayOpenError> {
        self.0 += 1;
        Ok(OpenedRelay {
            id: RelayId(self.0),
            addr: a,
            reserved: None,
        })
    }
    fn close(&mut self, _: RelayId) {}
    fn release_reserved(&mut self, _: SocketAddr) {}
}

struct Fixture {
    core: Server,
    io: CountingIo,
    now: Now,
    username: String,
    key: [u8; 16],
    nonce: Vec<u8>,
}

fn client(i: u32) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: SocketAddr::new([192, 0, 2, (i >> 16) as u8 + 1].into(), (i & 0xffff) as u16),
        server: "192.0.2.200:3478".parse().unwrap(),
    }
}

fn fixture() -> Fixture {
    let now = Now {
        instant: Instant::now(),
        unix: UNIX,
    };
    let settings = settings([true, true]);
    let core = Server::new(settings, Arc::new(Shared::new(0, 1_000_000)), now.instant);
    let cred = mint(b"secret", "bench", UNIX, 86400);
    let key = long_term_key(&cred.username, REALM, &cred.password);
    let mut f = Fixture {
        core,
        io: CountingIo(0),
        now,
        username: cred.username,
        key,
        nonce: Vec::new(),
    };
    // Learn a nonce (valid for every port of this IP).
    let mut req = Vec::new();
    Writer::new(&mut req, Class::Request, method::ALLOCATE, [0; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    assert_eq!(
        f.core.handle_client(now, client(0), &req, &mut f.io),
        ClientOutput::Reply
    );
    f.nonce = Message::parse(f.core.reply())
        .unwrap()
        .get(attr::NONCE)
        .unwrap()
        .to_vec();
    f
}

impl Fixture {
    fn signed(&self, m: u16, tid: [u8; 12], body: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
        support::signed(m, tid, &self.username, &self.key, &self.nonce, body)
    }

    /// Allocates for `ft` and binds channel 0x4000 to `peer`.
    fn allocate(&mut self, ft: FiveTuple, peer: SocketAddr) {
        let alloc = self.signed(method::ALLOCATE, [1; 12], |w| {
            w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        });
        assert_eq!(
            self.core.handle_client(self.now, ft, &alloc, &mut self.io),
            ClientOutput::Reply
        );
        let bind = self.signed(method::CHANNEL_BIND, [2; 12], |w| {
            w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])
                .xor_addr(attr::XOR_PEER_ADDRESS, peer);
        });
        self.core.handle_client(self.now, ft, &bind, &mut self.io);
        let ok = Message::parse(self.core.reply()).unwrap();
        assert_eq!(ok.class(), Class::Success, "ChannelBind failed");
    }
}

fn benches(c: &mut Criterion) {
    let peer: SocketAddr = "203.0.113.5:7000".parse().unwrap();
    let mut f = fixture();
    f.allocate(client(1), peer);

    let mut channel_data = vec![0x40, 0x00, 0x00, 100];
    channel_data.resize(104, 0xab);
    c.bench_function("client ChannelData -> forward decision", |b| {
        b.iter(|| {
            let out = f
                .core
                .handle_client(f.now, client(1), black_box(&channel_data), &mut f.io);
            debug_assert!(matches!(out, ClientOutput::Relay { .. }));
            black_box(out)
        })
    });

    let mut send = Vec::new();
    Writer::new(&mut send, Class::Indication, method::SEND, [9; 12])
        .xor_addr(attr::XOR_PEER_ADDRESS, peer)
        .attr(attr::DATA, &[0xab; 100]);
    c.bench_function("client Send indication -> forward decision", |b| {
        b.iter(|| {
            black_box(
                f.core
                    .handle_client(f.now, client(1), black_box(&send), &mut f.io),
            )
        })
    });

    let mut buf = vec![0u8; PEER_HEADROOM + 100 + PEER_TAILROOM];
    c.bench_function("peer datagram -> ChannelData frame", |b| {
        b.iter(|| {
            black_box(
                f.core
                    .handle_peer(f.now.instant, RelayId(1), peer, &mut buf, 100),
            )
        })
    });
    let other_port: SocketAddr = "203.0.113.5:7001".parse().unwrap();
    c.bench_function("peer datagram -> Data indication", |b| {
        b.iter(|| {
            black_box(
                f.core
                    .handle_peer(f.now.instant, RelayId(1), other_port, &mut buf, 100),
            )
        })
    });

    let refresh = f.signed(method::REFRESH, [5; 12], |_| {});
    c.bench_function("parse + MESSAGE-INTEGRITY check", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(&refresh)).unwrap();
            black_box(m.verify_integrity(&f.key))
        })
    });

    let mut big = fixture();
    for i in 1..=10_000 {
        big.allocate(client(i), peer);
    }
    c.bench_function("ChannelData lookup among 10k allocations", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i % 10_000 + 1;
            black_box(
                big.core
                    .handle_client(big.now, client(i), &channel_data, &mut big.io),
            )
        })
    });
}

criterion_group!(core, benches);
criterion_main!(core);
