//! Joining and leaving: `join` (key checks, project limits, replacement), the `welcome`, and
//! `peer_joined` / `peer_left` to the rest of the project.

use std::sync::atomic::Ordering;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::super::attest::{Expected, MAX_ATTESTATION_BYTES};
use super::super::messages::{CloseReason, Control, ErrorCode, PeerInfo, Refusal, WelcomeLimits};
use super::{Authority, ConnId, Identity, Registry, State};
use crate::proto::credentials::IceServer;

/// True when `text` may be a compact JWT: three non-empty base64url parts.
fn looks_like_jwt(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Registry {
    pub(super) fn join(
        &mut self,
        now: Instant,
        conn: ConnId,
        public_key: &str,
        attestation: Option<String>,
        authority: &dyn Authority,
    ) {
        let refuse = |code, message: &str| Refusal::new(code, message, Some("join"));
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if matches!(c.state, State::Joined { .. }) {
            return self.refuse(conn, refuse(ErrorCode::AlreadyJoined, "already joined"));
        }
        let key = match BASE64.decode(public_key) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let message = "`public_key` must be base64 of 32 bytes";
                return self.refuse(conn, refuse(ErrorCode::BadPublicKey, message));
            }
        };
        if c.identity
            .pinned_key
            .is_some_and(|pinned| pinned[..] != key[..])
        {
            let message = "`public_key` differs from the key pinned in the token";
            return self.refuse(conn, refuse(ErrorCode::PublicKeyMismatch, message));
        }
        let identity = c.identity.clone();
        let public_key = BASE64.encode(&key);
        if let Some(attestation) = &attestation {
            if attestation.len() > MAX_ATTESTATION_BYTES || !looks_like_jwt(attestation) {
                let message =
                    format!("`attestation` must be a JWT of at most {MAX_ATTESTATION_BYTES} bytes");
                return self.refuse(conn, refuse(ErrorCode::BadAttestation, &message));
            }
            let expected = Expected {
                sub: &identity.peer_id,
                project: &identity.project,
                public_key: &public_key,
            };
            if let Some(Err(why)) = authority.check_attestation(attestation, &expected) {
                let message = format!(
                    "the attestation does not verify: {}",
                    super::super::messages::shorten(&why, 128)
                );
                return self.refuse(conn, refuse(ErrorCode::BadAttestation, &message));
            }
        }
        let existing = self.projects.get(&identity.project);
        let previous = existing.and_then(|p| p.peers.get(&identity.peer_id).copied());
        let full = match existing {
            None => self.projects.len() >= self.config.max_projects as usize,
            Some(p) => {
                p.peers.len() - usize::from(previous.is_some())
                    >= self.config.max_peers_per_project as usize
            }
        };
        if full {
            let message = "the project (or the server's table of projects) is full";
            return self.refuse(conn, refuse(ErrorCode::ProjectFull, message));
        }
        if let Some(previous) = previous {
            self.to_close.push((previous, CloseReason::Replaced));
            self.process_closes();
        }
        let replaces_remote = self.has_remote(&identity.project, &identity.peer_id);
        let ice_servers = self.conns.get_mut(&conn).and_then(|c| {
            c.state = State::Joined {
                public_key: public_key.clone(),
                attestation: attestation.clone(),
            };
            c.ice_servers.take()
        });
        if !self.projects.contains_key(&identity.project) {
            self.metrics.projects.fetch_add(1, Ordering::Relaxed);
        }
        let project = self.projects.entry(identity.project.clone()).or_default();
        let others: Vec<ConnId> = project.peers.values().copied().collect();
        project.peers.insert(identity.peer_id.clone(), conn);
        self.metrics.peers.fetch_add(1, Ordering::Relaxed);
        let welcome = self.welcome(&identity, &others, ice_servers.as_deref());
        self.send_control(conn, welcome);
        self.cluster_joined(conn);
        let joined = Control::PeerJoined {
            peer_id: &identity.peer_id,
            public_key: &public_key,
            attestation: attestation.as_deref(),
        }
        .to_json();
        for other in others {
            if replaces_remote {
                // Their view held this peer id on another node: it left there.
                let left = Control::PeerLeft {
                    peer_id: &identity.peer_id,
                }
                .to_json();
                self.send_control(other, left);
            }
            self.send_control(other, joined.clone());
        }
        self.warn_if_due(now, conn);
    }

    /// The `welcome` for `identity`, listing the joined peers `others`.
    fn welcome(
        &self,
        identity: &Identity,
        others: &[ConnId],
        ice_servers: Option<&[IceServer]>,
    ) -> String {
        let mut peers: Vec<PeerInfo<'_>> = others
            .iter()
            .filter_map(|id| self.conns.get(id))
            .filter_map(|c| match &c.state {
                State::Joined {
                    public_key,
                    attestation,
                } => Some(PeerInfo {
                    peer_id: &c.identity.peer_id,
                    public_key,
                    attestation: attestation.as_deref(),
                }),
                _ => None,
            })
            .collect();
        let remote = self.remote_infos(&identity.project, &peers);
        peers.extend(remote.into_iter().filter(|p| p.peer_id != identity.peer_id));
        peers.sort_by(|a, b| a.peer_id.cmp(b.peer_id));
        Control::Welcome {
            peer_id: &identity.peer_id,
            project: &identity.project,
            peers,
            limits: WelcomeLimits {
                max_payload_bytes: self.config.max_payload_bytes,
                max_relay_frame_bytes: self.config.max_relay_frame_bytes,
                messages_per_sec: self.config.messages_per_sec,
                relay_bytes_per_sec: self.config.relay_bytes_per_sec,
            },
            ice_servers,
        }
        .to_json()
    }

    /// Takes a joined peer out of its project and tells the others.
    pub(super) fn leave(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !matches!(c.state, State::Joined { .. }) {
            return;
        }
        c.state = State::Pending;
        let identity = c.identity.clone();
        let Some(project) = self.projects.get_mut(&identity.project) else {
            return;
        };
        if project.peers.get(&identity.peer_id) != Some(&conn) {
            return;
        }
        project.peers.remove(&identity.peer_id);
        self.metrics.peers.fetch_sub(1, Ordering::Relaxed);
        let others: Vec<ConnId> = project.peers.values().copied().collect();
        if others.is_empty() {
            self.projects.remove(&identity.project);
            self.metrics.projects.fetch_sub(1, Ordering::Relaxed);
        }
        self.cluster_left(conn, &identity.project, &identity.peer_id);
        let left = Control::PeerLeft {
            peer_id: &identity.peer_id,
        }
        .to_json();
        for other in others {
            self.send_control(other, left.clone());
        }
    }
}
