//! The link session (docs/link-protocol.md §7): one registry connection that carries every
//! link of this peer. [`Session::connect`] joins the registry (a token, or a callback that
//! mints one: used again to reauthenticate before the token expires and to reconnect);
//! [`Session::link`] opens a link to a peer (either side may open first: a link the peer
//! opened arrives as [`SessionEvent::Link`]).
//!
//! One task (`session_task`) owns the registry client and the pure link cores
//! ([`crate::link::Link`]); it seals relay frames through the registry client's `Sealer`,
//! drives the cores' timers, and hands frames to the p2p paths a [`P2pConnector`] creates.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::link_handle::Link;
use super::p2p::{IceTransportPolicy, P2pConnector};
use super::registry::{ClientConfig, ClientError, RegistryClient};
use super::seal::KeyPair;
use super::session_task::Task;
use crate::link::{SendError, Stats};
use crate::proto::credentials::IceServer;
use crate::registry::messages::SignalKind;

/// How long a token callback may take; beyond, the attempt counts as failed.
pub const TOKEN_CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A callback that mints a fresh token.
pub type TokenCallback = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Where the session's tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    /// One token: the session ends when it expires.
    Fixed(String),
    /// Called at connect, before the token expires (`token_expiring`, then `reauth`) and to
    /// reconnect.
    Callback(TokenCallback),
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Fixed(_) => f.write_str("TokenSource::Fixed(..)"),
            TokenSource::Callback(_) => f.write_str("TokenSource::Callback(..)"),
        }
    }
}

impl TokenSource {
    pub(crate) async fn token(&self) -> Result<String, String> {
        match self {
            TokenSource::Fixed(token) => Ok(token.clone()),
            TokenSource::Callback(callback) => {
                match tokio::time::timeout(TOKEN_CALLBACK_TIMEOUT, callback()).await {
                    Ok(result) => result,
                    Err(_) => Err(format!(
                        "the token callback did not answer within {} s",
                        TOKEN_CALLBACK_TIMEOUT.as_secs()
                    )),
                }
            }
        }
    }
}

/// How to connect, and the links' settings.
#[derive(Clone)]
pub struct SessionConfig {
    /// `ws://HOST:PORT/v1/registry` (or `wss://`).
    pub url: String,
    /// The token, or how to get one.
    pub token: TokenSource,
    /// This peer's X25519 key pair (the relay's end-to-end encryption).
    pub keys: KeyPair,
    /// This peer's key attestation, sent in `join`.
    pub attestation: Option<String>,
    /// Issuers' Ed25519 public keys (raw 32 bytes): when set, the relay is used only for peers
    /// whose attestation verifies (§5), else the link reports `not_attested`.
    pub trusted_issuer_keys: Vec<[u8; 32]>,
    /// Fall back to the relay when p2p is not up within this delay.
    pub fallback_after: Duration,
    /// Each link's unacked buffer (`maxBufferedBytes`).
    pub max_buffered_bytes: usize,
    /// How long `send` waits for room (`sendTimeoutMs`).
    pub send_timeout: Duration,
    /// The registry's `limits.relay_bytes_per_sec` (relay blobs are paced to 90 % of it).
    pub relay_bytes_per_sec: u64,
    /// ICE servers for p2p paths; default: the registry's `welcome.ice_servers`.
    pub ice_servers: Option<Vec<IceServer>>,
    /// `iceTransportPolicy` for p2p paths.
    pub ice_transport_policy: IceTransportPolicy,
    /// Creates p2p paths; `None`: links use the relay only.
    pub p2p: Option<Arc<dyn P2pConnector>>,
    /// The longest delay between reconnect attempts.
    pub max_backoff: Duration,
    /// Without a registry connection, how long the session keeps asking a token callback
    /// that fails (or whose tokens the registry refuses) before it ends: a last
    /// `token_expired` error, then `Closed` (every link closes with `session_closed`).
    /// Each failed attempt in between is reported as `token_expired` too.
    pub token_retry_for: Duration,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .field("fallback_after", &self.fallback_after)
            .field("p2p", &self.p2p.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionConfig {
    /// The protocol's defaults: fallback after 10 s, 1 MiB buffers, 30 s send timeout.
    pub fn new(url: impl Into<String>, token: TokenSource, keys: KeyPair) -> SessionConfig {
        SessionConfig {
            url: url.into(),
            token,
            keys,
            attestation: None,
            trusted_issuer_keys: Vec::new(),
            fallback_after: Duration::from_secs(10),
            max_buffered_bytes: 1 << 20,
            send_timeout: Duration::from_secs(30),
            relay_bytes_per_sec: 1 << 20,
            ice_servers: None,
            ice_transport_policy: IceTransportPolicy::All,
            p2p: None,
            max_backoff: Duration::from_secs(30),
            token_retry_for: Duration::from_secs(60),
        }
    }

    pub(crate) fn client_config(&self, token: String) -> ClientConfig {
        let mut config = ClientConfig::new(&self.url, token, self.keys.clone());
        config.attestation = self.attestation.clone();
        config.trusted_issuer_keys = self.trusted_issuer_keys.clone();
        config.max_backoff = self.max_backoff;
        config
    }
}

/// What a session reports besides its links' traffic.
#[derive(Debug)]
pub enum SessionEvent {
    /// A link the peer opened.
    Link(Link),
    /// A peer joined the project.
    PeerJoined(String),
    /// A peer left (its links stay: it may come back).
    PeerLeft(String),
    /// A signaling message that is not for the link layer (no `"link": 1`).
    Signal {
        /// Offer, answer or candidate.
        kind: SignalKind,
        /// The sender.
        from: String,
        /// The payload's JSON text.
        payload: String,
    },
    /// This peer relays more than the server's threshold (`relay_usage`).
    RelayUsage {
        /// Relayed bytes per second over the window.
        bytes_per_sec: u64,
    },
    /// The registry accepted a fresh token (`reauth`, after `token_expiring` and the token
    /// callback): the connection, and every link on it, now lasts until `expires_at`.
    Reauthed {
        /// The new token's `exp`, UNIX seconds.
        expires_at: u64,
    },
    /// A session error (`token_expired`, or a registry error about no link).
    Error {
        /// The code.
        code: String,
        /// For people.
        message: String,
    },
    /// The session ended; every link closed with `session_closed`.
    Closed(String),
}

/// Why a session could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No token (the callback failed).
    #[error("no token: {0}")]
    Token(String),
    /// The registry refused or could not be reached.
    #[error(transparent)]
    Registry(#[from] ClientError),
    /// Not a valid peer id.
    #[error("`{0}` is not a valid peer id")]
    BadPeer(String),
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
}

/// What handles ask of the session's task.
pub(crate) enum Command {
    Open {
        peer: String,
        reply: oneshot::Sender<Result<Link, SessionError>>,
    },
    Send {
        peer: String,
        data: Vec<u8>,
        binary: bool,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    Stats {
        peer: String,
        reply: oneshot::Sender<Stats>,
    },
    CloseLink {
        peer: String,
    },
    ForceRelay {
        peer: String,
        on: bool,
    },
    /// A handle read messages the session held back: take them again.
    Wake,
    Close,
}

/// Session events held for [`Session::next_event`]; beyond, new events are dropped (and
/// logged) rather than stopping the session's links.
pub const EVENT_QUEUE: usize = 256;

/// How long [`Session::close`] waits for the session's task to send its `CLOSE` frames and
/// close the registry connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connected session.
pub struct Session {
    commands: mpsc::Sender<Command>,
    events: Mutex<mpsc::Receiver<SessionEvent>>,
    /// Closed (its sender dropped) when the session's task ended.
    ended: watch::Receiver<()>,
    peer_id: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Gets a token, connects and joins; the first connection must succeed.
    pub async fn connect(config: SessionConfig) -> Result<Session, SessionError> {
        let token = config.token.token().await.map_err(SessionError::Token)?;
        let mut client = RegistryClient::connect(config.client_config(token)).await?;
        let welcome = client.next_event().await.ok_or(SessionError::Closed)?;
        let (commands, command_rx) = mpsc::channel(256);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (ended_tx, ended) = watch::channel(());
        let task = Task::new(
            config,
            client,
            welcome,
            commands.clone(),
            command_rx,
            event_tx,
        );
        let peer_id = task.peer_id().to_owned();
        tokio::spawn(async move {
            task.run().await;
            drop(ended_tx);
        });
        Ok(Session {
            commands,
            events: Mutex::new(events),
            ended,
            peer_id,
        })
    }

    /// This peer's id (from the token).
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The link to `peer` (the same link for the same peer until it closes).
    pub async fn link(&self, peer: &str) -> Result<Link, SessionError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Open {
            peer: peer.to_owned(),
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| SessionError::Closed)?;
        answer.await.map_err(|_| SessionError::Closed)?
    }

    /// The next session event; `None` once the session ended and every event was read.
    pub async fn next_event(&self) -> Option<SessionEvent> {
        self.events.lock().await.recv().await
    }

    /// Closes every link (`CLOSE` to each peer) and the registry connection; returns once the
    /// session's task ended, or after [`CLOSE_TIMEOUT`].
    pub async fn close(&self) {
        let mut ended = self.ended.clone();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = self.commands.send(Command::Close).await;
            while ended.changed().await.is_ok() {}
        })
        .await;
    }
}
