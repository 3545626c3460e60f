//! What the core benches share: the core's settings and a signed request.

use turnpike::proto::nonce::NonceKey;
use turnpike::proto::policy::PeerPolicy;
use turnpike::proto::server::{Authenticator, Limits, Settings};
use turnpike::proto::stun::{Class, Integrity, Writer, attr};

/// The realm of the benches' credentials.
pub const REALM: &str = "bench";
/// The benches' Unix time (REST usernames are minted for it).
pub const UNIX: u64 = 1_800_000_000;

/// Default limits, REST secret `secret`, every peer allowed; `families` as `[IPv4, IPv6]`.
pub fn settings(families: [bool; 2]) -> Settings {
    Settings {
        auth: Authenticator::new(
            REALM.into(),
            vec![b"secret".to_vec()],
            &Default::default(),
            NonceKey::new([3; 32], 3600),
        ),
        policy: PeerPolicy::new(vec![], vec![]),
        own_relay_ips: vec![],
        relay_ports: (10000, 60000),
        own_addresses: vec![],
        tcp_allocations: false,
        limits: Limits::default(),
        software: None,
        families,
    }
}

/// A request of method `m` signed with the long-term `key` of `user`, after `body`'s attributes.
pub fn signed(
    m: u16,
    tid: [u8; 12],
    user: &str,
    key: &[u8; 16],
    nonce: &[u8],
    body: impl FnOnce(&mut Writer<'_>),
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf, Class::Request, m, tid);
    body(&mut w);
    w.attr(attr::USERNAME, user.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, nonce)
        .integrity(Integrity::Sha1, key);
    buf
}
