//! The browser SDK and the registry demo on the real binary's HTTP API: `/sdk/turnpike.js`
//! served as a module with its ETag, `/demo` and `/demo/token` 404 unless `[http] demo`, and
//! when on, the page, and tokens for loopback clients that join the registry (with a secret of
//! the demo's own when the registry has none, or `registry.jwt_secrets[0]`).

mod common;
mod registry_support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::http::{self, Response};
use common::{Conf, Server};
use registry_support::*;
use serde_json::Value;
use turnpike::client::{
    ClientConfig, Event, Expected, KeyPair, RegistryClient, verify_attestation,
};

const SDK: &str = include_str!("../clients/js/dist/turnpike.js");
const PAGE: &str = include_str!("../clients/js/demo/index.html");

fn demo_server(registry: &str) -> Server {
    Server::start(Conf {
        http_extra: vec!["demo = true".into()],
        extra_toml: format!("[registry]\nenabled = true\n{registry}\n"),
        ..Conf::default()
    })
}

fn post_token(server: &Server, body: &str) -> Response {
    http::request(
        server.http,
        "POST",
        "/demo/token",
        &[("Content-Type", "application/json")],
        Some(body),
    )
    .expect("POST /demo/token")
}

/// A request with a Host header of our choosing (the shared helper writes the address).
fn post_with_host(addr: SocketAddr, host: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "POST /demo/token HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {answer}"))
}

async fn join(
    url: &str,
    token: &str,
    keys: KeyPair,
    attestation: Option<String>,
) -> RegistryClient {
    let mut config = ClientConfig::new(url, token, keys);
    config.reconnect = false;
    config.attestation = attestation;
    let mut client = RegistryClient::connect(config).await.expect("joins");
    match next(&mut client).await {
        Event::Welcome { project, .. } => assert_eq!(project, "demo"),
        other => panic!("{other:?}"),
    }
    client
}

#[test]
fn the_sdk_is_served_and_the_demo_is_off_by_default() {
    let registry = TestRegistry::start("");
    let server = &registry.server;
    let sdk = http::get(server.http, "/sdk/turnpike.js");
    assert_eq!(sdk.status, 200);
    assert_eq!(
        sdk.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(sdk.body, SDK, "the file, byte for byte");
    assert_eq!(sdk.header("cache-control"), Some("no-cache"));
    let etag = sdk.header("etag").expect("an ETag").to_owned();
    let again = http::request(
        server.http,
        "GET",
        "/sdk/turnpike.js",
        &[("If-None-Match", &etag)],
        None,
    )
    .unwrap();
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    for (method, path) in [("GET", "/demo"), ("POST", "/demo/token")] {
        let r = http::request(server.http, method, path, &[], Some("{\"peer_id\":\"a\"}")).unwrap();
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert_eq!(r.error_code(), "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_page_and_tokens_that_join() {
    // No registry.jwt_secrets: the demo's own secret, which the registry accepts.
    let server = demo_server("");
    let page = http::get(server.http, "/demo");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.body, PAGE);
    assert!(server.log().contains("random secret generated at start"));

    let answer = post_token(&server, r#"{"peer_id":"alice"}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let minted = answer.json();
    let url = format!("ws://{}/v1/registry", server.http);
    assert_eq!(minted["url"], url.as_str());
    assert_eq!(minted["project"], "demo");
    assert!(minted.get("attestation").is_none());
    let _alice = join(
        &url,
        minted["token"].as_str().unwrap(),
        KeyPair::generate(),
        None,
    )
    .await;

    // With "attest": a key pair, its attestation, and the key that verifies it.
    let minted = post_token(&server, r#"{"peer_id":"bob","attest":true}"#).json();
    let issuer: [u8; 32] = base64_decode(&minted["issuer_public_key"])
        .try_into()
        .unwrap();
    let public_key = minted["public_key"].as_str().unwrap();
    let attestation = minted["attestation"].as_str().unwrap().to_owned();
    verify_attestation(
        &[issuer],
        &attestation,
        &Expected {
            sub: "bob",
            project: "demo",
            public_key,
        },
        common::unix_now(),
    )
    .expect("the demo's attestation verifies");
    let keys = KeyPair::from_secret_base64(minted["secret_key"].as_str().unwrap()).unwrap();
    let _bob = join(
        &url,
        minted["token"].as_str().unwrap(),
        keys,
        Some(attestation),
    )
    .await;

    // Bad requests, and a Host that is not loopback (DNS rebinding).
    for body in [
        "",
        "{}",
        r#"{"peer_id":""}"#,
        r#"{"peer_id":"a b"}"#,
        r#"{"peer_id":"a","x":1}"#,
    ] {
        assert_eq!(post_token(&server, body).status, 400, "{body}");
    }
    assert_eq!(
        post_with_host(server.http, "evil.example.org", r#"{"peer_id":"a"}"#),
        403
    );
    assert_eq!(
        post_with_host(server.http, "localhost:1", r#"{"peer_id":"a"}"#),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_tokens_are_signed_with_the_first_registry_secret() {
    let server = demo_server(&format!("jwt_secrets = [\"{JWT_SECRET}\", \"other\"]"));
    assert!(server.log().contains("registry.jwt_secrets[0]"));
    let minted = post_token(&server, r#"{"peer_id":"carol"}"#).json();
    let token = minted["token"].as_str().unwrap();
    let data = jsonwebtoken::decode::<turnpike::registry::auth::Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("signed with the first secret");
    let exp = data.claims.exp.unwrap();
    let now = common::unix_now();
    assert!(
        (now + 3590..=now + 3600).contains(&exp),
        "one hour: {exp} vs {now}"
    );
    assert_eq!(data.claims.project.as_deref(), Some("demo"));
}

fn base64_decode(value: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
}
