//! The wire format of `turnpike.registry.v1` (docs/registry-protocol.md): parsing what clients
//! send, encoding what the server sends, relay frames, error codes and close codes.
//!
//! Parsing never panics and never interprets a signaling payload: it is kept as a borrowed
//! [`RawValue`] and copied byte for byte into the forwarded message.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use crate::proto::credentials::IceServer;

/// The WebSocket subprotocol of this version.
pub const SUBPROTOCOL: &str = "turnpike.registry.v1";
/// The prefix of a `Sec-WebSocket-Protocol` entry that carries a token (browsers).
pub const BEARER_PROTOCOL_PREFIX: &str = "turnpike.bearer.";
/// The longest peer id or project name, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// The size of a crypto_box nonce.
pub const NONCE_BYTES: usize = 24;
/// The size of the Poly1305 tag, the smallest possible box.
pub const MIN_BOX_BYTES: usize = 16;
/// Room a text frame gets beyond its payload (type, peer id, id).
pub const TEXT_OVERHEAD_BYTES: usize = 4096;
/// Seconds of clock skew tolerated on `exp` and `nbf` (tokens and key attestations).
pub const LEEWAY_SECS: u64 = 30;

/// The most bytes of a client's input that an error message quotes.
pub const ECHO_BYTES: usize = 32;
/// The longest `message` of an `error` (the text for people), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256;

/// Cuts `text` to at most `max` bytes, on a character boundary, with control characters
/// removed and `…` appended when something was cut.
pub fn shorten(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out: String = text[..end].chars().filter(|c| !c.is_control()).collect();
    if end < text.len() {
        out.push('…');
    }
    out
}

/// A short prefix of client input to quote in an error message: at most [`ECHO_BYTES`]
/// bytes (see [`shorten`]), so that an error never reflects a client's input back in full.
pub fn echo(input: &str) -> String {
    shorten(input, ECHO_BYTES)
}

/// A parser's error (serde_json's, which quotes the offending value) fit to be sent back: what
/// precedes the first quote, at most [`ECHO_BYTES`] after it, then the position.
pub fn echo_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let description = match text.rfind(" at line ") {
        Some(at) if error.line() > 0 => &text[..at],
        _ => text.as_str(),
    };
    let quote = description
        .find(['"', '`', '\''])
        .map_or(description.len(), |at| at + 1);
    let (head, quoted) = description.split_at(quote);
    let mut out = shorten(head, 2 * ECHO_BYTES);
    out.push_str(&echo(quoted));
    if error.line() > 0 {
        out.push_str(&format!(
            " (line {}, column {})",
            error.line(),
            error.column()
        ));
    }
    out
}

/// True when `id` is a valid peer id or project name: 1 to 64 bytes of printable ASCII.
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Every error code of the protocol (§4 of the protocol document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is its code, documented in the protocol document
pub enum ErrorCode {
    BadJson,
    BadMessage,
    UnknownType,
    NotJoined,
    AlreadyJoined,
    BadPublicKey,
    PublicKeyMismatch,
    ProjectFull,
    PayloadTooLarge,
    RateLimited,
    UnknownPeer,
    QueueFull,
    Undelivered,
    FrameTooShort,
    FrameTooLarge,
    BadFrame,
    InvalidToken,
    IdentityMismatch,
    BadAttestation,
    OverBudget,
    ProjectRateLimited,
}

impl ErrorCode {
    /// Every code, in the order of the protocol document (metrics use this order).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::BadJson,
        ErrorCode::BadMessage,
        ErrorCode::UnknownType,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadPublicKey,
        ErrorCode::PublicKeyMismatch,
        ErrorCode::ProjectFull,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UnknownPeer,
        ErrorCode::QueueFull,
        ErrorCode::Undelivered,
        ErrorCode::FrameTooShort,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadFrame,
        ErrorCode::InvalidToken,
        ErrorCode::IdentityMismatch,
        ErrorCode::BadAttestation,
        ErrorCode::OverBudget,
        ErrorCode::ProjectRateLimited,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::BadPublicKey => "bad_public_key",
            ErrorCode::PublicKeyMismatch => "public_key_mismatch",
            ErrorCode::ProjectFull => "project_full",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::Undelivered => "undelivered",
            ErrorCode::FrameTooShort => "frame_too_short",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::IdentityMismatch => "identity_mismatch",
            ErrorCode::BadAttestation => "bad_attestation",
            ErrorCode::OverBudget => "over_budget",
            ErrorCode::ProjectRateLimited => "project_rate_limited",
        }
    }

    /// The index of this code in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why the server closes a connection (§6), with its WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Another connection joined with the same peer id (4001).
    Replaced,
    /// Nothing received for `idle_timeout_secs` (4002).
    IdleTimeout,
    /// No successful join within `join_timeout_secs` (4004).
    JoinTimeout,
    /// The peer's control queue overflowed (4005).
    SlowConsumer,
    /// The server shuts down (1001).
    GoingAway,
    /// The token's `exp` passed without a successful `reauth` (4003).
    TokenExpired,
    /// An operator disconnected the peer through the admin API (4006).
    Disconnected,
    /// What was queued for the peer reached its byte budget or the registry's (4007).
    OverBudget,
}

impl CloseReason {
    /// The reasons counted in metrics, in a fixed order.
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Replaced,
        CloseReason::IdleTimeout,
        CloseReason::JoinTimeout,
        CloseReason::SlowConsumer,
        CloseReason::GoingAway,
        CloseReason::TokenExpired,
        CloseReason::Disconnected,
        CloseReason::OverBudget,
    ];

    /// The WebSocket close code.
    pub fn code(self) -> u16 {
        match self {
            CloseReason::Replaced => 4001,
            CloseReason::IdleTimeout => 4002,
            CloseReason::JoinTimeout => 4004,
            CloseReason::SlowConsumer => 4005,
            CloseReason::GoingAway => 1001,
            CloseReason::TokenExpired => 4003,
            CloseReason::Disconnected => 4006,
            CloseReason::OverBudget => 4007,
        }
    }

    /// The close frame's reason text (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Replaced => "replaced",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::JoinTimeout => "join_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::GoingAway => "going_away",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::Disconnected => "disconnected",
            CloseReason::OverBudget => "over_budget",
        }
    }
}

/// The three signaling message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// `webrtc_offer`
    Offer,
    /// `webrtc_answer`
    Answer,
    /// `webrtc_ice_candidate`
    IceCandidate,
}

impl SignalKind {
    /// Every kind, in a fixed order (metrics use it).
    pub const ALL: [SignalKind; 3] = [
        SignalKind::Offer,
        SignalKind::Answer,
        SignalKind::IceCandidate,
    ];

    /// The message type on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Offer => "webrtc_offer",
            SignalKind::Answer => "webrtc_answer",
            SignalKind::IceCandidate => "webrtc_ice_candidate",
        }
    }

    /// The kind whose type is `name`.
    pub fn from_type(name: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A message a client sent, parsed.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// `join`, with the announced public key (base64, not yet decoded).
    Join {
        /// The `public_key` field.
        public_key: String,
        /// The `attestation` field (a JWT, not yet checked), if any.
        attestation: Option<String>,
    },
    /// `reauth`: a fresh token for the same peer.
    Reauth {
        /// The `token` field (a JWT, not yet checked).
        token: String,
    },
    /// A signaling message.
    Signal {
        /// Its type.
        kind: SignalKind,
        /// The destination peer id (valid).
        to: String,
        /// The payload, untouched.
        payload: &'a RawValue,
        /// The client's message id, echoed in errors.
        id: Option<u64>,
    },
    /// `ping`.
    Ping,
}

/// What goes into an `error` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// The text for people.
    pub message: String,
    /// The type of the message refused, `relay` for a binary frame, `None` if unreadable.
    pub refers_to: Option<String>,
    /// The refused message's `id`.
    pub id: Option<u64>,
    /// The destination the error is about.
    pub to_peer_id: Option<String>,
}

impl Refusal {
    /// A refusal with no id and no destination. `refers_to` is cut to [`ECHO_BYTES`]: an
    /// unknown type is echoed, and the echo must stay small.
    pub fn new(code: ErrorCode, message: impl Into<String>, refers_to: Option<&str>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            refers_to: refers_to.map(|r| {
                let mut end = r.len().min(ECHO_BYTES);
                while !r.is_char_boundary(end) {
                    end -= 1;
                }
                r[..end].to_owned()
            }),
            id: None,
            to_peer_id: None,
        }
    }

    /// The `error` message, encoded.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            code: &'static str,
            message: &'a str,
            #[serde(rename = "ref")]
            refers_to: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            to_peer_id: Option<&'a str>,
        }
        encode(&Wire {
            kind: "error",
            code: self.code.as_str(),
            message: &shorten(&self.message, MAX_MESSAGE_BYTES),
            refers_to: self.refers_to.as_deref(),
            id: self.id,
            to_peer_id: self.to_peer_id.as_deref(),
        })
    }
}

/// The fields any client message may have; unknown fields are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    public_key: Option<String>,
    attestation: Option<String>,
    token: Option<String>,
    to_peer_id: Option<String>,
    #[serde(default, borrow, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    id: Option<u64>,
}

/// Reads a field that is present (even as `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Parses a text frame. `max_payload` caps the payload's JSON text; the frame itself may be
/// [`TEXT_OVERHEAD_BYTES`] longer.
pub fn parse_text(text: &str, max_payload: usize) -> Result<Incoming<'_>, Refusal> {
    if text.len() > max_payload + TEXT_OVERHEAD_BYTES {
        return Err(Refusal::new(
            ErrorCode::PayloadTooLarge,
            format!("the message is larger than {max_payload} bytes plus 4096"),
            type_of(text).as_deref(),
        ));
    }
    let envelope: Envelope<'_> = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() => {
            return Err(Refusal::new(
                ErrorCode::BadJson,
                "the message is not JSON",
                None,
            ));
        }
        Err(error) => {
            let refers_to = type_of(text);
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                format!(
                    "the message is not of the documented shape: {}",
                    echo_json_error(&error)
                ),
                refers_to.as_deref(),
            ));
        }
    };
    let Some(kind) = envelope.kind else {
        return Err(Refusal::new(
            ErrorCode::BadMessage,
            "the message has no `type`",
            None,
        ));
    };
    let bad = |what: &str| {
        let mut refusal = Refusal::new(ErrorCode::BadMessage, what, Some(&kind));
        refusal.id = envelope.id;
        refusal
    };
    if kind == "join" {
        return match envelope.public_key {
            Some(public_key) => Ok(Incoming::Join {
                public_key,
                attestation: envelope.attestation,
            }),
            None => Err(bad("`join` needs `public_key`")),
        };
    }
    if kind == "reauth" {
        return match envelope.token {
            Some(token) => Ok(Incoming::Reauth { token }),
            None => Err(bad("`reauth` needs `token`")),
        };
    }
    if kind == "ping" {
        return Ok(Incoming::Ping);
    }
    let Some(signal) = SignalKind::from_type(&kind) else {
        let mut refusal = Refusal::new(
            ErrorCode::UnknownType,
            format!("unknown message type `{}`", echo(&kind)),
            Some(&kind),
        );
        refusal.id = envelope.id;
        return Err(refusal);
    };
    let Some(to) = envelope.to_peer_id else {
        return Err(bad("a signaling message needs `to_peer_id`"));
    };
    if !valid_id(&to) {
        return Err(bad("`to_peer_id` must be 1 to 64 bytes of printable ASCII"));
    }
    let Some(payload) = envelope.payload else {
        return Err(bad("a signaling message needs `payload`"));
    };
    if payload.get().len() > max_payload {
        let mut refusal = Refusal::new(
            ErrorCode::PayloadTooLarge,
            format!("the payload is larger than {max_payload} bytes"),
            Some(&kind),
        );
        refusal.id = envelope.id;
        refusal.to_peer_id = Some(to);
        return Err(refusal);
    }
    Ok(Incoming::Signal {
        kind: signal,
        to,
        payload,
        id: envelope.id,
    })
}

/// The `type` of a JSON object that failed to parse as an envelope, when it is a string.
fn type_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: Option<serde_json::Value>,
    }
    match serde_json::from_str::<TypeOnly>(text).ok()?.kind? {
        serde_json::Value::String(kind) => Some(kind),
        _ => None,
    }
}

/// One peer in `welcome.peers`.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo<'a> {
    /// Its id.
    pub peer_id: &'a str,
    /// Its X25519 public key, base64.
    pub public_key: &'a str,
    /// The key attestation it presented, forwarded unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<&'a str>,
}

/// The limits announced in `welcome`.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct WelcomeLimits {
    /// `max_payload_bytes`.
    pub max_payload_bytes: u32,
    /// `max_relay_frame_bytes`.
    pub max_relay_frame_bytes: u32,
    /// `messages_per_sec`.
    pub messages_per_sec: u32,
    /// `relay_bytes_per_sec`.
    pub relay_bytes_per_sec: u64,
}

/// The control messages the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control<'a> {
    /// The answer to a successful `join`.
    Welcome {
        /// The peer's id (the token's `sub`).
        peer_id: &'a str,
        /// The project (the token's `project`).
        project: &'a str,
        /// The other joined peers, sorted by id.
        peers: Vec<PeerInfo<'a>>,
        /// The limits of this connection.
        limits: WelcomeLimits,
        /// The one-token ladder: an `iceServers` array minted for this peer.
        #[serde(skip_serializing_if = "Option::is_none")]
        ice_servers: Option<&'a [IceServer]>,
    },
    /// Another peer joined.
    PeerJoined {
        /// Its id.
        peer_id: &'a str,
        /// Its public key.
        public_key: &'a str,
        /// Its key attestation, forwarded unchanged.
        #[serde(skip_serializing_if = "Option::is_none")]
        attestation: Option<&'a str>,
    },
    /// Another peer left.
    PeerLeft {
        /// Its id.
        peer_id: &'a str,
    },
    /// The answer to `ping`.
    Pong,
    /// The token ends soon: send `reauth` before `expires_at` or be closed (4003).
    TokenExpiring {
        /// The token's `exp`, UNIX seconds.
        expires_at: u64,
    },
    /// The answer to a good `reauth`.
    Reauthed {
        /// The new token's `exp`, UNIX seconds: the connection's new deadline.
        expires_at: u64,
        /// Fresh `iceServers` for the new token's lifetime (the one-token ladder).
        #[serde(skip_serializing_if = "Option::is_none")]
        ice_servers: Option<&'a [IceServer]>,
    },
    /// The peer relayed more than `relay_warn_bytes_per_sec` over the last window.
    RelayUsage {
        /// Its relayed bytes per second, averaged over the window.
        bytes_per_sec: u64,
        /// The window, in seconds.
        window_secs: u64,
        /// `relay_warn_bytes_per_sec`.
        threshold: u64,
    },
}

impl Control<'_> {
    /// The message, encoded.
    pub fn to_json(&self) -> String {
        encode(self)
    }
}

/// A signaling message as the destination receives it.
pub fn forwarded_signal(kind: SignalKind, from: &str, payload: &RawValue) -> String {
    #[derive(Serialize)]
    struct Wire<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        from_peer_id: &'a str,
        payload: &'a RawValue,
    }
    encode(&Wire {
        kind: kind.as_str(),
        from_peer_id: from,
        payload,
    })
}

/// Encodes a message; our own types always encode.
fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

/// A relay frame from a client: the destination and the rest (nonce and box), borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayFrame<'a> {
    /// The destination peer id (valid).
    pub peer_id: &'a str,
    /// Nonce and ciphertext, untouched.
    pub sealed: &'a [u8],
}

/// Parses `[n][peer id][24-byte nonce][ciphertext]`.
pub fn parse_relay(frame: &[u8], max_frame: usize) -> Result<RelayFrame<'_>, Refusal> {
    let refuse = |code, message: &str| Err(Refusal::new(code, message, Some("relay")));
    if frame.len() > max_frame {
        return refuse(
            ErrorCode::FrameTooLarge,
            &format!("the relay frame is larger than {max_frame} bytes"),
        );
    }
    let Some((&length, rest)) = frame.split_first() else {
        return refuse(ErrorCode::FrameTooShort, "the relay frame is empty");
    };
    let length = usize::from(length);
    if length == 0 {
        return refuse(ErrorCode::BadFrame, "the relay frame names no peer");
    }
    if rest.len() < length + NONCE_BYTES + MIN_BOX_BYTES {
        return refuse(
            ErrorCode::FrameTooShort,
            "the relay frame is shorter than its header plus a 16-byte box",
        );
    }
    let (id, sealed) = rest.split_at(length);
    match std::str::from_utf8(id) {
        Ok(peer_id) if valid_id(peer_id) => Ok(RelayFrame { peer_id, sealed }),
        _ => refuse(
            ErrorCode::BadFrame,
            "the relay frame's peer id is not 1 to 64 bytes of printable ASCII",
        ),
    }
}

/// Builds `[n][peer id][sealed]` (what the server forwards, and what clients send).
/// `peer_id` must be valid (at most 64 bytes).
pub fn build_relay(peer_id: &str, sealed: &[u8]) -> Vec<u8> {
    let id = &peer_id.as_bytes()[..peer_id.len().min(usize::from(u8::MAX))];
    let mut frame = Vec::with_capacity(1 + id.len() + sealed.len());
    frame.push(id.len() as u8);
    frame.extend_from_slice(id);
    frame.extend_from_slice(sealed);
    frame
}
