//! Serving connections with bounds, so hostile clients cannot hold the API:
//! headers must arrive within [`HEADER_TIMEOUT`] (slow-loris clients are cut
//! off), headers are capped in size, each connection has a lifetime cap,
//! and at most [`MAX_CONNECTIONS`] are served at once per listener — more
//! wait in the kernel's backlog instead of costing memory here.

use std::{sync::Arc, time::Duration};

use axum::{Router, serve::Listener};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::sync::{Semaphore, watch};
use tracing::debug;

/// Time to send a request's headers (each request on a connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (start line and headers).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections served at once per listener.
pub const MAX_CONNECTIONS: usize = 128;
/// A connection is closed after this, however busy: a backstop against
/// clients that keep one open forever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Accepts until `stop` turns true; connections in flight finish on their own.
pub async fn serve<L: Listener>(mut listener: L, app: Router, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = stop.wait_for(|v| *v) => return,
        };
        let Ok(slot) = slot else { return };
        let io = tokio::select! {
            (io, _) = listener.accept() => io,
            _ = stop.wait_for(|v| *v) => return,
        };
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                Ok(Err(e)) => debug!(error = %e, "API connection ended with an error"),
                Err(_) => debug!("API connection closed at its lifetime cap"),
                Ok(Ok(())) => {}
            }
        });
    }
}
