//! Chromium pages running the browser SDK, driven from the test: `tests/browser/link_pages.mjs`
//! (playwright-core over a pipe, Debian's chromium) runs the pages; each call sends the source
//! of a function `(H, arg) => value` to one page (`H` is `tests/browser/link_page.mjs`) and
//! waits, bounded, for its JSON answer.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::KillOnDrop;
pub use crate::common::browser::{browser_dir, require, require_chromium};

/// The SDK bundle the pages load (the file the server serves at /sdk/turnpike.js).
pub fn sdk_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/dist/turnpike.js")
}

/// One browser process: Debian's chromium, or a wrapper that starts it in a namespace.
pub struct BrowserSpec {
    pub name: String,
    pub executable: PathBuf,
}

impl BrowserSpec {
    pub fn chromium(name: &str) -> BrowserSpec {
        BrowserSpec {
            name: name.into(),
            executable: PathBuf::from("/usr/bin/chromium"),
        }
    }
}

/// The driver process and its pages; closed (browsers and all) on drop.
pub struct Pages {
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    answers: Receiver<Value>,
    /// Answers that arrived while waiting for another call's.
    early: HashMap<u64, Value>,
    next_id: u64,
    /// Everything the driver and the pages printed (for failure reports).
    log: Arc<Mutex<Vec<String>>>,
    _profiles: Vec<tempfile::TempDir>,
}

impl Pages {
    /// Starts the browsers and opens `pages` (name, browser name), each with the harness
    /// loaded; `max_secs` bounds the whole run.
    pub fn start(browsers: &[BrowserSpec], pages: &[(&str, &str)], max_secs: u64) -> Pages {
        require_chromium();
        require(
            &sdk_bundle(),
            "the SDK bundle (npm run bundle in clients/js)",
        );
        let profiles: Vec<tempfile::TempDir> = browsers
            .iter()
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let config = json!({
            "browsers": browsers.iter().zip(&profiles).map(|(b, dir)| json!({
                "name": b.name,
                "executable": b.executable,
                "userDataDir": dir.path(),
            })).collect::<Vec<_>>(),
            "pages": pages.iter().map(|(name, browser)| json!({"name": name, "browser": browser}))
                .collect::<Vec<_>>(),
            "sdk": sdk_bundle(),
            "harness": browser_dir().join("link_page.mjs"),
            "maxSecs": max_secs,
        });
        let mut child = Command::new("node")
            .arg(browser_dir().join("link_pages.mjs"))
            .env("LINK_CONFIG", config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node (scripts/test installs nodejs)");
        let stdin = child.stdin.take();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, answers) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stdout_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v.get("log").is_some() => stdout_log
                        .lock()
                        .unwrap()
                        .push(v["log"].as_str().unwrap_or("").into()),
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => stdout_log.lock().unwrap().push(line),
                }
            }
        });
        let stderr = child.stderr.take().unwrap();
        let stderr_log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_log.lock().unwrap().push(format!("stderr: {line}"));
            }
        });
        let pages = Pages {
            child: KillOnDrop(child),
            stdin,
            answers,
            early: HashMap::new(),
            next_id: 1,
            log,
            _profiles: profiles,
        };
        match pages.answers.recv_timeout(Duration::from_secs(60)) {
            Ok(v) if v["ready"] == true => pages,
            other => panic!("the pages did not start: {other:?}\n{}", pages.log_text()),
        }
    }

    /// Runs `js` (a function `(H, arg) => value`) in `page`; panics with the page log when it
    /// throws or takes longer than `limit`.
    pub fn call(&mut self, page: &str, js: &str, arg: Value, limit: Duration) -> Value {
        match self.try_call(page, js, arg, limit) {
            Ok(v) => v,
            Err(e) => panic!("{page}: {e}\n--- pages ---\n{}", self.log_text()),
        }
    }

    /// As [`Pages::call`], `Err` with the reason instead of a panic.
    pub fn try_call(
        &mut self,
        page: &str,
        js: &str,
        arg: Value,
        limit: Duration,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({
            "id": id, "page": page, "js": js, "arg": arg,
            "timeoutMs": limit.as_millis() as u64,
        });
        let stdin = self.stdin.as_mut().expect("the driver is running");
        writeln!(stdin, "{request}").map_err(|e| format!("write to the driver: {e}"))?;
        stdin.flush().map_err(|e| format!("flush: {e}"))?;
        let deadline = Instant::now() + limit + Duration::from_secs(5);
        loop {
            if let Some(answer) = self.early.remove(&id) {
                return answer_value(answer);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(v) if v.get("fatal").is_some() => return Err(format!("driver: {}", v["fatal"])),
                Ok(v) if v["id"] == id => return answer_value(v),
                Ok(v) => {
                    if let Some(other) = v["id"].as_u64() {
                        self.early.insert(other, v);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no answer within {limit:?} to {js}"));
                }
                Err(RecvTimeoutError::Disconnected) => return Err("the driver exited".into()),
            }
        }
    }

    /// Everything the driver and the pages logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

fn answer_value(answer: Value) -> Result<Value, String> {
    if answer["ok"] == true {
        Ok(answer["value"].clone())
    } else {
        Err(answer["error"].as_str().unwrap_or("?").to_owned())
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // Closing stdin asks the driver to close its browsers; it is killed if it lingers.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if std::thread::panicking() {
            eprintln!(
                "--- pages log ---\n{}\n--- end of pages log ---",
                self.log_text()
            );
        }
    }
}
