//! Relay usage notices: a peer whose relay frames averaged more than
//! `relay_warn_bytes_per_sec` over a 10-second window is sent `relay_usage` when the window
//! ends, so at most once per window. A hint (its direct path probably failed), not a limit.

use std::time::{Duration, Instant};

use super::super::messages::Control;

/// The length of a usage window, in seconds.
pub const WINDOW_SECS: u64 = 10;
const WINDOW: Duration = Duration::from_secs(WINDOW_SECS);

/// The relay bytes one peer sent in the current window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    start: Instant,
    bytes: u64,
}

impl Window {
    /// A window starting at `now`.
    pub fn new(now: Instant) -> Window {
        Window {
            start: now,
            bytes: 0,
        }
    }

    /// Counts a well-formed relay frame of `bytes` (forwarded or dropped: what the peer
    /// tried to relay).
    pub fn add(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_add(bytes as u64);
    }

    /// Ends the window when it is over and starts the next: returns the encoded
    /// `relay_usage` notice when the window's average exceeded `threshold` (0: never).
    pub fn roll(&mut self, now: Instant, threshold: u64) -> Option<String> {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < WINDOW {
            return None;
        }
        let bytes = std::mem::take(&mut self.bytes);
        // Windows follow each other; after a gap (no timer call for a window), start afresh.
        self.start = if elapsed < 2 * WINDOW {
            self.start + WINDOW
        } else {
            now
        };
        let bytes_per_sec = bytes / WINDOW_SECS;
        (threshold != 0 && bytes_per_sec > threshold).then(|| {
            Control::RelayUsage {
                bytes_per_sec,
                window_secs: WINDOW_SECS,
                threshold,
            }
            .to_json()
        })
    }
}
