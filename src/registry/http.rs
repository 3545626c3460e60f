//! The endpoint `GET /v1/registry`: authentication before the upgrade, then one task per
//! WebSocket that feeds the core what it reads and writes what the core hands out.
//!
//! The HTTP API merges [`routes`] into its router. The per-IP limit reads the client's address
//! from `ConnectInfo<SocketAddr>`, which `crate::http::serve_connection_from` (HTTP and TLS 443)
//! and the registry's own listener provide; without it every client would count as `0.0.0.0`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::attest::{Expected, verify_attestation};
use super::auth::find_token;
use super::config::MAX_WEBSOCKET_MESSAGE;
use super::core::ConnId;
use super::core::{Authority, Identity, Lease};
use super::messages::{SUBPROTOCOL, parse_text};
use super::metrics::{AuthFailure, ConnectRefusal};
use super::queue::Transmit;
use super::ws::{Socket, fragments};
use super::{RegistryState, unix_time};

/// The path of the endpoint.
pub const PATH: &str = "/v1/registry";

/// How long one frame may take to write before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// tungstenite's read buffer of a connection, allocated up front and kept (it grows to the
/// largest frame the client sent): small, since the socket is read in larger chunks into a
/// buffer freed once idle (`super::ws::Gather`).
const READ_BUFFER: usize = 512;

/// At most this many bytes of frames are taken from the core at once (under one lock), so
/// what a connection holds outside its budget stays small.
const BATCH_BYTES: usize = 64 * 1024;

/// The registry's routes (`/v1/registry`), for the HTTP server to merge.
pub fn routes(state: RegistryState) -> Router {
    Router::new().route(PATH, get(upgrade)).with_state(state)
}

/// A JSON refusal in the API's shape: `{"error": {"code": reason, "message": text}}`.
fn refuse(status: StatusCode, code: &'static str, message: &str) -> Response {
    crate::http::ApiError::new(status, code, message).into_response()
}

/// The core's [`Authority`] for one text message: the registry's current keys, the ladder's
/// minter, and the wall clock, read when a check needs it. Checks run under the registry's
/// lock; they are one signature verification each, and `reauth` counts against the
/// message rate limit like any message.
struct Gate<'a> {
    state: &'a RegistryState,
    now: Instant,
}

impl Authority for Gate<'_> {
    fn reauth(&self, token: &str) -> Result<(Identity, Lease), String> {
        let unix = unix_time();
        let identity = self
            .state
            .keys()
            .verify(token, unix.as_secs())
            .map_err(|failure| format!("{} ({})", failure.message(), failure.as_str()))?;
        let lease = self.state.lease(&identity, self.now, unix);
        Ok((identity, lease))
    }

    fn check_attestation(&self, jwt: &str, expected: &Expected<'_>) -> Option<Result<(), String>> {
        let keys = self.state.keys();
        if keys.attestation_keys().is_empty() {
            return None;
        }
        let now = unix_time().as_secs();
        Some(
            verify_attestation(keys.attestation_keys(), jwt, expected, now)
                .map(|_| ())
                .map_err(|error| error.to_string()),
        )
    }
}

async fn upgrade(State(state): State<RegistryState>, request: Request) -> Response {
    if state.is_closing() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "going_away",
            "the server is shutting down: connect to another one",
        );
    }
    let (mut parts, _body) = request.into_parts();
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let protocols: Vec<String> = parts
        .headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let auth_failure = |reason: AuthFailure| {
        state.metrics().count_auth_failure(reason);
        let status = match reason {
            AuthFailure::UnsupportedSubprotocol => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNAUTHORIZED,
        };
        tracing::debug!(%ip, reason = reason.as_str(), "registry upgrade refused");
        refuse(status, reason.as_str(), reason.message())
    };
    if !protocols.is_empty() && !protocols.iter().any(|p| p == SUBPROTOCOL) {
        return auth_failure(AuthFailure::UnsupportedSubprotocol);
    }
    let authorization = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let Some((token, _source)) = find_token(authorization, &offered, parts.uri.query()) else {
        return auth_failure(AuthFailure::MissingToken);
    };
    let identity = match state.keys().verify(&token, unix_time().as_secs()) {
        Ok(identity) => identity,
        Err(reason) => return auth_failure(reason),
    };
    let upgrade = match super::ws::check(&mut parts) {
        Ok(upgrade) => upgrade,
        Err(refused) => return super::ws::refusal(refused),
    };
    let (conn, notify) = match state.connect(ip, identity) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let status = match refusal {
                ConnectRefusal::TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
                ConnectRefusal::ServerFull => StatusCode::SERVICE_UNAVAILABLE,
            };
            let message = match refusal {
                ConnectRefusal::TooManyConnections => "too many connections from this address",
                ConnectRefusal::ServerFull => "the registry is full",
            };
            return refuse(status, refusal.as_str(), message);
        }
    };
    // Dropped without being run when the upgrade fails: the slot is given back either way.
    let guard = Admitted { state, conn };
    // The subprotocol is named only to a client that offered it (a client that offered none
    // would fail the connection).
    let protocol = (!protocols.is_empty()).then_some(SUBPROTOCOL);
    let response = upgrade.response(protocol);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_WEBSOCKET_MESSAGE))
        .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE))
        .read_buffer_size(READ_BUFFER);
    tokio::spawn(async move {
        match upgrade.finish(config).await {
            Ok(socket) => serve(socket, guard, notify).await,
            Err(error) => tracing::debug!(%error, "registry upgrade failed"),
        }
    });
    response
}

/// An admitted connection; dropping it tells the core the connection is gone.
struct Admitted {
    state: RegistryState,
    conn: ConnId,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.state.disconnect(self.conn);
    }
}

/// Runs one WebSocket: reads into the core, writes what the core hands out.
async fn serve(socket: Socket, admitted: Admitted, notify: Arc<Notify>) {
    let state = admitted.state.clone();
    let conn = admitted.conn;
    let (mut sink, mut stream) = socket.split();
    let reader = async {
        while let Some(Ok(message)) = stream.next().await {
            let now = Instant::now();
            match message {
                Message::Text(text) => {
                    // Parsed before taking the registry's lock, which every connection shares.
                    let parsed = parse_text(&text, state.max_payload());
                    let gate = Gate { state: &state, now };
                    state.with(|core| core.handle_parsed(now, conn, parsed, &gate))
                }
                Message::Binary(bytes) => state.with(|core| core.handle_binary(now, conn, &bytes)),
                Message::Ping(_) | Message::Pong(_) => {
                    state.with(|core| core.handle_activity(now, conn))
                }
                Message::Close(_) => break,
                Message::Frame(_) => {} // never read: tungstenite reassembles
            }
        }
    };
    let writer = async {
        let mut batch = Vec::new();
        loop {
            let mut wrote = false;
            loop {
                state.with(|core| core.poll_transmits(conn, &mut batch, BATCH_BYTES));
                if batch.is_empty() {
                    break;
                }
                for transmit in batch.drain(..) {
                    let (payload, text) = match transmit {
                        Transmit::Text(text) => (Bytes::from(text), true),
                        Transmit::Binary(frame) => (Bytes::from(frame), false),
                        Transmit::Ping => {
                            if !feed(&mut sink, Message::Ping(Bytes::new())).await {
                                return;
                            }
                            wrote = true;
                            continue;
                        }
                        Transmit::Close { code, reason } => {
                            let frame = CloseFrame {
                                code: code.into(),
                                reason: reason.into(),
                            };
                            let _ = tokio::time::timeout(
                                WRITE_TIMEOUT,
                                sink.send(Message::Close(Some(frame))),
                            )
                            .await;
                            return;
                        }
                    };
                    for message in fragments(payload, text) {
                        if !feed(&mut sink, message).await {
                            return;
                        }
                    }
                    wrote = true;
                }
            }
            batch = Vec::new(); // an idle connection keeps no buffer
            if wrote
                && !matches!(
                    tokio::time::timeout(WRITE_TIMEOUT, sink.flush()).await,
                    Ok(Ok(()))
                )
            {
                return;
            }
            notify.notified().await;
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    drop(admitted);
}

/// Hands `message` to the WebSocket; false if it failed or took longer than [`WRITE_TIMEOUT`].
async fn feed(sink: &mut SplitSink<Socket, Message>, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.feed(message)).await,
        Ok(Ok(()))
    )
}
