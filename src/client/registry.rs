//! A registry client (docs/registry-protocol.md): connects with a token, joins, sends and
//! receives signaling, seals and opens relay blobs, and reconnects with back-off.
//!
//! One background task owns the WebSocket and the [`Sealer`]; [`RegistryClient`] talks to it
//! through channels. Events come out of [`RegistryClient::next_event`] in the order the server
//! sent them.
//!
//! Tokens are live: the server warns ([`Event::TokenExpiring`]) before the token ends and
//! closes the connection at its `exp`; [`RegistryClient::reauth`] hands it a fresh token
//! (also used for later reconnections once accepted). With
//! [`ClientConfig::trusted_issuer_keys`], peers' relay keys are used only when their key
//! attestation verifies, so that the server cannot swap them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto_box::PublicKey;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::connect::{Socket, connect_and_join, trust};
pub use super::events::{Event, parse_event};
use super::seal::{KeyPair, Sealer, public_key_from_base64};
use crate::proto::credentials::IceServer;
use crate::registry::messages::{SignalKind, build_relay, valid_id};

/// The first reconnect delay; it doubles up to [`ClientConfig::max_backoff`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// How to reach the registry and who to be.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `ws://HOST:PORT/v1/registry`.
    pub url: String,
    /// Other nodes of the same registry cluster (`ws://.../v1/registry`), tried in turn after
    /// [`ClientConfig::url`] when connecting and when a connection is lost: the client moves
    /// on to the next live node. Empty by default.
    pub fallback_urls: Vec<String>,
    /// The JWT (sent in `Authorization: Bearer`).
    pub token: String,
    /// This peer's key pair; its public key is announced in `join`.
    pub keys: KeyPair,
    /// Reconnect (and re-join) when the connection is lost.
    pub reconnect: bool,
    /// The longest delay between reconnect attempts.
    pub max_backoff: Duration,
    /// This peer's key attestation (`turnpike token --attest`), sent in `join` and forwarded
    /// by the server to the other peers.
    pub attestation: Option<String>,
    /// Issuers' Ed25519 public keys (raw 32 bytes) that other peers' attestations must verify
    /// with. Empty (the default): peers' keys are taken as the server forwards them. Otherwise
    /// a peer without a valid attestation is reported as [`Event::PeerUntrusted`] and its key
    /// is not used.
    pub trusted_issuer_keys: Vec<[u8; 32]>,
}

impl ClientConfig {
    /// [`ClientConfig::url`] then [`ClientConfig::fallback_urls`].
    pub fn urls(&self) -> Vec<String> {
        std::iter::once(self.url.clone())
            .chain(self.fallback_urls.iter().cloned())
            .collect()
    }

    /// A configuration that reconnects with back-off up to 30 s.
    pub fn new(url: impl Into<String>, token: impl Into<String>, keys: KeyPair) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            fallback_urls: Vec::new(),
            token: token.into(),
            keys,
            reconnect: true,
            max_backoff: Duration::from_secs(30),
            attestation: None,
            trusted_issuer_keys: Vec::new(),
        }
    }
}

/// Why the client could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the upgrade (401, 429, 503...).
    #[error("the registry refused the connection: HTTP {status} {error}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `error` field of the JSON body.
        error: String,
        /// The `message` field.
        message: String,
    },
    /// The URL or token cannot form a request.
    #[error("bad registry URL or token: {0}")]
    Request(String),
    /// The WebSocket failed.
    #[error("registry connection: {0}")]
    WebSocket(String),
    /// The server did not welcome the join.
    #[error("the registry did not accept the join: {0}")]
    Join(String),
    /// No public key is known for this peer (not in the project, or not joined yet).
    #[error("no public key known for peer `{0}`")]
    UnknownPeer(String),
    /// The client is between connections, or closed.
    #[error("not connected to the registry")]
    NotConnected,
}

enum Command {
    Text(String),
    Reauth(String),
    Binary(Vec<u8>),
    Relay {
        to: String,
        message: Vec<u8>,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Close,
}

/// A connected registry client.
#[derive(Debug)]
pub struct RegistryClient {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    public_key: String,
    ice_servers: Arc<Mutex<Option<Vec<IceServer>>>>,
}

impl RegistryClient {
    /// Connects, joins, and starts the background task. The first connection must succeed
    /// with one of [`ClientConfig::urls`], tried in order (a refused token is returned at once
    /// as [`ClientError::Refused`]); later ones are retried, moving on to the next URL.
    pub async fn connect(config: ClientConfig) -> Result<RegistryClient, ClientError> {
        let mut peers = HashMap::new();
        let urls = config.urls();
        let mut outcome = Err(ClientError::NotConnected);
        let mut current = 0;
        for (index, url) in urls.iter().enumerate() {
            outcome = connect_and_join(&config, url, &mut peers).await;
            match &outcome {
                Ok(_) | Err(ClientError::Refused { status: 401, .. }) => {
                    current = index;
                    break;
                }
                Err(error) => tracing::debug!(%error, url, "registry: trying the next URL"),
            }
        }
        let joined = outcome?;
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, events) = mpsc::channel(1024);
        let ice_servers = Arc::new(Mutex::new(joined.ice_servers.clone()));
        let _ = event_tx.try_send(joined.welcome);
        for event in joined.untrusted {
            let _ = event_tx.try_send(event);
        }
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let public_key = config.keys.public_base64();
        let task = Task {
            sealer: Sealer::new(config.keys.clone(), start),
            config,
            urls,
            current,
            peers,
            project: joined.project,
            pending_token: None,
            ice_servers: ice_servers.clone(),
            commands: command_rx,
            events: event_tx,
        };
        tokio::spawn(task.run(joined.socket));
        Ok(RegistryClient {
            commands,
            events,
            public_key,
            ice_servers,
        })
    }

    /// The `iceServers` of the latest `welcome` or `reauthed` (the one-token ladder), if the
    /// server hands them out: ready for `RTCPeerConnection` or a TURN client.
    pub fn ice_servers(&self) -> Option<Vec<IceServer>> {
        self.ice_servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sends `reauth` with a fresh token for the same peer and project. The answer comes as
    /// [`Event::Reauthed`] (the token is then also used to reconnect) or as an
    /// [`Event::Error`] whose `refers_to` is `reauth` (`invalid_token`, `identity_mismatch`;
    /// the connection keeps its old deadline).
    pub async fn reauth(&self, token: &str) -> Result<(), ClientError> {
        self.commands
            .send(Command::Reauth(token.to_owned()))
            .await
            .map_err(|_| ClientError::NotConnected)
    }

    /// This peer's public key, base64.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Sends a signaling message to `to`. `id`, when given, comes back in an error about it.
    pub async fn signal(
        &self,
        kind: SignalKind,
        to: &str,
        payload: &serde_json::Value,
        id: Option<u64>,
    ) -> Result<(), ClientError> {
        let mut message = serde_json::json!({
            "type": kind.as_str(),
            "to_peer_id": to,
            "payload": payload,
        });
        if let Some(id) = id {
            message["id"] = id.into();
        }
        self.send_text(message.to_string()).await
    }

    /// Seals `message` for `to` and sends it through the relay.
    pub async fn relay(&self, to: &str, message: &[u8]) -> Result<(), ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Relay {
                to: to.to_owned(),
                message: message.to_vec(),
                reply,
            })
            .await
            .map_err(|_| ClientError::NotConnected)?;
        answer.await.map_err(|_| ClientError::NotConnected)?
    }

    /// Sends a text frame as is (tools and tests of the server's error handling).
    pub async fn send_text(&self, text: String) -> Result<(), ClientError> {
        self.commands
            .send(Command::Text(text))
            .await
            .map_err(|_| ClientError::NotConnected)
    }

    /// Sends a binary frame as is (tools and tests).
    pub async fn send_binary(&self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.commands
            .send(Command::Binary(frame))
            .await
            .map_err(|_| ClientError::NotConnected)
    }

    /// The next event; `None` once the client has stopped and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Closes the connection (1000) and stops reconnecting.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }
}

/// The background task: one connection at a time, reconnecting with back-off.
struct Task {
    config: ClientConfig,
    /// `url` then `fallback_urls`.
    urls: Vec<String>,
    /// The index in `urls` of the latest connection.
    current: usize,
    sealer: Sealer,
    /// The keys of the peers this client relays with (trusted ones only).
    peers: HashMap<String, PublicKey>,
    /// The project, from the latest welcome.
    project: String,
    /// A token sent in `reauth`, adopted for reconnections once `reauthed` arrives.
    pending_token: Option<String>,
    ice_servers: Arc<Mutex<Option<Vec<IceServer>>>>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
}

/// How a connection ended.
enum End {
    /// Lost (may reconnect).
    Lost(Option<u16>, String),
    /// Final: replaced, or the application closed.
    Final(Option<u16>, String),
}

impl Task {
    async fn run(mut self, first: Socket) {
        let mut socket = first;
        loop {
            let (code, reason) = match self.session(&mut socket).await {
                End::Final(code, reason) => {
                    let _ = self.events.send(Event::Closed { code, reason }).await;
                    return;
                }
                End::Lost(code, reason) => (code, reason),
            };
            if !self.config.reconnect {
                let _ = self.events.send(Event::Closed { code, reason }).await;
                return;
            }
            let _ = self.events.send(Event::Disconnected { code, reason }).await;
            match self.reconnect().await {
                Some(next) => socket = next,
                None => return,
            }
        }
    }

    /// Retries with exponential back-off (and jitter) until connected; `None` when the
    /// application went away or the server refuses the token.
    async fn reconnect(&mut self) -> Option<Socket> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let jitter = Duration::from_millis(rand::random::<u64>() % 100);
            let sleep = tokio::time::sleep(backoff + jitter);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    command = self.commands.recv() => match command {
                        None | Some(Command::Close) => return None,
                        Some(Command::Relay { reply, .. }) => {
                            let _ = reply.send(Err(ClientError::NotConnected));
                        }
                        Some(_) => {} // between connections: nothing to send on
                    },
                }
            }
            // The next URL first (its node is probably alive when this one died), then round.
            attempt += 1;
            let index = (self.current + attempt) % self.urls.len().max(1);
            let url = self.urls.get(index).cloned().unwrap_or_default();
            match connect_and_join(&self.config, &url, &mut self.peers).await {
                Ok(joined) => {
                    self.current = index;
                    self.project = joined.project;
                    self.set_ice_servers(joined.ice_servers);
                    let _ = self.events.send(joined.welcome).await;
                    for event in joined.untrusted {
                        let _ = self.events.send(event).await;
                    }
                    return Some(joined.socket);
                }
                Err(ClientError::Refused {
                    status: 401, error, ..
                }) => {
                    let reason = format!("token refused: {error}");
                    let _ = self.events.send(Event::Closed { code: None, reason }).await;
                    return None;
                }
                Err(error) => tracing::debug!(%error, url, "registry reconnect failed"),
            }
            if attempt % self.urls.len().max(1) == 0 {
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        }
    }

    async fn session(&mut self, socket: &mut Socket) -> End {
        loop {
            // The socket is read only while the application's event queue has room; while it
            // is full, commands are still served (a session that waits for a relay reply while
            // its own events wait for room would otherwise deadlock under a flood).
            let room = self.events.capacity() > 0;
            tokio::select! {
                permit = self.events.clone().reserve_owned(), if !room => {
                    if permit.is_err() {
                        return End::Final(None, "the application is gone".into());
                    }
                }
                message = socket.next(), if room => match message {
                    None => return End::Lost(None, "the connection ended".into()),
                    Some(Err(e)) => return End::Lost(None, e.to_string()),
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame.map(|f| f.reason.as_str().to_owned()).unwrap_or_default();
                        // Replaced: another connection took over this peer id; do not fight it.
                        // Disconnected (4006): an operator removed this peer; coming back would
                        // defeat that.
                        return if code == Some(4001) || code == Some(4006) {
                            End::Final(code, reason)
                        } else {
                            End::Lost(code, reason)
                        };
                    }
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(frame))) => self.on_relay(&frame).await,
                    Some(Ok(_)) => {}
                },
                command = self.commands.recv() => {
                    let outgoing = match command {
                        None | Some(Command::Close) => {
                            let _ = socket.close(None).await;
                            return End::Final(Some(1000), "closed by the client".into());
                        }
                        Some(Command::Text(text)) => Message::text(text),
                        Some(Command::Reauth(token)) => {
                            let message = serde_json::json!({"type": "reauth", "token": token});
                            self.pending_token = Some(token);
                            Message::text(message.to_string())
                        }
                        Some(Command::Binary(frame)) => Message::binary(frame),
                        Some(Command::Relay { to, message, reply }) => {
                            match self.seal(&to, &message) {
                                Ok(frame) => {
                                    let _ = reply.send(Ok(()));
                                    Message::binary(frame)
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e));
                                    continue;
                                }
                            }
                        }
                    };
                    if let Err(e) = socket.send(outgoing).await {
                        return End::Lost(None, e.to_string());
                    }
                }
            }
        }
    }

    fn seal(&mut self, to: &str, message: &[u8]) -> Result<Vec<u8>, ClientError> {
        if !valid_id(to) {
            return Err(ClientError::UnknownPeer(to.to_owned()));
        }
        let key = self
            .peers
            .get(to)
            .ok_or_else(|| ClientError::UnknownPeer(to.to_owned()))?;
        Ok(build_relay(to, &self.sealer.seal(key, message)))
    }

    fn set_ice_servers(&self, ice_servers: Option<Vec<IceServer>>) {
        *self
            .ice_servers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ice_servers;
    }

    async fn on_text(&mut self, text: &str) {
        let event = parse_event(text);
        let mut untrusted = None;
        match &event {
            Event::PeerJoined {
                peer_id,
                public_key,
                attestation,
            } => {
                // A new key for this id replaces the old one only if it is trusted.
                self.peers.remove(peer_id);
                let checked = trust(
                    &self.config,
                    &self.project,
                    peer_id,
                    public_key,
                    attestation.as_deref(),
                );
                match checked {
                    Ok(()) => {
                        if let Ok(key) = public_key_from_base64(public_key) {
                            self.peers.insert(peer_id.clone(), key);
                        }
                    }
                    Err(reason) => {
                        untrusted = Some(Event::PeerUntrusted {
                            peer_id: peer_id.clone(),
                            reason,
                        });
                    }
                }
            }
            Event::PeerLeft { peer_id } => {
                self.peers.remove(peer_id);
            }
            Event::Reauthed { ice_servers, .. } => {
                if let Some(token) = self.pending_token.take() {
                    self.config.token = token;
                }
                if ice_servers.is_some() {
                    self.set_ice_servers(ice_servers.clone());
                }
            }
            Event::Error {
                refers_to: Some(refers_to),
                ..
            } if refers_to == "reauth" => {
                self.pending_token = None;
            }
            _ => {}
        }
        let _ = self.events.send(event).await;
        if let Some(untrusted) = untrusted {
            // Never waits: the loop made room for one event only.
            if self.events.try_send(untrusted).is_err() {
                tracing::warn!("registry client: peer_untrusted event dropped (queue full)");
            }
        }
    }

    async fn on_relay(&mut self, frame: &[u8]) {
        let event = match open_frame(&mut self.sealer, &self.peers, frame) {
            Ok((from, message)) => Event::Relay { from, message },
            Err((from, reason)) => Event::RelayRejected { from, reason },
        };
        let _ = self.events.send(event).await;
    }
}

/// Opens `[n][from][nonce][box]` with the sender's known key.
fn open_frame(
    sealer: &mut Sealer,
    peers: &HashMap<String, PublicKey>,
    frame: &[u8],
) -> Result<(String, Vec<u8>), (String, String)> {
    let Some((&length, rest)) = frame.split_first() else {
        return Err((String::new(), "empty frame".into()));
    };
    let length = usize::from(length);
    if rest.len() < length {
        return Err((String::new(), "truncated frame".into()));
    }
    let (id, sealed) = rest.split_at(length);
    let from = String::from_utf8_lossy(id).into_owned();
    let Some(key) = peers.get(&from) else {
        return Err((from, "unknown sender".into()));
    };
    match sealer.open(key, sealed) {
        Ok(message) => Ok((from, message)),
        Err(e) => Err((from, e.to_string())),
    }
}
