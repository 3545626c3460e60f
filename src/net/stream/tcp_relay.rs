//! The I/O side of RFC 6062 TCP allocations: finding the connection task that owns a
//! CONNECTION-ID, handing its peer connection over to the task of the client's data
//! connection, and piping the two.
//!
//! The owner (the task of the control connection, whose core holds the allocation) registers
//! every pending peer connection in the [`Registry`] with a channel to itself. A data connection
//! whose core accepted a ConnectionBind asks the owner through that channel
//! ([`ControlMsg::Bind`]); the owner's core checks the id and the username, and the owner sends
//! the peer's `TcpStream` back with a close signal. The data connection then pipes raw bytes
//! until either side ends, or the owner drops the close signal (the allocation ended), and
//! tells the owner ([`ControlMsg::Closed`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::proto::server::{ConnectionId, Refusal};

/// How long a data connection waits for the owner's answer to a bind.
pub const BIND_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a bound data connection receives from the owner: the peer connection and a receiver
/// that completes when the owner wants the pair closed (its allocation ended).
pub type Handover = (TcpStream, oneshot::Receiver<()>);

/// A message to the task that owns a TCP allocation.
#[derive(Debug)]
pub enum ControlMsg {
    /// A data connection authenticated as `username` asks to bind connection `id`.
    Bind {
        /// The CONNECTION-ID.
        id: ConnectionId,
        /// The data connection's authenticated USERNAME.
        username: String,
        /// Where the owner answers.
        answer: oneshot::Sender<Result<Handover, Refusal>>,
    },
    /// The bound pair of connection `id` ended.
    Closed(ConnectionId),
}

/// The owners of pending connection ids, bounded.
#[derive(Debug)]
pub struct Registry {
    max: usize,
    owners: Mutex<HashMap<ConnectionId, mpsc::Sender<ControlMsg>>>,
}

impl Registry {
    /// A registry of at most `max` pending connections.
    pub fn new(max: usize) -> Self {
        Registry {
            max,
            owners: Mutex::new(HashMap::new()),
        }
    }

    /// Records the owner of `id`; false when the registry is full.
    pub fn insert(&self, id: ConnectionId, owner: mpsc::Sender<ControlMsg>) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        if owners.len() >= self.max {
            return false;
        }
        owners.insert(id, owner);
        true
    }

    /// The owner of `id`, if it is pending.
    pub fn owner(&self, id: ConnectionId) -> Option<mpsc::Sender<ControlMsg>> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(&id).cloned()
    }

    /// Forgets `id`.
    pub fn remove(&self, id: ConnectionId) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.remove(&id);
    }

    /// Pending connections registered now.
    pub fn len(&self) -> usize {
        self.owners.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Asks the owner of `id` for its peer connection. The refusal is what to answer the
/// ConnectionBind with.
pub async fn request_bind(
    registry: &Registry,
    id: ConnectionId,
    username: String,
) -> Result<(Handover, mpsc::Sender<ControlMsg>), Refusal> {
    const UNKNOWN: Refusal = (400, "Unknown CONNECTION-ID");
    let owner = registry.owner(id).ok_or(UNKNOWN)?;
    let (answer, answered) = oneshot::channel();
    owner
        .send(ControlMsg::Bind {
            id,
            username,
            answer,
        })
        .await
        .map_err(|_| UNKNOWN)?;
    match tokio::time::timeout(BIND_ANSWER_TIMEOUT, answered).await {
        Ok(Ok(Ok(handover))) => Ok((handover, owner)),
        Ok(Ok(Err(refusal))) => Err(refusal),
        Ok(Err(_)) | Err(_) => Err(UNKNOWN),
    }
}

/// Pipes a bound client data connection and its peer connection until either side closes or
/// `close` fires; `early` holds client bytes that came after the ConnectionBind. Each
/// direction copies through a fixed buffer: a slow reader slows the writer down (TCP
/// back-pressure), memory never grows.
pub async fn pipe<C>(
    mut client: C,
    mut peer: TcpStream,
    early: &[u8],
    close: oneshot::Receiver<()>,
) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    if !early.is_empty() && peer.write_all(early).await.is_err() {
        return (0, 0);
    }
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut peer) => {
            copied.unwrap_or((0, 0))
        }
        _ = close => (0, 0),
    }
}
