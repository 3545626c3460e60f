//! The revocation list on disk: a small JSON file in the state directory, replaced atomically
//! (written to a temporary file next to it, flushed to disk, renamed over it, and the directory
//! flushed), so a crash leaves either the old list or the new one, never half of one.
//!
//! ```json
//! {"version":1,"revocations":[{"kind":"user","name":"alice","until":1767225600},
//!                             {"kind":"username","name":"1767225600:bob","until":null}]}
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::proto::server::{RevocationList, Subject};

/// The file name used in the state directory when `http.revocations_file` is not set.
pub const FILE_NAME: &str = "revocations.json";
/// Largest revocation file read back (10,000 entries of 513-byte names fit).
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or renaming failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a revocation list.
    #[error("{path}: not a revocation list: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One entry as stored (and as the admin API shows it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `user` or `username`.
    pub kind: String,
    /// The user or username.
    pub name: String,
    /// UNIX seconds, or `null` for no end.
    pub until: Option<u64>,
}

impl Entry {
    /// The entry of a subject.
    pub fn new(subject: &Subject, until: Option<u64>) -> Entry {
        Entry {
            kind: subject.kind().to_owned(),
            name: subject.name().to_owned(),
            until,
        }
    }

    /// The subject it names, if its kind is known.
    pub fn subject(&self) -> Option<Subject> {
        match self.kind.as_str() {
            "user" => Some(Subject::User(self.name.clone())),
            "username" => Some(Subject::Username(self.name.clone())),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    revocations: Vec<Entry>,
}

/// Entries → JSON text.
pub fn encode(list: &RevocationList) -> String {
    let file = FileFormat {
        version: 1,
        revocations: list
            .entries()
            .iter()
            .map(|(s, u)| Entry::new(s, *u))
            .collect(),
    };
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

/// JSON text → list (expired and malformed entries dropped, bounded).
pub fn decode(text: &str, now: u64) -> Result<RevocationList, String> {
    let file: FileFormat = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.version != 1 {
        return Err(format!("version {} (this build reads 1)", file.version));
    }
    Ok(RevocationList::from_entries(
        file.revocations
            .iter()
            .filter_map(|e| e.subject().map(|s| (s, e.until))),
        now,
    ))
}

/// Where the list lives.
#[derive(Clone, Debug)]
pub struct RevocationFile {
    path: PathBuf,
}

impl RevocationFile {
    /// The file at `path`.
    pub fn new(path: PathBuf) -> RevocationFile {
        RevocationFile { path }
    }

    /// The configured path, or `revocations.json` in the first directory of
    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`); `None` when neither is set.
    pub fn locate(configured: Option<&Path>) -> Option<RevocationFile> {
        if let Some(p) = configured {
            return Some(RevocationFile::new(p.to_owned()));
        }
        let dirs = std::env::var_os("STATE_DIRECTORY")?;
        let first = std::env::split_paths(&dirs).next()?;
        if first.as_os_str().is_empty() {
            return None;
        }
        Some(RevocationFile::new(first.join(FILE_NAME)))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the list; a missing file is an empty list.
    pub fn load(&self, now: u64) -> Result<RevocationList, StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RevocationList::default());
            }
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_BYTES), &mut text)
            .map_err(io)?;
        decode(&text, now).map_err(|message| StoreError::Format {
            path: self.path.clone(),
            message,
        })
    }

    /// Replaces the file with `list`, atomically.
    pub fn save(&self, list: &RevocationList) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(format!(".tmp.{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(encode(list).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_survives_the_round_trip_and_expired_entries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = RevocationFile::new(dir.path().join("r.json"));
        assert!(file.load(10).unwrap().is_empty());
        let list = RevocationList::default()
            .with(Subject::User("alice".into()), None, 10)
            .unwrap()
            .with(Subject::Username("99:bob".into()), Some(50), 10)
            .unwrap();
        file.save(&list).unwrap();
        assert_eq!(file.load(10).unwrap(), list);
        assert_eq!(file.load(60).unwrap().len(), 1);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(file.path(), "{\"version\":2,\"revocations\":[]}").unwrap();
        assert!(matches!(file.load(10), Err(StoreError::Format { .. })));
    }
}
