//! Live tokens and the one-token ladder against the real binary over loopback: the welcome's
//! `ice_servers` authenticate to the same server's TURN, a token that ends is warned about and
//! closed with 4003, `reauth` moves the deadline (raw frames and the Rust client), a bad one
//! does not.

mod common;
mod registry_support;

use std::time::{Duration, Instant};

use common::turn::{Client, allocate, challenge};
use registry_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use turnpike::client::{ClientConfig, Event, KeyPair, RegistryClient};

/// A token for `sub` in `project` that ends `secs` seconds from now.
fn token_for(sub: &str, project: &str, secs: u64) -> (String, u64) {
    let mut claims = claims(sub, project);
    let exp = common::unix_now() + secs;
    claims.exp = Some(exp);
    (token(&claims), exp)
}

/// The next frame that is not a ping, within `wait`; `None` on silence.
async fn next_frame(socket: &mut Socket, wait: Duration) -> Option<Message> {
    use futures_util::StreamExt as _;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return Some(message),
            Ok(other) => panic!("the connection failed: {other:?}"),
        }
    }
}

fn close_code(message: &Option<Message>) -> Option<(u16, String)> {
    match message {
        Some(Message::Close(Some(frame))) => {
            Some((u16::from(frame.code), frame.reason.as_str().to_owned()))
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcomes_ice_servers_authenticate_to_the_servers_turn() {
    let registry = TestRegistry::start("");
    let (token, exp) = token_for("alice", "p1", 600);
    let (_socket, welcome) = raw_join(&registry.url(), &token, &KeyPair::generate()).await;
    let ice = &welcome["ice_servers"][0];
    assert_eq!(ice["username"], format!("{exp}:alice"), "{welcome}");
    let udp = format!(
        "turn:127.0.0.1:{}?transport=udp",
        registry.server.udp.port()
    );
    assert!(ice["urls"].as_array().unwrap().contains(&Value::from(udp)));
    // A TURN Allocate with exactly these credentials succeeds.
    let (username, password) = (
        ice["username"].as_str().unwrap().to_owned(),
        ice["credential"].as_str().unwrap().to_owned(),
    );
    let server = &registry.server;
    let client = Client::new(server.udp);
    let (realm, nonce) = challenge(&client, turn_client_proto::types::message::ALLOCATE, server);
    let auth = common::stun::Auth {
        username,
        password,
        realm,
        nonce,
    };
    let relayed = allocate(&client, &auth, server);
    assert!(server.relay_ports.contains(&relayed.port()));
    // The ladder is off with `ice_servers = false`.
    let off = TestRegistry::start("ice_servers = false");
    let (_socket, welcome) = raw_join(&off.url(), &token, &KeyPair::generate()).await;
    assert!(welcome.get("ice_servers").is_none(), "{welcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_ends_is_warned_about_then_closed_with_4003() {
    let registry = TestRegistry::start("");
    let started = Instant::now();
    let (token, exp) = token_for("alice", "p1", 3);
    let (mut alice, _) = raw_join(&registry.url(), &token, &KeyPair::generate()).await;
    let (mut bob, _) = raw_join(
        &registry.url(),
        &registry.token("bob", "p1"),
        &KeyPair::generate(),
    )
    .await;
    assert_eq!(
        recv_json(&mut alice).await,
        json!({"type": "token_expiring", "expires_at": exp}),
        "a token shorter than token_warning_secs is warned about at once"
    );
    assert_eq!(recv_json(&mut alice).await["type"], "peer_joined");
    let closed = next_frame(&mut alice, Duration::from_secs(6)).await;
    assert_eq!(
        close_code(&closed),
        Some((4003, "token_expired".to_owned())),
        "{closed:?}"
    );
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(1500),
        "closed after {lived:?}, before the token's exp"
    );
    assert_eq!(
        recv_json(&mut bob).await,
        json!({"type": "peer_left", "peer_id": "alice"})
    );
    let metrics = registry.metrics();
    assert!(
        metrics.contains("turnpike_registry_closes_total{reason=\"token_expired\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauth_extends_the_connection_and_a_bad_one_does_not() {
    let registry = TestRegistry::start("");
    let url = registry.url();
    let (token, _) = token_for("alice", "p1", 3);
    let (mut alice, _) = raw_join(&url, &token, &KeyPair::generate()).await;
    assert_eq!(recv_json(&mut alice).await["type"], "token_expiring");
    let (fresh, new_exp) = token_for("alice", "p1", 3600);
    send_json(&mut alice, &json!({"type": "reauth", "token": fresh})).await;
    let reauthed = recv_json(&mut alice).await;
    assert_eq!(reauthed["type"], "reauthed", "{reauthed}");
    assert_eq!(reauthed["expires_at"], new_exp);
    assert_eq!(
        reauthed["ice_servers"][0]["username"],
        format!("{new_exp}:alice")
    );
    // Past the old exp the connection still serves.
    tokio::time::sleep(Duration::from_secs(4)).await;
    send_json(&mut alice, &json!({"type": "ping"})).await;
    assert_eq!(recv_json(&mut alice).await, json!({"type": "pong"}));

    // A token for another peer, and an expired one: refused, and the old deadline stays.
    let (token, _) = token_for("carol", "p1", 3);
    let (mut carol, _) = raw_join(&url, &token, &KeyPair::generate()).await;
    assert_eq!(recv_json(&mut carol).await["type"], "token_expiring");
    let mut expired = claims("carol", "p1");
    expired.exp = Some(common::unix_now() - 3600);
    for (token, code) in [
        (registry.token("bob", "p1"), "identity_mismatch"),
        (registry.token("carol", "p2"), "identity_mismatch"),
        (self::token(&expired), "invalid_token"),
    ] {
        send_json(&mut carol, &json!({"type": "reauth", "token": token})).await;
        let error = recv_json(&mut carol).await;
        assert_eq!(
            (error["code"].as_str(), error["ref"].as_str()),
            (Some(code), Some("reauth")),
            "{error}"
        );
    }
    let closed = next_frame(&mut carol, Duration::from_secs(6)).await;
    assert_eq!(
        close_code(&closed),
        Some((4003, "token_expired".to_owned()))
    );
    let metrics = registry.metrics();
    assert!(
        metrics.contains("turnpike_registry_reauths_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_sees_the_ladder_and_reauths() {
    let registry = TestRegistry::start("");
    let (token, exp) = token_for("alice", "p1", 3);
    let mut config = ClientConfig::new(registry.url(), token, KeyPair::generate());
    config.reconnect = false;
    let mut client = RegistryClient::connect(config).await.expect("connect");
    match next(&mut client).await {
        Event::Welcome { ice_servers, .. } => {
            let ice = ice_servers.expect("the ladder");
            assert_eq!(ice[0].username, format!("{exp}:alice"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.ice_servers().map(|ice| ice[0].username.clone()),
        Some(format!("{exp}:alice"))
    );
    assert_eq!(
        next(&mut client).await,
        Event::TokenExpiring { expires_at: exp }
    );
    let (bad, _) = token_for("bob", "p1", 3600);
    client.reauth(&bad).await.unwrap();
    match next(&mut client).await {
        Event::Error {
            code, refers_to, ..
        } => assert_eq!(
            (code.as_str(), refers_to.as_deref()),
            ("identity_mismatch", Some("reauth"))
        ),
        other => panic!("{other:?}"),
    }
    let (fresh, new_exp) = token_for("alice", "p1", 3600);
    client.reauth(&fresh).await.unwrap();
    match next(&mut client).await {
        Event::Reauthed {
            expires_at,
            ice_servers,
        } => {
            assert_eq!(expires_at, new_exp);
            assert!(ice_servers.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client.ice_servers().map(|ice| ice[0].username.clone()),
        Some(format!("{new_exp}:alice"))
    );
    assert!(
        silent(&mut client, Duration::from_secs(4)).await.is_ok(),
        "not closed at the old exp"
    );
    client.close().await;
}
