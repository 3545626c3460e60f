//! [`Link`]: the application's handle on one link of a [`super::Session`]: send (waiting while
//! the buffer is full), receive in order, watch the mode, read the stats, flush, close. The
//! link's state lives in the session's task; handles talk to it through channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::session::Command;
use crate::link::{CloseReason, LinkError, Message, Mode, SendError, Stats};

/// Application bytes delivered and not yet read, per link, beyond which the session stops
/// taking messages from the link core (which then stops acknowledging them, so the sender
/// slows down).
pub const MAX_UNREAD_BYTES: usize = 1 << 20;

/// What a link delivers, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message from the peer.
    Message(Message),
    /// An error (§7: `protocol_error`, `not_attested`, `unknown_peer`, `undelivered`); the
    /// link carries on.
    Error(LinkError),
    /// The link closed; nothing follows.
    Closed(CloseReason),
}

/// Progress the session publishes for [`Link::flush`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub unacked: usize,
    pub closed: bool,
}

/// Why [`Link::flush`] did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The link closed with messages still unacknowledged.
    #[error("the link closed with {0} messages unacknowledged")]
    Closed(usize),
}

pub(crate) struct Shared {
    pub peer: String,
    pub commands: mpsc::Sender<Command>,
    pub incoming: Mutex<mpsc::UnboundedReceiver<(usize, Incoming)>>,
    pub unread: AtomicUsize,
    pub mode: watch::Receiver<Mode>,
    pub progress: watch::Receiver<Progress>,
}

/// One link to a peer (clones share it).
#[derive(Clone)]
pub struct Link {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.shared.peer)
            .field("mode", &*self.shared.mode.borrow())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The other peer's id.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// Sends bytes. Waits while the unacked buffer is full; rejects with `send_timeout` after
    /// the session's send timeout, `message_too_large` above 1 MiB, `link_closed`.
    pub async fn send(&self, data: impl Into<Vec<u8>>) -> Result<(), SendError> {
        self.send_message(data.into(), true).await
    }

    /// Sends text (as UTF-8), like [`Link::send`].
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        self.send_message(text.into().into_bytes(), false).await
    }

    async fn send_message(&self, data: Vec<u8>, binary: bool) -> Result<(), SendError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Send {
            peer: self.shared.peer.clone(),
            data,
            binary,
            reply,
        };
        self.shared
            .commands
            .send(command)
            .await
            .map_err(|_| SendError::LinkClosed)?;
        answer.await.unwrap_or(Err(SendError::LinkClosed))
    }

    /// The next message, error or close, in order; `None` after `Closed` was read or when the
    /// session is gone.
    pub async fn recv(&self) -> Option<Incoming> {
        let (bytes, incoming) = self.shared.incoming.lock().await.recv().await?;
        let before = self.shared.unread.fetch_sub(bytes, Ordering::AcqRel);
        if before >= MAX_UNREAD_BYTES && before - bytes < MAX_UNREAD_BYTES {
            // The session held messages back: it may take them again.
            let _ = self.shared.commands.try_send(Command::Wake);
        }
        Some(incoming)
    }

    /// The mode now and its changes (`connecting`, `p2p`, `relay`, `closed`).
    pub fn mode(&self) -> watch::Receiver<Mode> {
        self.shared.mode.clone()
    }

    /// The link's counters.
    pub async fn stats(&self) -> Option<Stats> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Stats {
            peer: self.shared.peer.clone(),
            reply,
        };
        self.shared.commands.send(command).await.ok()?;
        answer.await.ok()
    }

    /// While `on`, the link sends on the relay and does not return to p2p (no probes, no ICE
    /// restarts); off: the usual rules, back to p2p once a probe round trip succeeds. As the
    /// browser SDK's `forceRelay`: for apps that want to spare a flaky direct path, and for
    /// tests that switch paths under traffic.
    pub async fn force_relay(&self, on: bool) {
        let _ = self
            .shared
            .commands
            .send(Command::ForceRelay {
                peer: self.shared.peer.clone(),
                on,
            })
            .await;
    }

    /// Resolves when every message sent so far is acknowledged by the peer.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let mut progress = self.shared.progress.clone();
        loop {
            let now = *progress.borrow_and_update();
            if now.unacked == 0 {
                return Ok(());
            }
            if now.closed {
                return Err(FlushError::Closed(now.unacked));
            }
            if progress.changed().await.is_err() {
                let last = *progress.borrow();
                return Err(FlushError::Closed(last.unacked));
            }
        }
    }

    /// Closes the link: `CLOSE` to the peer (best effort), waiting sends rejected.
    pub async fn close(&self) {
        let _ = self
            .shared
            .commands
            .send(Command::CloseLink {
                peer: self.shared.peer.clone(),
            })
            .await;
    }
}
