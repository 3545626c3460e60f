//! The link's signaling payloads (`docs/link-protocol.md` §6): JSON objects with `"link": 1`
//! and the sender's epoch, carried opaquely by the registry.

use serde::{Deserialize, Serialize};

use super::WebRtcError;

/// A JSEP session description (`RTCSessionDescriptionInit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// `"offer"` or `"answer"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP.
    pub sdp: String,
}

/// A trickled ICE candidate (`RTCIceCandidateInit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateInit {
    /// `candidate:...` as in SDP (without `a=`).
    pub candidate: String,
    /// The media id (`"0"`: the one data section).
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The m-line index (0).
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE ufrag the candidate belongs to.
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// One signaling payload of the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkSignal {
    /// `webrtc_offer`.
    Offer {
        /// The sender's epoch.
        epoch: u32,
        /// The SDP offer.
        sdp: String,
    },
    /// `webrtc_answer`.
    Answer {
        /// The sender's epoch.
        epoch: u32,
        /// The SDP answer.
        sdp: String,
    },
    /// `webrtc_ice_candidate`; `None` ends the candidates.
    Candidate {
        /// The sender's epoch.
        epoch: u32,
        /// The candidate.
        candidate: Option<CandidateInit>,
    },
}

#[derive(Serialize, Deserialize)]
struct Wire {
    link: u8,
    epoch: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<SessionDescription>,
    #[serde(
        default,
        skip_serializing_if = "is_absent",
        deserialize_with = "present"
    )]
    candidate: Option<Option<CandidateInit>>,
}

fn is_absent(c: &Option<Option<CandidateInit>>) -> bool {
    c.is_none()
}

/// `"candidate": null` is present (end of candidates), unlike a missing key.
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<CandidateInit>>, D::Error> {
    Option::<CandidateInit>::deserialize(d).map(Some)
}

impl LinkSignal {
    /// The registry message type that carries this payload.
    pub fn message_type(&self) -> &'static str {
        match self {
            LinkSignal::Offer { .. } => "webrtc_offer",
            LinkSignal::Answer { .. } => "webrtc_answer",
            LinkSignal::Candidate { .. } => "webrtc_ice_candidate",
        }
    }

    /// The sender's epoch.
    pub fn epoch(&self) -> u32 {
        match self {
            LinkSignal::Offer { epoch, .. }
            | LinkSignal::Answer { epoch, .. }
            | LinkSignal::Candidate { epoch, .. } => *epoch,
        }
    }

    /// The JSON payload.
    pub fn to_json(&self) -> String {
        let (epoch, description, candidate) = match self {
            LinkSignal::Offer { epoch, sdp } => (*epoch, Some(("offer", sdp)), None),
            LinkSignal::Answer { epoch, sdp } => (*epoch, Some(("answer", sdp)), None),
            LinkSignal::Candidate { epoch, candidate } => (*epoch, None, Some(candidate.clone())),
        };
        let wire = Wire {
            link: 1,
            epoch,
            description: description.map(|(kind, sdp)| SessionDescription {
                kind: kind.into(),
                sdp: sdp.clone(),
            }),
            candidate,
        };
        serde_json::to_string(&wire).expect("plain data serializes")
    }

    /// Parses a payload. `Ok(None)`: not a link payload (no `"link": 1`), for the application.
    pub fn from_json(json: &str) -> Result<Option<LinkSignal>, WebRtcError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| WebRtcError::Signal(e.to_string()))?;
        if value.get("link").and_then(|v| v.as_u64()) != Some(1) {
            return Ok(None);
        }
        let wire: Wire =
            serde_json::from_value(value).map_err(|e| WebRtcError::Signal(e.to_string()))?;
        match (wire.description, wire.candidate) {
            (Some(d), None) if d.kind == "offer" => Ok(Some(LinkSignal::Offer {
                epoch: wire.epoch,
                sdp: d.sdp,
            })),
            (Some(d), None) if d.kind == "answer" => Ok(Some(LinkSignal::Answer {
                epoch: wire.epoch,
                sdp: d.sdp,
            })),
            (None, Some(candidate)) => Ok(Some(LinkSignal::Candidate {
                epoch: wire.epoch,
                candidate,
            })),
            _ => Err(WebRtcError::Signal(
                "neither one description nor one candidate".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_match_the_protocol_document() {
        let offer = LinkSignal::Offer {
            epoch: 7,
            sdp: "v=0\r\n".into(),
        };
        assert_eq!(
            offer.to_json(),
            r#"{"link":1,"epoch":7,"description":{"type":"offer","sdp":"v=0\r\n"}}"#
        );
        let c = LinkSignal::Candidate {
            epoch: 7,
            candidate: Some(CandidateInit {
                candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
                username_fragment: Some("abcd".into()),
            }),
        };
        assert_eq!(
            c.to_json(),
            r#"{"link":1,"epoch":7,"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}"#
        );
        let end = LinkSignal::Candidate {
            epoch: 7,
            candidate: None,
        };
        assert_eq!(end.to_json(), r#"{"link":1,"epoch":7,"candidate":null}"#);
        for s in [offer, c, end] {
            assert_eq!(LinkSignal::from_json(&s.to_json()).unwrap(), Some(s));
        }
        assert_eq!(LinkSignal::from_json(r#"{"hello":1}"#).unwrap(), None);
        assert!(LinkSignal::from_json(r#"{"link":1,"epoch":1}"#).is_err());
        assert!(LinkSignal::from_json("not json").is_err());
    }
}
