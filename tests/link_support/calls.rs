//! The calls the link tests make into the pages' harness (`window.H`,
//! tests/browser/link_page.mjs), typed on the Rust side, and the checks they share.

use std::time::Duration;

use serde_json::{Value, json};

use super::pages::Pages;
use super::{LONG, SHORT};

impl Pages {
    /// `connect(options)` in `page`; the session's `{peerId, project, publicKey}`.
    pub fn connect(&mut self, page: &str, options: Value) -> Value {
        self.call(page, "(H, o) => H.connect(o)", options, SHORT)
    }

    /// As [`Pages::connect`], `Err` with the page's error (a refused connect).
    pub fn try_connect(&mut self, page: &str, options: Value) -> Result<Value, String> {
        self.try_call(page, "(H, o) => H.connect(o)", options, SHORT)
    }

    /// Opens the link from `page` to `peer`.
    pub fn open_link(&mut self, page: &str, peer: &str) {
        self.call(page, "(H, p) => { H.link(p); }", json!(peer), SHORT);
    }

    /// Sends `data` (a string, or `{"bytes": n}`) on `page`'s link to `peer`: `{ok}` or
    /// `{ok: false, code, message}`.
    pub fn send(&mut self, page: &str, peer: &str, data: Value) -> Value {
        self.call(
            page,
            "(H, a) => H.send(a[0], a[1])",
            json!([peer, data]),
            LONG,
        )
    }

    /// The link's summary (mode, stats, modes, errors, received, …), `null` when none yet.
    pub fn summary(&mut self, page: &str, peer: &str) -> Value {
        self.call(page, "(H, p) => H.summary(p)", json!(peer), SHORT)
    }

    /// Waits (at most `ms`) until `page` has a link to `peer` in `mode`; its summary.
    pub fn wait_mode(&mut self, page: &str, peer: &str, mode: &str, ms: u64) -> Value {
        self.call(
            page,
            "async (H, a) => { await H.waitFor(() => H.records.has(a[0]), a[2]); \
             return H.waitMode(a[0], a[1], a[2]); }",
            json!([peer, mode, ms]),
            Duration::from_millis(2 * ms) + SHORT,
        )
    }

    /// Waits (at most `ms`) until `page` received `count` messages from `peer`; its summary.
    pub fn wait_received(&mut self, page: &str, peer: &str, count: u64, ms: u64) -> Value {
        self.call(
            page,
            "async (H, a) => { await H.waitFor(() => H.records.has(a[0]), a[2]); \
             return H.waitReceived(a[0], a[1], a[2]); }",
            json!([peer, count, ms]),
            Duration::from_millis(2 * ms) + SHORT,
        )
    }

    /// Every message `page` received from `peer`: `{data, t, mode, relayBytes, p2pBytes}`.
    pub fn messages(&mut self, page: &str, peer: &str) -> Vec<Value> {
        match self.call(page, "(H, p) => H.messages(p)", json!(peer), SHORT) {
            Value::Array(list) => list,
            other => panic!("{page}: messages: {other}"),
        }
    }

    /// Starts sending `prefix0`, `prefix1`, … from `page` to `peer` every `every_ms`.
    pub fn start_pump(&mut self, page: &str, peer: &str, prefix: &str, every_ms: u64) {
        self.call(
            page,
            "(H, a) => H.startPump(a[0], a[1], a[2])",
            json!([peer, prefix, every_ms]),
            SHORT,
        );
    }

    /// Stops the pump; how many messages it sent.
    pub fn stop_pump(&mut self, page: &str, peer: &str) -> u64 {
        self.call(page, "(H, p) => H.stopPump(p)", json!(peer), SHORT)
            .as_u64()
            .expect("a count")
    }

    /// The session's relay drop counters (`forged`, `replay`, …), events and peers.
    pub fn session_state(&mut self, page: &str) -> Value {
        self.call(page, "(H) => H.sessionState()", Value::Null, SHORT)
    }
}

/// The texts of `messages` (as [`Pages::messages`] gives them).
pub fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match &m["data"] {
            Value::String(s) => s.clone(),
            other => format!("{other}"),
        })
        .collect()
}

/// Asserts that `got` is exactly `prefix0 .. prefix{count-1}`: each once, in order. The
/// failure names the first position that differs (a lost, doubled or reordered message).
pub fn assert_exactly_once_in_order(what: &str, got: &[String], prefix: &str, count: u64) {
    let expected: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    if let Some(i) = (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i)) {
        let around = |list: &[String]| -> Vec<String> {
            let end = (i + 4).min(list.len());
            list[i.saturating_sub(3).min(end)..end].to_vec()
        };
        panic!(
            "{what}: {} messages, {count} expected; first difference at {i}: got {:?}, \
             expected {:?}",
            got.len(),
            around(got),
            around(&expected)
        );
    }
}
