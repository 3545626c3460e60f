//! The `turn:`/`turns:`/`stun:` URIs (RFC 7064, RFC 7065) clients use to reach this server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::schema::{Config, Listen, ListenTransport};

/// The URIs a client should be given for this configuration, in listener order, without
/// duplicates: one `turn:HOST:PORT?transport=udp|tcp` per UDP or TCP listener, one
/// `turns:HOST:PORT?transport=tcp` per TLS listener, then one `stun:HOST:PORT` for the first
/// UDP listener (or the first listener when none is UDP).
///
/// HOST is chosen per listener:
/// - an IPv4 listener: `relay.external_ip`, else the listener's address when it is not
///   unspecified, else `127.0.0.1`;
/// - an IPv6 listener: `relay.external_ipv6`, else the listener's address when it is not
///   unspecified, else the IPv4 choice above (`relay.external_ip` or `127.0.0.1`).
///
/// IPv6 hosts are written in brackets.
pub fn client_uris(config: &Config) -> Vec<String> {
    let mut uris: Vec<String> = Vec::new();
    let mut push = |uri: String| {
        if !uris.contains(&uri) {
            uris.push(uri);
        }
    };
    for listener in &config.listen {
        let host = host_and_port(config, listener);
        push(match listener.transport {
            ListenTransport::Udp => format!("turn:{host}?transport=udp"),
            ListenTransport::Tcp => format!("turn:{host}?transport=tcp"),
            ListenTransport::Tls => format!("turns:{host}?transport=tcp"),
        });
    }
    let stun_listener = config
        .listen
        .iter()
        .find(|listener| listener.transport == ListenTransport::Udp)
        .or_else(|| config.listen.first());
    if let Some(listener) = stun_listener {
        push(format!("stun:{}", host_and_port(config, listener)));
    }
    uris
}

/// `HOST:PORT` for a listener, with IPv6 hosts in brackets (the `SocketAddr` display form).
fn host_and_port(config: &Config, listener: &Listen) -> SocketAddr {
    let listened = listener.address.ip();
    let ipv4_choice = config
        .relay
        .external_ip
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let host = match listened {
        IpAddr::V4(_) => config
            .relay
            .external_ip
            .or((!listened.is_unspecified()).then_some(listened))
            .unwrap_or(ipv4_choice),
        IpAddr::V6(_) => config
            .relay
            .external_ipv6
            .or((!listened.is_unspecified()).then_some(listened))
            .unwrap_or(ipv4_choice),
    };
    SocketAddr::new(host, listener.address.port())
}
