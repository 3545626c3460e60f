//! Reading `/metrics` in tests: one scrape, its samples by `name{labels}`, and shorthands for
//! the TURN core's counters.

use std::collections::BTreeMap;

use super::{REALM, Server};

/// One scrape: `name{labels}` → value, for every sample line.
pub struct Scrape {
    pub text: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Scrapes the server's `/metrics` (checking the OpenMetrics content type).
    pub fn take(server: &Server) -> Scrape {
        let r = super::http::get(server.http, "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        let samples = r
            .body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (key, value) = l.rsplit_once(' ').expect("NAME VALUE");
                (key.to_owned(), value.parse().expect("a number"))
            })
            .collect();
        Scrape {
            text: r.body,
            samples,
        }
    }

    /// The value of `name{labels}` with `realm="harness.test"` appended to `labels`.
    pub fn get(&self, name: &str, labels: &str) -> u64 {
        let sep = if labels.is_empty() { "" } else { "," };
        let key = format!("{name}{{{labels}{sep}realm=\"{REALM}\"}}");
        match self.samples.get(&key) {
            Some(v) => *v as u64,
            None => panic!("no sample {key} in\n{}", self.text),
        }
    }

    /// `turnpike_relayed_{what}_total` (`what`: `bytes` or `packets`) of UDP clients.
    pub fn relayed(&self, what: &str, direction: &str) -> u64 {
        self.relayed_on(what, direction, "udp")
    }

    /// `turnpike_relayed_{what}_total` of clients on `transport` (`udp`, `tcp`, `tls`).
    pub fn relayed_on(&self, what: &str, direction: &str, transport: &str) -> u64 {
        self.get(
            &format!("turnpike_relayed_{what}_total"),
            &format!("direction=\"{direction}\",transport=\"{transport}\""),
        )
    }

    pub fn dropped(&self, reason: &str) -> u64 {
        self.get(
            "turnpike_dropped_packets_total",
            &format!("reason=\"{reason}\""),
        )
    }

    pub fn auth_failures(&self, reason: &str) -> u64 {
        self.get(
            "turnpike_auth_failures_total",
            &format!("reason=\"{reason}\""),
        )
    }
}
