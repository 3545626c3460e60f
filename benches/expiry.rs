//! The pause of one `Server::handle_timeout` with many allocations and nothing due, on the
//! sans-IO core (no sockets): the timer queue against the scan it replaced, timed call by call
//! in one interleaved run (the scan is compiled only with the `bench-baseline` feature).
//!
//! Run: `cargo bench --bench expiry --features bench-baseline [-- ALLOCATIONS ROUNDS]`
//! (defaults: 100000 allocations, each with a permission and a channel; 200 rounds).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike::proto::Transport;
use turnpike::proto::credentials::mint;
use turnpike::proto::server::{
    ClientOutput, Family, FiveTuple, Now, OpenedRelay, RelayId, RelayIo, RelayOpenError,
    RelayRequest, Server, Shared, long_term_key,
};
use turnpike::proto::stun::{Class, Message, attr, method};

mod support;
use support::{REALM, UNIX, settings, signed};

/// Relay "sockets" as numbers (dense ids, like the UDP worker's slab).
struct CountingIo(u32);

impl RelayIo for CountingIo {
    fn open(&mut self, r: RelayRequest) -> Result<OpenedRelay, RelayOpenError> {
        let ip = if r.family == Family::V4 {
            [198, 51, 100, 1 + (self.0 / 50_000) as u8]
        } else {
            return Err(RelayOpenError::FamilyUnsupported);
        };
        let addr = SocketAddr::new(ip.into(), 10_000 + (self.0 % 50_000) as u16);
        self.0 += 1;
        Ok(OpenedRelay {
            id: RelayId(self.0 - 1),
            addr,
            reserved: None,
        })
    }
    fn open_reserved(&mut self, _: SocketAddr, _: bool) -> Result<OpenedRelay, RelayOpenError> {
        Err(RelayOpenError::NoPort)
    }
    fn close(&mut self, _: RelayId) {}
    fn release_reserved(&mut self, _: SocketAddr) {}
}

fn client(i: u32) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: SocketAddr::new(
            [10, (i / 65_535) as u8, 0, 1].into(),
            (i % 65_535) as u16 + 1,
        ),
        server: "192.0.2.200:3478".parse().unwrap(),
    }
}

/// A core holding `n` allocations, each with one permission and one channel, all due in
/// 600 s or later.
fn populated(n: u32, now: Now) -> (Server, CountingIo) {
    let settings = settings([true, false]);
    let mut core = Server::new(settings, Arc::new(Shared::new(0, n + 1)), now.instant);
    let mut io = CountingIo(0);
    let cred = mint(b"secret", "bench", UNIX, 86400);
    let key = long_term_key(&cred.username, REALM, &cred.password);
    let peer: SocketAddr = "203.0.113.5:7000".parse().unwrap();
    for i in 0..n {
        let ft = client(i);
        let nonce = core.settings().auth.nonce(now.unix, ft.client);
        let alloc = signed(
            method::ALLOCATE,
            [1; 12],
            &cred.username,
            &key,
            &nonce,
            |w| {
                w.attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            },
        );
        let bind = signed(
            method::CHANNEL_BIND,
            [2; 12],
            &cred.username,
            &key,
            &nonce,
            |w| {
                w.attr(attr::CHANNEL_NUMBER, &[0x40, 0, 0, 0])
                    .xor_addr(attr::XOR_PEER_ADDRESS, peer);
            },
        );
        for request in [alloc, bind] {
            let out = core.handle_client(now, ft, &request, &mut io);
            assert_eq!(out, ClientOutput::Reply);
            let answer = Message::parse(core.reply()).unwrap();
            assert_eq!(answer.class(), Class::Success, "allocation {i}");
        }
    }
    assert_eq!(core.allocation_count(), n as usize);
    (core, io)
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<28} median {:>10.2?}  p99 {:>10.2?}  max {:>10.2?}",
        at(0.5),
        at(0.99),
        v[v.len() - 1]
    );
}

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it: a short
    // smoke run then, so the test suite checks the bench still works without paying for it.
    let benching = std::env::args().any(|a| a == "--bench");
    let (default_n, default_rounds) = if benching { (100_000, 200) } else { (5_000, 2) };
    let n = args.first().copied().unwrap_or(default_n);
    let rounds = args.get(1).copied().unwrap_or(default_rounds);
    let t0 = Instant::now();
    let now0 = Now {
        instant: t0,
        unix: UNIX,
    };
    let (mut core, mut io) = populated(n, now0);
    println!(
        "{n} allocations (1 permission, 1 channel each) made in {:.1?}; {} timer entries",
        t0.elapsed(),
        core.timer_entries()
    );
    let mut queue = Vec::new();
    #[cfg(feature = "bench-baseline")]
    let mut scan = Vec::new();
    for round in 0..rounds {
        // Ten seconds in, nothing due (the first permission lapses at 300 s).
        let now = Now {
            instant: t0 + Duration::from_secs(10) + Duration::from_millis(round as u64),
            unix: UNIX + 10,
        };
        let start = Instant::now();
        core.handle_timeout(now, &mut io);
        queue.push(start.elapsed());
        #[cfg(feature = "bench-baseline")]
        {
            let start = Instant::now();
            core.handle_timeout_by_scan(now, &mut io);
            scan.push(start.elapsed());
        }
        assert_eq!(core.allocation_count(), n as usize);
    }
    summary("timer queue, nothing due", queue);
    #[cfg(feature = "bench-baseline")]
    summary("scan (before), nothing due", scan);
    #[cfg(not(feature = "bench-baseline"))]
    println!("(build with --features bench-baseline to time the scan it replaced)");
}
