//! Prometheus metrics: a collector that reads the cores' live counters ([`Stats`]) and the
//! relay port pool at scrape time and writes OpenMetrics text.
//!
//! Nothing here runs on the packet path: the cores count into their own atomics, and this
//! module only reads them when `/metrics` is scraped. Every label value comes from a fixed set
//! (direction, transport, method, result, reason) plus the configured realm, so a scrape's size
//! does not grow with users or addresses. `docs/metrics.md` lists every metric.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::{Health, Readiness};
use crate::net::ports::PortPool;
use crate::proto::server::{
    AUTH_FAILURES, Direction, DropReason, LIFETIME_BUCKETS, RESULTS, RequestMethod, Stats,
    StatsSnapshot, TRANSPORT_ORDER, result_label,
};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything `/metrics` reports: the counters of every core, the port pool, build info.
#[derive(Debug)]
pub struct Metrics {
    realm: String,
    sources: RwLock<Vec<Arc<Stats>>>,
    ports: RwLock<Option<Arc<PortPool>>>,
    registry: RwLock<Option<crate::registry::RegistryState>>,
    fleet: RwLock<Option<Arc<crate::fleet::Fleet>>>,
    health: RwLock<Option<Arc<Health>>>,
    /// The admin hub, whose ended allocations are reported.
    admin: RwLock<Option<Arc<crate::net::admin::AdminHub>>>,
    /// Configuration reloads that were applied, and that were refused.
    reloads: [AtomicU64; 2],
    /// The XDP fast path, when attached (`turnpike_xdp_*`).
    #[cfg(feature = "xdp")]
    xdp: RwLock<Option<Arc<crate::net::xdp::FastPath>>>,
}

impl Metrics {
    /// Metrics for a server serving `realm`, with no counters registered yet.
    pub fn new(realm: &str) -> Metrics {
        Metrics {
            realm: realm.to_owned(),
            sources: RwLock::new(Vec::new()),
            ports: RwLock::new(None),
            registry: RwLock::new(None),
            fleet: RwLock::new(None),
            health: RwLock::new(None),
            admin: RwLock::new(None),
            reloads: [AtomicU64::new(0), AtomicU64::new(0)],
            #[cfg(feature = "xdp")]
            xdp: RwLock::new(None),
        }
    }

    /// Reports the allocations the admin API ended as `turnpike_admin_allocations_ended_total`.
    pub fn set_admin(&self, hub: Arc<crate::net::admin::AdminHub>) {
        *self.admin.write().unwrap_or_else(|e| e.into_inner()) = Some(hub);
    }

    /// Reports the XDP fast path's counters as `turnpike_xdp_*`.
    #[cfg(feature = "xdp")]
    pub fn set_xdp(&self, xdp: Arc<crate::net::xdp::FastPath>) {
        *self.xdp.write().unwrap_or_else(|e| e.into_inner()) = Some(xdp);
    }

    /// Reports `health`'s draining flag as `turnpike_draining`.
    pub fn set_health(&self, health: Arc<Health>) {
        *self.health.write().unwrap_or_else(|e| e.into_inner()) = Some(health);
    }

    /// Counts a configuration reload in `turnpike_config_reloads_total`: applied (`ok`), or
    /// refused because the new file did not load (`error`).
    pub fn count_reload(&self, applied: bool) {
        let index = if applied { 0 } else { 1 };
        self.reloads[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds a core's counters (a UDP worker's own, or the [`Stats::shared`] of many
    /// connection tasks). Counters stay registered for the life of the process, so nothing a
    /// core counted ever goes missing from the totals.
    pub fn register(&self, stats: Arc<Stats>) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats);
    }

    /// Sets the relay port pool reported as `turnpike_relay_ports_*`.
    pub fn set_port_pool(&self, pool: Arc<PortPool>) {
        *self.ports.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
    }

    /// Reports the fleet's state (`turnpike_fleet_*`).
    pub fn set_fleet(&self, fleet: Arc<crate::fleet::Fleet>) {
        *self.fleet.write().unwrap_or_else(|e| e.into_inner()) = Some(fleet);
    }

    /// Reports the registry's counters (`turnpike_registry_*`, docs/registry-protocol.md §8).
    pub fn set_registry(&self, registry: crate::registry::RegistryState) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Some(registry);
    }

    /// The sum of every registered core's counters now.
    pub fn totals(&self) -> StatsSnapshot {
        let mut total = StatsSnapshot::default();
        for stats in self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            total.merge(&stats.snapshot());
        }
        total
    }

    /// The OpenMetrics text exposition of every metric (ends with `# EOF`).
    pub fn encode(self: &Arc<Self>) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::with_prefix("turnpike");
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

pub(crate) type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Writes one metric family: a descriptor, then one sample per label set.
pub(crate) fn family<'a, V>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels<'a>, V)>,
) -> Result<(), std::fmt::Error>
where
    V: Into<u64>,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let value: u64 = value.into();
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        if labels.is_empty() {
            sample(&mut metric, kind, value)?;
        } else {
            sample(&mut metric.encode_family(&labels)?, kind, value)?;
        }
    }
    Ok(())
}

fn sample(metric: &mut MetricEncoder, kind: MetricType, value: u64) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Counter => metric.encode_counter::<NoLabelSet, _, u64>(&value, None),
        _ => metric.encode_gauge(&i64::try_from(value).unwrap_or(i64::MAX)),
    }
}

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = self.totals();
        let realm = || ("realm", Cow::Borrowed(self.realm.as_str()));
        let by_direction_transport = |values: &[[u64; 3]; 2]| {
            let mut out = Vec::new();
            for direction in Direction::ALL {
                for (i, transport) in TRANSPORT_ORDER.iter().enumerate() {
                    out.push((
                        vec![
                            ("direction", Cow::Borrowed(direction.label())),
                            ("transport", Cow::Borrowed(transport.as_str())),
                            realm(),
                        ],
                        values[direction as usize][i],
                    ));
                }
            }
            out
        };
        family(
            &mut encoder,
            "relayed_bytes",
            "Payload bytes relayed, counted as each packet is relayed",
            MetricType::Counter,
            by_direction_transport(&t.relayed_bytes),
        )?;
        family(
            &mut encoder,
            "relayed_packets",
            "Packets relayed, counted as each packet is relayed",
            MetricType::Counter,
            by_direction_transport(&t.relayed_packets),
        )?;
        let by_transport = |f: &dyn Fn(usize) -> u64| {
            TRANSPORT_ORDER
                .iter()
                .enumerate()
                .map(|(i, transport)| {
                    (
                        vec![("transport", Cow::Borrowed(transport.as_str())), realm()],
                        f(i),
                    )
                })
                .collect::<Vec<_>>()
        };
        family(
            &mut encoder,
            "allocations_active",
            "Allocations live now",
            MetricType::Gauge,
            by_transport(&|i| t.allocations_created[i].saturating_sub(t.allocations_ended[i])),
        )?;
        family(
            &mut encoder,
            "allocations_created",
            "Allocations created",
            MetricType::Counter,
            by_transport(&|i| t.allocations_created[i]),
        )?;
        {
            let mut metric = encoder.encode_descriptor(
                "allocation_lifetime_seconds",
                "How long ended allocations lived",
                None,
                MetricType::Histogram,
            )?;
            let labels = [("realm", self.realm.as_str())];
            let mut sample = metric.encode_family(&labels)?;
            let buckets: Vec<(f64, u64)> = LIFETIME_BUCKETS
                .iter()
                .map(|&b| b as f64)
                .chain(std::iter::once(f64::INFINITY))
                .zip(t.lifetime_buckets.iter().copied())
                .collect();
            let count = t.lifetime_buckets.iter().sum();
            sample.encode_histogram::<NoLabelSet>(
                t.lifetime_sum_ms as f64 / 1000.0,
                count,
                &buckets,
                None,
            )?;
        }
        let mut requests = Vec::new();
        for method in RequestMethod::ALL {
            for result in 0..RESULTS {
                let n = t.requests[method as usize][result];
                // Every method shows its successes; error results appear once they happened
                // (the set stays bounded by the codes the core can answer).
                if n > 0 || result == 0 {
                    requests.push((
                        vec![
                            ("method", Cow::Borrowed(method.label())),
                            ("result", Cow::Borrowed(result_label(result))),
                            realm(),
                        ],
                        n,
                    ));
                }
            }
        }
        family(
            &mut encoder,
            "requests",
            "STUN/TURN requests answered, by method and result (success or the error code)",
            MetricType::Counter,
            requests,
        )?;
        family(
            &mut encoder,
            "auth_failures",
            "Requests whose long-term credentials did not authenticate, by reason",
            MetricType::Counter,
            AUTH_FAILURES.iter().enumerate().map(|(i, failure)| {
                (
                    vec![("reason", Cow::Borrowed(failure.label())), realm()],
                    t.auth_failures[i],
                )
            }),
        )?;
        family(
            &mut encoder,
            "dropped_packets",
            "Packets and requests dropped or refused instead of relayed or answered, by reason",
            MetricType::Counter,
            DropReason::ALL.iter().map(|reason| {
                (
                    vec![("reason", Cow::Borrowed(reason.label())), realm()],
                    t.dropped(*reason),
                )
            }),
        )?;
        let pool = self.ports.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (in_use, capacity) = pool.map_or((0, 0), |p| (p.in_use(), p.capacity()));
        family(
            &mut encoder,
            "relay_ports_in_use",
            "Relay ports held now (bound, or reserved by EVEN-PORT)",
            MetricType::Gauge,
            [(Labels::new(), in_use)],
        )?;
        family(
            &mut encoder,
            "relay_ports_capacity",
            "Ports in the relay port range",
            MetricType::Gauge,
            [(Labels::new(), capacity)],
        )?;
        let draining = self
            .health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|h| h.readiness() == Readiness::Draining);
        family(
            &mut encoder,
            "draining",
            "1 while the server drains (after SIGTERM): new allocations refused, existing ones served",
            MetricType::Gauge,
            [(Labels::new(), u64::from(draining))],
        )?;
        family(
            &mut encoder,
            "config_reloads",
            "Configuration reloads (SIGHUP): applied (ok) or refused because the file did not load (error)",
            MetricType::Counter,
            ["ok", "error"].iter().enumerate().map(|(i, result)| {
                (
                    vec![("result", Cow::Borrowed(*result))],
                    self.reloads[i].load(Ordering::Relaxed),
                )
            }),
        )?;
        let admin_ended = self
            .admin
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |hub| hub.ended_total());
        family(
            &mut encoder,
            "admin_allocations_ended",
            "Allocations ended through the admin API (kill, and the revocations that ended them)",
            MetricType::Counter,
            [(Labels::new(), admin_ended)],
        )?;
        #[cfg(feature = "xdp")]
        crate::net::xdp::encode_metrics(
            &mut encoder,
            self.xdp
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .as_deref(),
        )?;
        let mut info =
            encoder.encode_descriptor("build", "The running build", None, MetricType::Info)?;
        info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        let registry = self
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(registry) = registry {
            encode_registry(&mut encoder, &registry)?;
        }
        let fleet = self.fleet.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(fleet) = fleet {
            encode_fleet(&mut encoder, &fleet.snapshot())?;
        }
        Ok(())
    }
}

/// The fleet's samples (docs/metrics.md).
fn encode_fleet(
    encoder: &mut DescriptorEncoder,
    fleet: &crate::fleet::view::FleetSnapshot,
) -> Result<(), std::fmt::Error> {
    family(
        encoder,
        "fleet_redis_up",
        "1 when the last exchange with the fleet's Redis succeeded; 0: iceServers list this node alone",
        MetricType::Gauge,
        [(Labels::new(), u64::from(fleet.redis_up))],
    )?;
    family(
        encoder,
        "fleet_nodes",
        "Live nodes of the fleet known to this node (itself included), by state",
        MetricType::Gauge,
        [
            (vec![("state", Cow::Borrowed("ready"))], fleet.nodes_ready),
            (
                vec![("state", Cow::Borrowed("draining"))],
                fleet.nodes_draining,
            ),
        ],
    )?;
    family(
        encoder,
        "fleet_publishes",
        "Exchanges with Redis (publish this node's load, read the others'): ok or error",
        MetricType::Counter,
        [
            (vec![("result", Cow::Borrowed("ok"))], fleet.publishes_ok),
            (
                vec![("result", Cow::Borrowed("error"))],
                fleet.publishes_failed,
            ),
        ],
    )?;
    family(
        encoder,
        "fleet_local_only_answers",
        "iceServers answers (HTTP and registry) that listed this node alone because Redis was down",
        MetricType::Counter,
        [(Labels::new(), fleet.local_only_answers)],
    )?;
    family(
        encoder,
        "fleet_alternates",
        "Alternate servers a draining node can send new allocations to (300 Try Alternate)",
        MetricType::Gauge,
        [(Labels::new(), fleet.alternates)],
    )
}

/// The registry's samples, one family per name, and its per-project metering.
fn encode_registry(
    encoder: &mut DescriptorEncoder,
    registry: &crate::registry::RegistryState,
) -> Result<(), std::fmt::Error> {
    use crate::registry::metrics::SampleKind;
    let mut samples = registry.metrics().samples();
    samples.extend(registry.cluster_metrics().samples());
    let mut start = 0;
    while start < samples.len() {
        let first = &samples[start];
        let end = samples[start..]
            .iter()
            .position(|s| s.name != first.name)
            .map_or(samples.len(), |n| start + n);
        // The registry prefixes "turnpike_"; OpenMetrics counters get "_total" from the encoder.
        let name = first.name.trim_start_matches("turnpike_");
        let (name, kind) = match first.kind {
            SampleKind::Counter => (name.trim_end_matches("_total"), MetricType::Counter),
            SampleKind::Gauge => (name, MetricType::Gauge),
        };
        let values = samples[start..end].iter().map(|s| {
            let labels: Labels<'_> = s
                .label
                .map(|(k, v)| vec![(k, Cow::Borrowed(v))])
                .unwrap_or_default();
            (labels, u64::try_from(s.value).unwrap_or(0))
        });
        family(encoder, name, first.help, kind, values)?;
        start = end;
    }
    let usage = registry.project_usage();
    let per_project = |f: fn(&crate::registry::ProjectUsage) -> u64| {
        usage
            .iter()
            .map(|(project, u)| (vec![("project", Cow::Owned(project.clone()))], f(u)))
            .collect::<Vec<_>>()
    };
    family(
        encoder,
        "registry_project_relay_bytes",
        "Relay bytes forwarded to the peers of a project, while it has peers",
        MetricType::Counter,
        per_project(|u| u.relay_bytes),
    )?;
    family(
        encoder,
        "registry_project_relay_blobs",
        "Relay blobs forwarded to the peers of a project, while it has peers",
        MetricType::Counter,
        per_project(|u| u.relay_blobs),
    )?;
    family(
        encoder,
        "registry_project_signaling_messages",
        "Signaling messages forwarded inside a project, while it has peers",
        MetricType::Counter,
        per_project(|u| u.signals),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Transport;
    use std::time::Duration;

    #[test]
    fn exposition_sums_every_core_and_ends_with_eof() {
        let metrics = Arc::new(Metrics::new("example.org"));
        let a = Arc::new(Stats::single_writer());
        let b = Arc::new(Stats::shared());
        metrics.register(a.clone());
        metrics.register(b.clone());
        metrics.set_port_pool(Arc::new(PortPool::new(50000, 50009)));
        a.relayed(Direction::ClientToPeer, Transport::Udp, 100);
        b.relayed(Direction::ClientToPeer, Transport::Udp, 23);
        a.allocation_created(Transport::Udp);
        a.allocation_created(Transport::Udp);
        a.allocation_ended(Transport::Udp, Duration::from_millis(45_500));
        b.dropped(DropReason::PeerDenied);
        a.request(RequestMethod::Allocate, Err(401));
        let health = Arc::new(Health::default());
        metrics.set_health(health.clone());
        health.set_draining(true);
        metrics.count_reload(true);
        metrics.count_reload(false);
        metrics.count_reload(false);
        let text = metrics.encode().unwrap();
        for line in [
            "turnpike_relayed_bytes_total{direction=\"client_to_peer\",transport=\"udp\",realm=\"example.org\"} 123",
            "turnpike_relayed_packets_total{direction=\"client_to_peer\",transport=\"udp\",realm=\"example.org\"} 2",
            "turnpike_relayed_bytes_total{direction=\"peer_to_client\",transport=\"tls\",realm=\"example.org\"} 0",
            "turnpike_allocations_active{transport=\"udp\",realm=\"example.org\"} 1",
            "turnpike_allocations_created_total{transport=\"udp\",realm=\"example.org\"} 2",
            "turnpike_allocation_lifetime_seconds_sum{realm=\"example.org\"} 45.5",
            "turnpike_allocation_lifetime_seconds_count{realm=\"example.org\"} 1",
            "turnpike_allocation_lifetime_seconds_bucket{le=\"30.0\",realm=\"example.org\"} 0",
            "turnpike_allocation_lifetime_seconds_bucket{le=\"60.0\",realm=\"example.org\"} 1",
            "turnpike_allocation_lifetime_seconds_bucket{le=\"+Inf\",realm=\"example.org\"} 1",
            "turnpike_requests_total{method=\"allocate\",result=\"401\",realm=\"example.org\"} 1",
            "turnpike_requests_total{method=\"binding\",result=\"success\",realm=\"example.org\"} 0",
            "turnpike_dropped_packets_total{reason=\"peer_denied\",realm=\"example.org\"} 1",
            "turnpike_auth_failures_total{reason=\"bad_integrity\",realm=\"example.org\"} 0",
            "turnpike_relay_ports_in_use 0",
            "turnpike_relay_ports_capacity 10",
            "turnpike_draining 1",
            "turnpike_config_reloads_total{result=\"ok\"} 1",
            "turnpike_config_reloads_total{result=\"error\"} 2",
            "# TYPE turnpike_build info",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(text.contains("turnpike_build_info{version=\""), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
