//! A session whose token expires mid-session while its token callback fails: the session
//! reports `token_expired` (docs/link-protocol.md §7), does not panic, and closes on request
//! within a bounded time. Every wait is bounded.

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
