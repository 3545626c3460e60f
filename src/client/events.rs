//! What a registry client receives: [`Event`], and [`parse_event`], which reads the server's
//! text messages (docs/registry-protocol.md) into it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::proto::credentials::IceServer;
use crate::registry::messages::SignalKind;

/// What the client receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Joined (first connection and every reconnection): the project's other peers.
    Welcome {
        /// This peer's id.
        peer_id: String,
        /// The project.
        project: String,
        /// (peer id, base64 public key) of the others.
        peers: Vec<(String, String)>,
        /// The key attestations of the listed peers that presented one, by peer id, as the
        /// server forwarded them (check them with [`crate::client::verify_attestation`]).
        attestations: BTreeMap<String, String>,
        /// The one-token ladder: a WebRTC `iceServers` array for this server's TURN, minted
        /// for this peer until its token ends (absent when the server does not hand one out).
        ice_servers: Option<Vec<IceServer>>,
    },
    /// A peer joined.
    PeerJoined {
        /// Its id.
        peer_id: String,
        /// Its public key, base64.
        public_key: String,
        /// Its key attestation, as forwarded by the server, if it presented one.
        attestation: Option<String>,
    },
    /// A peer left.
    PeerLeft {
        /// Its id.
        peer_id: String,
    },
    /// A signaling message.
    Signal {
        /// Offer, answer or candidate.
        kind: SignalKind,
        /// The sender.
        from: String,
        /// The payload's JSON text, as the sender wrote it.
        payload: String,
    },
    /// A relay blob that opened and was not a replay.
    Relay {
        /// The sender.
        from: String,
        /// The plaintext.
        message: Vec<u8>,
    },
    /// A relay blob that was refused (replayed, forged, from an unknown sender).
    RelayRejected {
        /// The claimed sender.
        from: String,
        /// Why.
        reason: String,
    },
    /// An `error` message from the server.
    Error {
        /// The code.
        code: String,
        /// The text.
        message: String,
        /// The type of the refused message.
        refers_to: Option<String>,
        /// The refused message's id.
        id: Option<u64>,
        /// The destination it was for.
        to_peer_id: Option<String>,
    },
    /// The token ends at `expires_at`: call [`crate::client::RegistryClient::reauth`] with a
    /// fresh one before then, or the server closes the connection (4003).
    TokenExpiring {
        /// The token's `exp`, UNIX seconds.
        expires_at: u64,
    },
    /// A `reauth` was accepted: the connection now lasts until `expires_at`.
    Reauthed {
        /// The new token's `exp`, UNIX seconds.
        expires_at: u64,
        /// Fresh `iceServers` for the new token (the one-token ladder), if handed out.
        ice_servers: Option<Vec<IceServer>>,
    },
    /// This peer relayed more than the server's warning threshold over the last window: its
    /// direct path has probably failed.
    RelayUsage {
        /// Relayed bytes per second, averaged over the window.
        bytes_per_sec: u64,
        /// The window, in seconds.
        window_secs: u64,
        /// The server's threshold, in bytes per second.
        threshold: u64,
    },
    /// A peer whose key attestation did not verify with the configured trusted issuer keys
    /// ([`crate::client::ClientConfig::trusted_issuer_keys`]): its key is not used, so
    /// nothing is relayed to it and nothing from it is opened.
    PeerUntrusted {
        /// Its id.
        peer_id: String,
        /// Why (no attestation, bad signature, another key...).
        reason: String,
    },
    /// Any other text message (a later protocol version), untouched.
    Other(String),
    /// The connection was lost; the client reconnects when configured to. `code` 4007
    /// (`over_budget`, [`close_code_name`]): more was queued for this peer than the server's
    /// memory budget for it (it read too slowly).
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
    /// The client stopped for good (replaced, 4001; disconnected by an operator, 4006; refused;
    /// or reconnecting disabled).
    Closed {
        /// The close code, if any.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
}

/// The name of a registry close code (docs/registry-protocol.md §6), such as `over_budget`
/// for 4007; `None` for codes the protocol does not define.
pub fn close_code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        1000 => "normal",
        1001 => "going_away",
        4001 => "replaced",
        4002 => "idle_timeout",
        4003 => "token_expired",
        4004 => "join_timeout",
        4005 => "slow_consumer",
        4006 => "disconnected",
        4007 => "over_budget",
        _ => return None,
    })
}

/// Reads one text message from the server into an [`Event`].
pub fn parse_event(text: &str) -> Event {
    #[derive(Deserialize)]
    struct PeerWire {
        peer_id: String,
        public_key: String,
        attestation: Option<String>,
    }
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(rename = "type")]
        kind: String,
        peer_id: Option<String>,
        project: Option<String>,
        public_key: Option<String>,
        attestation: Option<String>,
        peers: Option<Vec<PeerWire>>,
        ice_servers: Option<Vec<IceServer>>,
        expires_at: Option<u64>,
        bytes_per_sec: Option<u64>,
        window_secs: Option<u64>,
        threshold: Option<u64>,
        from_peer_id: Option<String>,
        #[serde(borrow)]
        payload: Option<&'a serde_json::value::RawValue>,
        code: Option<String>,
        message: Option<String>,
        #[serde(rename = "ref")]
        refers_to: Option<String>,
        id: Option<u64>,
        to_peer_id: Option<String>,
    }
    let Ok(wire) = serde_json::from_str::<Wire<'_>>(text) else {
        return Event::Other(text.to_owned());
    };
    let other = || Event::Other(text.to_owned());
    match wire.kind.as_str() {
        "welcome" => match (wire.peer_id, wire.project, wire.peers) {
            (Some(peer_id), Some(project), Some(peers)) => {
                let attestations = peers
                    .iter()
                    .filter_map(|p| Some((p.peer_id.clone(), p.attestation.clone()?)))
                    .collect();
                Event::Welcome {
                    peer_id,
                    project,
                    peers: peers
                        .into_iter()
                        .map(|p| (p.peer_id, p.public_key))
                        .collect(),
                    attestations,
                    ice_servers: wire.ice_servers,
                }
            }
            _ => other(),
        },
        "peer_joined" => match (wire.peer_id, wire.public_key) {
            (Some(peer_id), Some(public_key)) => Event::PeerJoined {
                peer_id,
                public_key,
                attestation: wire.attestation,
            },
            _ => other(),
        },
        "token_expiring" => match wire.expires_at {
            Some(expires_at) => Event::TokenExpiring { expires_at },
            None => other(),
        },
        "reauthed" => match wire.expires_at {
            Some(expires_at) => Event::Reauthed {
                expires_at,
                ice_servers: wire.ice_servers,
            },
            None => other(),
        },
        "relay_usage" => match (wire.bytes_per_sec, wire.window_secs, wire.threshold) {
            (Some(bytes_per_sec), Some(window_secs), Some(threshold)) => Event::RelayUsage {
                bytes_per_sec,
                window_secs,
                threshold,
            },
            _ => other(),
        },
        "peer_left" => match wire.peer_id {
            Some(peer_id) => Event::PeerLeft { peer_id },
            None => other(),
        },
        "error" => Event::Error {
            code: wire.code.unwrap_or_default(),
            message: wire.message.unwrap_or_default(),
            refers_to: wire.refers_to,
            id: wire.id,
            to_peer_id: wire.to_peer_id,
        },
        kind => match (SignalKind::from_type(kind), wire.from_peer_id, wire.payload) {
            (Some(kind), Some(from), Some(payload)) => Event::Signal {
                kind,
                from,
                payload: payload.get().to_owned(),
            },
            _ => other(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_messages_parse() {
        let welcome = parse_event(
            r#"{"type":"welcome","peer_id":"bob","project":"p","peers":[
                {"peer_id":"alice","public_key":"K1","attestation":"a.b.c"},
                {"peer_id":"carol","public_key":"K3"}],
               "limits":{},"ice_servers":[{"urls":["turn:h:1"],"username":"9:bob","credential":"c"}]}"#,
        );
        let ice = vec![IceServer {
            urls: vec!["turn:h:1".into()],
            username: "9:bob".into(),
            credential: "c".into(),
        }];
        assert_eq!(
            welcome,
            Event::Welcome {
                peer_id: "bob".into(),
                project: "p".into(),
                peers: vec![("alice".into(), "K1".into()), ("carol".into(), "K3".into())],
                attestations: [("alice".to_owned(), "a.b.c".to_owned())].into(),
                ice_servers: Some(ice.clone()),
            }
        );
        assert!(matches!(
            parse_event(r#"{"type":"welcome","peer_id":"b","project":"p","peers":[]}"#),
            Event::Welcome {
                ice_servers: None,
                ..
            }
        ));
        assert_eq!(
            parse_event(
                r#"{"type":"peer_joined","peer_id":"a","public_key":"K","attestation":"x.y.z"}"#
            ),
            Event::PeerJoined {
                peer_id: "a".into(),
                public_key: "K".into(),
                attestation: Some("x.y.z".into()),
            }
        );
        assert_eq!(
            parse_event(r#"{"type":"token_expiring","expires_at":17}"#),
            Event::TokenExpiring { expires_at: 17 }
        );
        assert_eq!(
            parse_event(
                r#"{"type":"reauthed","expires_at":18,"ice_servers":[{"urls":["turn:h:1"],"username":"9:bob","credential":"c"}]}"#
            ),
            Event::Reauthed {
                expires_at: 18,
                ice_servers: Some(ice),
            }
        );
        assert_eq!(
            parse_event(
                r#"{"type":"relay_usage","bytes_per_sec":300000,"window_secs":10,"threshold":262144}"#
            ),
            Event::RelayUsage {
                bytes_per_sec: 300_000,
                window_secs: 10,
                threshold: 262_144,
            }
        );
        assert!(matches!(
            parse_event(r#"{"type":"token_expiring"}"#),
            Event::Other(_)
        ));
    }
}
