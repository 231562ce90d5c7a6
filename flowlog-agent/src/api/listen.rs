//! Serving connections with bounds, so hostile clients cannot hold the API:
//! headers must arrive within [`HEADER_TIMEOUT`] (slow-loris clients are cut
//! off), heads are capped in size, each connection has a lifetime cap, at
//! most [`MAX_CONNECTIONS`] are served at once per listener and at most
//! [`MAX_PER_PEER`] per TCP client address — more wait in the kernel's
//! backlog, or are closed, instead of costing memory here. On stop, requests
//! in flight get their answers and idle connections close.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, serve::Listener};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    sync::{Semaphore, watch},
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// Time to send a request's headers (each request on a connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (start line and headers).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections served at once per listener.
pub const MAX_CONNECTIONS: usize = 128;
/// Connections one TCP client address may hold, so one client cannot take
/// every slot.
pub const MAX_PER_PEER: usize = 16;
/// A connection is closed after this, however busy: a backstop against
/// clients that keep one open forever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// On stop, how long requests in flight may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The client address connections are counted by (none for Unix sockets,
/// whose clients are root).
pub trait Peer {
    fn ip(&self) -> Option<IpAddr>;
}

impl Peer for std::net::SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        Some(std::net::SocketAddr::ip(self))
    }
}

impl Peer for tokio::net::unix::SocketAddr {
    fn ip(&self) -> Option<IpAddr> {
        None
    }
}

type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place in its peer's count.
struct PeerSlot {
    counts: PeerCounts,
    ip: Option<IpAddr>,
}

impl PeerSlot {
    fn take(counts: &PeerCounts, ip: Option<IpAddr>) -> Option<Self> {
        if let Some(ip) = ip {
            let mut c = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = c.entry(ip).or_default();
            if *n >= MAX_PER_PEER {
                return None;
            }
            *n += 1;
        }
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut c = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = c.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    c.remove(&ip);
                }
            }
        }
    }
}

/// Any connection's byte stream, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The TLS handshake, when the listener has TLS, bounded like a request
/// head: a client that stalls in it is cut off.
async fn secure<S>(io: S, tls: Option<TlsAcceptor>) -> Option<Box<dyn Stream>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(tls) = tls else {
        return Some(Box::new(io));
    };
    match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(io)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            debug!(error = %e, "API TLS handshake failed");
            None
        }
        Err(_) => {
            debug!("API TLS handshake too slow; closed");
            None
        }
    }
}

/// The answer to a connection over its address's limit: an HTTP 503 the
/// client can act on, rather than a reset.
async fn refuse_busy(mut io: Box<dyn Stream>) {
    let body = format!(
        r#"{{"Code":"ServiceUnavailable","Message":"more than {MAX_PER_PEER} connections from this address; retry after 1 s"}}"#
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HEADER_TIMEOUT, async {
        let _ = io.write_all(response.as_bytes()).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// Accepts until `stop` turns true, then lets connections finish (bounded).
pub async fn serve<L>(mut listener: L, app: Router, mut stop: watch::Receiver<bool>, tls: Option<TlsAcceptor>)
where
    L: Listener,
    L::Addr: Peer,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = PeerCounts::default();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = stop.wait_for(|v| *v) => break,
        };
        let Ok(slot) = slot else { break };
        let (io, addr) = tokio::select! {
            c = listener.accept() => c,
            _ = stop.wait_for(|v| *v) => break,
        };
        let tls = tls.clone();
        let Some(peer) = PeerSlot::take(&peers, addr.ip()) else {
            debug!(peer = ?addr.ip(), "API client over its connection limit; answered 503");
            conns.spawn(async move {
                let _held = slot;
                if let Some(io) = secure(io, tls).await {
                    refuse_busy(io).await;
                }
            });
            continue;
        };
        let (http, app) = (http.clone(), app.clone());
        let mut stopping = stop.clone();
        conns.spawn(async move {
            let _held = (slot, peer);
            let Some(io) = secure(io, tls).await else { return };
            let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
            let mut conn = std::pin::pin!(conn);
            let served = async {
                tokio::select! {
                    r = conn.as_mut() => r,
                    // The guard `wait_for` returns is not Send: drop it inside.
                    _ = async { stopping.wait_for(|v| *v).await.is_ok() } => {
                        conn.as_mut().graceful_shutdown();
                        conn.as_mut().await
                    }
                }
            };
            match tokio::time::timeout(CONNECTION_LIFETIME, served).await {
                Ok(Err(e)) => debug!(error = %e, "API connection ended with an error"),
                Err(_) => debug!("API connection closed at its lifetime cap"),
                Ok(Ok(())) => {}
            }
        });
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = conns.len(),
            "API connections still open at shutdown; closing them"
        );
        conns.abort_all();
    }
}
