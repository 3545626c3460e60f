//! Entry point for the `registry` fuzz target in `fuzz/`: bytes fed to every registry parser
//! (text and relay frames on the server side, events and sealed blobs on the client side) and
//! to a core with two joined peers, so that routing and the error paths are reachable.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::core::{Identity, Lease, NoAuthority, Registry};
use super::messages::{parse_relay, parse_text};
use super::{RegistryConfig, RegistryMetrics};
use crate::client::seal::{KeyPair, Sealer};

/// Feeds `data` to the registry's parsers and core; must never panic.
pub fn registry(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = parse_text(&text, 1024);
    let _ = parse_relay(data, 65_536);
    let _ = crate::client::events::parse_event(&text);
    let keys = KeyPair::from_secret_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
        .expect("a fixed key");
    let _ = Sealer::new(keys.clone(), 0).open(&keys.public_key(), data);

    let now = Instant::now();
    let mut core = Registry::new(
        RegistryConfig::default(),
        Arc::new(RegistryMetrics::default()),
    );
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut peers = Vec::new();
    for peer in ["a", "b"] {
        let identity = Identity {
            peer_id: peer.into(),
            project: "p".into(),
            pinned_key: None,
            expires_at: 0,
        };
        let Ok(conn) = core.connect(now, ip, identity, Lease::default()) else {
            return;
        };
        core.handle_text(
            now,
            conn,
            r#"{"type":"join","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}"#,
            &NoAuthority,
        );
        peers.push(conn);
    }
    // The input, split at its first byte's value, as one text and one binary message.
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (first, second) = data.split_at(cut);
    core.handle_text(now, peers[0], &String::from_utf8_lossy(first), &NoAuthority);
    core.handle_binary(now, peers[0], second);
    core.handle_binary(now, peers[1], data);
    core.handle_timeout(now + Duration::from_secs(61));
    for &conn in &peers {
        while core.poll_transmit(conn).is_some() {}
        core.disconnect(conn);
    }
    while core.poll_wake().is_some() {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_entry_point_survives_samples() {
        for sample in [
            &b""[..],
            b"{",
            br#"{"type":"webrtc_offer","to_peer_id":"b","payload":{}}"#,
            b"\x01b\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            &[0xff; 300],
        ] {
            super::registry(sample);
        }
    }
}
