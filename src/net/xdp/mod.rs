//! The opt-in XDP fast path for channel data (`[relay] xdp`): loads xdp/relay.bpf.c (compiled by
//! build.rs) with aya, attaches it in native (driver) mode to the configured interfaces, and
//! keeps its maps in step with the cores' announcements
//! ([`FastPathEvent`](crate::proto::server::FastPathEvent), applied by [`XdpWorker`]).
//!
//! The kernel program relays, for established channels of UDP clients, client → peer
//! ChannelData as the peer-bound datagram and peer → client datagrams as ChannelData, with
//! XDP_TX or XDP_REDIRECT after a FIB lookup; everything else, and every packet it is unsure
//! of, goes on to the sockets and the user-space path. User space owns every entry: the
//! program never adds or extends one. If loading or attaching fails, [`start`] logs why and the
//! server relays in user space, as without `relay.xdp`.

mod maps;
mod worker;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use maps::Outcomes;
pub use worker::XdpWorker;

/// Why the fast path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// This binary carries no BPF program (clang was missing when it was built).
    #[error(
        "this binary was built without the BPF program (clang was not found at build time; \
         install clang and libbpf-dev and rebuild)"
    )]
    NotBuilt,
    /// A step of loading or attaching failed; `detail` has the kernel's reason.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// The error and its causes.
        detail: String,
    },
}

impl XdpError {
    fn step(step: impl Into<String>, error: &(dyn std::error::Error + 'static)) -> XdpError {
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(e) = source {
            let _ = write!(detail, ": {e}");
            source = e.source();
        }
        XdpError::Step {
            step: step.into(),
            detail,
        }
    }
}

/// What the fast path relayed and holds, for `/metrics` (written by the workers as they read
/// the kernel's per-channel counters, about once a second).
#[derive(Debug, Default)]
pub struct XdpCounters {
    /// Channels installed in the kernel maps now.
    pub entries: AtomicU64,
    /// Packets relayed in the kernel, per direction (client → peer, peer → client).
    pub packets: [AtomicU64; 2],
    /// Payload bytes relayed in the kernel, per direction.
    pub bytes: [AtomicU64; 2],
}

/// The loaded and attached program and its maps, shared by every UDP worker. Map updates
/// happen on channel binds, refreshes and expiries (not per packet), under one lock.
pub struct FastPath {
    maps: Mutex<maps::Maps>,
    interfaces: Vec<String>,
    counters: XdpCounters,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Loads the program and attaches it to every interface in `interfaces` (native mode).
    /// All or nothing: on any failure nothing stays attached.
    pub fn load(interfaces: &[String]) -> Result<FastPath, XdpError> {
        let maps = maps::Maps::load(interfaces)?;
        Ok(FastPath {
            maps: Mutex::new(maps),
            interfaces: interfaces.to_vec(),
            counters: XdpCounters::default(),
        })
    }

    /// The interfaces the program is attached to.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// The live counters.
    pub fn counters(&self) -> &XdpCounters {
        &self.counters
    }

    /// The program's own counts: packets it rewrote and packets it left to the kernel stack
    /// although an entry matched (expired entry, no route, a shape it does not handle).
    pub fn outcomes(&self) -> Outcomes {
        self.lock().outcomes()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, maps::Maps> {
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_traffic(&self, packets: [u64; 2], bytes: [u64; 2]) {
        for d in 0..2 {
            self.counters.packets[d].fetch_add(packets[d], Ordering::Relaxed);
            self.counters.bytes[d].fetch_add(bytes[d], Ordering::Relaxed);
        }
    }
}

/// Sets up the fast path for `relay.xdp` (nothing when it is empty). On failure, logs why at
/// warn level and returns `None`: the server then relays in user space.
pub fn start(interfaces: &[String]) -> Option<Arc<FastPath>> {
    if interfaces.is_empty() {
        return None;
    }
    match FastPath::load(interfaces) {
        Ok(fast) => {
            for name in interfaces {
                let path = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
                if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "0") {
                    tracing::warn!(
                        interface = %name,
                        "the kernel's route lookup for XDP answers only with forwarding on: set net.ipv4.conf.{name}.forwarding=1 (and a FORWARD policy of DROP), or every packet goes through user space"
                    );
                }
            }
            tracing::info!(
                interfaces = ?interfaces,
                "XDP fast path attached (native mode): channel data of UDP clients is relayed in the kernel"
            );
            Some(Arc::new(fast))
        }
        Err(error) => {
            tracing::warn!(
                interfaces = ?interfaces,
                %error,
                "XDP fast path unavailable; relaying in user space"
            );
            None
        }
    }
}

/// Writes the `turnpike_xdp_*` families (docs/metrics.md): whether the fast path is attached,
/// its entries, what it relayed (as last read from the kernel, about twice a second) and what
/// the program left to the kernel stack.
pub fn encode_metrics(
    encoder: &mut prometheus_client::encoding::DescriptorEncoder,
    fast: Option<&FastPath>,
) -> Result<(), std::fmt::Error> {
    use crate::metrics::{Labels, family};
    use prometheus_client::metrics::MetricType;
    use std::borrow::Cow;
    let directions = ["client_to_peer", "peer_to_client"];
    family(
        encoder,
        "xdp_attached_interfaces",
        "Interfaces the XDP fast path is attached to (0: off, or it failed to attach)",
        MetricType::Gauge,
        [(Labels::new(), fast.map_or(0, |f| f.interfaces.len() as u64))],
    )?;
    let Some(fast) = fast else {
        return Ok(());
    };
    let c = &fast.counters;
    family(
        encoder,
        "xdp_entries",
        "Channels installed in the XDP fast path's maps",
        MetricType::Gauge,
        [(Labels::new(), c.entries.load(Ordering::Relaxed))],
    )?;
    let per_direction = |values: &[AtomicU64; 2]| {
        directions
            .iter()
            .zip(values)
            .map(|(d, v)| {
                (
                    vec![("direction", Cow::Borrowed(*d))],
                    v.load(Ordering::Relaxed),
                )
            })
            .collect::<Vec<_>>()
    };
    family(
        encoder,
        "xdp_relayed_bytes",
        "Payload bytes relayed in the kernel by the XDP fast path (also in relayed_bytes)",
        MetricType::Counter,
        per_direction(&c.bytes),
    )?;
    family(
        encoder,
        "xdp_relayed_packets",
        "Packets relayed in the kernel by the XDP fast path (also in relayed_packets)",
        MetricType::Counter,
        per_direction(&c.packets),
    )?;
    let o = fast.outcomes();
    family(
        encoder,
        "xdp_passed",
        "Packets that matched a fast-path entry but went on to user space, by reason",
        MetricType::Counter,
        [
            ("expired", o.expired),
            ("no_route", o.no_route),
            ("shape", o.shape),
        ]
        .map(|(reason, n)| (vec![("reason", Cow::Borrowed(reason))], n)),
    )?;
    Ok(())
}
