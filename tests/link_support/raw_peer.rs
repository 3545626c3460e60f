//! A raw registry peer for the bad-input tests: a WebSocket of its own (tokio-tungstenite),
//! link frames encoded here from docs/link-protocol.md §2 (not with either SDK), sealed with
//! the Rust client's `Sealer`. It can announce one key and seal with another, send a blob
//! again byte for byte, or send back a blob it received: what a forger, a replayer or a
//! compromised server could do.

use std::time::{Duration, Instant};

use crypto_box::PublicKey;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use turnpike::client::{KeyPair, Sealer};

use crate::registry_support::{Carry, Socket, raw_connect, recv_json, send_json};

/// Link frame kinds (§2).
pub const DATA: u8 = 1;
pub const ACK: u8 = 2;

/// A decoded link frame header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub src_epoch: u32,
    pub dst_epoch: u32,
    pub number: u64,
    pub payload: Vec<u8>,
}

/// Encodes a frame: the 18-byte header, big-endian, then the payload.
pub fn encode(f: &Frame) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + f.payload.len());
    out.push(f.kind);
    out.push(f.flags);
    out.extend_from_slice(&f.src_epoch.to_be_bytes());
    out.extend_from_slice(&f.dst_epoch.to_be_bytes());
    out.extend_from_slice(&f.number.to_be_bytes());
    out.extend_from_slice(&f.payload);
    out
}

/// Decodes a frame's header (no validation beyond the length: the test reads what it got).
pub fn decode(bytes: &[u8]) -> Option<Frame> {
    if bytes.len() < 18 {
        return None;
    }
    Some(Frame {
        kind: bytes[0],
        flags: bytes[1],
        src_epoch: u32::from_be_bytes(bytes[2..6].try_into().ok()?),
        dst_epoch: u32::from_be_bytes(bytes[6..10].try_into().ok()?),
        number: u64::from_be_bytes(bytes[10..18].try_into().ok()?),
        payload: bytes[18..].to_vec(),
    })
}

/// A one-fragment text message (END set, not BINARY).
pub fn text_frame(src_epoch: u32, dst_epoch: u32, seq: u64, text: &str) -> Vec<u8> {
    encode(&Frame {
        kind: DATA,
        flags: 1,
        src_epoch,
        dst_epoch,
        number: seq,
        payload: text.as_bytes().to_vec(),
    })
}

/// The registry's client-to-server relay frame: `[n][peer id][sealed]`.
pub fn relay_frame(peer: &str, sealed: &[u8]) -> Vec<u8> {
    let mut out = vec![peer.len() as u8];
    out.extend_from_slice(peer.as_bytes());
    out.extend_from_slice(sealed);
    out
}

/// A joined raw peer; its runtime drives the socket only while a call runs.
pub struct RawPeer {
    rt: tokio::runtime::Runtime,
    socket: Socket,
    /// Seals with this key pair (which may differ from the announced one).
    pub sealer: Sealer,
    pub welcome: Value,
}

impl RawPeer {
    /// Connects with `token`, joins announcing `announced`'s public key, and seals with
    /// `sealing` from then on.
    pub fn join(url: &str, token: &str, announced: &KeyPair, sealing: KeyPair) -> RawPeer {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (socket, welcome) = rt.block_on(async {
            let mut socket = raw_connect(url, Carry::Protocol(token))
                .await
                .expect("upgrade");
            send_json(
                &mut socket,
                &json!({"type": "join", "public_key": announced.public_base64()}),
            )
            .await;
            let welcome = recv_json(&mut socket).await;
            (socket, welcome)
        });
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        RawPeer {
            rt,
            socket,
            sealer: Sealer::new(sealing, start),
            welcome,
        }
    }

    /// Seals `frame` for `to` (whose key is `to_key`) and sends it; returns the registry frame
    /// as sent, to send again.
    pub fn send_frame(&mut self, to: &str, to_key: &PublicKey, frame: &[u8]) -> Vec<u8> {
        let bytes = relay_frame(to, &self.sealer.seal(to_key, frame));
        self.send_raw(bytes.clone());
        bytes
    }

    /// Sends `bytes` as one binary frame.
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        let socket = &mut self.socket;
        self.rt.block_on(async {
            use futures_util::SinkExt as _;
            socket.send(Message::binary(bytes)).await.expect("send");
        });
    }

    /// The next relay frame received (`[n][from][sealed]`, as it came), skipping text frames;
    /// `None` when none comes within `within`.
    pub fn next_blob(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        let socket = &mut self.socket;
        self.rt.block_on(async {
            use futures_util::StreamExt as _;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, socket.next()).await {
                    Err(_) => return None,
                    Ok(Some(Ok(Message::Binary(bytes)))) => return Some(bytes.to_vec()),
                    Ok(Some(Ok(_))) => continue,
                    Ok(other) => panic!("the raw peer's connection ended: {other:?}"),
                }
            }
        })
    }

    /// The next link frame from `from` (opened with `from_key`), skipping anything else;
    /// `None` when none comes within `within`.
    pub fn next_frame(&mut self, from_key: &PublicKey, within: Duration) -> Option<Frame> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let blob = self.next_blob(left)?;
            let n = usize::from(blob[0]);
            if let Ok(plain) = self.sealer.open(from_key, &blob[1 + n..]) {
                return decode(&plain);
            }
        }
    }
}
