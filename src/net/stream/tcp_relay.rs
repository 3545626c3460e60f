//! The I/O side of RFC 6062 TCP allocations: finding the connection task that owns a
//! CONNECTION-ID, handing its peer connection over to the task of the client's data
//! connection, and piping the two.
//!
//! The owner (the task of the control connection, whose core holds the allocation) registers
//! every pending peer connection in the [`Registry`] with a channel to itself. A data connection
//! whose core accepted a ConnectionBind asks the owner through that channel
//! ([`ControlMsg::Bind`]); the owner's core checks the id and the username, and the owner sends
//! the peer's `TcpStream` back with a close signal and the allocation's bandwidth cap. The data
//! connection then pipes raw bytes until either side ends, or the owner drops the close signal
//! (the allocation ended), and tells the owner ([`ControlMsg::Closed`]).
//!
//! The pipe counts what it relays into the same [`Stats`] as UDP relaying (relayed bytes and
//! "packets", one per read forwarded, by direction and the data connection's transport), as it
//! relays, and keeps each direction under the allocation's [`TcpBandwidth`] by pausing its
//! reads: TCP must not lose what it accepted, so nothing is dropped.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::proto::Transport;
use crate::proto::server::{ConnectionId, Direction, Refusal, Stats, TcpBandwidth};

/// How long a data connection waits for the owner's answer to a bind.
pub const BIND_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes a bound pair reads at a time in each direction (its memory: two such buffers).
const PIPE_CHUNK: usize = 8 * 1024;

/// What a bound data connection receives from the owner.
#[derive(Debug)]
pub struct Handover {
    /// The peer connection.
    pub peer: TcpStream,
    /// Completes when the owner wants the pair closed (its allocation ended).
    pub closed: oneshot::Receiver<()>,
    /// The allocation's bandwidth cap, shared by its data connections; `None`: no cap.
    pub bandwidth: Option<Arc<TcpBandwidth>>,
}

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

/// How a bound pair counts what it relays.
#[derive(Clone, Copy)]
pub struct Meter<'a> {
    /// The counters of the stream cores (a [`Stats::shared`]).
    pub stats: &'a Stats,
    /// The transport of the client's data connection (TCP or TLS), the `transport` label.
    pub transport: Transport,
}

/// Pipes a bound client data connection and the peer connection of `handover` until either
/// side fails, both have closed, or the owner closes the pair; `early` holds client bytes that
/// came after the ConnectionBind. Each direction copies through a fixed buffer: a slow reader
/// slows the writer down (TCP back-pressure), and so does the bandwidth cap; memory never
/// grows. Returns the bytes relayed client → peer and peer → client.
pub async fn pipe<C>(client: C, handover: Handover, early: &[u8], meter: Meter<'_>) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Handover {
        mut peer,
        closed,
        bandwidth,
    } = handover;
    let cap = bandwidth.as_deref();
    let (mut up, mut down) = (0u64, 0u64);
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut peer_rd, mut peer_wr) = peer.split();
    let relay = async {
        if !early.is_empty() {
            let direction = Direction::ClientToPeer;
            if let Some(cap) = cap {
                cap.charge(direction, Instant::now(), early.len() as u64);
            }
            peer_wr.write_all(early).await?;
            meter.relayed(direction, early.len(), &mut up);
        }
        tokio::try_join!(
            one_way(
                &mut client_rd,
                &mut peer_wr,
                Direction::ClientToPeer,
                meter,
                cap,
                &mut up
            ),
            one_way(
                &mut peer_rd,
                &mut client_wr,
                Direction::PeerToClient,
                meter,
                cap,
                &mut down
            ),
        )
    };
    tokio::select! {
        _ = relay => {}
        _ = closed => {}
    }
    (up, down)
}

impl Meter<'_> {
    fn relayed(&self, direction: Direction, n: usize, total: &mut u64) {
        self.stats.relayed(direction, self.transport, n as u64);
        *total += n as u64;
    }
}

/// Copies `rd` to `wr` until `rd` ends (then shuts `wr` down), counting every read forwarded
/// and pausing before a read while `cap` is in debt in this direction.
async fn one_way<R, W>(
    rd: &mut R,
    wr: &mut W,
    direction: Direction,
    meter: Meter<'_>,
    cap: Option<&TcpBandwidth>,
    total: &mut u64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; PIPE_CHUNK];
    let room = cap.map_or(PIPE_CHUNK, |c| c.max_read().clamp(1, PIPE_CHUNK));
    loop {
        if let Some(cap) = cap {
            // Other data connections of the allocation draw from the same budget: check again
            // after every pause.
            let pause = cap.pause(direction, Instant::now());
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
                continue;
            }
        }
        let n = rd.read(&mut buf[..room]).await?;
        if n == 0 {
            return wr.shutdown().await;
        }
        if let Some(cap) = cap {
            cap.charge(direction, Instant::now(), n as u64);
        }
        wr.write_all(&buf[..n]).await?;
        // TLS keeps records buffered until flushed; for TCP this does nothing.
        wr.flush().await?;
        meter.relayed(direction, n, total);
    }
}
