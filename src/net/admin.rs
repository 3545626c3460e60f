//! Admin requests to every core, answered between batches of packets.
//!
//! The allocation tables live in the cores: one per UDP worker thread and one per TCP/TLS
//! connection task, none of them locked. To list or end allocations, the admin API posts a
//! [`Command`] here and waits; each core answers it at the top of its next loop turn, between
//! two batches, exactly where it already picks up reloaded settings ([`super::live`]):
//!
//! - the packet path pays one relaxed-ish atomic load per loop turn ([`CoreTicket::serve`]),
//!   and nothing else unless a command is pending;
//! - posting wakes every UDP worker (its mio waker) and every connection task (a
//!   `tokio::sync::watch` they select on), so an idle core answers at once;
//! - one command runs at a time; it is done when every core registered when it was posted has
//!   answered (or went away), or after [`ANSWER_TIMEOUT`], whichever comes first; a timeout is
//!   reported, not hidden (`answered` < `cores`).
//!
//! A core registers with [`AdminHub::register`] and unregisters when its [`CoreTicket`] drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::proto::server::{AllocationId, End, Listing, RelayIo, Server};

/// The longest a command waits for the cores' answers.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest page of allocations a listing returns.
pub const MAX_PAGE: usize = 1000;

/// What the admin API asks of every core.
#[derive(Clone, Debug)]
pub enum Command {
    /// A page of allocations: of `user` (all if `None`), after `after`, at most `limit`.
    List {
        /// The user or username to filter on.
        user: Option<String>,
        /// The cursor: only allocations whose id comes after it.
        after: Option<AllocationId>,
        /// The page size (at most [`MAX_PAGE`]).
        limit: usize,
    },
    /// End the allocations selected.
    End(End),
}

/// The merged answers to a command.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// For a listing: the merged page and total.
    pub listing: Listing,
    /// For an end: how many allocations ended.
    pub ended: usize,
    /// Cores that were asked.
    pub cores: usize,
    /// Cores that answered in time.
    pub answered: usize,
}

struct Job {
    id: u64,
    command: Command,
    state: Mutex<JobState>,
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct JobState {
    /// Cores that have yet to answer.
    pending: usize,
    outcome: Outcome,
}

impl Job {
    /// Records one core's answer (`None`: the core went away without answering).
    fn answer(&self, listing: Option<Listing>, ended: usize) {
        let limit = match &self.command {
            Command::List { limit, .. } => *limit,
            Command::End(_) => 0,
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(listing) = listing {
            state.outcome.listing.merge(listing, limit);
            state.outcome.answered += 1;
        } else if matches!(self.command, Command::End(_)) {
            // A core that closes ends its allocations anyway.
            state.outcome.answered += 1;
        }
        state.outcome.ended += ended;
        state.pending = state.pending.saturating_sub(1);
        if state.pending == 0 {
            self.done.notify_one();
        }
    }
}

#[derive(Default)]
struct Inner {
    job: Option<Arc<Job>>,
    cores: usize,
    last_id: u64,
}

/// Where admin commands meet the cores. One per process.
pub struct AdminHub {
    /// The id of the command posted last (0: none yet): the one load per loop turn.
    latest: AtomicU64,
    inner: Mutex<Inner>,
    /// Wakes the connection tasks.
    wake: tokio::sync::watch::Sender<u64>,
    /// The UDP workers' wakers, set once they exist.
    wakers: OnceLock<Arc<Vec<Arc<Waker>>>>,
    /// One command at a time.
    serial: tokio::sync::Mutex<()>,
    /// Allocations ended through the admin API since start (for `/metrics`).
    ended_total: AtomicU64,
}

impl std::fmt::Debug for AdminHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminHub")
            .field("latest", &self.latest)
            .finish_non_exhaustive()
    }
}

impl Default for AdminHub {
    fn default() -> Self {
        AdminHub {
            latest: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
            wake: tokio::sync::watch::Sender::new(0),
            wakers: OnceLock::new(),
            serial: tokio::sync::Mutex::new(()),
            ended_total: AtomicU64::new(0),
        }
    }
}

impl AdminHub {
    /// Registers a core: it must then call [`CoreTicket::serve`] once per loop turn, and wait
    /// on [`CoreTicket::changed`] if it sleeps otherwise (connection tasks).
    pub fn register(self: &Arc<Self>) -> CoreTicket {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.cores += 1;
        CoreTicket {
            hub: self.clone(),
            seen: inner.last_id,
            wake: self.wake.subscribe(),
        }
    }

    /// Hands over the UDP workers' wakers (once, at start).
    pub fn set_wakers(&self, wakers: Arc<Vec<Arc<Waker>>>) {
        let _ = self.wakers.set(wakers);
    }

    /// Allocations ended through the admin API since start.
    pub fn ended_total(&self) -> u64 {
        self.ended_total.load(Ordering::Relaxed)
    }

    /// Posts `command` to every core and waits for their answers (at most [`ANSWER_TIMEOUT`]).
    pub async fn run(&self, command: Command) -> Outcome {
        let _one = self.serial.lock().await;
        let job = {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.last_id += 1;
            let job = Arc::new(Job {
                id: inner.last_id,
                command,
                state: Mutex::new(JobState {
                    pending: inner.cores,
                    outcome: Outcome {
                        cores: inner.cores,
                        ..Outcome::default()
                    },
                }),
                done: tokio::sync::Notify::new(),
            });
            inner.job = Some(job.clone());
            self.latest.store(job.id, Ordering::Release);
            job
        };
        self.wake.send_replace(job.id);
        if let Some(wakers) = self.wakers.get() {
            for w in wakers.iter() {
                let _ = w.wake();
            }
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let notified = job.done.notified();
            if job.state.lock().map(|s| s.pending == 0).unwrap_or(true) {
                break;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                break;
            }
        }
        let outcome = job
            .state
            .lock()
            .map(|s| s.outcome.clone())
            .unwrap_or_default();
        if outcome.answered < outcome.cores {
            tracing::warn!(
                answered = outcome.answered,
                cores = outcome.cores,
                "admin command: some cores did not answer in time"
            );
        }
        self.ended_total
            .fetch_add(outcome.ended as u64, Ordering::Relaxed);
        outcome
    }
}

/// A core's registration with the [`AdminHub`].
pub struct CoreTicket {
    hub: Arc<AdminHub>,
    /// The id of the last command this core answered (or that predates it).
    seen: u64,
    wake: tokio::sync::watch::Receiver<u64>,
}

impl CoreTicket {
    /// Answers the pending command, if there is one this core has not answered. One atomic
    /// load when there is none.
    #[inline]
    pub fn serve(&mut self, core: &mut Server, io: &mut impl RelayIo) {
        if self.hub.latest.load(Ordering::Acquire) != self.seen {
            self.answer(core, io);
        }
    }

    #[cold]
    fn answer(&mut self, core: &mut Server, io: &mut impl RelayIo) {
        let job = {
            let inner = self.hub.inner.lock().unwrap_or_else(|e| e.into_inner());
            inner.job.clone()
        };
        let Some(job) = job else { return };
        if job.id <= self.seen {
            return;
        }
        self.seen = job.id;
        match &job.command {
            Command::List { user, after, limit } => {
                let listing =
                    core.list_allocations(Instant::now(), user.as_deref(), *after, *limit);
                job.answer(Some(listing), 0);
            }
            Command::End(which) => {
                let ended = core.end_allocations(which, io);
                job.answer(Some(Listing::default()), ended);
            }
        }
    }

    /// Resolves when a command was posted since the last call (for tasks that sleep in
    /// `select!`). Never resolves spuriously in a loop: the hub outlives every ticket.
    pub async fn changed(&mut self) {
        if self.wake.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for CoreTicket {
    fn drop(&mut self) {
        let mut inner = self.hub.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.cores = inner.cores.saturating_sub(1);
        if let Some(job) = &inner.job {
            if job.id > self.seen {
                job.answer(None, 0);
            }
        }
    }
}
