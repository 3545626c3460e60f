//! What a registry client receives: [`Event`], and [`parse_event`], which reads the server's
//! text messages (docs/registry-protocol.md) into it.

use serde::Deserialize;

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
    },
    /// A peer joined.
    PeerJoined {
        /// Its id.
        peer_id: String,
        /// Its public key, base64.
        public_key: String,
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
    /// Any other text message (a later protocol version), untouched.
    Other(String),
    /// The connection was lost; the client reconnects when configured to.
    Disconnected {
        /// The close code, if the server sent one.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
    /// The client stopped for good (replaced, refused, or reconnecting disabled).
    Closed {
        /// The close code, if any.
        code: Option<u16>,
        /// The reason.
        reason: String,
    },
}

/// Reads one text message from the server into an [`Event`].
pub fn parse_event(text: &str) -> Event {
    #[derive(Deserialize)]
    struct PeerWire {
        peer_id: String,
        public_key: String,
    }
    #[derive(Deserialize)]
    struct Wire<'a> {
        #[serde(rename = "type")]
        kind: String,
        peer_id: Option<String>,
        project: Option<String>,
        public_key: Option<String>,
        peers: Option<Vec<PeerWire>>,
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
            (Some(peer_id), Some(project), Some(peers)) => Event::Welcome {
                peer_id,
                project,
                peers: peers
                    .into_iter()
                    .map(|p| (p.peer_id, p.public_key))
                    .collect(),
            },
            _ => other(),
        },
        "peer_joined" => match (wire.peer_id, wire.public_key) {
            (Some(peer_id), Some(public_key)) => Event::PeerJoined {
                peer_id,
                public_key,
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
