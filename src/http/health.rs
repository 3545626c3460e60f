//! Health checks: `/healthz` (the process answers) and `/readyz` (every listener is bound and
//! the server is not draining), for load balancers, Kubernetes probes and monitoring.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::HttpState;

/// The readiness flags the service sets and the health endpoints read.
#[derive(Debug, Default)]
pub struct Health {
    listening: AtomicBool,
    draining: AtomicBool,
    /// The registry cluster's link: 0 no cluster, 1 linked, 2 Redis unavailable.
    cluster: AtomicU8,
}

/// Why the server is or is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Every listener is bound and the workers run.
    Ready,
    /// Listeners are not all bound yet.
    Starting,
    /// The server is shutting down or draining: send no new clients.
    Draining,
}

impl Health {
    /// Marks every client listener bound and every worker running.
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// Marks the server draining (no new clients wanted) or not.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::SeqCst);
    }

    /// The registry cluster's link to Redis: `None` without a cluster, else whether it is up.
    pub fn set_cluster(&self, up: Option<bool>) {
        let value = match up {
            None => 0,
            Some(true) => 1,
            Some(false) => 2,
        };
        self.cluster.store(value, Ordering::SeqCst);
    }

    /// The registry cluster's state for `/readyz`: `None` without a cluster.
    pub fn cluster(&self) -> Option<ClusterState> {
        match self.cluster.load(Ordering::SeqCst) {
            1 => Some(ClusterState::Ok),
            2 => Some(ClusterState::ClusterUnavailable),
            _ => None,
        }
    }

    /// The current readiness.
    pub fn readiness(&self) -> Readiness {
        if self.draining.load(Ordering::SeqCst) {
            Readiness::Draining
        } else if self.listening.load(Ordering::SeqCst) {
            Readiness::Ready
        } else {
            Readiness::Starting
        }
    }
}

/// The registry cluster's link, as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterState {
    /// Linked to Redis: peers of every node are reachable.
    Ok,
    /// Redis is unreachable: only this node's peers are.
    ClusterUnavailable,
}

#[derive(Serialize)]
struct Status {
    status: Readiness,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<ClusterState>,
}

/// `/readyz?require=cluster`: not ready while the cluster link is down.
#[derive(serde::Deserialize, Default)]
pub struct ReadyQuery {
    require: Option<String>,
}

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "alive" }))
}

/// `GET /readyz`: 200 `{"status":"ready"}`, or 503 with `starting` or `draining`. In a
/// registry cluster the answer also says `"cluster": "ok"` or `"cluster_unavailable"` (Redis
/// unreachable): the node stays ready (200), since it still serves its own peers and every
/// node would otherwise turn unready at once when the shared Redis fails; with
/// `?require=cluster` an unavailable cluster answers 503, for balancers that would rather
/// send new clients to a node that reaches the others.
pub async fn readyz(
    State(state): State<HttpState>,
    Query(query): Query<ReadyQuery>,
) -> (StatusCode, Json<impl Serialize>) {
    let status = state.health.readiness();
    let cluster = state.health.cluster();
    let strict = query.require.as_deref() == Some("cluster");
    let code = if status != Readiness::Ready
        || (strict && cluster == Some(ClusterState::ClusterUnavailable))
    {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(Status { status, cluster }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_flags() {
        let h = Health::default();
        assert_eq!(h.readiness(), Readiness::Starting);
        h.set_listening(true);
        assert_eq!(h.readiness(), Readiness::Ready);
        h.set_draining(true);
        assert_eq!(h.readiness(), Readiness::Draining);
        assert_eq!(h.cluster(), None);
        h.set_cluster(Some(false));
        assert_eq!(h.cluster(), Some(ClusterState::ClusterUnavailable));
        h.set_cluster(Some(true));
        assert_eq!(h.cluster(), Some(ClusterState::Ok));
    }
}
