//! What the nodes of a cluster write to Redis and to each other: presence records and events
//! (JSON), and the binary messages of a node's inbox channel. Decoding never panics; anything
//! malformed reads as `None` (and is counted by the caller).

use serde::{Deserialize, Serialize};

use crate::registry::messages::SignalKind;
use crate::registry::{Forward, Presence};

/// Key prefix of every registry cluster key.
pub const PREFIX: &str = "turnpike:registry:";

/// The sorted set of live nodes, scored by when their presence expires (UNIX milliseconds).
pub fn nodes_key() -> String {
    format!("{PREFIX}nodes")
}

/// The hash of a node's joined peers (field [`field`], value [`encode_record`]), expiring
/// with the node unless it refreshes it.
pub fn presence_key(node: &str) -> String {
    format!("{PREFIX}presence:{node}")
}

/// The channel every node announces its presence changes on.
pub fn presence_channel() -> String {
    format!("{PREFIX}presence")
}

/// The channel a node receives messages for its peers on.
pub fn inbox_channel(node: &str) -> String {
    format!("{PREFIX}inbox:{node}")
}

/// The hash field of a peer: project and peer id (both printable ASCII, no spaces).
pub fn field(project: &str, peer_id: &str) -> String {
    format!("{project} {peer_id}")
}

#[derive(Serialize, Deserialize)]
struct Record {
    s: u64,
    #[serde(default)]
    v: u64,
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<String>,
}

/// A presence record's value.
pub fn encode_record(p: &Presence) -> String {
    serde_json::to_string(&Record {
        s: p.session,
        v: p.version,
        k: p.public_key.clone(),
        a: p.attestation.clone(),
    })
    .unwrap_or_default()
}

/// A presence record read back from its field and value.
pub fn decode_record(field: &str, value: &str) -> Option<Presence> {
    let (project, peer_id) = field.split_once(' ')?;
    let record: Record = serde_json::from_str(value).ok()?;
    let valid = crate::registry::messages::valid_id;
    (valid(project) && valid(peer_id)).then(|| Presence {
        project: project.to_owned(),
        peer_id: peer_id.to_owned(),
        session: record.s,
        public_key: record.k,
        attestation: record.a,
        version: record.v,
    })
}

/// A presence event on [`presence_channel`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    /// A peer joined on `node`.
    Join {
        /// The node.
        n: String,
        /// The project.
        p: String,
        /// The peer id.
        i: String,
        /// The session.
        s: u64,
        /// The version (when it joined, UNIX ms).
        #[serde(default)]
        v: u64,
        /// The public key.
        k: String,
        /// The attestation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        a: Option<String>,
    },
    /// A peer of `node` left.
    Leave {
        /// The node.
        n: String,
        /// The project.
        p: String,
        /// The peer id.
        i: String,
        /// The session.
        s: u64,
    },
    /// `node` rewrote its presence as a whole (it started, or came back): read it again.
    Hello {
        /// The node.
        n: String,
    },
    /// `node` stops: forget its peers.
    Bye {
        /// The node.
        n: String,
    },
}

impl Event {
    /// The event, encoded.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An event read back.
    pub fn decode(bytes: &[u8]) -> Option<Event> {
        serde_json::from_slice(bytes).ok()
    }
}

const SIGNAL: u8 = 1;
const RELAY: u8 = 2;
const ERROR: u8 = 3;
const REPLACE: u8 = 4;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// An inbox message: `[kind][from node][project][peer][session u64 BE]...`, the rest per kind.
pub fn encode_forward(from_node: &str, message: &Forward) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.size());
    match message {
        Forward::Signal {
            project,
            to,
            from,
            session,
            kind,
            id,
            text,
        } => {
            out.push(SIGNAL);
            put_str(&mut out, from_node);
            put_str(&mut out, project);
            put_str(&mut out, to);
            out.extend_from_slice(&session.to_be_bytes());
            put_str(&mut out, from);
            out.push(*kind as u8);
            match id {
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(&id.to_be_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(text.as_bytes());
        }
        Forward::Relay {
            project,
            to,
            from,
            session,
            frame,
        } => {
            out.push(RELAY);
            put_str(&mut out, from_node);
            put_str(&mut out, project);
            put_str(&mut out, to);
            out.extend_from_slice(&session.to_be_bytes());
            put_str(&mut out, from);
            out.extend_from_slice(frame);
        }
        Forward::Error {
            project,
            peer_id,
            session,
            text,
        } => {
            out.push(ERROR);
            put_str(&mut out, from_node);
            put_str(&mut out, project);
            put_str(&mut out, peer_id);
            out.extend_from_slice(&session.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        Forward::Replace {
            project,
            peer_id,
            session,
        } => {
            out.push(REPLACE);
            put_str(&mut out, from_node);
            put_str(&mut out, project);
            put_str(&mut out, peer_id);
            out.extend_from_slice(&session.to_be_bytes());
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::from(self.byte()?);
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

/// An inbox message read back: the sending node and the message.
pub fn decode_forward(bytes: &[u8]) -> Option<(String, Forward)> {
    let mut r = Reader(bytes);
    let kind = r.byte()?;
    let node = r.str()?;
    let project = r.str()?;
    let peer = r.str()?;
    let session = r.u64()?;
    let message = match kind {
        SIGNAL => {
            let from = r.str()?;
            let kind = *SignalKind::ALL.get(usize::from(r.byte()?))?;
            let id = match r.byte()? {
                0 => None,
                1 => Some(r.u64()?),
                _ => return None,
            };
            Forward::Signal {
                project,
                to: peer,
                from,
                session,
                kind,
                id,
                text: String::from_utf8(r.0.to_vec()).ok()?,
            }
        }
        RELAY => Forward::Relay {
            project,
            to: peer,
            from: r.str()?,
            session,
            frame: r.0.to_vec(),
        },
        ERROR => Forward::Error {
            project,
            peer_id: peer,
            session,
            text: String::from_utf8(r.0.to_vec()).ok()?,
        },
        REPLACE => Forward::Replace {
            project,
            peer_id: peer,
            session,
        },
        _ => return None,
    };
    Some((node, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_round_trip_and_truncations_are_refused() {
        let messages = [
            Forward::Signal {
                project: "p".into(),
                to: "b".into(),
                from: "a".into(),
                session: 7,
                kind: SignalKind::Answer,
                id: Some(9),
                text: "{\"type\":\"webrtc_answer\"}".into(),
            },
            Forward::Signal {
                project: "p".into(),
                to: "b".into(),
                from: "a".into(),
                session: 7,
                kind: SignalKind::Offer,
                id: None,
                text: String::new(),
            },
            Forward::Relay {
                project: "p".into(),
                to: "b".into(),
                from: "a".into(),
                session: 1,
                frame: vec![1, b'a', 0, 255],
            },
            Forward::Error {
                project: "p".into(),
                peer_id: "a".into(),
                session: u64::MAX,
                text: "{}".into(),
            },
            Forward::Replace {
                project: "p".into(),
                peer_id: "a".into(),
                session: 3,
            },
        ];
        for message in messages {
            let bytes = encode_forward("node-1", &message);
            assert_eq!(
                decode_forward(&bytes),
                Some(("node-1".to_owned(), message.clone()))
            );
            let fixed = bytes.len()
                - match &message {
                    Forward::Replace { .. } => 0,
                    Forward::Signal { text, .. } | Forward::Error { text, .. } => text.len(),
                    Forward::Relay { frame, .. } => frame.len(),
                };
            for cut in 0..fixed {
                assert_eq!(decode_forward(&bytes[..cut]), None, "{cut}");
            }
        }
        assert_eq!(decode_forward(&[9, 0, 0, 0]), None);
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_skipped() {
        let p = Presence {
            project: "p".into(),
            peer_id: "a".into(),
            session: 4,
            public_key: "k".into(),
            attestation: None,
            version: 5,
        };
        assert_eq!(decode_record(&field("p", "a"), &encode_record(&p)), Some(p));
        assert_eq!(decode_record("nospace", "{\"s\":1,\"k\":\"k\"}"), None);
        assert_eq!(decode_record("p a", "not json"), None);
        let event = Event::Leave {
            n: "x".into(),
            p: "p".into(),
            i: "a".into(),
            s: 1,
        };
        assert_eq!(Event::decode(event.encode().as_bytes()), Some(event));
    }
}
