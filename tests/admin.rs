//! The admin API (`/admin/v1/...`) and `turnpike admin`, against the real binary: listing
//! allocations with what they relayed, ending them (the client gets nothing more relayed),
//! revoking REST credentials (403 to our client and to coturn's `turnutils_uclient`, existing
//! allocations end, the revocation survives a restart), and the errors bad input gets.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http::{Response, request};
use common::turn::*;
use common::*;
use serde_json::{Value, json};
use turn_client_proto::types::message::{ALLOCATE, REFRESH};
use turnpike::proto::credentials;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const CREDENTIAL_KEY: &str = "credential-key-0123456789";

/// A server with admin and credential keys, loopback peers allowed, and its revocation file
/// in `state` (kept across restarts).
fn start(state: &Path) -> Server {
    let mut conf = Conf::loopback_peers();
    conf.http_extra = vec![
        format!("admin_keys = [{ADMIN_KEY:?}]"),
        format!("api_keys = [{CREDENTIAL_KEY:?}]"),
        format!(
            "revocations_file = {:?}",
            state.join("revocations.json").display().to_string()
        ),
    ];
    Server::start(conf)
}

fn admin(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> Response {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    request(server.http, method, path, &headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn ok_json(server: &Server, method: &str, path: &str, body: Option<&str>) -> Value {
    let r = admin(server, method, path, Some(ADMIN_KEY), body);
    assert!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}\n--- server log ---\n{}",
        r.status,
        r.body,
        server.log()
    );
    r.json()
}

fn expect_api_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.error_code(), code, "{}", r.body);
}

/// A UDP client of `user` with REST credentials, an allocation, and a channel to `peer`
/// through which one payload was echoed.
struct Session {
    client: Client,
    auth: Auth,
    relayed: SocketAddr,
}

fn session(server: &Server, user: &str, peer: &EchoPeer) -> Session {
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, user, server);
    let relayed = allocate(&client, &auth, server);
    let answer = channel_bind(&client, &auth, 0x4000, peer.addr, server);
    expect_success(
        &answer,
        turn_client_proto::types::message::CHANNEL_BIND,
        &auth,
        server,
    );
    assert!(channel_echo(&client, 0x4000, b"hello through the relay"));
    Session {
        client,
        auth,
        relayed,
    }
}

fn find(list: &Value, relayed: SocketAddr) -> &Value {
    list["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == relayed.to_string())
        .unwrap_or_else(|| panic!("no allocation {relayed} in {list:#}"))
}

/// Allocate with fresh REST credentials for `user` from a new client: the answer.
fn fresh_allocate(server: &Server, user: &str) -> (Client, Auth, Vec<u8>) {
    let client = Client::new(server.udp);
    let auth = rest_auth(&client, user, server);
    let answer = client.transact(&request_allocate(&auth), server);
    (client, auth, answer)
}

fn request_allocate(auth: &Auth) -> Vec<u8> {
    common::stun::request(ALLOCATE, Some(auth), udp_transport)
}

#[test]
fn allocations_are_listed_paged_filtered_and_ended() {
    let state = tempfile::tempdir().unwrap();
    let server = start(state.path());
    let peer = EchoPeer::start();
    let carol = session(&server, "carol", &peer);
    let dave = session(&server, "dave", &peer);

    let all = ok_json(&server, "GET", "/admin/v1/allocations", None);
    assert_eq!(all["total"], 2, "{all:#}");
    assert_eq!(all["answered"], all["cores"], "{all:#}");
    let c = find(&all, carol.relayed);
    assert_eq!(c["user"], "carol");
    assert_eq!(c["username"], carol.auth.username);
    assert_eq!(c["client"], carol.client.local_addr().to_string());
    assert_eq!(c["transport"], "udp");
    assert_eq!(c["relays"], json!([carol.relayed.to_string()]));
    assert_eq!(c["channels"][0]["number"], 0x4000);
    assert_eq!(c["channels"][0]["peer"], peer.addr.to_string());
    assert_eq!(c["permissions"][0]["ip"], peer.addr.ip().to_string());
    let payload = b"hello through the relay".len() as u64;
    for way in ["to_peer", "to_client"] {
        assert!(c[way]["packets"].as_u64().unwrap() >= 1, "{c:#}");
        assert_eq!(
            c[way]["bytes"].as_u64().unwrap(),
            payload * c[way]["packets"].as_u64().unwrap(),
            "{c:#}"
        );
    }
    assert!(c["expires_in_secs"].as_u64().unwrap() > 0);

    // Filter and pages.
    let only = ok_json(&server, "GET", "/admin/v1/allocations?user=dave", None);
    assert_eq!(only["total"], 1);
    assert_eq!(only["allocations"][0]["id"], dave.relayed.to_string());
    let first = ok_json(&server, "GET", "/admin/v1/allocations?limit=1", None);
    assert_eq!(first["allocations"].as_array().unwrap().len(), 1);
    let next = first["next"].as_str().expect("a cursor").to_owned();
    let second = ok_json(
        &server,
        "GET",
        &format!("/admin/v1/allocations?limit=1&after={next}"),
        None,
    );
    assert_eq!(second["allocations"].as_array().unwrap().len(), 1);
    assert_ne!(
        second["allocations"][0]["id"],
        first["allocations"][0]["id"]
    );
    let none = ok_json(&server, "GET", "/admin/v1/allocations?user=nobody", None);
    assert_eq!(none["total"], 0);

    // Bad input and bad keys.
    let r = admin(&server, "GET", "/admin/v1/allocations", None, None);
    expect_api_error(&r, 401, "missing_token");
    let r = admin(
        &server,
        "GET",
        "/admin/v1/allocations",
        Some("not-the-admin-key-at-all"),
        None,
    );
    expect_api_error(&r, 401, "invalid_token");
    let r = admin(
        &server,
        "GET",
        "/admin/v1/allocations",
        Some(CREDENTIAL_KEY),
        None,
    );
    expect_api_error(&r, 401, "credential_key");
    assert!(r.body.contains("http.admin_keys"), "{}", r.body);
    let r = admin(
        &server,
        "GET",
        "/admin/v1/allocations?limit=0",
        Some(ADMIN_KEY),
        None,
    );
    expect_api_error(&r, 400, "bad_request");
    let r = admin(
        &server,
        "GET",
        "/admin/v1/allocations?after=nonsense",
        Some(ADMIN_KEY),
        None,
    );
    expect_api_error(&r, 400, "bad_request");
    let r = admin(
        &server,
        "DELETE",
        "/admin/v1/allocations?user=nobody",
        Some(ADMIN_KEY),
        None,
    );
    expect_api_error(&r, 404, "no_allocation");
    assert!(r.body.contains("nobody"), "{}", r.body);
    let r = admin(
        &server,
        "DELETE",
        "/admin/v1/allocations",
        Some(ADMIN_KEY),
        None,
    );
    expect_api_error(&r, 400, "bad_request");

    // End carol's: nothing more is relayed for her, her Refresh finds no allocation; dave's
    // still relays.
    let ended = ok_json(&server, "DELETE", "/admin/v1/allocations?user=carol", None);
    assert_eq!(ended["ended"], 1);
    assert!(!channel_echo(&carol.client, 0x4000, b"after the kill"));
    expect_error(
        &refresh(&carol.client, &carol.auth, 600, &server),
        REFRESH,
        437,
        &server,
    );
    assert!(channel_echo(&dave.client, 0x4000, b"dave still relays"));
    // One allocation by its id.
    let path = format!("/admin/v1/allocations?id={}", dave.relayed);
    assert_eq!(ok_json(&server, "DELETE", &path, None)["ended"], 1);
    assert!(!channel_echo(&dave.client, 0x4000, b"after the kill"));
    let left = ok_json(&server, "GET", "/admin/v1/allocations", None);
    assert_eq!(left["total"], 0, "{left:#}");
    let scrape = common::scrape::Scrape::take(&server);
    assert!(
        scrape
            .text
            .contains("turnpike_admin_allocations_ended_total 2"),
        "{}",
        scrape.text
    );
}

#[test]
fn a_revoked_user_is_refused_its_allocations_end_and_the_revocation_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let mut server = start(state.path());
    let peer = EchoPeer::start();
    let carol = session(&server, "carol", &peer);
    let dave = session(&server, "dave", &peer);

    // Malformed revocations.
    for (body, what) in [
        (r#"{"user":"carol","until":"soon"}"#, "not a time"),
        (r#"{"user":"carol","until":1}"#, "not in the future"),
        (r#"{"user":"carol","username":"1:carol"}"#, "exactly one"),
        (r#"{}"#, "exactly one"),
        (r#"{"user":""}"#, "1 to 513 bytes"),
        (r#"{"user":"carol","when":5}"#, "bad JSON"),
    ] {
        let r = admin(
            &server,
            "POST",
            "/admin/v1/revocations",
            Some(ADMIN_KEY),
            Some(body),
        );
        expect_api_error(&r, 400, "bad_request");
        assert!(r.body.contains(what), "{body}: {}", r.body);
    }
    let r = admin(
        &server,
        "POST",
        "/admin/v1/revocations",
        Some(CREDENTIAL_KEY),
        Some(r#"{"user":"carol"}"#),
    );
    expect_api_error(&r, 401, "credential_key");

    let revoked = ok_json(
        &server,
        "POST",
        "/admin/v1/revocations",
        Some(r#"{"user":"carol","until":"2h"}"#),
    );
    assert_eq!(revoked["ended"], 1, "{revoked:#}");
    assert_eq!(revoked["persisted"], true);
    let until = revoked["revocation"]["until"].as_u64().unwrap();
    assert!(
        until > unix_now() + 7000 && until <= unix_now() + 7200,
        "{until}"
    );
    // Her allocation ended; her Refresh (valid credentials) gets 403; a fresh REST credential
    // for her too.
    assert!(!channel_echo(
        &carol.client,
        0x4000,
        b"after the revocation"
    ));
    expect_error(
        &refresh(&carol.client, &carol.auth, 600, &server),
        REFRESH,
        403,
        &server,
    );
    let (_c, _a, answer) = fresh_allocate(&server, "carol");
    expect_error(&answer, ALLOCATE, 403, &server);
    // coturn's client, minting its own REST credential for carol from the secret, is refused.
    let uclient_peer = Peer::start(LOCALHOST_V4);
    let port = server.udp.port().to_string();
    let (peer_ip, peer_port) = (
        uclient_peer.addr.ip().to_string(),
        uclient_peer.addr.port().to_string(),
    );
    let refused = Uclient::run(
        &[
            "-p", &port, "-e", &peer_ip, "-r", &peer_port, "-W", SECRET_ONE, "-u", "carol", "-n",
            "5", "-m", "1", "-c",
        ],
        LOCALHOST_V4,
    );
    assert!(
        !refused.run.success() || refused.summary.as_ref().is_none_or(|s| s.received == 0),
        "uclient relayed for a revoked user:\n{}",
        refused.run
    );
    assert!(
        refused.run.output.contains("403"),
        "uclient did not see a 403:\n{}",
        refused.run
    );
    // Dave is untouched.
    assert!(channel_echo(&dave.client, 0x4000, b"dave still relays"));
    let scrape = common::scrape::Scrape::take(&server);
    assert!(scrape.auth_failures("revoked") >= 2, "{}", scrape.text);

    // One username: dave's current credential; a new credential of his still works.
    let body = json!({ "username": dave.auth.username }).to_string();
    let one = ok_json(&server, "POST", "/admin/v1/revocations", Some(&body));
    assert_eq!(one["ended"], 1);
    // A REST username is revoked until its own expiry by default.
    let expiry = credentials::parse_rest_username(&dave.auth.username)
        .unwrap()
        .expiry;
    assert_eq!(one["revocation"]["until"], expiry);
    let (_c, auth, answer) = fresh_allocate(&server, "dave");
    if auth.username == dave.auth.username {
        // Minted within the same second: the same username, so revoked too.
        expect_error(&answer, ALLOCATE, 403, &server);
    } else {
        expect_success(&answer, ALLOCATE, &auth, &server);
    }

    // Survives a restart (and the file is there).
    assert!(state.path().join("revocations.json").exists());
    server.restart(Duration::from_secs(20));
    let (_c, _a, answer) = fresh_allocate(&server, "carol");
    expect_error(&answer, ALLOCATE, 403, &server);
    let list = ok_json(&server, "GET", "/admin/v1/revocations", None);
    let kinds: Vec<(String, String)> = list["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().into(),
                e["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(kinds.contains(&("user".into(), "carol".into())), "{list:#}");
    assert!(
        kinds.contains(&("username".into(), dave.auth.username.clone())),
        "{list:#}"
    );

    // Lifted: carol allocates again; lifting it twice is an error.
    ok_json(&server, "DELETE", "/admin/v1/revocations?user=carol", None);
    let (_c, auth, answer) = fresh_allocate(&server, "carol");
    expect_success(&answer, ALLOCATE, &auth, &server);
    let r = admin(
        &server,
        "DELETE",
        "/admin/v1/revocations?user=carol",
        Some(ADMIN_KEY),
        None,
    );
    expect_api_error(&r, 404, "not_revoked");
}

fn turnpike(args: &[&str], env_key: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(turnpike_bin());
    cmd.args(args)
        .env_remove("TURNPIKE_ADMIN_KEY")
        .env_remove("TURNPIKE_CONFIG");
    if let Some(k) = env_key {
        cmd.env("TURNPIKE_ADMIN_KEY", k);
    }
    let out = cmd.output().expect("run turnpike");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_cli_lists_kills_and_revokes_with_tables_and_json() {
    let state = tempfile::tempdir().unwrap();
    let server = start(state.path());
    let peer = EchoPeer::start();
    let carol = session(&server, "carol", &peer);
    let url = format!("http://{}", server.http);
    let config = server.config_path.display().to_string();

    // Table, over --config's http.address and the key from the environment.
    let (ok, out, err) = turnpike(&["admin", "--config", &config, "sessions"], Some(ADMIN_KEY));
    assert!(ok, "{err}");
    assert!(out.contains("USER") && out.contains("carol"), "{out}");
    assert!(out.contains(&carol.relayed.to_string()), "{out}");
    assert!(out.contains("1 shown of 1 matching"), "{out}");
    // JSON, with --url and --key.
    let (ok, out, err) = turnpike(
        &[
            "admin", "--url", &url, "--key", ADMIN_KEY, "--json", "sessions", "--user", "carol",
        ],
        None,
    );
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allocations"][0]["id"], carol.relayed.to_string());
    let (ok, out, _) = turnpike(
        &[
            "admin", "--url", &url, "--key", ADMIN_KEY, "sessions", "--user", "nobody",
        ],
        None,
    );
    assert!(ok);
    assert!(out.contains("no allocation of user `nobody`"), "{out}");

    // Errors: no key, a wrong key, a credential key, an unknown user to kill, a bad time.
    let (ok, _, err) = turnpike(&["admin", "--url", &url, "sessions"], None);
    assert!(!ok && err.contains("TURNPIKE_ADMIN_KEY"), "{err}");
    let (ok, _, err) = turnpike(
        &[
            "admin",
            "--url",
            &url,
            "--key",
            "wrong-key-0123456789",
            "sessions",
        ],
        None,
    );
    assert!(!ok && err.contains("not one of http.admin_keys"), "{err}");
    let (ok, _, err) = turnpike(
        &["admin", "--url", &url, "--key", CREDENTIAL_KEY, "sessions"],
        None,
    );
    assert!(!ok && err.contains("credential key"), "{err}");
    let (ok, _, err) = turnpike(
        &["admin", "--url", &url, "kill", "--user", "nobody"],
        Some(ADMIN_KEY),
    );
    assert!(
        !ok && err.contains("no allocation of user `nobody`"),
        "{err}"
    );
    let (ok, _, err) = turnpike(
        &[
            "admin", "--url", &url, "revoke", "--user", "carol", "--until", "someday",
        ],
        Some(ADMIN_KEY),
    );
    assert!(!ok && err.contains("is not a time"), "{err}");
    let (ok, _, err) = turnpike(
        &["admin", "--url", "http://127.0.0.1:1", "sessions"],
        Some(ADMIN_KEY),
    );
    assert!(!ok && err.contains("cannot reach the admin API"), "{err}");

    // Kill, then revoke, list and lift.
    let (ok, out, err) = turnpike(
        &["admin", "--url", &url, "kill", "--user", "carol"],
        Some(ADMIN_KEY),
    );
    assert!(ok && out.contains("ended 1 allocation"), "{out}{err}");
    assert!(!channel_echo(&carol.client, 0x4000, b"after the kill"));
    let (ok, out, err) = turnpike(
        &[
            "admin",
            "--url",
            &url,
            "revoke",
            "--user",
            "carol",
            "--until",
            "2099-01-01",
        ],
        Some(ADMIN_KEY),
    );
    assert!(
        ok && out.contains("revoked user `carol` until 2099-01-01T00:00:00Z"),
        "{out}{err}"
    );
    let (_c, _a, answer) = fresh_allocate(&server, "carol");
    expect_error(&answer, ALLOCATE, 403, &server);
    let (ok, out, _) = turnpike(&["admin", "--url", &url, "revocations"], Some(ADMIN_KEY));
    assert!(
        ok && out.contains("carol") && out.contains("2099-01-01T00:00:00Z"),
        "{out}"
    );
    let (ok, out, _) = turnpike(
        &["admin", "--url", &url, "unrevoke", "--user", "carol"],
        Some(ADMIN_KEY),
    );
    assert!(ok && out.contains("lifted"), "{out}");
    let (_c, auth, answer) = fresh_allocate(&server, "carol");
    expect_success(&answer, ALLOCATE, &auth, &server);
    let (ok, out, _) = turnpike(&["admin", "--url", &url, "sessions"], Some(ADMIN_KEY));
    assert!(ok && out.contains("1 shown of 1 matching"), "{out}");
}

#[test]
fn a_credential_key_used_as_admin_key_is_refused_by_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("turnpike.toml");
    std::fs::write(
        &path,
        format!("[http]\napi_keys = [{CREDENTIAL_KEY:?}]\nadmin_keys = [{CREDENTIAL_KEY:?}]\n"),
    )
    .unwrap();
    let (ok, out, err) = turnpike(&["check-config", &path.display().to_string()], None);
    assert!(!ok, "{out}");
    assert!(
        err.contains("http.admin_keys[0]") && err.contains("credential key"),
        "{err}"
    );
    std::fs::write(&path, "[http]\nadmin_keys = [\"short\"]\n").unwrap();
    let (ok, _, err) = turnpike(&["check-config", &path.display().to_string()], None);
    assert!(!ok && err.contains("http.admin_keys[0]"), "{err}");
}
