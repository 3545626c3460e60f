//! Key attestations against the real binary: `turnpike token --attest` mints a token and an
//! attestation that verify and join, the server (with the issuer's Ed25519 key) refuses
//! attestations that do not verify and attestations used as login tokens, and the Rust
//! client with trusted issuer keys uses a peer's key only when its attestation verifies.

mod common;
mod registry_support;

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::turnpike_bin;
use registry_support::*;
use serde_json::{Value, json};
use turnpike::client::{
    AttestationClaims, ClientConfig, ClientError, Event, Expected, KeyPair, RegistryClient,
    verify_attestation,
};
use turnpike::registry::issuer::Issuer;

/// An Ed25519 private key as `openssl genpkey -algorithm ed25519` writes it (PKCS#8 PEM).
fn pkcs8_pem(seed: [u8; 32]) -> String {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        BASE64.encode(der)
    )
}

fn run(args: &[&str]) -> String {
    let out = Command::new(turnpike_bin())
        .args(args)
        .env_remove("TURNPIKE_REGISTRY_SECRET")
        .output()
        .expect("run turnpike");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The issuer's key files and a registry that trusts it.
struct Setup {
    registry: TestRegistry,
    key_path: String,
    trusted: [u8; 32],
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let seed = [42u8; 32];
    let key_path = dir.path().join("issuer.key");
    std::fs::write(&key_path, pkcs8_pem(seed)).unwrap();
    let public_path = dir.path().join("issuer.pem");
    std::fs::write(&public_path, Issuer::from_seed(seed).public_key_pem()).unwrap();
    let registry = TestRegistry::start(&format!("jwt_public_keys = [{public_path:?}]"));
    let key_path = key_path.to_str().unwrap().to_owned();
    let printed = run(&["token", "--signing-key", &key_path, "--issuer-public-key"]);
    let trusted: [u8; 32] = BASE64.decode(&printed).unwrap().try_into().unwrap();
    assert_eq!(trusted, Issuer::from_seed(seed).public_key());
    Setup {
        registry,
        key_path,
        trusted,
        _dir: dir,
    }
}

/// `turnpike token --attest` for `sub` in p1, as JSON.
fn attest(setup: &Setup, sub: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "token",
        "--signing-key",
        &setup.key_path,
        "--sub",
        sub,
        "--project",
        "p1",
        "--attest",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&run(&args)).unwrap()
}

fn client_config(url: &str, minted: &Value, trusted: Option<[u8; 32]>) -> ClientConfig {
    let keys = KeyPair::from_secret_base64(minted["secret_key"].as_str().unwrap()).unwrap();
    let mut config = ClientConfig::new(url, minted["token"].as_str().unwrap(), keys);
    config.reconnect = false;
    config.attestation = minted["attestation"].as_str().map(str::to_owned);
    config.trusted_issuer_keys = trusted.into_iter().collect();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_attest_output_verifies_and_joins() {
    let setup = setup();
    let url = setup.registry.url();
    let carol = attest(&setup, "carol", &[]);
    let keys: Vec<&str> = {
        let mut k: Vec<&str> = carol
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        k.sort_unstable();
        k
    };
    assert_eq!(keys, ["attestation", "public_key", "secret_key", "token"]);
    let public_key = carol["public_key"].as_str().unwrap();
    let secret = KeyPair::from_secret_base64(carol["secret_key"].as_str().unwrap()).unwrap();
    assert_eq!(
        secret.public_base64(),
        public_key,
        "the printed pair matches"
    );
    let claims: AttestationClaims = verify_attestation(
        &[setup.trusted],
        carol["attestation"].as_str().unwrap(),
        &Expected {
            sub: "carol",
            project: "p1",
            public_key,
        },
        common::unix_now(),
    )
    .expect("the attestation verifies with the issuer's printed key");
    assert!(claims.exp > common::unix_now() + 3500);
    // The token is EdDSA and pins the attested key.
    let header = carol["token"].as_str().unwrap().split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    // With --pk, that key is attested and no secret key is printed.
    let given = KeyPair::generate().public_base64();
    let pinned = attest(&setup, "erin", &["--pk", &given]);
    assert_eq!(pinned["public_key"], given.as_str());
    assert!(pinned.get("secret_key").is_none(), "{pinned}");

    // dave trusts the issuer; carol joins with her attestation; eve has none.
    let dave = attest(&setup, "dave", &[]);
    let mut dave_client = RegistryClient::connect(client_config(&url, &dave, Some(setup.trusted)))
        .await
        .expect("dave joins");
    assert!(matches!(
        next(&mut dave_client).await,
        Event::Welcome { .. }
    ));
    let mut carol_client = RegistryClient::connect(client_config(&url, &carol, None))
        .await
        .expect("carol joins with her attestation");
    match next(&mut carol_client).await {
        Event::Welcome { attestations, .. } => {
            assert_eq!(
                attestations.get("dave"),
                dave["attestation"].as_str().map(str::to_owned).as_ref()
            );
        }
        other => panic!("{other:?}"),
    }
    match next(&mut dave_client).await {
        Event::PeerJoined {
            peer_id,
            attestation,
            ..
        } => {
            assert_eq!(peer_id, "carol");
            assert_eq!(attestation.as_deref(), carol["attestation"].as_str());
        }
        other => panic!("{other:?}"),
    }
    dave_client
        .relay("carol", b"trusted")
        .await
        .expect("carol is trusted");
    match next(&mut carol_client).await {
        Event::Relay { from, message } => {
            assert_eq!((from.as_str(), &message[..]), ("dave", &b"trusted"[..]))
        }
        other => panic!("{other:?}"),
    }
    let (_eve, _) = setup.registry.client("eve", "p1").await;
    assert!(matches!(
        next(&mut dave_client).await,
        Event::PeerJoined { .. }
    ));
    match next(&mut dave_client).await {
        Event::PeerUntrusted { peer_id, reason } => {
            assert_eq!(peer_id, "eve");
            assert!(reason.contains("no key attestation"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dave_client.relay("eve", b"x").await,
        Err(ClientError::UnknownPeer(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_attestations_that_do_not_verify_or_log_in() {
    let setup = setup();
    let url = setup.registry.url();
    let carol = attest(&setup, "carol", &[]);
    let attestation = carol["attestation"].as_str().unwrap();
    // Never a login token: 401 before the upgrade.
    let (status, body) = raw_connect(&url, Carry::Header(attestation))
        .await
        .expect_err("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("wrong_token_type"))
    );
    // Signed by a key the server does not trust, or for someone else: bad_attestation.
    let forger = Issuer::from_seed([7; 32]);
    let keys = KeyPair::generate();
    let forged = forger.mint_attestation(&AttestationClaims {
        sub: "mallory".into(),
        project: "p1".into(),
        pk: keys.public_base64(),
        exp: common::unix_now() + 600,
        iat: None,
    });
    let mut mallory = raw_connect(&url, Carry::Header(&setup.registry.token("mallory", "p1")))
        .await
        .expect("upgrade");
    for (attestation, says) in [(forged.as_str(), "signature"), (attestation, "carol")] {
        send_json(
            &mut mallory,
            &json!({"type": "join", "public_key": keys.public_base64(), "attestation": attestation}),
        )
        .await;
        let error = recv_json(&mut mallory).await;
        assert_eq!(
            (error["code"].as_str(), error["ref"].as_str()),
            (Some("bad_attestation"), Some("join")),
            "{error}"
        );
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
    }
    // Without an attestation the join still works (attestations are optional).
    send_json(
        &mut mallory,
        &json!({"type": "join", "public_key": keys.public_base64()}),
    )
    .await;
    assert_eq!(recv_json(&mut mallory).await["type"], "welcome");
    let metrics = setup.registry.metrics();
    assert!(
        metrics.contains("turnpike_registry_auth_failures_total{reason=\"wrong_token_type\"} 1"),
        "{metrics}"
    );
}
