//! The CPU the machine spends relaying, over a measured window: the scheduler's run time of
//! every thread of the machine, less the bench's own threads and the NAPI threads of the load
//! generator's and peers' veth ends (see the module doc of `xdp` for what that covers).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Run time of every thread at one instant, and the machine's `/proc/stat` times.
struct Snapshot {
    /// tid → (tgid, run time in ns, from /proc/TGID/task/TID/schedstat).
    threads: HashMap<u32, (u32, u64)>,
    stat: Stat,
    at: Instant,
}

/// The first line of /proc/stat (all CPUs), in nanoseconds.
#[derive(Clone, Copy, Default)]
struct Stat {
    /// user + nice + system + irq + softirq (guest time is inside user; idle, iowait and
    /// steal are not busy).
    busy: u64,
    irq: u64,
    softirq: u64,
    /// idle + iowait + steal. Busy time is sampled at ticks, which a CPU that wakes briefly
    /// and often from idle may not see; idle time is measured exactly (nohz), so "wall time ×
    /// CPUs − this" is the sharper figure of busy time.
    not_busy: u64,
    /// CPUs (the `cpuN` lines).
    cpus: u64,
}

impl Stat {
    fn midpoint(&self, o: &Stat) -> Stat {
        let mid = |a: u64, b: u64| a / 2 + b / 2;
        Stat {
            busy: mid(self.busy, o.busy),
            irq: mid(self.irq, o.irq),
            softirq: mid(self.softirq, o.softirq),
            not_busy: mid(self.not_busy, o.not_busy),
            cpus: o.cpus,
        }
    }

    fn read() -> Stat {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpus = text
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count() as u64;
        let v: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let ns = |ticks: u64| ticks * 1_000_000_000 / hz;
        // user nice system idle iowait irq softirq steal
        Stat {
            busy: ns(at(0) + at(1) + at(2) + at(5) + at(6)),
            irq: ns(at(5)),
            softirq: ns(at(6)),
            not_busy: ns(at(3) + at(4) + at(7)),
            cpus,
        }
    }
}

impl Snapshot {
    fn take() -> Snapshot {
        // /proc/stat and the clock are read before and after the scan of the threads (which
        // takes a few milliseconds) and averaged, to stand for the same instant.
        let (stat0, at0) = (Stat::read(), Instant::now());
        let mut threads = HashMap::with_capacity(1024);
        if let Ok(procs) = std::fs::read_dir("/proc") {
            for p in procs.flatten() {
                let Some(tgid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(tasks) = std::fs::read_dir(format!("/proc/{tgid}/task")) else {
                    continue;
                };
                for t in tasks.flatten() {
                    let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if let Some(ns) = run_time(tgid, tid) {
                        threads.insert(tid, (tgid, ns));
                    }
                }
            }
        }
        let (stat1, at1) = (Stat::read(), Instant::now());
        Snapshot {
            threads,
            stat: stat0.midpoint(&stat1),
            at: at0 + (at1 - at0) / 2,
        }
    }
}

fn run_time(tgid: u32, tid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn thread_name(tgid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_else(|_| format!("tid {tid} (exited)"))
}

/// Where the CPU of one window went.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    /// Threads of the server process.
    pub server: Duration,
    /// NAPI threads of the server's veth ends (s1, s2): its receive work, and the XDP program.
    pub server_napi: Duration,
    /// Every other thread of the machine that is not the bench's (kernel workers, ksoftirqd,
    /// other processes).
    pub other: Duration,
    /// Busy time of the machine in no thread's run time: `not_idle` − `all_threads` (at
    /// least zero): interrupts and softirqs on an otherwise idle CPU, the switches in and out
    /// of idle, IRQ time the kernel keeps out of run times (`CONFIG_IRQ_TIME_ACCOUNTING`), and
    /// threads that ended inside the window.
    pub unattributed: Duration,
    /// Excluded: the bench's threads (load generator, echo peers).
    pub bench: Duration,
    /// Excluded: NAPI threads of c0 and p0 (the load generator's and peers' receive work).
    pub client_napi: Duration,
    /// The largest "other" threads, by name.
    pub top_other: Vec<(String, Duration)>,
    /// NAPI threads that ran but belong to no end we know (another namespace's veth, or one
    /// of ours re-created): counted as "other".
    pub stray_napi: Vec<String>,
    /// Every thread's run time, excluded ones too (to check against `stat_busy`).
    pub all_threads: Duration,
    /// /proc/stat busy time of the machine (sampled at ticks).
    pub stat_busy: Duration,
    /// Wall time × CPUs − /proc/stat idle, iowait and steal (idle is measured exactly).
    pub not_idle: Duration,
    /// /proc/stat irq column.
    pub stat_irq: Duration,
    /// /proc/stat softirq column.
    pub stat_softirq: Duration,
}

impl Breakdown {
    /// The CPU counted as relaying.
    pub fn relaying(&self) -> Duration {
        self.server + self.server_napi + self.other + self.unattributed
    }

    /// Adds another window's figures (for totals over rounds).
    pub fn add(&mut self, o: &Breakdown) {
        self.server += o.server;
        self.server_napi += o.server_napi;
        self.other += o.other;
        self.unattributed += o.unattributed;
        self.bench += o.bench;
        self.client_napi += o.client_napi;
        self.all_threads += o.all_threads;
        self.stat_busy += o.stat_busy;
        self.not_idle += o.not_idle;
        self.stat_irq += o.stat_irq;
        self.stat_softirq += o.stat_softirq;
    }
}

/// Measures one window for [`crate::load::run`]: its first reading starts the window (and is
/// zero), each later one returns the relaying CPU since then and keeps its [`Breakdown`].
pub struct Meter {
    bench: u32,
    server: u32,
    client_napi: BTreeMap<u32, String>,
    server_napi: BTreeMap<u32, String>,
    start: RefCell<Option<Snapshot>>,
    last: RefCell<Option<Breakdown>>,
}

impl Meter {
    /// A meter for the server process `server`.
    pub fn new(
        server: u32,
        client_napi: &BTreeMap<u32, String>,
        server_napi: &BTreeMap<u32, String>,
    ) -> Meter {
        Meter {
            bench: std::process::id(),
            server,
            client_napi: client_napi.clone(),
            server_napi: server_napi.clone(),
            start: RefCell::new(None),
            last: RefCell::new(None),
        }
    }

    /// See [`Meter`].
    pub fn reading(&self) -> Duration {
        let now = Snapshot::take();
        let mut start = self.start.borrow_mut();
        let Some(start) = start.as_ref() else {
            *start = Some(now);
            return Duration::ZERO;
        };
        let b = self.between(start, &now);
        let relaying = b.relaying();
        *self.last.borrow_mut() = Some(b);
        relaying
    }

    /// The last window's breakdown.
    pub fn breakdown(&self) -> Option<Breakdown> {
        self.last.borrow().clone()
    }

    fn between(&self, a: &Snapshot, b: &Snapshot) -> Breakdown {
        let mut out = Breakdown::default();
        let mut others = Vec::new();
        for (&tid, &(tgid, end)) in &b.threads {
            // A thread born in the window ran only in it. (One that ended in it is lost: its
            // run time is nowhere to read; compare `all_threads` with `stat_busy`.)
            let ran = end.saturating_sub(a.threads.get(&tid).map_or(0, |t| t.1));
            if ran == 0 {
                continue;
            }
            let d = Duration::from_nanos(ran);
            out.all_threads += d;
            if tgid == self.bench {
                out.bench += d;
            } else if self.client_napi.contains_key(&tid) {
                out.client_napi += d;
            } else if tgid == self.server {
                out.server += d;
            } else if self.server_napi.contains_key(&tid) {
                out.server_napi += d;
            } else {
                out.other += d;
                let name = thread_name(tgid, tid);
                if name.starts_with("napi/") {
                    out.stray_napi.push(name.clone());
                }
                others.push((name, d));
            }
        }
        let stat =
            |f: fn(&Stat) -> u64| Duration::from_nanos(f(&b.stat).saturating_sub(f(&a.stat)));
        out.stat_busy = stat(|s| s.busy);
        out.stat_irq = stat(|s| s.irq);
        out.stat_softirq = stat(|s| s.softirq);
        let capacity = (b.at - a.at).as_nanos() as u64 * b.stat.cpus;
        out.not_idle = Duration::from_nanos(
            capacity.saturating_sub(b.stat.not_busy.saturating_sub(a.stat.not_busy)),
        );
        out.unattributed = out.not_idle.saturating_sub(out.all_threads);
        others.sort_by_key(|o| std::cmp::Reverse(o.1));
        others.truncate(3);
        out.top_other = others;
        out
    }
}
