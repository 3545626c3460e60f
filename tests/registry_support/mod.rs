//! Helpers for the registry's integration tests: a real `turnpike serve` with `[registry]`
//! enabled on a loopback port, tokens, raw WebSocket connections (to see and send exact
//! bytes) and the Rust client. Every wait is bounded.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use turnpike::client::{ClientConfig, Event, KeyPair, RegistryClient};
use turnpike::registry::auth::{Claims, mint_hs256};

use crate::common::{Conf, Server, unix_now};

/// The HS256 secret every test registry accepts.
pub const JWT_SECRET: &str = "registry-test-secret";
/// How long a test waits for one message.
pub const WAIT: Duration = Duration::from_secs(5);

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running server with the registry on 127.0.0.1 (a port the kernel picks).
pub struct TestRegistry {
    pub server: Server,
    pub addr: SocketAddr,
}

impl TestRegistry {
    /// Starts a server whose HTTP API (`[http] address`) serves the registry; `extra` adds
    /// `[registry]` keys (one `key = value` per line).
    pub fn start(extra: &str) -> TestRegistry {
        let server = Server::start(conf(extra));
        let addr = server.http;
        TestRegistry { server, addr }
    }

    /// Starts a server with the registry also on a listener of its own (`[registry] listen`),
    /// and uses that one.
    pub fn start_on_own_listener(extra: &str) -> TestRegistry {
        let server = Server::start(conf(&format!("listen = \"127.0.0.1:0\"\n{extra}")));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = server.log();
            if let Some(rest) = log.split("registry listening on ws://").nth(1) {
                let addr = rest.split('/').next().unwrap().parse().unwrap();
                return TestRegistry { server, addr };
            }
            assert!(Instant::now() < deadline, "no registry listener:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's `/metrics` text.
    pub fn metrics(&self) -> String {
        let response = crate::common::http::get(self.server.http, "/metrics");
        response.body.clone()
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/registry", self.addr)
    }

    /// A valid token for `sub` in `project`, for an hour.
    pub fn token(&self, sub: &str, project: &str) -> String {
        token(&claims(sub, project))
    }

    /// Connects and joins with the Rust client (no reconnect); returns it and the welcome.
    pub async fn client(&self, sub: &str, project: &str) -> (RegistryClient, Vec<String>) {
        self.client_with(sub, project, KeyPair::generate()).await
    }

    pub async fn client_with(
        &self,
        sub: &str,
        project: &str,
        keys: KeyPair,
    ) -> (RegistryClient, Vec<String>) {
        join_client(&self.url(), sub, project, keys).await
    }

    /// The server's resident anonymous memory (its heap, stacks and buffers) in KiB, from
    /// /proc: `RssAnon`, not `VmRSS`, which also counts the pages of the binary's code as they
    /// are first run and never drops them (tens of MiB in a debug build).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("RssAnon")
    }
}

fn conf(extra: &str) -> Conf {
    Conf {
        extra_toml: format!(
            "[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n{extra}\n"
        ),
        ..Conf::default()
    }
}

/// Connects and joins with the Rust client (no reconnect); returns it and the welcome's peers.
pub async fn join_client(
    url: &str,
    sub: &str,
    project: &str,
    keys: KeyPair,
) -> (RegistryClient, Vec<String>) {
    let mut config = ClientConfig::new(url, token(&claims(sub, project)), keys);
    config.reconnect = false;
    let mut client = RegistryClient::connect(config).await.expect("connect");
    match next(&mut client).await {
        Event::Welcome { peers, .. } => {
            let ids = peers.into_iter().map(|(id, _)| id).collect();
            (client, ids)
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
}

pub fn claims(sub: &str, project: &str) -> Claims {
    Claims {
        sub: Some(sub.into()),
        project: Some(project.into()),
        exp: Some(unix_now() + 3600),
        nbf: None,
        pk: None,
    }
}

pub fn token(claims: &Claims) -> String {
    mint_hs256(JWT_SECRET.as_bytes(), claims)
}

/// The next client event (at most [`WAIT`]).
pub async fn next(client: &mut RegistryClient) -> Event {
    tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("an event within the wait")
        .expect("the client is running")
}

/// True when no event arrives within `quiet`.
pub async fn silent(client: &mut RegistryClient, quiet: Duration) -> Result<(), Event> {
    match tokio::time::timeout(quiet, client.next_event()).await {
        Err(_) => Ok(()),
        Ok(Some(event)) => Err(event),
        Ok(None) => Ok(()),
    }
}

/// How a raw upgrade request carries its token.
pub enum Carry<'a> {
    None,
    Header(&'a str),
    Protocol(&'a str),
    Query(&'a str),
}

/// Opens a raw WebSocket; `Err((status, body))` when the server refuses the upgrade.
pub async fn raw_connect(url: &str, carry: Carry<'_>) -> Result<Socket, (u16, Value)> {
    let url = match carry {
        Carry::Query(token) => format!("{url}?access_token={token}"),
        _ => url.to_owned(),
    };
    let mut request = url.as_str().into_client_request().unwrap();
    let headers = request.headers_mut();
    let protocols = match carry {
        Carry::Protocol(token) => format!("turnpike.registry.v1, turnpike.bearer.{token}"),
        _ => "turnpike.registry.v1".to_owned(),
    };
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocols).unwrap(),
    );
    if let Carry::Header(token) = carry {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => {
            assert_eq!(
                response
                    .headers()
                    .get("sec-websocket-protocol")
                    .map(|v| v.to_str().unwrap()),
                Some("turnpike.registry.v1"),
                "the server selects the subprotocol and never echoes the token"
            );
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(e) => panic!("cannot connect to {url}: {e}"),
    }
}

/// A raw socket that sent `join` and got its welcome.
pub async fn raw_join(url: &str, token: &str, keys: &KeyPair) -> (Socket, Value) {
    let mut socket = raw_connect(url, Carry::Header(token))
        .await
        .expect("upgrade");
    send_json(
        &mut socket,
        &serde_json::json!({"type": "join", "public_key": keys.public_base64()}),
    )
    .await;
    let welcome = recv_json(&mut socket).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (socket, welcome)
}

pub async fn send_json(socket: &mut Socket, value: &Value) {
    send_text(socket, &value.to_string()).await;
}

pub async fn send_text(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.expect("send");
}

pub async fn send_binary(socket: &mut Socket, frame: Vec<u8>) {
    socket.send(Message::binary(frame)).await.expect("send");
}

/// The next data or close frame (pings skipped), at most [`WAIT`].
pub async fn recv(socket: &mut Socket) -> Message {
    tokio::time::timeout(WAIT, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                other => panic!("the connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a message within the wait")
}

pub async fn recv_json(socket: &mut Socket) -> Value {
    match recv(socket).await {
        Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub async fn recv_binary(socket: &mut Socket) -> Vec<u8> {
    match recv(socket).await {
        Message::Binary(bytes) => bytes.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}
