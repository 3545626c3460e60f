//! The protocol document and the README match the code: the examples of
//! docs/registry-protocol.md are played, in order, against the real server, its `shape`
//! examples are produced for real and compared field by field, and the README's two-terminal
//! walkthrough runs with the real CLI.

mod common;
mod registry_support;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, turnpike_bin};
use registry_support::*;
use serde_json::Value;

/// One example block: its tag words and its body.
struct Example {
    tag: Vec<String>,
    body: String,
}

fn examples() -> Vec<Example> {
    let doc = include_str!("../docs/registry-protocol.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let words: Vec<String> = info.split_whitespace().map(str::to_owned).collect();
        let mut body = Vec::new();
        for inner in lines.by_ref() {
            if inner.starts_with("```") {
                break;
            }
            body.push(inner);
        }
        if words.len() >= 2 && (words[0] == "json" || words[0] == "text") {
            out.push(Example {
                tag: words[1..].to_vec(),
                body: body.join("\n"),
            });
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_documents_examples_play_against_the_server() {
    // On the registry's own listener (`[registry] listen`); the other tests use the HTTP API's.
    // Without the one-token ladder: its credentials depend on the clock (see the next test).
    let registry = TestRegistry::start_on_own_listener("ice_servers = false");
    let url = registry.url();
    let mut sockets: HashMap<String, Socket> = HashMap::new();
    let mut played = 0;
    for example in examples() {
        match example.tag[0].as_str() {
            "http-401" => {
                let mut expired = claims("alice", "demo");
                expired.exp = Some(common::unix_now() - 3600);
                let (status, body) = raw_connect(&url, Carry::Header(&token(&expired)))
                    .await
                    .expect_err("refused");
                let want: Value = serde_json::from_str(&example.body).unwrap();
                assert_eq!((status, body), (401, want));
            }
            "c2s" => {
                let name = &example.tag[1];
                if !sockets.contains_key(name) {
                    let socket = raw_connect(&url, Carry::Header(&registry.token(name, "demo")))
                        .await
                        .expect("upgrade");
                    sockets.insert(name.clone(), socket);
                }
                let body = with_tokens(&registry, &example.body);
                send_text(sockets.get_mut(name).unwrap(), &body).await;
            }
            "s2c" => {
                let name = &example.tag[1];
                let want: Value = serde_json::from_str(&example.body).unwrap();
                if want["type"] == "peer_left" {
                    let leaving = want["peer_id"].as_str().unwrap();
                    let mut socket = sockets.remove(leaving).expect("the leaving peer");
                    socket.close(None).await.expect("close");
                }
                let got = recv_json(sockets.get_mut(name).expect("a peer that sent")).await;
                assert_eq!(got, want, "example for {name}:\n{}", example.body);
            }
            "shape" => continue, // the next test
            other => panic!("unknown example tag {other}"),
        }
        played += 1;
    }
    assert!(played >= 28, "only {played} examples played");
}

/// Replaces every `<token for PEER>` with a valid token for PEER in project `demo`.
fn with_tokens(registry: &TestRegistry, body: &str) -> String {
    let mut out = body.to_owned();
    while let Some(start) = out.find("<token for ") {
        let end = start + out[start..].find('>').expect("a closing >");
        let peer = out[start + "<token for ".len()..end].to_owned();
        out.replace_range(start..=end, &registry.token(&peer, "demo"));
    }
    out
}

/// The documented example tagged `shape NAME`.
fn shaped(name: &str) -> Value {
    let example = examples()
        .into_iter()
        .find(|e| e.tag.len() == 2 && e.tag[0] == "shape" && e.tag[1] == name)
        .unwrap_or_else(|| panic!("no `shape {name}` example"));
    serde_json::from_str(&example.body).unwrap()
}

/// Asserts that `got` has exactly the fields of `doc`, recursively, with the same JSON types
/// (each element of an array like the document's first one).
fn assert_same_shape(doc: &Value, got: &Value, path: &str) {
    match (doc, got) {
        (Value::Object(d), Value::Object(g)) => {
            let (dk, gk): (Vec<&String>, Vec<&String>) = (d.keys().collect(), g.keys().collect());
            assert_eq!(dk, gk, "the fields of {path}: documented {doc}, got {got}");
            for (key, value) in d {
                assert_same_shape(value, &g[key], &format!("{path}.{key}"));
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            assert!(!g.is_empty() || d.is_empty(), "{path} is empty: {got}");
            if let Some(first) = d.first() {
                for (i, element) in g.iter().enumerate() {
                    assert_same_shape(first, element, &format!("{path}[{i}]"));
                }
            }
        }
        (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => {}
        (Value::Number(d), Value::Number(g)) => {
            assert_eq!(d.is_u64(), g.is_u64(), "{path}: {doc} vs {got}");
        }
        _ => panic!("{path}: documented {doc}, got {got}"),
    }
}

/// The `shape` examples (the one-token ladder in `welcome`, `token_expiring`, `reauth`,
/// `reauthed`, `relay_usage`) against the messages a real server sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_documents_shaped_examples_match_real_messages() {
    let registry = TestRegistry::start("relay_warn_bytes_per_sec = 1000");
    let url = registry.url();
    let keys = turnpike::client::KeyPair::generate();
    let mut short = claims("alice", "demo");
    let exp = common::unix_now() + 30;
    short.exp = Some(exp);
    let (mut alice, welcome) = raw_join(&url, &token(&short), &keys).await;
    assert_same_shape(&shaped("welcome"), &welcome, "welcome");
    let ice = &welcome["ice_servers"][0];
    assert_eq!(ice["username"], format!("{exp}:alice"), "{welcome}");
    let udp = format!(
        "turn:127.0.0.1:{}?transport=udp",
        registry.server.udp.port()
    );
    assert!(
        ice["urls"].as_array().unwrap().contains(&udp.into()),
        "{ice}"
    );
    let warning = recv_json(&mut alice).await;
    assert_same_shape(&shaped("token_expiring"), &warning, "token_expiring");
    assert_eq!(warning["expires_at"], exp);
    // reauth: the documented shape with a real token.
    let mut reauth = shaped("reauth");
    let mut fresh = claims("alice", "demo");
    let new_exp = common::unix_now() + 3600;
    fresh.exp = Some(new_exp);
    reauth["token"] = token(&fresh).into();
    send_json(&mut alice, &reauth).await;
    let reauthed = recv_json(&mut alice).await;
    assert_same_shape(&shaped("reauthed"), &reauthed, "reauthed");
    assert_eq!(reauthed["expires_at"], new_exp);
    assert_eq!(
        reauthed["ice_servers"][0]["username"],
        format!("{new_exp}:alice")
    );
    // relay_usage: more than 1000 bytes per second over a window of 10 s.
    let (_bob, _) = raw_join(
        &url,
        &registry.token("bob", "demo"),
        &turnpike::client::KeyPair::generate(),
    )
    .await;
    assert_eq!(recv_json(&mut alice).await["type"], "peer_joined");
    for _ in 0..12 {
        let frame = turnpike::registry::messages::build_relay("bob", &[7; 1500]);
        send_binary(&mut alice, frame).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let usage = loop {
        assert!(std::time::Instant::now() < deadline, "no relay_usage");
        match tokio::time::timeout(Duration::from_secs(1), recv_json(&mut alice)).await {
            Ok(message) if message["type"] == "relay_usage" => break message,
            Ok(other) => panic!("unexpected {other}"),
            Err(_) => continue,
        }
    };
    assert_same_shape(&shaped("relay_usage"), &usage, "relay_usage");
    assert_eq!(usage["threshold"], 1000);
    assert!(usage["bytes_per_sec"].as_u64().unwrap() > 1000, "{usage}");
}

/// The README's walkthrough: `turnpike token`, `turnpike peer recv` in one terminal,
/// `turnpike peer send` in the other.
#[test]
fn the_readme_walkthrough_works() {
    let registry = TestRegistry::start("");
    let config = registry.server.config_path.clone();
    let run = |args: &[&str]| {
        let out = Command::new(turnpike_bin())
            .args(args)
            .output()
            .expect("run turnpike");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let conf = config.to_str().unwrap();
    let keys: Value = serde_json::from_str(&run(&["keygen"])).unwrap();
    assert_eq!(keys["secret_key"].as_str().unwrap().len(), 44);
    // The README's form: `turnpike keygen --shell > bob.env && . ./bob.env`.
    let exports = run(&["keygen", "--shell"]);
    let export = |name: &str| {
        let prefix = format!("export {name}='");
        let line = exports
            .lines()
            .find(|l| l.starts_with(&prefix))
            .expect(name);
        line[prefix.len()..line.len() - 1].to_owned()
    };
    let bob_secret = export("TURNPIKE_KEY");
    let bob_public = export("TURNPIKE_PUBLIC_KEY");
    let alice = run(&[
        "token",
        "--config",
        conf,
        "--sub",
        "alice",
        "--project",
        "demo",
    ]);
    let bob = run(&[
        "token",
        "--config",
        conf,
        "--sub",
        "bob",
        "--project",
        "demo",
        "--pk",
        &bob_public,
    ]);
    let url = registry.url();
    let out = tempfile::NamedTempFile::new().unwrap();
    let receiver = Command::new(turnpike_bin())
        .args([
            "peer",
            "--url",
            &url,
            "--to",
            "alice",
            "recv",
            "--count",
            "2",
            "--timeout",
            "20",
        ])
        .env("TURNPIKE_TOKEN", &bob)
        .env("TURNPIKE_KEY", &bob_secret)
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the receiver");
    let mut receiver = KillOnDrop(receiver);
    let send = |args: &[&str]| {
        let mut all = vec!["peer", "--url", &url, "--to", "bob", "send"];
        all.extend_from_slice(args);
        let out = Command::new(turnpike_bin())
            .args(&all)
            .env("TURNPIKE_TOKEN", &alice)
            .output()
            .expect("run the sender");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    send(&["hello bob"]);
    send(&["--kind", "offer", r#"{"type":"offer","sdp":"v=0"}"#]);
    let mut status = None;
    for _ in 0..200 {
        status = receiver.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status.is_some_and(|s| s.success()), "recv: {status:?}");
    let printed = std::fs::read_to_string(out.path()).unwrap();
    let lines: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["event"] != "peer_joined" && v["event"] != "peer_left")
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"event": "relay", "from": "alice", "message": "hello bob"}),
            serde_json::json!({"event": "webrtc_offer", "from": "alice",
                               "payload": {"type": "offer", "sdp": "v=0"}}),
        ],
        "{printed}"
    );
    // A send to a peer that is not there fails with a message.
    let out = Command::new(turnpike_bin())
        .args([
            "peer", "--url", &url, "--to", "nobody", "send", "--wait", "1", "x",
        ])
        .env("TURNPIKE_TOKEN", &alice)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not join"));
}
