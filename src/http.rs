//! The operator's HTTP endpoints: `/metrics`, `/healthz` and `/readyz`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Readiness, as `/readyz` reports it.
///
/// A replica is ready once it can do its part: the leader when its watch has synced, a standby
/// as soon as it is waiting for the lease. Standbys must be ready too, or a rolling update of the
/// operator (new pod ready before the old one goes) could never finish: the new pod cannot lead
/// until the old one has stopped.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, health: Health) -> io::Result<()> {
    serve_on(TcpListener::bind(addr).await?, metrics, health).await
}

/// As [`serve`], on a bound listener (e.g. port 0 in tests).
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Health,
) -> io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AppState { metrics, health });
    axum::serve(listener, app).await
}

async fn scrape(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.encode(),
    )
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
