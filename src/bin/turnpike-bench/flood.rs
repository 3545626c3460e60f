//! A spoofed flood, as a reflection attack looks to the server: unauthenticated Allocates from
//! many source addresses (one socket on each of many loopback addresses), none of which ever
//! authenticates. Counts the answers each source got.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::Context;
use turnpike::proto::stun::{Class, Writer, attr, method};

/// What a flood run measured.
#[derive(Debug, Default)]
pub struct FloodResult {
    /// Requests sent, all sources together.
    pub sent: usize,
    /// Answers received, all sources together.
    pub answered: usize,
    /// The most answers one source got.
    pub max_per_source: usize,
    /// How long the flood lasted (sending, then 300 ms of draining).
    pub elapsed: Duration,
}

/// The `i`th flooding address: 127.1.x.y, never a .0 or .255.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// `sources` addresses each send `per_source` unauthenticated Allocates to `server`, spread
/// over `duration` (round after round, one request per source a round).
pub fn run(
    server: SocketAddr,
    sources: usize,
    per_source: usize,
    duration: Duration,
) -> anyhow::Result<FloodResult> {
    let socks = (0..sources)
        .map(|i| {
            let s =
                UdpSocket::bind((source(i), 0)).with_context(|| format!("bind {}", source(i)))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut answers = vec![0usize; sources];
    let mut result = FloodResult::default();
    let mut req = Vec::new();
    let mut buf = [0u8; 1500];
    let drain = |answers: &mut [usize], buf: &mut [u8]| {
        for (i, s) in socks.iter().enumerate() {
            while s.recv_from(buf).is_ok() {
                answers[i] += 1;
            }
        }
    };
    let start = Instant::now();
    let gap = duration / per_source.max(1) as u32;
    for round in 0..per_source {
        for (i, s) in socks.iter().enumerate() {
            let mut tid = [0u8; 12];
            tid[..4].copy_from_slice(&(round as u32).to_be_bytes());
            tid[4..8].copy_from_slice(&(i as u32).to_be_bytes());
            Writer::new(&mut req, Class::Request, method::ALLOCATE, tid)
                .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            if s.send_to(&req, server).is_ok() {
                result.sent += 1;
            }
        }
        drain(&mut answers, &mut buf);
        let next = start + gap * (round as u32 + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let quiet = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet {
        drain(&mut answers, &mut buf);
        std::thread::sleep(Duration::from_millis(10));
    }
    result.elapsed = start.elapsed();
    result.answered = answers.iter().sum();
    result.max_per_source = answers.iter().copied().max().unwrap_or(0);
    Ok(result)
}
