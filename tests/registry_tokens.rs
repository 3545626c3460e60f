//! Registry tokens against the real binary over loopback: every kind of bad token refused
//! before the upgrade with its error code, and RS256 tokens verified with an RSA public key
//! from `registry.jwt_public_keys` (a key pair generated here).

mod common;
mod registry_support;

use registry_support::*;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use turnpike::client::KeyPair;
use turnpike::registry::auth::Claims;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let registry = TestRegistry::start("");
    let url = registry.url();
    let valid = registry.token("alice", "p1");
    let mut expired = claims("alice", "p1");
    expired.exp = Some(common::unix_now() - 120);
    let mut no_project = claims("alice", "p1");
    no_project.project = None;
    let mut bad_pk = claims("alice", "p1");
    bad_pk.pk = Some("c2hvcnQ=".into());
    let forged = turnpike::registry::auth::mint_hs256(b"not-the-secret", &claims("alice", "p1"));
    let (expired, no_project, bad_pk) = (token(&expired), token(&no_project), token(&bad_pk));
    let mut tampered = valid.clone();
    tampered.insert(valid.find('.').unwrap() + 3, 'x');
    let cases: Vec<(Carry<'_>, u16, &str)> = vec![
        (Carry::None, 401, "missing_token"),
        (Carry::Header("not-a-jwt"), 401, "malformed_token"),
        (Carry::Header(&forged), 401, "bad_signature"),
        (Carry::Header(&tampered), 401, "bad_signature"),
        (Carry::Query(&expired), 401, "expired"),
        (Carry::Protocol(&no_project), 401, "invalid_claims"),
        (Carry::Header(&bad_pk), 401, "invalid_claims"),
        (
            Carry::Header("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0."),
            401,
            "bad_algorithm",
        ),
    ];
    for (carry, status, reason) in cases {
        let (got_status, body) = raw_connect(&url, carry).await.expect_err("refused");
        assert_eq!(
            (got_status, body["error"]["code"].as_str()),
            (status, Some(reason)),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // The three ways to carry a valid token all work.
    for carry in [
        Carry::Header(&valid),
        Carry::Protocol(&valid),
        Carry::Query(&valid),
    ] {
        raw_connect(&url, carry).await.expect("accepted");
    }
    assert!(
        registry.server.log().find(&valid).is_none(),
        "tokens are never logged"
    );
}

/// A fresh RSA key pair (2048 bits): signs RS256 tokens; its public key as PEM.
struct RsaSigner {
    private: jsonwebtoken::EncodingKey,
    public_pem: String,
}

impl RsaSigner {
    fn generate() -> RsaSigner {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("an RSA key");
        let der = key.to_pkcs1_der().expect("PKCS#1 DER");
        RsaSigner {
            private: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()),
            public_pem: key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("SPKI PEM"),
        }
    }

    fn sign(&self, claims: &Claims) -> String {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, claims, &self.private).expect("sign")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_join_with_the_configured_rsa_key_and_others_are_refused() {
    let (signer, stranger) = (RsaSigner::generate(), RsaSigner::generate());
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("registry-rs256.pem");
    std::fs::write(&pem, &signer.public_pem).unwrap();
    let registry = TestRegistry::start(&format!(
        "jwt_public_keys = [{:?}]",
        pem.display().to_string()
    ));
    let url = registry.url();
    // A token signed with the configured key joins and is welcomed under its claims.
    let keys = KeyPair::generate();
    let (_alice, welcome) = raw_join(&url, &signer.sign(&claims("alice", "p1")), &keys).await;
    assert_eq!(welcome["peer_id"], "alice", "{welcome}");
    assert_eq!(welcome["project"], "p1", "{welcome}");
    // The Rust client's HS256 tokens still work alongside (the registry also has a secret).
    let (_bob, peers) = registry.client("bob", "p1").await;
    assert_eq!(peers, ["alice"]);
    // Signed with another RSA key: refused before the upgrade, with the registry's code.
    let forged = stranger.sign(&claims("mallory", "p1"));
    let (status, body) = raw_connect(&url, Carry::Header(&forged))
        .await
        .expect_err("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "{body}"
    );
    // An expired RS256 token is refused as expired: the claims are checked as for HS256.
    let mut expired = claims("carol", "p1");
    expired.exp = Some(common::unix_now() - 120);
    let (status, body) = raw_connect(&url, Carry::Header(&signer.sign(&expired)))
        .await
        .expect_err("refused");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("expired"))
    );
    let metrics = registry.metrics();
    assert!(
        metrics.contains("turnpike_registry_auth_failures_total{reason=\"bad_signature\"} 1"),
        "{metrics}"
    );
}
