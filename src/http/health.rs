//! Health checks: `/healthz` (the process answers) and `/readyz` (every listener is bound and
//! the server is not draining), for load balancers, Kubernetes probes and monitoring.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::HttpState;

/// The readiness flags the service sets and the health endpoints read.
#[derive(Debug, Default)]
pub struct Health {
    listening: AtomicBool,
    draining: AtomicBool,
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

#[derive(Serialize)]
struct Status {
    status: Readiness,
}

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "alive" }))
}

/// `GET /readyz`: 200 `{"status":"ready"}`, or 503 with `starting` or `draining`.
pub async fn readyz(State(state): State<HttpState>) -> (StatusCode, Json<impl Serialize>) {
    let status = state.health.readiness();
    let code = if status == Readiness::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Status { status }))
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
    }
}
