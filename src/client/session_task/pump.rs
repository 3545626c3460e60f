//! The session task's output side: sending what the link cores produce (relay frames sealed by
//! the registry client, DataChannel frames, signaling), delivering their events to the link
//! handles, and the session's end (close, reconnect).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Incoming, MAX_UNREAD_BYTES, Task, now};
use crate::client::registry::{ClientError, RegistryClient};
use crate::client::session::{SessionEvent, TokenSource};
use crate::link::{self, CloseReason, ErrorCode, LinkError, Mode, Path, SendError};

/// The first delay before reconnecting with a fresh token; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl Task {
    /// Moves every link's pending output out.
    pub(super) async fn pump_all(&mut self) {
        for (kind, to, payload) in std::mem::take(&mut self.outgoing_signals) {
            let _ = self.client.signal(kind, &to, &payload, None).await;
        }
        let peers: Vec<String> = self.links.keys().cloned().collect();
        for peer in peers {
            self.pump(&peer).await;
        }
    }

    async fn pump(&mut self, peer: &str) {
        let now = now();
        let Some(entry) = self.links.get_mut(peer) else {
            return;
        };
        // Sends that waited for room, in order.
        while let Some(front) = entry.waiting.front() {
            if front.reply.is_closed() {
                entry.waiting.pop_front();
                continue;
            }
            if !entry.core.fits(front.data.len()) && entry.core.mode() != Mode::Closed {
                break;
            }
            if let Some(send) = entry.waiting.pop_front() {
                let _ = send
                    .reply
                    .send(entry.core.send(now, send.data, send.binary));
            }
        }
        let behind = |entry: &super::LinkEntry| {
            entry.shared.unread.load(Ordering::Acquire) >= MAX_UNREAD_BYTES
        };
        entry.core.hold_messages(behind(entry));
        let mut close_path = false;
        while let Some(event) = entry.core.poll_event() {
            match event {
                link::Event::Message(message) => {
                    let bytes = message.data.len();
                    entry.shared.unread.fetch_add(bytes, Ordering::AcqRel);
                    let _ = entry.incoming.send((bytes, Incoming::Message(message)));
                    entry.core.hold_messages(behind(entry));
                }
                link::Event::Mode(mode) => {
                    entry.mode.send_replace(mode);
                }
                link::Event::Error(error) => {
                    let _ = entry.incoming.send((0, Incoming::Error(error)));
                }
                link::Event::RestartIce => {
                    if let Some(path) = entry.path.as_mut() {
                        path.restart_ice();
                    }
                }
                link::Event::Open(_) => {}
                link::Event::Closed(reason) => {
                    let _ = entry.incoming.send((0, Incoming::Closed(reason)));
                    for send in entry.waiting.drain(..) {
                        let _ = send.reply.send(Err(SendError::LinkClosed));
                    }
                    close_path = true;
                }
            }
        }
        let mut transmits = Vec::new();
        while let Some(transmit) = entry.core.poll_transmit(now) {
            transmits.push(transmit);
        }
        for transmit in transmits {
            match transmit.path {
                Path::P2p => {
                    if let Some(path) = entry.path.as_mut() {
                        path.send_frame(&transmit.bytes);
                    }
                }
                Path::Relay => match self.client.relay(peer, &transmit.bytes).await {
                    Err(ClientError::UnknownPeer(_)) if !entry.unknown_peer_reported => {
                        entry.unknown_peer_reported = true;
                        let error = LinkError {
                            code: ErrorCode::UnknownPeer,
                            message: format!(
                                "the registry has no key for `{peer}` (not joined, or untrusted); \
                                 the link waits"
                            ),
                        };
                        let _ = entry.incoming.send((0, Incoming::Error(error)));
                    }
                    // Datagrams: a frame that could not go is lost and sent again later.
                    _ => {}
                },
            }
        }
        // The p2p path closes only after the last frames (the final ACK and the CLOSE) went
        // onto it: closing it first dropped them, and the peer then waited for acks that
        // never came (the `turnpike link` exit flake).
        if close_path {
            if let Some(mut path) = entry.path.take() {
                path.close();
            }
        }
        let progress = super::Progress {
            unacked: entry.core.unacked_messages() + entry.waiting.len(),
            closed: entry.core.mode() == Mode::Closed,
        };
        entry.progress.send_if_modified(|old| {
            let changed = *old != progress;
            *old = progress;
            changed
        });
    }

    /// Closes every link (`CLOSE` to each peer) and the registry connection.
    pub(super) async fn shutdown(&mut self, reason: &str) {
        let now = now();
        for entry in self.links.values_mut() {
            entry.core.close(now, CloseReason::SessionClosed);
        }
        self.pump_all().await;
        self.client.close().await;
        self.emit(SessionEvent::Closed(reason.to_owned()));
    }

    /// The registry client stopped (refused token, replaced, closed): with a token callback,
    /// connects again with a fresh token and back-off; `false` when the session ends.
    pub(super) async fn reconnect(&mut self, reason: String) -> bool {
        let TokenSource::Callback(_) = &self.config.token else {
            let code = if reason.contains("token") {
                "token_expired"
            } else {
                "session_closed"
            };
            let message = reason.clone();
            self.emit(SessionEvent::Error {
                code: code.to_owned(),
                message,
            });
            self.end_links();
            self.emit(SessionEvent::Closed(reason));
            return false;
        };
        let mut backoff = FIRST_BACKOFF;
        loop {
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    command = self.commands.recv() => match command {
                        None | Some(crate::client::session::Command::Close) => {
                            self.end_links();
                            self.emit(SessionEvent::Closed(reason));
                            return false;
                        }
                        Some(command) => self.on_command(command),
                    },
                }
            }
            backoff = (backoff * 2).min(self.config.max_backoff);
            let refused = match self.config.token.token().await {
                Ok(token) => {
                    match RegistryClient::connect(self.config.client_config(token)).await {
                        Ok(mut client) => {
                            let welcome = client.next_event().await;
                            self.client = client;
                            if let Some(welcome) = welcome {
                                self.on_welcome(welcome);
                            }
                            self.token_failures = None;
                            return true;
                        }
                        Err(ClientError::Refused {
                            status: 401, error, ..
                        }) => {
                            format!("the registry refused the fresh token: {error}")
                        }
                        Err(error) => {
                            // The network, not the token: keep trying.
                            tracing::debug!(%error, "link session: reconnect failed");
                            continue;
                        }
                    }
                }
                Err(message) => message,
            };
            // No connection: the session cannot go on without a token.
            if self.token_failed(refused, true) {
                self.end_links();
                self.emit(SessionEvent::Closed(reason));
                return false;
            }
        }
    }

    /// Reports a failed token attempt (`token_expired`); `true` when the session must end:
    /// the token has expired (or the connection is gone) and no valid token came for
    /// `token_retry_for`, over two attempts at least. The last error says so.
    pub(super) fn token_failed(&mut self, message: String, expired: bool) -> bool {
        let (since, count) = self.token_failures.get_or_insert((Instant::now(), 0));
        *count += 1;
        let (since, count) = (*since, *count);
        let code = "token_expired".to_owned();
        if expired && count >= 2 && since.elapsed() >= self.config.token_retry_for {
            let message = format!(
                "no valid token for {} s ({count} attempts; last: {message}): the session ends",
                since.elapsed().as_secs()
            );
            self.emit(SessionEvent::Error { code, message });
            return true;
        }
        self.emit(SessionEvent::Error { code, message });
        false
    }

    /// The session ended without a registry: every link closes (`session_closed`).
    pub(super) fn end_links(&mut self) {
        let now = now();
        for entry in self.links.values_mut() {
            entry.core.close(now, CloseReason::SessionClosed);
            while let Some(event) = entry.core.poll_event() {
                if let link::Event::Closed(reason) = event {
                    let _ = entry.incoming.send((0, Incoming::Closed(reason)));
                }
            }
            for send in entry.waiting.drain(..) {
                let _ = send.reply.send(Err(SendError::LinkClosed));
            }
            entry.progress.send_modify(|p| p.closed = true);
        }
    }
}
