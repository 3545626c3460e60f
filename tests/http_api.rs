//! The HTTP API of the real binary over loopback: the ICE-servers and TURN REST credential
//! endpoints (credentials used by coturn's `turnutils_uclient`), bearer tokens (API keys, HS256
//! and EdDSA JWTs), CORS as a browser exercises it, JSON errors, and `/readyz`.

mod common;

use common::http::{self, Response};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use turnpike::proto::credentials;

const API_KEY: &str = "test-api-key-0123456789";
const HS256_SECRET: &str = "hs256-secret-0123456789abcdef0123456789";
/// A throwaway Ed25519 key pair made for these tests (`openssl genpkey -algorithm ed25519`).
const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICh0WW9C52JeWBJWrvcPFZkSUp/vKm5OF6pLBiXnbZ8j
-----END PRIVATE KEY-----
";
const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA2guMNBUIUqJ9kH3GPPnzqwDI5u7Sjy17Zzr7Ssn8svo=
-----END PUBLIC KEY-----
";

/// A server with loopback peers allowed, one API key, one HS256 secret and one EdDSA key.
fn api_conf(extra: &[&str]) -> Conf {
    let mut conf = Conf::loopback_peers();
    conf.http_extra = vec![
        format!("api_keys = [{API_KEY:?}]"),
        "max_credential_ttl_secs = 3600".into(),
        "credential_ttl_secs = 600".into(),
    ];
    conf.http_extra.extend(extra.iter().map(|s| s.to_string()));
    conf.http_extra.push(format!(
        "[http.jwt]\nhs256_secrets = [{HS256_SECRET:?}]\neddsa_public_keys = ['''{ED_PUBLIC}''']"
    ));
    conf
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn post_ice(server: &Server, auth: Option<&str>, body: Option<&str>) -> Response {
    let auth = auth.map(bearer);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    http::request(server.http, "POST", "/api/v1/ice-servers", &headers, body)
        .expect("POST /api/v1/ice-servers")
}

fn jwt(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("sign a JWT")
}

/// The URLs every test server hands out.
fn expected_urls(server: &Server) -> serde_json::Value {
    serde_json::json!([
        format!("turn:127.0.0.1:{}?transport=udp", server.udp.port()),
        format!("stun:127.0.0.1:{}", server.udp.port()),
    ])
}

/// Checks an `iceServers` answer for `user` with `ttl`; returns (username, credential).
fn check_ice_answer(server: &Server, r: &Response, user: &str, ttl: u64) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["ttl"], ttl, "{v}");
    let servers = v["iceServers"].as_array().expect("iceServers array");
    assert_eq!(servers.len(), 1, "{v}");
    assert_eq!(servers[0]["urls"], expected_urls(server), "{v}");
    let username = servers[0]["username"].as_str().unwrap().to_owned();
    let credential = servers[0]["credential"].as_str().unwrap().to_owned();
    let (expiry, name) = username.split_once(':').expect("EXPIRY:USER");
    assert_eq!(name, user);
    let expiry: u64 = expiry.parse().unwrap();
    let now = unix_now();
    assert!(
        expiry >= now + ttl - 5 && expiry <= now + ttl,
        "expiry {expiry} for ttl {ttl} at {now}"
    );
    assert_eq!(
        credential,
        credentials::rest_password(SECRET_ONE.as_bytes(), &username),
        "signed with the first auth.secrets entry"
    );
    (username, credential)
}

fn uclient_to_peer(server: &Server, peer: &Peer, user: &str, pass: &str) -> Uclient {
    let args = [
        "-p",
        &server.udp.port().to_string(),
        "-e",
        &peer.addr.ip().to_string(),
        "-r",
        &peer.addr.port().to_string(),
        "-u",
        user,
        "-w",
        pass,
        "-c",
        "-n",
        "10",
        "-m",
        "2",
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Uclient::run(&args, LOCALHOST_V4)
}

#[test]
fn ice_servers_credentials_relay_with_turnutils_uclient() {
    let server = Server::start(api_conf(&[]));
    let peer = Peer::start(LOCALHOST_V4);
    let r = post_ice(
        &server,
        Some(API_KEY),
        Some(r#"{"user":"alice","ttl":900}"#),
    );
    let (username, credential) = check_ice_answer(&server, &r, "alice", 900);
    uclient_to_peer(&server, &peer, &username, &credential).assert_relayed(20, &server);

    // A JWT's subject becomes the user (no body: the default TTL).
    let key = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let token = jwt(
        Algorithm::HS256,
        &key,
        serde_json::json!({"sub": "bob", "exp": unix_now() + 300}),
    );
    let r = post_ice(&server, Some(&token), None);
    let (username, credential) = check_ice_answer(&server, &r, "bob", 600);
    uclient_to_peer(&server, &peer, &username, &credential).assert_relayed(20, &server);
}

#[test]
fn get_form_clamps_the_ttl_and_the_turn_rest_form_answers() {
    let server = Server::start(api_conf(&[]));
    let auth = bearer(API_KEY);
    let r = http::request(
        server.http,
        "GET",
        "/api/v1/ice-servers?user=carol&ttl=999999",
        &[("Authorization", &auth)],
        None,
    )
    .unwrap();
    check_ice_answer(&server, &r, "carol", 3600);

    // The classic TURN REST API form, with the draft's `key` parameter.
    let r = http::get(
        server.http,
        &format!("/api/v1/turn-credentials?service=turn&username=dave&ttl=120&key={API_KEY}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["ttl"], 120);
    assert_eq!(v["uris"], expected_urls(&server));
    let username = v["username"].as_str().unwrap();
    assert!(username.ends_with(":dave"), "{v}");
    assert_eq!(
        v["password"].as_str().unwrap(),
        credentials::rest_password(SECRET_ONE.as_bytes(), username)
    );
    let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(fields, ["password", "ttl", "uris", "username"]);
}

#[test]
fn credentials_expire_when_they_should() {
    let server = Server::start(api_conf(&[]));
    let peer = Peer::start(LOCALHOST_V4);
    let r = post_ice(&server, Some(API_KEY), Some(r#"{"user":"erin","ttl":1}"#));
    let (username, credential) = check_ice_answer(&server, &r, "erin", 1);
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    // Wait (at most 3 s) until the expiry is in the past, then the server must refuse it.
    let deadline = Instant::now() + Duration::from_secs(3);
    while unix_now() <= expiry && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(unix_now() > expiry, "the clock did not pass {expiry}");
    let run = uclient_to_peer(&server, &peer, &username, &credential);
    let context = format!("{}\n--- server log ---\n{}", run.run, server.log());
    assert!(!run.run.timed_out, "{context}");
    assert_ne!(
        run.run.code,
        Some(0),
        "an expired credential relayed:\n{context}"
    );
    assert!(
        run.run.output.contains("ERROR: Cannot complete Allocation"),
        "{context}"
    );
    assert_eq!(run.summary, None, "{context}");
}

#[test]
fn credentials_are_refused_without_or_with_a_wrong_token() {
    let server = Server::start(api_conf(&[]));
    let check = |r: Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.error_code(), code, "{}", r.body);
        assert!(!r.body.contains("iceServers") && !r.body.contains("password"));
        if status == 401 {
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer realm=\"turnpike\"")
            );
        }
    };
    check(post_ice(&server, None, None), 401, "unauthorized");
    check(
        post_ice(&server, Some("test-api-key-012345678"), None),
        401,
        "invalid_token",
    );
    check(
        post_ice(&server, Some(&format!("{API_KEY}x")), None),
        401,
        "invalid_token",
    );
    let basic = http::request(
        server.http,
        "POST",
        "/api/v1/ice-servers",
        &[("Authorization", &format!("Basic {API_KEY}"))],
        None,
    )
    .unwrap();
    check(basic, 401, "unauthorized");
    check(
        http::get(
            server.http,
            "/api/v1/turn-credentials?service=turn&username=x&key=wrong-key-0123456789",
        ),
        401,
        "invalid_token",
    );

    let hs = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let later = unix_now() + 300;
    let forged = jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not-the-secret-0123456789abcdef0123456789"),
        serde_json::json!({"sub": "mallory", "exp": later}),
    );
    check(post_ice(&server, Some(&forged), None), 401, "invalid_token");
    let expired = jwt(
        Algorithm::HS256,
        &hs,
        serde_json::json!({"sub": "frank", "exp": unix_now() - 3600}),
    );
    check(
        post_ice(&server, Some(&expired), None),
        401,
        "token_expired",
    );
    let other_user = jwt(
        Algorithm::HS256,
        &hs,
        serde_json::json!({"sub": "frank", "exp": later}),
    );
    check(
        post_ice(&server, Some(&other_user), Some(r#"{"user":"grace"}"#)),
        403,
        "forbidden",
    );

    // EdDSA: the configured public key verifies, the same claims under HS256 with the wrong
    // key do not.
    let ed = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).expect("the test key parses");
    let token = jwt(
        Algorithm::EdDSA,
        &ed,
        serde_json::json!({"sub": "heidi", "exp": later}),
    );
    check_ice_answer(
        &server,
        &post_ice(&server, Some(&token), None),
        "heidi",
        600,
    );

    // A server with no API key and no JWT key refuses every credential request.
    let bare = Server::start(Conf::default());
    check(
        post_ice(&bare, Some(API_KEY), None),
        401,
        "no_auth_configured",
    );
}

#[test]
fn bad_requests_get_json_errors() {
    let server = Server::start(api_conf(&[]));
    let check = |r: Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.error_code(), code, "{}", r.body);
        assert!(
            !r.json()["error"]["message"].as_str().unwrap().is_empty(),
            "{}",
            r.body
        );
    };
    check(
        post_ice(&server, Some(API_KEY), Some("{not json")),
        400,
        "bad_request",
    );
    check(
        post_ice(&server, Some(API_KEY), Some(r#"{"usr":"typo"}"#)),
        400,
        "bad_request",
    );
    check(
        post_ice(&server, Some(API_KEY), Some(r#"{"ttl":0}"#)),
        400,
        "bad_request",
    );
    check(
        post_ice(&server, Some(API_KEY), Some(r#"{"ttl":-5}"#)),
        400,
        "bad_request",
    );
    let long_user = format!(r#"{{"user":"{}"}}"#, "u".repeat(300));
    check(
        post_ice(&server, Some(API_KEY), Some(&long_user)),
        400,
        "bad_request",
    );
    check(
        post_ice(&server, Some(API_KEY), Some(r#"{"user":"a\u0000b"}"#)),
        400,
        "bad_request",
    );
    let huge = format!(r#"{{"user":"{}"}}"#, "x".repeat(64 * 1024));
    check(
        post_ice(&server, Some(API_KEY), Some(&huge)),
        413,
        "payload_too_large",
    );
    let auth = bearer(API_KEY);
    let get = |path: &str| {
        http::request(server.http, "GET", path, &[("Authorization", &auth)], None).unwrap()
    };
    check(get("/api/v1/ice-servers?ttl=soon"), 400, "bad_request");
    check(
        get("/api/v1/turn-credentials?service=stun&username=x"),
        400,
        "bad_request",
    );
    check(get("/api/v1/nothing-here"), 404, "not_found");
    check(
        http::request(server.http, "DELETE", "/api/v1/ice-servers", &[], None).unwrap(),
        405,
        "method_not_allowed",
    );
    check(
        http::request(server.http, "POST", "/metrics", &[], None).unwrap(),
        405,
        "method_not_allowed",
    );
    // Still serving after all that.
    assert_eq!(http::get(server.http, "/healthz").status, 200);
}

#[test]
fn browsers_may_call_from_configured_origins_only() {
    const APP: &str = "https://app.example";
    let server = Server::start(api_conf(&[&format!("cors_origins = [{APP:?}]")]));
    let preflight = |origin: &str| {
        http::request(
            server.http,
            "OPTIONS",
            "/api/v1/ice-servers",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,content-type",
                ),
            ],
            None,
        )
        .unwrap()
    };
    // What a browser sends before fetch(url, {method: "POST", headers: {Authorization, ...}}).
    let ok = preflight(APP);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    let methods = ok.header("access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{ok:?}"
    );
    let allowed = ok
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{ok:?}"
    );
    assert_eq!(ok.header("access-control-max-age"), Some("3600"));
    // The request itself, from the page.
    let auth = bearer(API_KEY);
    let r = http::request(
        server.http,
        "POST",
        "/api/v1/ice-servers",
        &[
            ("Origin", APP),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"user":"ivan"}"#),
    )
    .unwrap();
    check_ice_answer(&server, &r, "ivan", 600);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    // Another origin gets no CORS grant, so a browser would not let the page read anything.
    let evil = preflight("https://evil.example");
    assert_eq!(evil.header("access-control-allow-origin"), None, "{evil:?}");
    // And without cors_origins there are no CORS headers at all.
    let plain = Server::start(api_conf(&[]));
    let r = http::request(
        plain.http,
        "POST",
        "/api/v1/ice-servers",
        &[("Origin", APP), ("Authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn readyz_is_503_until_every_listener_is_bound() {
    // Hold the UDP listener port with a plain socket (no SO_REUSEPORT): the server cannot bind
    // it and retries (server.bind_retry_secs) while its HTTP API already answers.
    let ports = PortBlock::claim();
    let udp = SocketAddr::new(LOCALHOST_V4, ports.port(0));
    let http_addr = SocketAddr::new(LOCALHOST_V4, ports.port(199));
    let holder = UdpSocket::bind(udp).expect("hold the listener port");
    let conf = Conf {
        extra_toml: "[server]\nbind_retry_secs = 30".into(),
        ..Conf::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("turnpike.toml");
    std::fs::write(
        &config,
        conf.to_toml(&[udp], &[], &ports.from(2), http_addr),
    )
    .unwrap();
    let log = dir.path().join("log");
    let child = Command::new(turnpike_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .expect("spawn turnpike");
    let _child = KillOnDrop(child);
    let server_log = || std::fs::read_to_string(dir.path().join("err")).unwrap_or_default();

    // The first answer (within 5 s) is 503 "starting", and stays so while the port is held.
    let first = poll_readyz(http_addr, |_| true)
        .unwrap_or_else(|| panic!("no /readyz answer within 5 s\n{}", server_log()));
    assert_eq!(
        (first.status, first.json()["status"].as_str()),
        (503, Some("starting"))
    );
    for _ in 0..5 {
        let r = http::get(http_addr, "/readyz");
        assert_eq!(r.status, 503, "ready while the listener port is held");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        http::get(http_addr, "/healthz").status,
        200,
        "alive meanwhile"
    );

    drop(holder);
    let ready = poll_readyz(http_addr, |r| r.status == 200).unwrap_or_else(|| {
        panic!(
            "not ready within 5 s after the port was freed\n{}",
            server_log()
        )
    });
    assert_eq!(ready.json()["status"], "ready");
    // And the listener now answers STUN.
    let probe = UdpSocket::bind((LOCALHOST_V4, 0)).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let request = binding_request(1);
    probe.send_to(&request, udp).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = probe.recv_from(&mut buf).expect("a Binding answer");
    assert!(is_binding_success(&buf[..n], &request));
}

/// Polls `/readyz` (at most 5 s, every 50 ms) until an answer satisfies `done`.
fn poll_readyz(addr: SocketAddr, done: impl Fn(&Response) -> bool) -> Option<Response> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(r) = http::request(addr, "GET", "/readyz", &[], None) {
            if done(&r) {
                return Some(r);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
