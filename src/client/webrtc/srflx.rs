//! Server-reflexive candidates: a STUN Binding request (RFC 8489 §6) from the host candidate's
//! socket to each `stun:` server of the session's ICE servers; the XOR-MAPPED-ADDRESS of the
//! answer is our address as the server saw it (behind a NAT, the NAT's mapping). Two agents
//! behind NATs that keep one mapping per socket (endpoint-independent mapping) then pair
//! directly, without TURN.
//!
//! [`binding_request`] and [`mapped_address`] are the pure part; [`gather`] sends and waits,
//! bounded by a deadline, before the peer connection uses the socket.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::proto::stun::{Class, Message, Writer, attr, method};

/// At most this many STUN servers are asked (one request each, resent).
pub const MAX_STUN_SERVERS: usize = 4;
/// How long gathering waits for answers, at most.
pub const GATHER_TIMEOUT: Duration = Duration::from_millis(1500);
/// Resends of an unanswered request (RFC 8489's RTO, shortened: gathering must stay fast).
const RESEND_EVERY: Duration = Duration::from_millis(300);

/// A Binding request with transaction id `tid` (no attributes: the answer needs none).
pub fn binding_request(tid: [u8; 12]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(20);
    Writer::new(&mut buf, Class::Request, method::BINDING, tid);
    buf
}

/// The mapped address in `datagram` when it is the success answer to the request `tid`
/// (XOR-MAPPED-ADDRESS, else the legacy MAPPED-ADDRESS); `None` for anything else (other
/// transactions, errors, garbage).
pub fn mapped_address(datagram: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    let message = Message::parse(datagram).ok()?;
    if message.class() != Class::Success
        || message.method() != method::BINDING
        || &message.transaction_id() != tid
    {
        return None;
    }
    if let Some(value) = message.get(attr::XOR_MAPPED_ADDRESS) {
        return message.xor_address(value);
    }
    crate::proto::stun::decode_address(message.get(attr::MAPPED_ADDRESS)?)
}

/// The `host:port` of a `stun:` URL (`stuns:` and other schemes: `None`).
pub fn stun_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("stun:")?;
    let rest = rest.split('?').next()?;
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        (h, p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 3478,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Asks each server (at most [`MAX_STUN_SERVERS`], same address family as `socket`) for our
/// mapped address through `socket`, resending every 300 ms, until each answered or `limit`
/// passed. Returns the distinct mapped addresses that differ from the socket's own address
/// (on a network without NAT the host candidate already covers it). Datagrams that are not
/// an answer are ignored; nothing here can block past `limit`.
pub async fn gather(
    socket: &UdpSocket,
    servers: &[SocketAddr],
    limit: Duration,
) -> Vec<SocketAddr> {
    let Ok(local) = socket.local_addr() else {
        return Vec::new();
    };
    let mut pending: Vec<(SocketAddr, [u8; 12])> = servers
        .iter()
        .filter(|s| s.is_ipv4() == local.is_ipv4())
        .take(MAX_STUN_SERVERS)
        .map(|s| (*s, rand::random()))
        .collect();
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; 1500];
    while !pending.is_empty() {
        for (server, tid) in &pending {
            let _ = socket.send_to(&binding_request(*tid), server).await;
        }
        let resend = (tokio::time::Instant::now() + RESEND_EVERY).min(deadline);
        loop {
            match tokio::time::timeout_at(resend, socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => {
                    let Some(i) = pending.iter().position(|(s, _)| *s == from) else {
                        continue;
                    };
                    if let Some(mapped) = mapped_address(&buf[..n], &pending[i].1) {
                        pending.swap_remove(i);
                        if mapped != local && !found.contains(&mapped) {
                            found.push(mapped);
                        }
                        if pending.is_empty() {
                            break;
                        }
                    }
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(tid: [u8; 12], mapped: SocketAddr) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, Class::Success, method::BINDING, tid);
        w.xor_addr(attr::XOR_MAPPED_ADDRESS, mapped);
        w.bytes().to_vec()
    }

    #[test]
    fn a_request_parses_as_a_binding_request() {
        let tid = [7; 12];
        let bytes = binding_request(tid);
        let m = Message::parse(&bytes).expect("a STUN message");
        assert_eq!(m.class(), Class::Request);
        assert_eq!(m.method(), method::BINDING);
        assert_eq!(m.transaction_id(), tid);
    }

    #[test]
    fn the_answer_to_our_transaction_gives_the_mapped_address() {
        let tid = [1; 12];
        let mapped: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        assert_eq!(mapped_address(&answer(tid, mapped), &tid), Some(mapped));
        // Another transaction, a request, garbage, truncation: nothing.
        assert_eq!(mapped_address(&answer([2; 12], mapped), &tid), None);
        assert_eq!(mapped_address(&binding_request(tid), &tid), None);
        assert_eq!(mapped_address(b"\x01\x01\x00\x00garbage", &tid), None);
        let whole = answer(tid, mapped);
        for cut in 0..whole.len() {
            assert_eq!(mapped_address(&whole[..cut], &tid), None, "cut at {cut}");
        }
    }

    /// The candidate is trickled as `typ srflx` (str0m hides its base: `raddr 0.0.0.0`, as
    /// browsers do); the relay-only policy offers none.
    #[test]
    fn a_peer_trickles_the_srflx_candidate() {
        use crate::client::webrtc::{LinkSignal, PeerEvent, PeerOutput, RtcPeer, RtcPeerConfig};
        let base: SocketAddr = "192.168.1.20:5000".parse().unwrap();
        let mapped: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let candidates = |relay_only: bool| {
            let config = RtcPeerConfig {
                epoch: 1,
                relay_only,
                polite: false,
                sctp_max_buffered: crate::client::webrtc::SCTP_MAX_BUFFERED,
            };
            let mut peer = RtcPeer::new(std::time::Instant::now(), config);
            peer.add_host_candidate(base).unwrap();
            peer.add_srflx_candidate(mapped, base).unwrap();
            let mut lines = Vec::new();
            while let PeerOutput::Event(e) = peer.poll_output() {
                if let PeerEvent::Signal(LinkSignal::Candidate {
                    candidate: Some(c), ..
                }) = e
                {
                    lines.push(c.candidate);
                }
            }
            lines
        };
        let lines = candidates(false);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("203.0.113.9 40000 typ srflx")),
            "{lines:?}"
        );
        assert!(candidates(true).is_empty());
    }

    #[test]
    fn stun_urls() {
        assert_eq!(stun_host_port("stun:h:1"), Some(("h".into(), 1)));
        assert_eq!(stun_host_port("stun:h"), Some(("h".into(), 3478)));
        assert_eq!(stun_host_port("stun:[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(stun_host_port("turn:h:1"), None);
        assert_eq!(stun_host_port("stun::1"), None);
        assert_eq!(stun_host_port("stun:h:x"), None);
    }

    /// Loopback: a STUN server that answers with another address (as a NAT would make it
    /// look): that address comes back; a silent server costs at most the limit.
    #[tokio::test]
    async fn gather_asks_the_server_and_bounds_the_wait() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let nat: SocketAddr = "198.51.100.7:61000".parse().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            // The first request is dropped (lost), the resend answered; garbage first.
            let (_, from) = server.recv_from(&mut buf).await.unwrap();
            let (n, _) = server.recv_from(&mut buf).await.unwrap();
            let tid: [u8; 12] = buf[8..20].try_into().unwrap();
            let _ = server.send_to(b"not stun at all", from).await;
            let _ = server.send_to(&answer([9; 12], nat), from).await;
            let _ = server.send_to(&answer(tid, nat), from).await;
            let _ = n;
        });
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = std::time::Instant::now();
        let found = gather(&socket, &[server_addr, silent_addr], Duration::from_secs(2)).await;
        assert_eq!(found, vec![nat]);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(2500), "bounded: {took:?}");
        assert!(
            took >= Duration::from_secs(2),
            "waited for the silent one: {took:?}"
        );
        // A server that maps us to our own address (no NAT): no srflx candidate.
        let plain = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let plain_addr = plain.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (_, from) = plain.recv_from(&mut buf).await.unwrap();
            let tid: [u8; 12] = buf[8..20].try_into().unwrap();
            let _ = plain.send_to(&answer(tid, from), from).await;
        });
        let found = gather(&socket, &[plain_addr], Duration::from_secs(2)).await;
        assert!(found.is_empty(), "{found:?}");
    }
}
