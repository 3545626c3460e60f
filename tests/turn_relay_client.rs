//! The SDK's TURN client (`turnpike::client::turn`) against real servers: the turnpike binary
//! over UDP, TCP, TLS and the TLS port shared with HTTPS (what `turns:` on 443 meets), and
//! coturn over UDP, TCP and TLS. Each test allocates, installs a permission, relays a round
//! trip to an echo peer through a Send indication, binds a channel, relays another round trip
//! as ChannelData, and releases the allocation. A fake server on loopback sends garbage (the
//! bad-input test): the allocation fails with a documented error, in bounded time.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::coturn::{COTURN_SECRET, Coturn};
use common::pki::Pki;
use common::turn::EchoPeer;
use common::{Conf, SECRET_ONE, Server, unix_now};
use rustls::pki_types::pem::PemObject;
use turnpike::client::turn::{
    TurnConfig, TurnError, TurnRelay, TurnServer, TurnTransport, tls_client_config,
};

fn roots(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(&pki.ca_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    tls_client_config(roots)
}

fn server(addr: SocketAddr, transport: TurnTransport) -> TurnServer {
    let scheme = if transport == TurnTransport::Tls {
        "turns"
    } else {
        "turn"
    };
    let query = match transport {
        TurnTransport::Udp => "?transport=udp",
        _ => "?transport=tcp",
    };
    let s = TurnServer::from_url(&format!("{scheme}:{addr}{query}")).unwrap();
    assert_eq!(s.transport, transport);
    s
}

/// Allocates on `server`, and relays two round trips to an echo peer (Send indication, then
/// ChannelData); bounded by 10 s per step.
async fn round_trips(server: TurnServer, secret: &str, tls: Option<Arc<rustls::ClientConfig>>) {
    let echo = EchoPeer::start();
    let config = TurnConfig::rest(secret.as_bytes(), "sdk", unix_now(), 600, false);
    let step = Duration::from_secs(10);
    let mut relay = tokio::time::timeout(step, TurnRelay::allocate(&server, config, tls))
        .await
        .expect("allocate in time")
        .expect("allocate");
    assert!(relay.relayed().ip().is_loopback(), "{}", relay.relayed());
    assert_eq!(
        relay.mapped().map(|m| m.port()),
        Some(relay.local().port()),
        "XOR-MAPPED-ADDRESS is our socket"
    );
    relay.create_permission(echo.addr.ip()).await.unwrap();
    for (i, channel) in [false, true].into_iter().enumerate() {
        if channel {
            let n = relay.bind_channel(echo.addr).await.unwrap();
            assert!((0x4000..=0x4FFF).contains(&n));
        }
        // Odd lengths exercise the stream padding of ChannelData.
        let payload = format!("round trip {i} {}", "x".repeat(i * 3 + 1)).into_bytes();
        relay.send_to(echo.addr, payload.clone()).unwrap();
        let (from, data) = tokio::time::timeout(step, relay.recv())
            .await
            .expect("an echo in time")
            .expect("relayed data");
        assert_eq!((from, data), (echo.addr, payload));
    }
    tokio::time::timeout(step, relay.close())
        .await
        .expect("close in time");
}

fn turnpike() -> (Server, Pki) {
    let pki = Pki::temporary();
    let leaf = pki.leaf("turnpike");
    let server = Server::start(Conf {
        tcp: true,
        tls: true,
        tls_http: true,
        tls_files: leaf.tls_files(),
        ..Conf::loopback_peers()
    });
    (server, pki)
}

#[tokio::test]
async fn turnpike_udp_tcp_tls_and_the_shared_https_port() {
    let (s, pki) = turnpike();
    round_trips(server(s.udp, TurnTransport::Udp), SECRET_ONE, None).await;
    round_trips(server(s.tcp.unwrap(), TurnTransport::Tcp), SECRET_ONE, None).await;
    let tls = Some(roots(&pki));
    round_trips(
        server(s.tls.unwrap(), TurnTransport::Tls),
        SECRET_ONE,
        tls.clone(),
    )
    .await;
    // The listener that also serves HTTPS (the port 443 set-up): ALPN stun.turn routes to TURN.
    round_trips(
        server(s.tls_http.unwrap(), TurnTransport::Tls),
        SECRET_ONE,
        tls,
    )
    .await;
}

#[tokio::test]
async fn coturn_udp_tcp_and_tls() {
    let c = Coturn::start();
    round_trips(server(c.listen, TurnTransport::Udp), COTURN_SECRET, None).await;
    round_trips(server(c.listen, TurnTransport::Tcp), COTURN_SECRET, None).await;
    round_trips(
        server(c.tls, TurnTransport::Tls),
        COTURN_SECRET,
        Some(roots(&c.pki)),
    )
    .await;
}

#[tokio::test]
async fn wrong_secret_is_unauthorized_and_a_stranger_certificate_is_refused() {
    let (s, _pki) = turnpike();
    let config = TurnConfig::rest(b"not-the-secret", "sdk", unix_now(), 600, false);
    let r = TurnRelay::allocate(&server(s.udp, TurnTransport::Udp), config, None).await;
    assert!(
        matches!(r, Err(TurnError::Unauthorized(_))),
        "{:?}",
        r.err()
    );
    let stranger = Pki::temporary();
    let config = TurnConfig::rest(SECRET_ONE.as_bytes(), "sdk", unix_now(), 600, false);
    let r = TurnRelay::allocate(
        &server(s.tls.unwrap(), TurnTransport::Tls),
        config,
        Some(roots(&stranger)),
    )
    .await;
    assert!(matches!(r, Err(TurnError::Io(_))), "{:?}", r.err());
}

/// What a misbehaving TURN server answers to every request.
#[derive(Clone, Copy, Debug)]
enum Garbage {
    /// Random bytes.
    Random,
    /// The first 30 bytes of a real answer (a header that promises more).
    Truncated,
    /// A well-formed 401 for another transaction.
    WrongTransaction,
    /// A stream frame header claiming 65,535 bytes that never come (streams only).
    HugeLength,
}

/// A 401 Unauthorized answer (REALM, NONCE) to the request `req`, or with its transaction id
/// changed.
fn unauthorized(req: &[u8], same_tid: bool) -> Vec<u8> {
    use turnpike::proto::stun::{Class, Writer, attr};
    let mut tid: [u8; 12] = req
        .get(8..20)
        .and_then(|t| t.try_into().ok())
        .unwrap_or([0; 12]);
    if !same_tid {
        tid[0] ^= 0xFF;
    }
    // The first request is always an Allocate.
    let method = turnpike::proto::stun::method::ALLOCATE;
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf, Class::Error, method, tid);
    w.error_code(401, "Unauthorized");
    w.attr(attr::REALM, b"bad.example");
    w.attr(attr::NONCE, b"0123456789abcdef");
    w.bytes().to_vec()
}

fn garbage(kind: Garbage, req: &[u8]) -> Vec<u8> {
    match kind {
        Garbage::Random => (0..200).map(|_| rand::random::<u8>()).collect(),
        Garbage::Truncated => unauthorized(req, true)[..30].to_vec(),
        Garbage::WrongTransaction => unauthorized(req, false),
        Garbage::HugeLength => vec![0x01, 0x13, 0xFF, 0xFF, 0x21, 0x12, 0xA4, 0x42],
    }
}

/// A UDP "TURN server" on loopback that answers each datagram with `kind` (twice).
async fn bad_udp_server(kind: Garbage) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            for _ in 0..2 {
                let _ = socket.send_to(&garbage(kind, &buf[..n]), from).await;
            }
        }
    });
    addr
}

/// A TCP "TURN server" on loopback that answers the first request with `kind` and then keeps
/// the connection open, silent.
async fn bad_tcp_server(kind: Garbage) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                let _ = stream.write_all(&garbage(kind, &buf[..n])).await;
                // Silent from here on: whatever else comes is read and ignored.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Garbage from the TURN server: random bytes, truncated STUN, answers to another transaction,
/// a stream header promising 64 KiB that never comes. Over UDP and TCP the allocation fails
/// with `Timeout(Allocate)` (the documented "no answer from the TURN server": nothing it got
/// was an answer), `Framing` when a stream carries what is neither STUN nor ChannelData, or
/// `Io` when the stream breaks; never a panic, never a hang: within the configured timers.
#[tokio::test]
async fn garbage_from_the_turn_server_is_an_error_not_a_panic_or_a_hang() {
    for kind in [
        Garbage::Random,
        Garbage::Truncated,
        Garbage::WrongTransaction,
    ] {
        let addr = bad_udp_server(kind).await;
        let mut config = TurnConfig::rest(SECRET_ONE.as_bytes(), "sdk", unix_now(), 600, false);
        config.rto = Duration::from_millis(100);
        config.max_transmits = 3;
        config.last_wait_factor = 4;
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            TurnRelay::allocate(&server(addr, TurnTransport::Udp), config, None),
        )
        .await
        .unwrap_or_else(|_| panic!("UDP {kind:?}: allocate hangs"));
        assert!(
            matches!(r, Err(TurnError::Timeout(_))),
            "UDP {kind:?}: {:?}",
            r.err()
        );
        println!("UDP {kind:?}: {:?} after {:?}", r.err(), started.elapsed());
    }
    for kind in [
        Garbage::Random,
        Garbage::Truncated,
        Garbage::WrongTransaction,
        Garbage::HugeLength,
    ] {
        let addr = bad_tcp_server(kind).await;
        let mut config = TurnConfig::rest(SECRET_ONE.as_bytes(), "sdk", unix_now(), 600, true);
        config.stream_timeout = Duration::from_secs(1);
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            TurnRelay::allocate(&server(addr, TurnTransport::Tcp), config, None),
        )
        .await
        .unwrap_or_else(|_| panic!("TCP {kind:?}: allocate hangs"));
        assert!(
            matches!(
                r,
                Err(TurnError::Timeout(_) | TurnError::Io(_) | TurnError::Framing)
            ),
            "TCP {kind:?}: {:?}",
            r.err()
        );
        println!("TCP {kind:?}: {:?} after {:?}", r.err(), started.elapsed());
    }
}
