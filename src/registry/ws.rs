//! The registry's WebSocket transport, built on tokio-tungstenite directly (axum's wrapper
//! cannot send a message in fragments): the upgrade handshake (RFC 6455 §4.2) and a
//! connection whose write buffers never keep the size of a burst or of a large message.
//!
//! Why: tungstenite keeps its buffers' largest capacity for the connection's life, and an
//! idle peer is mostly buffers. So large messages are sent in fragments of at most
//! [`FRAGMENT_BYTES`] (RFC 6455 §5.4: every client reassembles them; browsers, tungstenite and
//! Python's `websockets` do), tungstenite writes every frame straight through (its buffer holds
//! one fragment at most), and [`Gather`] collects the frames of a batch into one write and
//! frees its buffer once it is written out. On the read side, tungstenite's own buffer is
//! small (the caller's `read_buffer_size`) and [`Gather`] reads the socket in chunks of
//! [`READ_CHUNK_BYTES`] into a buffer it frees as soon as the socket has nothing more, so
//! bursts still take few system calls.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// A message larger than this is sent as fragments of at most this many payload bytes, so
/// tungstenite's write buffer (which keeps its largest size) never holds more than one.
pub const FRAGMENT_BYTES: usize = 1024;

/// [`Gather`] writes to the socket once it holds this many bytes (and on every flush).
const GATHER_BYTES: usize = 16 * 1024;

/// [`Gather`] reads the socket this many bytes at a time (into a buffer it keeps only while
/// data keeps coming).
const READ_CHUNK_BYTES: usize = 8 * 1024;

/// An accepted registry WebSocket.
pub type Socket = WebSocketStream<Gather<TokioIo<hyper::upgrade::Upgraded>>>;

/// A checked upgrade request: answer with [`Upgrade::response`], then [`Upgrade::finish`].
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Checks the handshake of `parts` (RFC 6455 §4.2.1); the refusal is the HTTP status and a
/// message, for [`refusal`].
pub fn check(parts: &mut Parts) -> Result<Upgrade, (StatusCode, &'static str)> {
    if parts.method != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET",
        ));
    }
    if !header_has_token(&parts.headers, CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "the Connection header does not include `upgrade`",
        ));
    }
    if !header_has_token(&parts.headers, UPGRADE, "websocket") {
        return Err((
            StatusCode::BAD_REQUEST,
            "the Upgrade header is not `websocket`",
        ));
    }
    if parts
        .headers
        .get(SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err((StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13"));
    }
    let Some(key) = parts.headers.get(SEC_WEBSOCKET_KEY).cloned() else {
        return Err((StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key"));
    };
    let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded",
        ));
    };
    Ok(Upgrade { key, on_upgrade })
}

/// The JSON answer to a request [`check`] refused (code `not_a_websocket`).
pub fn refusal((status, message): (StatusCode, &'static str)) -> Response {
    crate::http::ApiError::new(status, "not_a_websocket", message).into_response()
}

/// Whether the comma-separated `name` header lists `token` (ASCII case-insensitive).
fn header_has_token(headers: &HeaderMap, name: axum::http::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

impl Upgrade {
    /// The `101 Switching Protocols` answer, naming `protocol` as the subprotocol if given.
    pub fn response(&self, protocol: Option<&'static str>) -> Response {
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(protocol) = protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        }
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(self.key.as_bytes())) {
            headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }

    /// The WebSocket, once the client has the answer (an error if the connection went away).
    pub async fn finish(self, config: WebSocketConfig) -> Result<Socket, hyper::Error> {
        let upgraded = self.on_upgrade.await?;
        Ok(WebSocketStream::from_raw_socket(
            Gather::new(TokioIo::new(upgraded)),
            Role::Server,
            // Every frame goes straight to `Gather`: tungstenite's buffer holds one at most.
            Some(config.write_buffer_size(0)),
        )
        .await)
    }
}

/// The frames of one outgoing text or binary message: the message itself when it is at most
/// [`FRAGMENT_BYTES`], otherwise a first frame without FIN, continuation frames and a last
/// one with FIN (RFC 6455 §5.4). Text is cut anywhere: a fragment need not be valid UTF-8,
/// only the reassembled message.
pub fn fragments(payload: Bytes, text: bool) -> impl Iterator<Item = Message> {
    let len = payload.len();
    let whole = len <= FRAGMENT_BYTES;
    let count = if whole {
        1
    } else {
        len.div_ceil(FRAGMENT_BYTES)
    };
    (0..count).map(move |i| {
        if whole {
            let opcode = if text { Data::Text } else { Data::Binary };
            return Message::Frame(Frame::message(payload.clone(), OpCode::Data(opcode), true));
        }
        let start = i * FRAGMENT_BYTES;
        let end = (start + FRAGMENT_BYTES).min(len);
        let opcode = match (i, text) {
            (0, true) => Data::Text,
            (0, false) => Data::Binary,
            _ => Data::Continue,
        };
        Message::Frame(Frame::message(
            payload.slice(start..end),
            OpCode::Data(opcode),
            i + 1 == count,
        ))
    })
}

/// A stream that collects small writes and writes them to `inner` together, like tokio's
/// `BufWriter`, but frees its buffer once it is written out (on every flush), and reads
/// `inner` in chunks, like `BufReader`, but frees its buffer once `inner` has nothing more to
/// read: an idle connection holds no buffer here at all.
pub struct Gather<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    written: usize,
    /// Bytes read from `inner` (empty, or [`READ_CHUNK_BYTES`] long)...
    read: Vec<u8>,
    /// ... of which `read[read_from..read_to]` are not handed out yet.
    read_from: usize,
    read_to: usize,
}

impl<S> Gather<S> {
    fn new(inner: S) -> Self {
        Gather {
            inner,
            buf: Vec::new(),
            written: 0,
            read: Vec::new(),
            read_from: 0,
            read_to: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Gather<S> {
    /// Writes all of `buf` to `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gather<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_from == this.read_to {
            if out.remaining() >= READ_CHUNK_BYTES {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.read.len() != READ_CHUNK_BYTES {
                this.read = vec![0; READ_CHUNK_BYTES];
            }
            let mut chunk = ReadBuf::new(&mut this.read);
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Pending => {
                    // Nothing more for now: an idle connection keeps no read buffer.
                    this.read = Vec::new();
                    this.read_from = 0;
                    this.read_to = 0;
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {
                    this.read_from = 0;
                    this.read_to = chunk.filled().len();
                }
            }
        }
        let n = out.remaining().min(this.read_to - this.read_from);
        out.put_slice(&this.read[this.read_from..this.read_from + n]);
        this.read_from += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gather<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > GATHER_BYTES {
            ready!(this.poll_drain(cx))?;
        }
        if data.len() >= GATHER_BYTES {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.buf = Vec::new();
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.buf = Vec::new();
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(frames: impl Iterator<Item = Message>) -> Vec<(OpCode, bool, Vec<u8>)> {
        frames
            .map(|m| match m {
                Message::Frame(f) => (f.header().opcode, f.header().is_final, f.payload().to_vec()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_small_message_is_one_final_frame() {
        let got = parts(fragments(Bytes::from_static(b"{}"), true));
        assert_eq!(got, vec![(OpCode::Data(Data::Text), true, b"{}".to_vec())]);
        let got = parts(fragments(Bytes::from(vec![7; FRAGMENT_BYTES]), false));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, OpCode::Data(Data::Binary));
    }

    #[test]
    fn a_large_message_is_cut_into_continuations_that_reassemble() {
        let text: String = "é".repeat(FRAGMENT_BYTES + 7); // 2 bytes each: cuts inside one
        let got = parts(fragments(Bytes::from(text.clone()), true));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, OpCode::Data(Data::Text));
        assert!(!got[0].1 && !got[1].1 && got[2].1);
        assert!(got[1..].iter().all(|f| f.0 == OpCode::Data(Data::Continue)));
        assert!(got.iter().all(|f| f.2.len() <= FRAGMENT_BYTES));
        let whole: Vec<u8> = got.into_iter().flat_map(|f| f.2).collect();
        assert_eq!(whole, text.into_bytes());
        let got = parts(fragments(Bytes::from(vec![1; 3 * FRAGMENT_BYTES]), false));
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, OpCode::Data(Data::Binary));
        assert!(got[2].1);
    }

    #[tokio::test]
    async fn gather_reads_in_chunks_and_frees_its_buffer_when_nothing_is_left() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut gather = Gather::new(a);
        let sent: Vec<u8> = (0..3 * READ_CHUNK_BYTES + 5).map(|i| i as u8).collect();
        b.write_all(&sent).await.expect("write");
        let mut got = vec![0; sent.len()];
        // Small reads, as tungstenite makes with a small buffer.
        for piece in got.chunks_mut(300) {
            gather.read_exact(piece).await.expect("read");
        }
        assert_eq!(got, sent);
        assert_eq!(gather.read.len(), READ_CHUNK_BYTES);
        // Nothing more: the read is pending and the buffer gone.
        let mut more = [0u8; 10];
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), gather.read(&mut more))
                .await;
        assert!(pending.is_err(), "nothing to read");
        assert_eq!(gather.read.capacity(), 0);
        b.write_all(b"again").await.expect("write");
        gather.read_exact(&mut more[..5]).await.expect("read");
        assert_eq!(&more[..5], b"again");
        drop(b);
        assert_eq!(gather.read(&mut more).await.expect("end"), 0);
    }

    #[tokio::test]
    async fn gather_writes_everything_and_frees_its_buffer_on_flush() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut gather = Gather::new(a);
        for i in 0..100u8 {
            gather.write_all(&[i; 300]).await.expect("write");
        }
        assert!(gather.buf.len() <= GATHER_BYTES);
        gather.flush().await.expect("flush");
        assert_eq!(gather.buf.capacity(), 0);
        let mut got = vec![0; 30_000];
        b.read_exact(&mut got).await.expect("read");
        assert!(
            got.chunks(300)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&x| x == i as u8))
        );
    }
}
