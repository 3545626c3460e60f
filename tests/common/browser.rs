//! Chromium driven by playwright-core (node scripts in tests/browser): where the scripts live,
//! and the prerequisites, checked with the fix when one is missing (scripts/test installs
//! them; a test must not pass by skipping).

use std::path::{Path, PathBuf};

/// Debian's Chromium, the only browser the tests drive (never a downloaded one).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where the browser test scripts and their node_modules live.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with the fix when a prerequisite is missing.
pub fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{} is missing: {what} (scripts/test installs it)",
        path.display()
    );
}

/// Fails with the fix unless Chromium and playwright-core are installed.
pub fn require_chromium() {
    require(Path::new(CHROMIUM), "Debian's chromium package");
    require(
        &browser_dir().join("node_modules/playwright-core"),
        "npm ci in tests/browser",
    );
}
