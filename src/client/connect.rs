//! Joining: opening the WebSocket with the token, `join` (with this peer's attestation),
//! the `welcome`, and which peers' keys are trusted (their attestations checked against
//! [`ClientConfig::trusted_issuer_keys`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto_box::PublicKey;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::events::{Event, parse_event};
use super::registry::{ClientConfig, ClientError};
use super::seal::public_key_from_base64;
use crate::proto::credentials::IceServer;
use crate::registry::attest::{Expected, verify_attestation};
use crate::registry::messages::SUBPROTOCOL;

pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the server has to answer a `join`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that joined.
pub(super) struct Joined {
    pub socket: Socket,
    /// The [`Event::Welcome`].
    pub welcome: Event,
    /// [`Event::PeerUntrusted`] for the listed peers whose attestation did not verify.
    pub untrusted: Vec<Event>,
    pub project: String,
    pub ice_servers: Option<Vec<IceServer>>,
}

/// Checks a peer's attestation against [`ClientConfig::trusted_issuer_keys`] (nothing to
/// check when there are none).
pub(super) fn trust(
    config: &ClientConfig,
    project: &str,
    peer_id: &str,
    public_key: &str,
    attestation: Option<&str>,
) -> Result<(), String> {
    if config.trusted_issuer_keys.is_empty() {
        return Ok(());
    }
    let Some(jwt) = attestation else {
        return Err("the peer presented no key attestation".to_owned());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expected = Expected {
        sub: peer_id,
        project,
        public_key,
    };
    verify_attestation(&config.trusted_issuer_keys, jwt, &expected, now)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Opens the WebSocket, sends `join`, waits for `welcome`; fills `peers` with the keys of the
/// trusted peers.
pub(super) async fn connect_and_join(
    config: &ClientConfig,
    url: &str,
    peers: &mut HashMap<String, PublicKey>,
) -> Result<Joined, ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Request(e.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", config.token))
        .map_err(|_| ClientError::Request("the token is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            #[derive(Deserialize, Default)]
            struct Detail {
                code: String,
                message: String,
            }
            #[derive(Deserialize, Default)]
            struct Body {
                error: Detail,
            }
            let body: Body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or_default();
            return Err(ClientError::Refused {
                status: response.status().as_u16(),
                error: body.error.code,
                message: body.error.message,
            });
        }
        Err(e) => return Err(ClientError::WebSocket(e.to_string())),
    };
    let mut join = serde_json::json!({"type": "join", "public_key": config.keys.public_base64()});
    if let Some(attestation) = &config.attestation {
        join["attestation"] = attestation.as_str().into();
    }
    socket
        .send(Message::text(join.to_string()))
        .await
        .map_err(|e| ClientError::WebSocket(e.to_string()))?;
    let answer = tokio::time::timeout(JOIN_TIMEOUT, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Text(text)) => return Ok(text.as_str().to_owned()),
                Ok(Message::Close(frame)) => {
                    return Err(format!("closed: {frame:?}"));
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the connection ended".to_owned())
    })
    .await
    .map_err(|_| ClientError::Join("no answer within 10 s".into()))?
    .map_err(ClientError::Join)?;
    match parse_event(&answer) {
        Event::Welcome {
            peer_id,
            project,
            peers: list,
            attestations,
            ice_servers,
        } => {
            peers.clear();
            let mut untrusted = Vec::new();
            for (id, key) in &list {
                let attestation = attestations.get(id).map(String::as_str);
                if let Err(reason) = trust(config, &project, id, key, attestation) {
                    untrusted.push(Event::PeerUntrusted {
                        peer_id: id.clone(),
                        reason,
                    });
                    continue;
                }
                if let Ok(key) = public_key_from_base64(key) {
                    peers.insert(id.clone(), key);
                }
            }
            let welcome = Event::Welcome {
                peer_id,
                project: project.clone(),
                peers: list,
                attestations,
                ice_servers: ice_servers.clone(),
            };
            Ok(Joined {
                socket,
                welcome,
                untrusted,
                project,
                ice_servers,
            })
        }
        Event::Error { code, message, .. } => Err(ClientError::Join(format!("{code}: {message}"))),
        other => Err(ClientError::Join(format!("unexpected answer {other:?}"))),
    }
}
