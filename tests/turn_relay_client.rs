//! The SDK's TURN client (`turnpike::client::turn`) against real servers: the turnpike binary
//! over UDP, TCP, TLS and the TLS port shared with HTTPS (what `turns:` on 443 meets), and
//! coturn over UDP, TCP and TLS. Each test allocates, installs a permission, relays a round
//! trip to an echo peer through a Send indication, binds a channel, relays another round trip
//! as ChannelData, and releases the allocation.

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
