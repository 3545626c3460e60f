//! XDP fast-path entries end with the channel or permission they depend on (issue #15): in the
//! namespace lab of tests/xdp_support, the unmodified turnpike binary runs under libfaketime
//! with its clocks, wall and monotonic, 200 times faster (`FAKETIME="+0 x200"`,
//! `FAKETIME_DONT_FAKE_MONOTONIC=0`), so a permission's 300 s (RFC 8656 §9) pass in 1.5 s and a
//! channel's 600 s (§12) in 3 s. Both lifetimes are fixed by the RFC, not configurable.
//!
//! - An idle channel: its kernel entry goes when its permission expires (about 300 s of server
//!   time after the ChannelBind, well before the channel's 600 s); after that, a ChannelData
//!   does not reach the peer and a datagram from the peer does not reach the client.
//! - A "keeper" that refreshes its allocation (Refresh) and its permission (CreatePermission)
//!   every 40 s of server time but never its ChannelBind: its entry outlives the first
//!   permission lifetime (and still relays in the kernel then) and goes when the channel
//!   expires (about 600 s); after that its ChannelData does not reach the peer, and the peer's
//!   datagram comes as a Data indication (the permission is live, the channel is not).
//!
//! Server times are read from the server's own log (its timestamps run on the faked clock):
//! the `turnpike::net::xdp` debug lines "XDP entry installed" and "XDP entry removed" of the
//! client's 5-tuple and channel, the latter with the packets the kernel relayed for the entry.
//! Nonces (600 s) go stale quickly too: the client signs again after a 438.
//!
//! Caveat: the BPF program's own expiry check compares the entry's expiry with the kernel's
//! real clock (`bpf_ktime_get_ns`), while the server computes that expiry from its faked
//! monotonic clock, far ahead of the real one. So here the program never finds an entry
//! expired by itself: these tests prove the user-space removal of entries (the worker's poll,
//! the authoritative path), not the program's own check (which only matters between an expiry
//! and the worker's next poll; no test isolates it).

mod common;
mod xdp_support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use common::turn::{Auth, add, error_code, parse, relayed_address, request, udp_transport};
use common::*;
use stun_types::attribute::Nonce;
use stun_types::message::{MessageClass, MessageWriteVec, Method, TransactionId};
use turn_client_proto::types::attribute::{ChannelNumber, Lifetime, XorPeerAddress};
use turn_client_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH};
use xdp_support::*;

/// Debian's libfaketime (package `libfaketime`; scripts/test installs it), in the
/// architecture's multiarch directory (`x86_64-linux-gnu`, `aarch64-linux-gnu`).
fn libfaketime() -> String {
    format!(
        "/usr/lib/{}-linux-gnu/faketime/libfaketime.so.1",
        std::env::consts::ARCH
    )
}

/// How much faster the server's clocks run than the real ones.
const SPEED: u32 = 200;
/// The keeper's refresh period: 200 ms real, 40 s of server time (a permission lasts 300 s).
const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// turnpike in the lab under libfaketime, with the static user alice.
fn start_fast_server(lab: &Lab) -> NsTurnpike {
    let libfaketime = libfaketime();
    assert!(
        Path::new(&libfaketime).exists(),
        "{libfaketime} is missing: apt-get install libfaketime (scripts/test installs it)"
    );
    let config = format!(
        "{}[auth.users]\n{STATIC_USER} = {STATIC_PASSWORD:?}\n",
        config(&["s1", "s2"], "", "")
    );
    let env = [
        format!("LD_PRELOAD={libfaketime}"),
        format!("FAKETIME=+0 x{SPEED}"),
        "FAKETIME_DONT_FAKE_MONOTONIC=0".to_owned(),
    ];
    let server = NsTurnpike::start_with_env(lab, &config, &env);
    server.assert_attached();
    server
}

/// One client 5-tuple with an allocation (static user, 3,600 s) and one channel to the peer.
struct Session {
    socket: UdpSocket,
    auth: Auth,
    relayed: SocketAddr,
    peer: SocketAddr,
    channel: u16,
    /// 438 Stale Nonce answers met (and recovered from).
    stale_nonces: u32,
}

impl Session {
    fn open(lab: &Lab, peer: SocketAddr, channel: u16) -> Session {
        let socket = lab.client_socket();
        let challenge = transact(&socket, &request(ALLOCATE, None, udp_transport));
        let nonce = nonce_of(&challenge, ALLOCATE);
        let mut session = Session {
            socket,
            auth: Auth {
                username: STATIC_USER.to_owned(),
                password: STATIC_PASSWORD.to_owned(),
                realm: REALM.to_owned(),
                nonce,
            },
            relayed: peer,
            peer,
            channel,
            stale_nonces: 0,
        };
        let answer = session.signed(ALLOCATE, &|m, id| {
            udp_transport(m, id);
            add(m, &Lifetime::new(3600));
        });
        session.relayed = relayed_address(&parse(&answer, ALLOCATE));
        session.signed(CHANNEL_BIND, &|m, id| {
            add(m, &ChannelNumber::new(channel));
            add(m, &XorPeerAddress::new(peer, id));
        });
        session
    }

    /// Sends a signed request and returns its success answer. A 438 (the nonce went stale,
    /// quickly on a sped-up clock) is answered by signing again with the new nonce, at most
    /// three times; anything else fails the test.
    fn signed(
        &mut self,
        method: Method,
        attrs: &dyn Fn(&mut MessageWriteVec, TransactionId),
    ) -> Vec<u8> {
        for _ in 0..3 {
            let answer = transact(&self.socket, &request(method, Some(&self.auth), attrs));
            let msg = parse(&answer, method);
            if msg.has_class(MessageClass::Success) {
                return answer;
            }
            assert_eq!(error_code(&msg), Some(438), "{method:?} failed: {msg}");
            self.stale_nonces += 1;
            self.auth.nonce = nonce_of(&answer, method);
        }
        panic!("{method:?}: three stale nonces in a row");
    }

    /// Refresh (the allocation) and CreatePermission (the peer), never ChannelBind.
    fn keep(&mut self) {
        self.signed(REFRESH, &|m, _| add(m, &Lifetime::new(600)));
        self.permit();
    }

    fn permit(&mut self) {
        let peer = self.peer;
        self.signed(CREATE_PERMISSION, &|m, id| {
            add(m, &XorPeerAddress::new(peer, id))
        });
    }

    fn local(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }
}

fn nonce_of(answer: &[u8], method: Method) -> String {
    parse(answer, method)
        .attribute::<Nonce>()
        .expect("NONCE in the error answer")
        .nonce()
        .to_owned()
}

/// A UDP socket on [`PEER`]:40000 in the peer namespace (50 ms read timeout).
fn peer_socket(lab: &Lab) -> UdpSocket {
    let socket = lab
        .peer
        .enter(|| UdpSocket::bind(format!("{PEER}:40000")).expect("bind the peer"));
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    socket
}

/// The first datagram on `socket` within `limit` that `wanted` accepts.
fn recv_matching(
    socket: &UdpSocket,
    limit: Duration,
    wanted: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            if wanted(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// Fails if the peer receives anything within 300 ms (after `what`).
fn assert_silent(peer: &UdpSocket, what: &str) {
    let mut buf = [0u8; 2048];
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        if let Ok((n, from)) = peer.recv_from(&mut buf) {
            panic!("the peer got {n} bytes from {from} after the {what}");
        }
    }
}

/// ChannelData (first two bits 01) or a Data indication (type 0x0017): something relayed.
fn relayed_to_client(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0xc0 == 0x40) || datagram.starts_with(&[0x00, 0x17])
}

/// One round trip: the client's ChannelData reaches the peer (from the relayed address), and
/// the peer's answer comes back as ChannelData on the channel, each within 300 ms.
fn round_trip(session: &Session, peer: &UdpSocket, payload: &[u8]) -> bool {
    session
        .socket
        .send(&channel_data(session.channel, payload))
        .unwrap();
    let mut buf = [0u8; 2048];
    let until = Instant::now() + Duration::from_millis(300);
    let mut arrived = false;
    while !arrived && Instant::now() < until {
        if let Ok((n, from)) = peer.recv_from(&mut buf) {
            arrived = from == session.relayed && buf[..n] == *payload;
        }
    }
    if !arrived {
        return false;
    }
    peer.send_to(payload, session.relayed).unwrap();
    let frame = channel_data(session.channel, payload);
    recv_matching(&session.socket, Duration::from_millis(300), |d| d == frame).is_some()
}

/// Warms the path up (the first packets may go to user space while neighbours resolve), then
/// makes `n` round trips that must all succeed.
fn relay_through(session: &Session, peer: &UdpSocket, n: usize) {
    let warm = (0..20).any(|_| round_trip(session, peer, b"warm-up"));
    assert!(warm, "nothing came back through the relay");
    for i in 0..n {
        assert!(
            round_trip(session, peer, format!("through the kernel {i}").as_bytes()),
            "round trip {i} failed"
        );
    }
}

/// What the log says about the entry of one client 5-tuple and channel: the server times
/// (seconds, the faked clock) it was installed and removed, and what the kernel relayed for
/// it (packets client → peer, peer → client), read when it was removed.
#[derive(Debug)]
struct EntryLife {
    installed: f64,
    removed: Option<(f64, [u64; 2])>,
}

impl EntryLife {
    fn read(log: &str, client: SocketAddr, channel: u16) -> Option<EntryLife> {
        let mut life: Option<EntryLife> = None;
        let (client, channel) = (format!("client={client}"), format!("channel={channel}"));
        for line in log.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if !words.contains(&client.as_str()) || !words.contains(&channel.as_str()) {
                continue;
            }
            let Some(t) = log_time(line) else { continue };
            if line.contains("XDP entry installed") && life.is_none() {
                life = Some(EntryLife {
                    installed: t,
                    removed: None,
                });
            } else if line.contains("XDP entry removed") {
                if let Some(life) = life.as_mut().filter(|l| l.removed.is_none()) {
                    life.removed = Some((t, packets(line)?));
                }
            }
        }
        life
    }
}

/// `packets=[a, b]` of a removal line.
fn packets(line: &str) -> Option<[u64; 2]> {
    let rest = &line[line.find("packets=[")? + "packets=[".len()..];
    let (a, b) = rest[..rest.find(']')?].split_once(", ")?;
    Some([a.parse().ok()?, b.parse().ok()?])
}

/// The timestamp that starts a log line (`2025-01-31T12:34:56.789012Z`), in seconds since
/// 1970.
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<f64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [y, m, day] = d[..] else { return None };
    let [h, min, s] = t[..] else { return None };
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + s)
}

/// Waits (at most `limit`, calling `tick` about every 20 ms meanwhile) until the log shows
/// the session's entry removed; returns its life.
fn wait_removed(
    server: &NsTurnpike,
    session: &mut Session,
    limit: Duration,
    mut tick: impl FnMut(&mut Session),
) -> EntryLife {
    let until = Instant::now() + limit;
    loop {
        let life = EntryLife::read(&server.log(), session.local(), session.channel);
        match life {
            Some(life) if life.removed.is_some() => return life,
            _ => {}
        }
        assert!(
            Instant::now() < until,
            "the entry of {} channel {:#x} was not removed within {limit:?} (is the server's \
             clock sped up?): {life:?}\n{}",
            session.local(),
            session.channel,
            server.log()
        );
        tick(session);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idle_channels_entry_goes_when_its_permission_expires() {
    let lab = Lab::new();
    let server = start_fast_server(&lab);
    let peer = peer_socket(&lab);
    let mut session = Session::open(&lab, peer.local_addr().unwrap(), 0x4001);
    relay_through(&session, &peer, 10);

    let life = wait_removed(&server, &mut session, Duration::from_secs(10), |_| {});
    let (removed, [out, back]) = life.removed.unwrap();
    let lived = removed - life.installed;
    println!("idle channel: entry removed {lived:.1} s (server time) after it was installed");
    // The permission (300 s) ended it, not the channel (600 s) nor the allocation (3,600 s).
    assert!(
        (290.0..540.0).contains(&lived),
        "the entry lived {lived:.1} s of server time, not about 300 s: {life:?}\n{}",
        server.log()
    );
    // The round trips after the warm-up went through the kernel.
    assert!(
        out >= 10 && back >= 10,
        "the kernel relayed {out} packets out and {back} back: {life:?}"
    );
    assert_eq!(server.metric(&lab, "turnpike_xdp_entries "), 0);

    // The channel is still bound (600 s), the permission is not: nothing is relayed.
    session
        .socket
        .send(&channel_data(session.channel, b"after the permission"))
        .unwrap();
    assert_silent(&peer, "permission expiry");
    peer.send_to(b"to an expired permission", session.relayed)
        .unwrap();
    let back = recv_matching(
        &session.socket,
        Duration::from_millis(300),
        relayed_to_client,
    );
    assert_eq!(
        back, None,
        "relayed to the client after the permission expired"
    );
}

#[test]
fn a_kept_permissions_entry_goes_when_its_channel_expires() {
    let lab = Lab::new();
    let server = start_fast_server(&lab);
    let peer = peer_socket(&lab);
    let mut session = Session::open(&lab, peer.local_addr().unwrap(), 0x4002);
    let bound = Instant::now();
    relay_through(&session, &peer, 10);

    // Past the first permission's 300 s (1.75 s real: 350 s of server time) and before the
    // channel's 600 s, the entry is still there and relays in the kernel.
    let mut next_keep = Instant::now();
    let mut checked_past_300 = false;
    let life = wait_removed(&server, &mut session, Duration::from_secs(15), |session| {
        if Instant::now() >= next_keep {
            session.keep();
            next_keep = Instant::now() + REFRESH_EVERY;
        }
        if !checked_past_300 && bound.elapsed() >= Duration::from_millis(1750) {
            checked_past_300 = true;
            let before = xdp_bytes(&server, &lab, "client_to_peer");
            assert!(
                round_trip(session, &peer, b"past 300 s"),
                "round trip at 350 s"
            );
            eventually("the kernel relayed at 350 s", &server, || {
                xdp_bytes(&server, &lab, "client_to_peer") >= before + 10
            });
        }
    });
    assert!(checked_past_300, "removed before 350 s: {life:?}");
    let (removed, [out, back]) = life.removed.unwrap();
    let lived = removed - life.installed;
    println!("kept permission: entry removed {lived:.1} s (server time) after it was installed");
    // The channel (600 s) ended it; the permission and the allocation were kept alive.
    assert!(
        (590.0..900.0).contains(&lived),
        "the entry lived {lived:.1} s of server time, not about 600 s: {life:?}\n{}",
        server.log()
    );
    assert!(
        out >= 11 && back >= 11,
        "the kernel relayed {out} packets out and {back} back: {life:?}"
    );
    assert_eq!(server.metric(&lab, "turnpike_xdp_entries "), 0);

    // The permission is live (kept once more now), the channel is not: the client's
    // ChannelData is dropped, the peer's datagram comes as a Data indication.
    session.permit();
    session
        .socket
        .send(&channel_data(session.channel, b"after the channel"))
        .unwrap();
    assert_silent(&peer, "channel expiry");
    let payload = b"to an expired channel";
    peer.send_to(payload, session.relayed).unwrap();
    let back = recv_matching(&session.socket, Duration::from_secs(1), relayed_to_client)
        .expect("the peer's datagram reaches the client");
    assert!(
        back.starts_with(&[0x00, 0x17]) && back.windows(payload.len()).any(|w| w == payload),
        "a Data indication (not ChannelData) carries it: {back:02x?}"
    );
    // The nonce of the first 401 was more than 600 s old by the last CreatePermission: it
    // signed again after a 438.
    println!(
        "kept permission: {} stale nonces renewed",
        session.stale_nonces
    );
    assert!(session.stale_nonces >= 1, "no 438 Stale Nonce met");
}
