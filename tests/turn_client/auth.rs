//! Authentication: REST credentials, wrong and expired ones, stale nonces.

use std::time::Duration;

use stun_types::attribute::{AttributeStaticType, Nonce, Realm};
use turn_client_proto::types::message::ALLOCATE;
use turnpike::proto::credentials;

use crate::common::stun::*;
use crate::common::turn::*;
use crate::common::*;

#[test]
fn rest_credentials_401_then_success() {
    let server = Server::start(Conf::default());
    // Both secrets of the rotation list validate; so does a static user.
    for (secret, user) in [(SECRET_ONE, "alice"), (SECRET_TWO, "bob")] {
        let client = Client::new(server.udp);
        let (realm, nonce) = challenge(&client, ALLOCATE, &server);
        assert_eq!(realm, REALM);
        let cred = credentials::mint(secret.as_bytes(), user, unix_now(), 3600);
        let auth = Auth {
            username: cred.username,
            password: cred.password,
            realm,
            nonce,
        };
        allocate(&client, &auth, &server);
    }
    let client = Client::new(server.udp);
    let (realm, nonce) = challenge(&client, ALLOCATE, &server);
    let auth = Auth {
        username: STATIC_USER.into(),
        password: STATIC_PASSWORD.into(),
        realm,
        nonce,
    };
    allocate(&client, &auth, &server);
}

#[test]
fn wrong_or_expired_credentials_get_401() {
    let server = Server::start(Conf::default());
    let client = Client::new(server.udp);
    let good = rest_auth(&client, "alice", &server);

    let wrong_password = Auth {
        password: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
        ..good.clone()
    };
    let expired_cred = credentials::mint(SECRET_ONE.as_bytes(), "alice", unix_now() - 7200, 3600);
    let expired = Auth {
        username: expired_cred.username,
        password: expired_cred.password,
        ..good.clone()
    };
    let unknown_user = Auth {
        username: "mallory".into(),
        password: "whatever".into(),
        ..good.clone()
    };
    for auth in [&wrong_password, &expired, &unknown_user] {
        let answer = client.transact(&request(ALLOCATE, Some(auth), udp_transport), &server);
        let msg = expect_error(&answer, ALLOCATE, 401, &server);
        assert!(
            msg.has_attribute(Nonce::TYPE) && msg.has_attribute(Realm::TYPE),
            "{msg}"
        );
    }
    // The same socket then authenticates: the failures left no state behind.
    allocate(&client, &good, &server);
}

#[test]
fn stale_nonce_gets_438_with_a_new_nonce() {
    let server = Server::start(Conf {
        nonce_lifetime_secs: 1,
        ..Conf::default()
    });
    let client = Client::new(server.udp);
    let mut auth = rest_auth(&client, "alice", &server);
    std::thread::sleep(Duration::from_millis(2500));
    let answer = client.transact(&request(ALLOCATE, Some(&auth), udp_transport), &server);
    let msg = expect_error(&answer, ALLOCATE, 438, &server);
    let fresh = msg
        .attribute::<Nonce>()
        .expect("NONCE in a 438")
        .nonce()
        .to_owned();
    assert_ne!(fresh, auth.nonce, "the 438 must carry a new nonce");
    assert_eq!(
        msg.attribute::<Realm>().expect("REALM in a 438").realm(),
        REALM
    );
    auth.nonce = fresh;
    allocate(&client, &auth, &server);
}
