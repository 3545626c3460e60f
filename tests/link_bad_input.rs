//! Bad input against the browser link (the SDK in Chromium, the real registry): each gives its
//! documented error (docs/link-protocol.md §5, §7) and nothing else breaks: a message sent
//! afterwards still arrives.
//!
//! - attestations with `trustedIssuerKeys`: a forged one and a genuine one for another key →
//!   `not_attested`, and nothing is sealed for those peers (the registry relays no blob);
//! - a peer that announces one key and seals with another → the blobs do not open, are counted
//!   (`forged`), nothing is delivered;
//! - a relay blob sent again byte for byte → rejected (`replay`), not delivered twice, not even
//!   acknowledged; a blob sent back to its sender (a reflection) → not delivered as the peer's;
//! - a message above 1 MiB → `message_too_large`; exactly 1 MiB still goes through;
//! - an expired token and no reauth → the registry closes with 4003 and the session reports
//!   `token_expired`.
//!
//! The links run on the relay path (no ICE servers, relay candidates only), so every frame
//! crosses the registry, where the bad input comes in.

mod common;
mod link_support;
mod registry_support;

use std::time::Duration;

use common::scrape::Scrape;
use common::{Server, unix_now};
use link_support::calls::texts;
use link_support::pages::{BrowserSpec, Pages};
use link_support::raw_peer::{ACK, RawPeer, text_frame};
use link_support::*;
use registry_support::{claims, token};
use serde_json::{Value, json};
use turnpike::client::{AttestationClaims, KeyPair};
use turnpike::registry::issuer::Issuer;

/// Connect options for a page whose links can only use the relay: no ICE servers and relay
/// candidates only, so ICE never connects and the link falls back after `FALLBACK_MS`.
fn relay_only(server: &Server, token: &str) -> Value {
    json!({
        "url": format!("ws://{}/v1/registry", server.http),
        "token": token,
        "iceServers": [],
        "iceTransportPolicy": "relay",
        "fallbackAfterMs": FALLBACK_MS,
    })
}

const FALLBACK_MS: u64 = 500;

/// Adds `key: value` pairs to a JSON object.
fn with(mut object: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        object[k] = v.clone();
    }
    object
}

/// The sum of a registry metric's samples whose `name{labels}` starts with `key`.
fn registry_metric(server: &Server, key: &str) -> u64 {
    let scrape = Scrape::take(server);
    scrape
        .samples
        .iter()
        .filter(|(k, _)| k.starts_with(key))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// The registry's count of relayed blobs (every project).
fn relayed_blobs(server: &Server) -> u64 {
    registry_metric(server, "turnpike_registry_relay_blobs_total")
}

fn attestation(issuer: &Issuer, sub: &str, pk: &str) -> String {
    issuer.mint_attestation(&AttestationClaims {
        sub: sub.into(),
        project: PROJECT.into(),
        pk: pk.into(),
        exp: unix_now() + 3600,
        iat: Some(unix_now()),
    })
}

#[test]
fn unattested_peers_get_not_attested_and_nothing_sealed() {
    let server = Server::start(registry_conf(""));
    let trusted = Issuer::generate();
    let rogue = Issuer::generate();
    let [forger, swapped, carol, other] = std::array::from_fn(|_| KeyPair::generate());
    let mut pages = Pages::start(
        &[BrowserSpec::chromium("b")],
        &[
            ("alice", "b"),
            ("forger", "b"),
            ("swapped", "b"),
            ("carol", "b"),
        ],
        120,
    );
    pages.connect(
        "alice",
        with(
            relay_only(&server, &peer_token("alice")),
            json!({"trustedIssuerKeys": [trusted.public_key_base64()]}),
        ),
    );
    // A forged attestation (an issuer alice does not trust), a genuine one for another key,
    // and carol's, genuine and for her key.
    let joins = [
        (
            "forger",
            &forger,
            attestation(&rogue, "forger", &forger.public_base64()),
        ),
        (
            "swapped",
            &swapped,
            attestation(&trusted, "swapped", &other.public_base64()),
        ),
        (
            "carol",
            &carol,
            attestation(&trusted, "carol", &carol.public_base64()),
        ),
    ];
    for (peer, keys, attestation) in &joins {
        pages.connect(
            peer,
            with(
                relay_only(&server, &peer_token(peer)),
                json!({"secretKey": keys.secret_base64(), "attestation": attestation}),
            ),
        );
    }
    for (peer, why) in [("forger", "bad_signature"), ("swapped", "key_mismatch")] {
        pages.open_link("alice", peer);
        assert_eq!(
            pages.send("alice", peer, json!(format!("for {peer}")))["ok"],
            true
        );
        let refused = pages.call(
            "alice",
            "(H, p) => H.waitFor((H) => H.summary(p).errors.length > 0, 10000)",
            json!(peer),
            SHORT + SHORT,
        );
        let s = pages.summary("alice", peer);
        assert_eq!(refused, true, "no error on alice's link to {peer}: {s}");
        assert_eq!(s["errors"][0]["code"], "not_attested", "{peer}: {s}");
        let message = s["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(why),
            "{peer}: {why} expected in {message:?}"
        );
        assert_eq!(s["mode"], "connecting", "{peer}: {s}");
    }
    // Several fallback periods later, still nothing sealed for them: the registry relayed no
    // blob at all, and neither got a message.
    std::thread::sleep(Duration::from_millis(4 * FALLBACK_MS + 1000));
    assert_eq!(
        relayed_blobs(&server),
        0,
        "a blob was sealed for an unattested peer"
    );
    for peer in ["forger", "swapped"] {
        let s = pages.summary(peer, "alice");
        assert!(
            s.is_null() || s["received"] == 0,
            "{peer} got a message: {s}"
        );
    }

    // The control, and a message afterwards: carol is attested, her link takes the relay.
    pages.open_link("alice", "carol");
    assert_eq!(pages.send("alice", "carol", json!("for carol"))["ok"], true);
    let s = pages.wait_received("carol", "alice", 1, 10_000);
    assert_eq!(
        texts(&pages.messages("carol", "alice")),
        ["for carol"],
        "{s}"
    );
    assert_eq!(pages.summary("alice", "carol")["mode"], "relay");
    assert!(relayed_blobs(&server) > 0);
}

#[test]
fn wrong_keys_replays_and_reflections_are_dropped() {
    let server = Server::start(registry_conf(""));
    let url = format!("ws://{}/v1/registry", server.http);
    let mut pages = Pages::start(&[BrowserSpec::chromium("b")], &[("alice", "b")], 90);
    let alice = pages.connect("alice", relay_only(&server, &peer_token("alice")));
    let alice_key =
        turnpike::client::seal::public_key_from_base64(alice["publicKey"].as_str().unwrap())
            .unwrap();
    let drops = |pages: &mut Pages| pages.session_state("alice")["relayDrops"].clone();

    // Mallory announces one key and seals with another: nothing opens, each blob is counted.
    let announced = KeyPair::generate();
    let mut mallory = RawPeer::join(
        &url,
        &peer_token("mallory"),
        &announced,
        KeyPair::generate(),
    );
    for seq in 1..=3 {
        mallory.send_frame("alice", &alice_key, &text_frame(7, 0, seq, "forged"));
    }
    let counted = pages.call(
        "alice",
        "(H) => H.waitFor((H) => H.session.relayDrops.forged >= 3, 5000)",
        Value::Null,
        SHORT,
    );
    assert_eq!(counted, true, "{}", drops(&mut pages));
    assert_eq!(drops(&mut pages)["forged"], 3);
    assert!(
        pages.summary("alice", "mallory").is_null(),
        "a forged blob made a link"
    );
    // Sealed with the announced key, the same frame opens: the test could fail.
    mallory.sealer = turnpike::client::Sealer::new(announced, 1);
    mallory.send_frame("alice", &alice_key, &text_frame(7, 0, 1, "genuine"));
    pages.wait_received("alice", "mallory", 1, 5_000);
    assert_eq!(texts(&pages.messages("alice", "mallory")), ["genuine"]);

    // Rita seals honestly; a blob of hers sent again byte for byte is rejected before the
    // link sees it: not delivered twice, and not even acknowledged (a duplicate the link saw
    // would be acknowledged at once, as the control below shows).
    let rita_keys = KeyPair::generate();
    let mut rita = RawPeer::join(&url, &peer_token("rita"), &rita_keys, rita_keys.clone());
    let epoch = 0x5eed_0001;
    let one = rita.send_frame("alice", &alice_key, &text_frame(epoch, 0, 1, "one"));
    pages.wait_received("alice", "rita", 1, 5_000);
    let ack = rita
        .next_frame(&alice_key, Duration::from_secs(3))
        .expect("alice acknowledges on the relay");
    assert_eq!(
        (ack.kind, ack.number, ack.dst_epoch),
        (ACK, 1, epoch),
        "{ack:?}"
    );
    let alice_epoch = ack.src_epoch;
    rita.send_raw(one.clone());
    assert_eq!(
        rita.next_frame(&alice_key, Duration::from_millis(1500)),
        None,
        "the replayed blob reached the link"
    );
    assert_eq!(drops(&mut pages)["replay"], 1);
    // Control: the same frame sealed again (a new counter) is a duplicate the link answers.
    rita.send_frame(
        "alice",
        &alice_key,
        &text_frame(epoch, alice_epoch, 1, "one"),
    );
    let dup_ack = rita.next_frame(&alice_key, Duration::from_secs(3));
    assert_eq!(dup_ack.map(|f| (f.kind, f.number)), Some((ACK, 1)));
    rita.send_frame(
        "alice",
        &alice_key,
        &text_frame(epoch, alice_epoch, 2, "two"),
    );
    pages.wait_received("alice", "rita", 2, 5_000);

    let s = pages.summary("alice", "rita");
    assert_eq!(s["errors"], json!([]), "{s}");

    // Reflection: victor (who never sends) takes the first blob alice seals for him, before
    // she knows his epoch, and sends it back to her as his (what a compromised registry could
    // do as well: the box key is the same both ways). It must not be delivered as victor's.
    let victor_keys = KeyPair::generate();
    let mut victor = RawPeer::join(
        &url,
        &peer_token("victor"),
        &victor_keys,
        victor_keys.clone(),
    );
    pages.open_link("alice", "victor");
    assert_eq!(
        pages.send("alice", "victor", json!("alice to victor"))["ok"],
        true
    );
    let blob = victor
        .next_blob(Duration::from_secs(5))
        .expect("alice's message to victor, on the relay");
    victor.send_raw(blob);
    std::thread::sleep(Duration::from_millis(1000));
    let s = pages.summary("alice", "victor");
    assert_eq!(s["received"], 0, "alice took her own blob as victor's: {s}");
}

#[test]
fn oversize_messages_and_expired_tokens_give_their_errors() {
    let server = Server::start(registry_conf(""));
    let mut pages = Pages::start(
        &[BrowserSpec::chromium("b")],
        &[("alice", "b"), ("bob", "b"), ("dave", "b")],
        120,
    );
    for peer in ["alice", "bob"] {
        pages.connect(peer, relay_only(&server, &peer_token(peer)));
    }
    // Dave's token ends in 4 s and nothing renews it.
    let mut short = claims("dave", PROJECT);
    short.exp = Some(unix_now() + 4);
    pages.connect("dave", relay_only(&server, &token(&short)));

    pages.open_link("alice", "bob");
    let too_large = pages.send("alice", "bob", json!({"bytes": 1_048_577}));
    assert_eq!(too_large["ok"], false, "{too_large}");
    assert_eq!(too_large["code"], "message_too_large", "{too_large}");
    let limit = pages.send("alice", "bob", json!({"bytes": 1_048_576}));
    assert_eq!(limit["ok"], true, "{limit}");
    assert_eq!(pages.send("alice", "bob", json!("after"))["ok"], true);
    pages.wait_received("bob", "alice", 2, 30_000);
    let got = pages.messages("bob", "alice");
    assert_eq!(got.len(), 2, "{:?}", texts(&got));
    let hex = got[0]["data"]["hex"]
        .as_str()
        .expect("the 1 MiB message, as bytes");
    assert_eq!(hex.len(), 2 * 1_048_576);
    let expected: String = (0..1_048_576).map(|i| format!("{:02x}", i % 251)).collect();
    assert!(hex == expected, "the 1 MiB message arrived changed");
    assert_eq!(got[1]["data"], "after");
    assert_eq!(pages.summary("alice", "bob")["errors"], json!([]));

    // Dave's session: closed with 4003 at exp, reported as token_expired, and it stops there.
    let ended = pages.call(
        "dave",
        "(H) => H.waitFor((H) => H.sessionEvents.some((e) => e.event === 'close'), 15000)",
        Value::Null,
        Duration::from_secs(20),
    );
    let state = pages.session_state("dave");
    assert_eq!(ended, true, "dave's session did not end: {state}");
    let codes: Vec<&Value> = state["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "error")
        .map(|e| &e["code"])
        .collect();
    assert!(!codes.is_empty(), "{state}");
    assert!(codes.iter().all(|c| *c == "token_expired"), "{state}");
    assert_eq!(
        registry_metric(
            &server,
            "turnpike_registry_closes_total{reason=\"token_expired\""
        ),
        1,
        "the registry did not close dave's connection with 4003 token_expired"
    );
    // Nothing else broke: alice and bob still talk, both ways.
    assert_eq!(pages.send("bob", "alice", json!("still here"))["ok"], true);
    pages.wait_received("alice", "bob", 1, 10_000);
    assert_eq!(texts(&pages.messages("alice", "bob")), ["still here"]);
}
