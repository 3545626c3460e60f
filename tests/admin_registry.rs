//! The admin API's registry endpoints and `turnpike admin peers` / `disconnect`, against the
//! real binary with the Rust SDK as the peers: a disconnected peer gets close code 4006, which
//! the SDK treats as final (no reconnect, although reconnecting is on), and the others get
//! `peer_left`.

mod common;
mod registry_support;

use std::process::Command;
use std::time::Duration;

use common::http::request;
use common::{Conf, Server, turnpike_bin};
use registry_support::{JWT_SECRET, claims, join_client, next, token};
use turnpike::client::{ClientConfig, Event, KeyPair, RegistryClient};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";

fn start() -> Server {
    Server::start(Conf {
        extra_toml: format!("[registry]\nenabled = true\njwt_secrets = [\"{JWT_SECRET}\"]\n"),
        http_extra: vec![format!("admin_keys = [{ADMIN_KEY:?}]")],
        ..Conf::default()
    })
}

fn admin(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(turnpike_bin())
        .arg("admin")
        .args(args)
        .env("TURNPIKE_ADMIN_KEY", ADMIN_KEY)
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .expect("run turnpike admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_listed_and_a_disconnected_peer_does_not_come_back() {
    let server = start();
    let ws = format!("ws://{}/v1/registry", server.http);
    let url = format!("http://{}", server.http);
    // bob reconnects on a lost connection: a 4006 must still end it.
    let mut config = ClientConfig::new(&ws, token(&claims("bob", "p1")), KeyPair::generate());
    config.reconnect = true;
    let mut bob = RegistryClient::connect(config).await.expect("connect");
    assert!(matches!(next(&mut bob).await, Event::Welcome { .. }));
    let (mut watcher, _) = join_client(&ws, "watcher", "p1", KeyPair::generate()).await;
    assert!(matches!(next(&mut bob).await, Event::PeerJoined { .. }));

    let bearer = format!("Bearer {ADMIN_KEY}");
    let auth = [("Authorization", bearer.as_str())];
    let r = request(
        server.http,
        "GET",
        "/admin/v1/registry/peers?project=p1",
        &auth,
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let peers: Vec<String> = r.json()["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(peers, vec!["bob", "watcher"]);
    let r = request(
        server.http,
        "GET",
        "/admin/v1/registry/peers?project=nope",
        &auth,
        None,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (404, "no_project".into()),
        "{}",
        r.body
    );
    let r = request(server.http, "GET", "/admin/v1/registry/peers", &auth, None).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = request(
        server.http,
        "DELETE",
        "/admin/v1/registry/peers?project=p1&peer=ghost",
        &auth,
        None,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (404, "no_peer".into()),
        "{}",
        r.body
    );

    let (ok, out, err) = admin(&["--url", &url, "peers", "--project", "p1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("bob") && out.contains("watcher") && out.contains("2 peer(s)"),
        "{out}"
    );
    let (ok, _, err) = admin(&[
        "--url",
        &url,
        "disconnect",
        "--project",
        "p1",
        "--peer",
        "ghost",
    ]);
    assert!(
        !ok && err.contains("no peer `ghost` in project `p1`"),
        "{err}"
    );

    let (ok, out, err) = admin(&[
        "--url",
        &url,
        "disconnect",
        "--project",
        "p1",
        "--peer",
        "bob",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("close code 4006"), "{out}");
    let mut closed = None;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), next(&mut bob)).await {
            Ok(Event::Closed { code, reason }) => {
                closed = Some((code, reason));
                break;
            }
            Ok(Event::Disconnected { code, .. }) => {
                panic!("4006 taken as a lost connection ({code:?})")
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert_eq!(closed, Some((Some(4006), "disconnected".to_owned())));
    assert!(matches!(next(&mut watcher).await, Event::PeerLeft { peer_id } if peer_id == "bob"));
    // bob did not come back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, out, _) = admin(&["--url", &url, "--json", "peers", "--project", "p1"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["peers"].as_array().unwrap().len(), 1, "{v:#}");
    let metrics = common::http::get(server.http, "/metrics").body;
    assert!(
        metrics.contains("turnpike_registry_closes_total{reason=\"disconnected\"} 1"),
        "{metrics}"
    );
}
