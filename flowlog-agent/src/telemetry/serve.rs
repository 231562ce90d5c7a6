//! `GET /metrics` on its own listener (loopback by default), for the agent
//! and for `flowlog collect`.

use std::net::SocketAddr;

use axum::{Router, http::header, routing::get};
use tracing::{info, warn};

/// What the endpoint answers with: the OpenMetrics text format, which
/// Prometheus asks for first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` with what `encode` says at each scrape, until
/// `stop` fires.
pub async fn serve(
    addr: SocketAddr,
    encode: impl Fn() -> String + Clone + Send + Sync + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %addr, "metrics listening");
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let encode = encode.clone();
            async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode()) }
        }),
    );
    Ok(tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
            warn!(error = %e, "metrics listener failed");
        }
    }))
}
