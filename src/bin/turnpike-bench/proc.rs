//! Reading a server's CPU time and memory from /proc.

use std::time::Duration;

/// User + system CPU time consumed so far by process `pid` (all threads).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(
        (utime + stime) * 1_000_000_000 / ticks,
    ))
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Open file descriptors of process `pid` (entries of /proc/PID/fd).
pub fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// One reading of a server's memory and descriptors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Resident set size, bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: u64,
}

impl Usage {
    /// Reads process `pid` now (zeros for what cannot be read).
    pub fn of(pid: u32) -> Usage {
        Usage {
            rss: rss_bytes(pid).unwrap_or(0),
            fds: open_fds(pid).unwrap_or(0),
        }
    }
}

/// Samples a process's [`Usage`] every `every` on a thread, keeping the highest values seen
/// since the last [`Sampler::take_peak`], until dropped.
pub struct Sampler {
    peak: std::sync::Arc<std::sync::Mutex<Usage>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32, every: Duration) -> Sampler {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::Mutex::new(Usage::of(pid)));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = Usage::of(pid);
                if let Ok(mut peak) = p.lock() {
                    peak.rss = peak.rss.max(now.rss);
                    peak.fds = peak.fds.max(now.fds);
                }
                std::thread::sleep(every);
            }
        });
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The highest values since the last call (or the start), and restarts from `now`.
    pub fn take_peak(&self, now: Usage) -> Usage {
        let mut peak = self.peak.lock().map(|p| *p).unwrap_or_default();
        peak.rss = peak.rss.max(now.rss);
        peak.fds = peak.fds.max(now.fds);
        if let Ok(mut p) = self.peak.lock() {
            *p = now;
        }
        peak
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Megabytes, for tables.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
