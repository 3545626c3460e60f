//! What the admin API asks of the registry: the peers of a project, and disconnecting one
//! (close code 4006, `disconnected`, which the SDKs treat as final).

use std::net::IpAddr;
use std::time::Instant;

use super::super::messages::CloseReason;
use super::{Registry, State};

/// A joined peer, as the admin API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSummary {
    /// The peer id (the token's `sub`).
    pub peer_id: String,
    /// Its X25519 public key (base64).
    pub public_key: String,
    /// True when it joined with a key attestation.
    pub attested: bool,
    /// The client's IP address.
    pub ip: IpAddr,
    /// Seconds since its connection was accepted.
    pub connected_secs: u64,
    /// Its token's `exp`, UNIX seconds.
    pub token_expires_at: u64,
}

impl Registry {
    /// The joined peers of `project`, sorted by peer id; `None` when the project has none.
    pub fn project_peers(&self, now: Instant, project: &str) -> Option<Vec<PeerSummary>> {
        let p = self.projects.get(project)?;
        Some(
            p.peers
                .iter()
                .filter_map(|(peer_id, id)| {
                    let c = self.conns.get(id)?;
                    let State::Joined {
                        public_key,
                        attestation,
                    } = &c.state
                    else {
                        return None;
                    };
                    Some(PeerSummary {
                        peer_id: peer_id.clone(),
                        public_key: public_key.clone(),
                        attested: attestation.is_some(),
                        ip: c.ip,
                        connected_secs: now.saturating_duration_since(c.connected_at).as_secs(),
                        token_expires_at: c.identity.expires_at,
                    })
                })
                .collect(),
        )
    }

    /// Closes the connection of `peer_id` in `project` with 4006 (`disconnected`); the other
    /// peers get `peer_left`. False when no such peer is joined.
    pub fn disconnect_peer(&mut self, project: &str, peer_id: &str) -> bool {
        let Some(&conn) = self
            .projects
            .get(project)
            .and_then(|p| p.peers.get(peer_id))
        else {
            return false;
        };
        self.to_close.push((conn, CloseReason::Disconnected));
        self.process_closes();
        true
    }
}
