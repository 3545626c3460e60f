//! Operator actions behind the admin API (`/admin/v1/...`, see `crate::http::admin` and
//! docs/admin-api.md): list and end allocations, and revoke users or usernames.
//!
//! [`Admin`] owns the revocation list every core consults ([`Revoked`]), keeps it on disk
//! ([`store`]), and reaches the cores through the [`AdminHub`] (commands answered between
//! batches of packets). Changes to the list are serialized; each one is written to disk
//! before it is answered, then the allocations it covers are ended.

pub mod cli;
pub mod store;
pub mod sync;
pub mod time;

use std::path::Path;
use std::sync::Arc;

use crate::net::admin::{AdminHub, Command, MAX_PAGE, Outcome};
use crate::proto::server::{AllocationId, End, RevocationList, RevokeError, Revoked, Subject};
use store::{RevocationFile, StoreError};

/// Why a revocation change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The revocation itself is not acceptable.
    #[error(transparent)]
    Invalid(#[from] RevokeError),
    /// The list could not be written to disk (the change was not made).
    #[error("the revocation list could not be saved: {0}")]
    Store(#[from] StoreError),
}

/// The admin side of one process.
#[derive(Debug)]
pub struct Admin {
    hub: Arc<AdminHub>,
    revoked: Arc<Revoked>,
    file: Option<RevocationFile>,
    /// One change of the revocation list at a time (read, change, write, publish).
    edit: tokio::sync::Mutex<()>,
    /// The cluster's Redis, when `[cluster] redis_url` is set ([`sync`]).
    sync: std::sync::OnceLock<Arc<sync::RedisSync>>,
}

fn unix_now() -> u64 {
    crate::net::udp::now().unix
}

impl Admin {
    /// Admin state whose revocations persist in `configured` or, unset, in
    /// `$STATE_DIRECTORY/revocations.json` (read now; a missing file is an empty list). With
    /// neither, revocations last until the process ends (a warning says so).
    pub fn new(configured: Option<&Path>) -> Result<Admin, StoreError> {
        let file = RevocationFile::locate(configured);
        let revoked = Arc::new(Revoked::default());
        match &file {
            Some(f) => {
                let list = f.load(unix_now())?;
                if !list.is_empty() {
                    tracing::info!(path = %f.path().display(), entries = list.len(), "revocations loaded");
                }
                revoked.replace(list);
            }
            None => tracing::warn!(
                "no http.revocations_file and no $STATE_DIRECTORY: revocations made through the admin API are lost at restart"
            ),
        }
        Ok(Admin {
            hub: Arc::new(AdminHub::default()),
            revoked,
            file,
            edit: tokio::sync::Mutex::new(()),
            sync: std::sync::OnceLock::new(),
        })
    }

    /// Shares revocations with the other nodes through the Redis at `url`: starts the sync
    /// task on the current runtime ([`sync::run`]). Once.
    pub fn start_sync(self: &Arc<Self>, url: &str) -> redis::RedisResult<()> {
        let link = Arc::new(sync::RedisSync::new(url)?);
        if self.sync.set(link.clone()).is_ok() {
            tokio::spawn(sync::run(self.clone(), link));
        }
        Ok(())
    }

    /// Makes `list` (the cluster's, from Redis) the list in force: saved to the file, and the
    /// allocations of revocations that are new here are ended.
    pub async fn adopt(&self, list: RevocationList) {
        let added: Vec<Subject> = {
            let _one = self.edit.lock().await;
            let now = unix_now();
            let current = self.revoked.load().pruned(now);
            let list = list.pruned(now);
            if current == list {
                return;
            }
            if let Err(e) = self.save(&list).await {
                tracing::warn!(error = %e, "the cluster's revocation list could not be saved here");
            }
            let added = list
                .entries()
                .into_iter()
                .filter(|(s, u)| current.get(s) != Some(*u))
                .map(|(s, _)| s)
                .collect();
            self.revoked.replace(list);
            added
        };
        if !added.is_empty() {
            // One pass over every core for all the new revocations.
            let outcome = self.end(End::Revoked(unix_now())).await;
            tracing::info!(
                revocations = added.len(),
                ended = outcome.ended,
                "revocations from the cluster applied"
            );
        }
    }

    /// Where commands reach the cores.
    pub fn hub(&self) -> &Arc<AdminHub> {
        &self.hub
    }

    /// The list the cores consult.
    pub fn revoked(&self) -> &Arc<Revoked> {
        &self.revoked
    }

    /// The file revocations persist in, if any.
    pub fn file(&self) -> Option<&RevocationFile> {
        self.file.as_ref()
    }

    /// A page of allocations (of `user` if given; `limit` is capped at [`MAX_PAGE`]).
    pub async fn list(
        &self,
        user: Option<String>,
        after: Option<AllocationId>,
        limit: usize,
    ) -> Outcome {
        let limit = limit.clamp(1, MAX_PAGE);
        self.hub.run(Command::List { user, after, limit }).await
    }

    /// Ends the allocations `which` selects.
    pub async fn end(&self, which: End) -> Outcome {
        self.hub.run(Command::End(which)).await
    }

    /// The revocations in force.
    pub fn revocations(&self) -> Arc<RevocationList> {
        self.revoked.load()
    }

    /// Revokes `subject` until `until` (UNIX seconds; `None`: until removed), saves the list,
    /// then ends the allocations it covers.
    pub async fn revoke(
        &self,
        subject: Subject,
        until: Option<u64>,
    ) -> Result<Outcome, ChangeError> {
        {
            let _one = self.edit.lock().await;
            let next = self
                .revoked
                .load()
                .with(subject.clone(), until, unix_now())?;
            self.save(&next).await?;
            self.revoked.replace(next);
            if let Some(link) = self.sync.get() {
                link.push(sync::Change::Set(subject.clone(), until));
            }
        }
        tracing::info!(kind = subject.kind(), until, "revoked");
        Ok(self.end(End::Subject(subject)).await)
    }

    /// Lifts the revocation of `subject`; false when there was none.
    pub async fn unrevoke(&self, subject: &Subject) -> Result<bool, ChangeError> {
        let _one = self.edit.lock().await;
        let Some(next) = self.revoked.load().without(subject, unix_now()) else {
            return Ok(false);
        };
        self.save(&next).await?;
        self.revoked.replace(next);
        if let Some(link) = self.sync.get() {
            link.push(sync::Change::Remove(subject.clone()));
        }
        tracing::info!(kind = subject.kind(), "revocation lifted");
        Ok(true)
    }

    async fn save(&self, list: &RevocationList) -> Result<(), StoreError> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        let list = list.clone();
        tokio::task::spawn_blocking(move || file.save(&list))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    path: Default::default(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }
}
