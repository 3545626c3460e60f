//! The kernel's memory behind sockets, read from `/proc/slabinfo` (slab objects: the socket,
//! its inode, file, dentry, epoll entry) and `/proc/net/sockstat{,6}` (pages charged to UDP
//! socket buffers, i.e. queued datagrams). Deltas between two snapshots, divided by what was
//! made between them, give the kernel's cost per relay socket that RSS does not show.
//! `/proc/slabinfo` is readable by root only; other processes on the host change it too, so
//! the caches that belong to sockets are reported apart from the total.

use std::collections::HashMap;

/// Slab caches a UDP socket with an epoll registration allocates from.
const SOCKET_CACHES: &[&str] = &[
    "UDP",
    "UDPv6",
    "sock_inode_cache",
    "filp",
    "dentry",
    "eventpoll_epi",
    "eventpoll_pwq",
];

/// One reading of the kernel's memory.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Bytes per slab cache (objects allocated × object size).
    slabs: HashMap<String, u64>,
    /// Pages charged to UDP sockets (IPv4 and IPv6).
    udp_pages: u64,
}

/// Reads the kernel's memory now (empty when /proc/slabinfo cannot be read).
pub fn snapshot() -> Snapshot {
    let mut slabs = HashMap::new();
    if let Ok(text) = std::fs::read_to_string("/proc/slabinfo") {
        for line in text.lines().skip(2) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            if let (Ok(objs), Ok(size)) = (f[2].parse::<u64>(), f[3].parse::<u64>()) {
                slabs.insert(f[0].to_owned(), objs * size);
            }
        }
    }
    let mut udp_pages = 0;
    for file in ["/proc/net/sockstat", "/proc/net/sockstat6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("UDP:") || l.starts_with("UDP6:"))
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let Some(i) = f.iter().position(|w| *w == "mem") {
                udp_pages += f
                    .get(i + 1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Snapshot { slabs, udp_pages }
}

/// The kernel's memory per object made between two snapshots.
#[derive(Debug)]
pub struct PerObject {
    /// Bytes of the socket caches ([`SOCKET_CACHES`]) per object, and the caches' shares.
    pub socket_slabs: f64,
    pub by_cache: Vec<(String, f64)>,
    /// Bytes of every slab cache per object (includes what other processes did meanwhile).
    pub all_slabs: f64,
    /// Bytes of UDP socket buffers in use per object (queued datagrams).
    pub udp_buffers: f64,
}

/// `after - before`, per one of `count` objects.
pub fn per_object(before: &Snapshot, after: &Snapshot, count: usize) -> PerObject {
    let n = count.max(1) as f64;
    let delta = |name: &str| {
        after.slabs.get(name).copied().unwrap_or(0) as f64
            - before.slabs.get(name).copied().unwrap_or(0) as f64
    };
    let by_cache: Vec<(String, f64)> = SOCKET_CACHES
        .iter()
        .map(|c| (c.to_string(), delta(c) / n))
        .filter(|(_, b)| *b != 0.0)
        .collect();
    let all: f64 = after.slabs.keys().map(|k| delta(k)).sum::<f64>()
        - before
            .slabs
            .keys()
            .filter(|k| !after.slabs.contains_key(*k))
            .map(|k| before.slabs[k] as f64)
            .sum::<f64>();
    PerObject {
        socket_slabs: by_cache.iter().map(|(_, b)| b).sum(),
        by_cache,
        all_slabs: all / n,
        udp_buffers: (after.udp_pages as f64 - before.udp_pages as f64) * 4096.0 / n,
    }
}

/// Prints the kernel's memory per allocation, from the two snapshots `alloc::run` took (when
/// it read the RSS before and after allocating), beside the RSS per allocation.
pub fn report(snapshots: &[Snapshot], allocated: usize, rss_per_allocation: f64) {
    let [before, after] = snapshots else {
        println!("(kernel memory not read: {} snapshots)", snapshots.len());
        return;
    };
    if before.slabs.is_empty() {
        println!("(kernel memory not read: /proc/slabinfo needs root)");
        return;
    }
    let k = per_object(before, after, allocated);
    let caches: Vec<String> = k
        .by_cache
        .iter()
        .map(|(c, b)| format!("{c} {b:.0}"))
        .collect();
    println!(
        "kernel per allocation: {:.0} bytes in socket slabs ({}); RSS + socket slabs = {:.0} bytes; \
         all slabs {:.0} bytes (other processes included); UDP buffer pages charged on the host \
         {:.0} bytes (both ends: the load generator's sockets received the answers)",
        k.socket_slabs,
        caches.join(", "),
        rss_per_allocation + k.socket_slabs,
        k.all_slabs,
        k.udp_buffers,
    );
}

/// CPU time process `pid` has run so far, summed over its threads, in nanoseconds (from
/// `/proc/PID/task/*/schedstat`: the scheduler's own accounting, finer than clock ticks).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Watches the server hold its allocations, idle, for `secs` seconds, and prints the CPU it
/// spent meanwhile: the cost of its timers (expiry, heartbeats) with this many allocations.
pub fn idle_cpu(pid: u32, secs: u64, allocations: usize) {
    if secs == 0 {
        return;
    }
    let before = cpu_ns(pid);
    let start = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(secs));
    let spent = cpu_ns(pid).saturating_sub(before);
    println!(
        "idle with {allocations} allocations for {:.1} s: server CPU {:.3} ms per second",
        start.elapsed().as_secs_f64(),
        spent as f64 / 1e6 / start.elapsed().as_secs_f64()
    );
}
