//! A relay-sniffing TCP proxy: the pages reach the registry through it, and it keeps every byte
//! of every connection in both directions, so a test can read the registry frames as the
//! server sees them. [`ws_frames`] takes a recorded stream apart: the HTTP upgrade, then the
//! WebSocket frames (client frames unmasked), continuations joined into whole messages.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One proxied connection's bytes: what the client sent, what the server sent.
#[derive(Clone, Default)]
pub struct Recorded {
    pub to_server: Vec<u8>,
    pub to_client: Vec<u8>,
}

/// The most a proxied connection records in each direction (every buffer is bounded).
const RECORD_LIMIT: usize = 64 << 20;

/// A proxy on 127.0.0.1 to `upstream`, recording; it stops accepting when dropped (the open
/// connections end with their peers).
pub struct SniffProxy {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
    stop: Arc<AtomicBool>,
}

impl SniffProxy {
    pub fn start(upstream: SocketAddr) -> SniffProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let all = connections.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))
                else {
                    continue;
                };
                let record = Arc::new(Mutex::new(Recorded::default()));
                all.lock().unwrap().push(record.clone());
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    record.clone(),
                    true,
                );
                pipe(server, client, record, false);
            }
        });
        SniffProxy {
            addr,
            connections,
            stop,
        }
    }

    /// What every connection so far recorded.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.connections
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.lock().unwrap().clone())
            .collect()
    }
}

impl Drop for SniffProxy {
    fn drop(&mut self) {
        // Wake the accept loop with a connection of our own: it sees the flag and stops.
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Copies `from` to `to` on a thread of its own, recording what passes.
fn pipe(mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Recorded>>, to_server: bool) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            {
                let mut r = record.lock().unwrap();
                let side = if to_server {
                    &mut r.to_server
                } else {
                    &mut r.to_client
                };
                if side.len() + n <= RECORD_LIMIT {
                    side.extend_from_slice(&buf[..n]);
                }
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A whole WebSocket message: its opcode (1 text, 2 binary, 8 close, 9/10 ping/pong) and payload.
#[derive(Debug)]
pub struct WsMessage {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// The HTTP head of a recorded stream and its WebSocket messages (payloads unmasked,
/// fragments joined); `Err` when the bytes are not that. A frame cut off at the very end (a
/// connection recorded while it still runs) is left out.
pub fn ws_frames(stream: &[u8]) -> Result<(String, Vec<WsMessage>), String> {
    let head_end = stream
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP head")?
        + 4;
    let head = String::from_utf8_lossy(&stream[..head_end]).into_owned();
    let mut rest = &stream[head_end..];
    let mut messages = Vec::new();
    let mut partial: Option<WsMessage> = None;
    while !rest.is_empty() {
        if rest.len() < 2 {
            break;
        }
        let fin = rest[0] & 0x80 != 0;
        let opcode = rest[0] & 0x0f;
        let masked = rest[1] & 0x80 != 0;
        let (len, mut at) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u64::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 if rest.len() >= 10 => (u64::from_be_bytes(rest[2..10].try_into().unwrap()), 10),
            126 | 127 => break,
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(key) = rest.get(at..at + 4) else {
                break;
            };
            let key: [u8; 4] = key.try_into().unwrap();
            at += 4;
            Some(key)
        } else {
            None
        };
        let len = usize::try_from(len).map_err(|_| "a frame too large")?;
        let mut payload = rest
            .get(at..at + len)
            .ok_or("a truncated payload")?
            .to_vec();
        if let Some(key) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        rest = &rest[at + len..];
        let message = match (opcode, partial.take()) {
            (0, Some(mut m)) => {
                m.payload.extend_from_slice(&payload);
                m
            }
            (0, None) => return Err("a continuation without a start".into()),
            (op, _) => WsMessage {
                opcode: op,
                payload,
            },
        };
        if fin || message.opcode >= 8 {
            messages.push(message);
        } else {
            partial = Some(message);
        }
    }
    Ok((head, messages))
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
