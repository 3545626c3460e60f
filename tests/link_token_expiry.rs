//! Token expiry in a link session against the real binary (docs/link-protocol.md §7):
//!
//! - a token callback that fails: the session reports `token_expired`, does not panic, and
//!   closes on request within a bounded time;
//! - a token callback that works: `token_expiring` -> callback -> `reauth` -> `reauthed`
//!   ([`SessionEvent::Reauthed`]), twice, and the link carries messages past the first
//!   token's `exp`;
//! - a token callback that keeps failing: after `token_retry_for` the session ends with a
//!   last `token_expired` and `Closed`, its link with `session_closed`.
//!
//! Every wait is bounded.

mod common;
mod registry_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use registry_support::{TestRegistry, claims, token};
use tokio::time::timeout;
use turnpike::client::{KeyPair, Session, SessionConfig, SessionEvent, TokenSource};

const PROJECT: &str = "expiry";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_callback_reports_token_expired_without_a_hang() {
    let registry = TestRegistry::start("token_warning_secs = 2");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    // The first token lives 4 s; every later call fails.
    let callback: turnpike::client::TokenCallback = Arc::new(move || {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        Box::pin(async move {
            if first {
                let mut short = claims("alice", PROJECT);
                short.exp = Some(common::unix_now() + 4);
                Ok(token(&short))
            } else {
                Err("the token service is down".to_owned())
            }
        })
    });
    let mut config = SessionConfig::new(
        registry.url(),
        TokenSource::Callback(callback),
        KeyPair::generate(),
    );
    config.max_backoff = Duration::from_secs(1);
    let alice = timeout(Duration::from_secs(10), Session::connect(config))
        .await
        .expect("connect in time")
        .expect("connect");
    let bob = timeout(
        Duration::from_secs(10),
        Session::connect(SessionConfig::new(
            registry.url(),
            TokenSource::Fixed(registry.token("bob", PROJECT)),
            KeyPair::generate(),
        )),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    let link = alice.link("bob").await.expect("a link to bob");
    timeout(Duration::from_secs(10), link.send_text("hello"))
        .await
        .expect("send in time")
        .expect("send");

    // The warning (`token_warning_secs`) asks the callback, which fails: `token_expired`;
    // then the token runs out, the registry closes the connection, and each reconnect asks
    // the callback again, which fails again: `token_expired` after the expiry too.
    let started = Instant::now();
    let expired_at = Duration::from_secs(5);
    let deadline = Duration::from_secs(20);
    let mut seen: Vec<(Duration, String)> = Vec::new();
    let after_expiry = |seen: &[(Duration, String)]| {
        seen.iter()
            .any(|(t, c)| *t > expired_at && c == "token_expired")
    };
    while !after_expiry(&seen) {
        let left = deadline.saturating_sub(started.elapsed());
        match timeout(left, alice.next_event()).await {
            Ok(Some(SessionEvent::Error { code, .. })) => seen.push((started.elapsed(), code)),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    assert!(
        seen.iter().any(|(_, c)| c == "token_expired"),
        "no token_expired within {deadline:?}: {seen:?}"
    );
    assert!(
        after_expiry(&seen),
        "no token_expired after the token ran out: {seen:?}"
    );
    assert!(
        seen.iter().all(|(_, c)| c == "token_expired"),
        "only the documented code: {seen:?}"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the callback was asked again"
    );
    // No hang: both sessions close on request, in bounded time.
    timeout(Duration::from_secs(5), alice.close())
        .await
        .expect("alice closes in time");
    timeout(Duration::from_secs(5), bob.close())
        .await
        .expect("bob closes in time");
}

/// A callback that mints tokens living `life` seconds each, counting its calls.
fn short_lived(calls: Arc<AtomicUsize>, life: u64) -> turnpike::client::TokenCallback {
    Arc::new(move || {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let mut short = claims("alice", PROJECT);
            short.exp = Some(common::unix_now() + life);
            Ok(token(&short))
        })
    })
}

async fn recv_text(link: &turnpike::client::Link) -> String {
    match timeout(Duration::from_secs(10), link.recv()).await {
        Ok(Some(turnpike::client::Incoming::Message(m))) => m.text().unwrap_or("").to_owned(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_token_callback_reauthenticates_and_the_link_outlives_the_first_token() {
    let registry = TestRegistry::start("token_warning_secs = 2");
    let calls = Arc::new(AtomicUsize::new(0));
    // Every token lives 4 s: the registry warns at exp - 2 s, the session asks the callback
    // and sends `reauth`; without it the registry would close the connection at exp (4003).
    let mut config = SessionConfig::new(
        registry.url(),
        TokenSource::Callback(short_lived(calls.clone(), 4)),
        KeyPair::generate(),
    );
    config.fallback_after = Duration::from_millis(500);
    let mut bob_config = SessionConfig::new(
        registry.url(),
        TokenSource::Fixed(registry.token("bob", PROJECT)),
        KeyPair::generate(),
    );
    bob_config.fallback_after = Duration::from_millis(500);
    let first_exp = common::unix_now() + 4;
    let alice = timeout(Duration::from_secs(10), Session::connect(config))
        .await
        .expect("connect in time")
        .expect("connect");
    let bob = timeout(Duration::from_secs(10), Session::connect(bob_config))
        .await
        .expect("connect in time")
        .expect("connect");
    let to_bob = alice.link("bob").await.expect("a link to bob");
    to_bob.send_text("m0").await.expect("send");
    let to_alice = loop {
        match timeout(Duration::from_secs(10), bob.next_event()).await {
            Ok(Some(SessionEvent::Link(link))) => break link,
            Ok(Some(_)) => {}
            other => panic!("no link from alice: {other:?}"),
        }
    };
    assert_eq!(recv_text(&to_alice).await, "m0");

    // Two reauths in a row (each token lives 4 s), read as session events; no error, no
    // close, and messages keep flowing both ways across the first token's exp.
    let started = Instant::now();
    let mut reauthed = Vec::new();
    let mut n = 1;
    while reauthed.len() < 2 || common::unix_now() <= first_exp + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "two reauths and the first exp passed within 15 s: {reauthed:?}"
        );
        if let Ok(event) = timeout(Duration::from_millis(500), alice.next_event()).await {
            match event.expect("the session stays open") {
                SessionEvent::Reauthed { expires_at } => reauthed.push(expires_at),
                SessionEvent::Error { code, message } => panic!("{code}: {message}"),
                SessionEvent::Closed(reason) => panic!("closed: {reason}"),
                _ => {}
            }
        }
        to_bob.send_text(format!("m{n}")).await.expect("send");
        assert_eq!(recv_text(&to_alice).await, format!("m{n}"));
        to_alice.send_text(format!("r{n}")).await.expect("send");
        assert_eq!(recv_text(&to_bob).await, format!("r{n}"));
        n += 1;
    }
    assert!(
        reauthed[0] > first_exp,
        "a later exp: {reauthed:?} vs {first_exp}"
    );
    assert!(
        common::unix_now() > first_exp,
        "the link outlived the first token"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "the callback minted the new tokens"
    );
    to_bob
        .send_text("last")
        .await
        .expect("send after the first exp");
    assert_eq!(recv_text(&to_alice).await, "last");
    assert_eq!(*to_bob.mode().borrow(), turnpike::link::Mode::Relay);
    timeout(Duration::from_secs(5), alice.close())
        .await
        .expect("alice closes in time");
    timeout(Duration::from_secs(5), bob.close())
        .await
        .expect("bob closes in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_callback_that_keeps_failing_ends_the_session_after_token_retry_for() {
    let registry = TestRegistry::start("token_warning_secs = 1");
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let callback: turnpike::client::TokenCallback = Arc::new(move || {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        Box::pin(async move {
            if first {
                let mut short = claims("alice", PROJECT);
                short.exp = Some(common::unix_now() + 3);
                Ok(token(&short))
            } else {
                Err("the token service is down".to_owned())
            }
        })
    });
    let mut config = SessionConfig::new(
        registry.url(),
        TokenSource::Callback(callback),
        KeyPair::generate(),
    );
    config.max_backoff = Duration::from_millis(500);
    config.token_retry_for = Duration::from_secs(3);
    let alice = timeout(Duration::from_secs(10), Session::connect(config))
        .await
        .expect("connect in time")
        .expect("connect");
    let link = alice.link("bob").await.expect("a link to bob");
    // The token runs out at 3 s; the callback keeps failing; 3 s (and two attempts) later
    // the session ends: a last `token_expired` that says so, then `Closed`; the link closes
    // with `session_closed`. Bounded: everything within 20 s.
    let started = Instant::now();
    let mut errors = Vec::new();
    let closed = loop {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        match timeout(left, alice.next_event()).await {
            Ok(Some(SessionEvent::Error { code, message })) => errors.push((code, message)),
            Ok(Some(SessionEvent::Closed(reason))) => break reason,
            Ok(Some(_)) => {}
            other => panic!("the session did not end within 20 s: {other:?}; {errors:?}"),
        }
    };
    let ended_after = started.elapsed();
    assert!(
        ended_after >= Duration::from_secs(5),
        "not before the expiry plus token_retry_for: {ended_after:?}"
    );
    assert!(
        errors.iter().all(|(c, _)| c == "token_expired"),
        "{errors:?}"
    );
    let (_, last) = errors.last().expect("a final token_expired");
    assert!(last.contains("session ends"), "{last}; {closed}");
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "asked again before giving up"
    );
    loop {
        match timeout(Duration::from_secs(5), link.recv()).await {
            Ok(Some(turnpike::client::Incoming::Closed(reason))) => {
                assert_eq!(reason.as_str(), "session_closed");
                break;
            }
            Ok(Some(turnpike::client::Incoming::Error(_))) => {} // unknown_peer: no bob
            other => panic!("the link closes with the session: {other:?}"),
        }
    }
    assert!(
        timeout(Duration::from_secs(2), alice.next_event())
            .await
            .is_ok_and(|e| e.is_none()),
        "nothing after Closed"
    );
    timeout(Duration::from_secs(5), alice.close())
        .await
        .expect("close after the end returns at once");
}
