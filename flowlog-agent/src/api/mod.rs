//! The control API: HTTP + JSON on a root-only Unix socket, and optionally
//! on a TCP address (loopback unless configured otherwise) where requests
//! must be signed (see [`auth`]).
//!
//! Every operation is an *action* in the product's RPC style, reachable as
//! `POST /v1/<Action>` with a JSON object body, or `GET|POST /?Action=<Action>`
//! with parameters in the query string (and/or a JSON body). Responses are
//! JSON objects carrying a `RequestId`; errors add `Code` and `Message`, with
//! the matching HTTP status. Requests are handed to the agent's control
//! loop one at a time, so concurrent operations never interleave.

pub mod actions;
pub mod auth;
pub mod client;
mod error;
pub mod listen;
pub mod params;
pub mod query;
mod request;
pub mod tls;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};
pub use error::{ApiError, BadParam};
use http_body_util::BodyExt as _;
pub use params::Params;
pub use query::QuerySpec;
use query::run_query;
pub use request::parse_request;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::telemetry::{RequestLabels, Telemetry};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time to send a request body once the headers are in.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Access key id → secret, as the control loop last published it.
pub type KeyTable = Arc<RwLock<BTreeMap<String, String>>>;

/// One request for the control loop, its parameters already read.
pub struct Call {
    pub action: actions::Action,
    pub reply: oneshot::Sender<Reply>,
}

/// The control loop's answer: a result, or a query for the API task to run
/// (queries run outside the control loop so they never hold it up).
pub enum Reply {
    Done(Result<Value, ApiError>),
    Query(QuerySpec),
    /// Done, and a window is on its way to the sinks: the answer waits
    /// for it (at most [`PUBLISH_WAIT`]) so the records are readable when
    /// the client gets it.
    Published(Value, oneshot::Receiver<()>),
}

/// How long an answer waits for the window its call published.
pub const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on Unix socket {path}")]
    Unix {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A TCP address beyond loopback without the explicit opt-in.
    #[error(
        "refusing to listen on {addr}: not a loopback address; set api.allow-remote = true to expose the API"
    )]
    Remote { addr: SocketAddr },
    /// Plain HTTP beyond loopback: secrets would cross the network in clear.
    #[error(
        "refusing to serve the API in plain HTTP on {addr}: set api.tls-cert and api.tls-key \
         (--api-tls-cert, --api-tls-key), or api.allow-plain-http = true"
    )]
    Plain { addr: SocketAddr },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

#[derive(Clone)]
struct App {
    calls: mpsc::Sender<Call>,
    keys: KeyTable,
    require_auth: bool,
    /// Nonces of signed requests already served.
    replays: Arc<auth::Replays>,
    telemetry: Telemetry,
}

fn router(app: App) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Listeners bound and serving; dropped (or `shutdown`) to stop.
pub struct Servers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    socket: PathBuf,
}

impl Servers {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Where and how the API listens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listeners {
    pub socket: PathBuf,
    pub tcp: Option<SocketAddr>,
    /// TCP beyond loopback.
    pub allow_remote: bool,
    /// PEM certificate chain and key: the TCP listener speaks TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP beyond loopback (only with this, and never by default).
    pub allow_plain_http: bool,
}

/// Binds the Unix socket (mode 0600) and the optional TCP listener.
pub async fn serve(
    listeners: &Listeners,
    calls: mpsc::Sender<Call>,
    keys: KeyTable,
    telemetry: Telemetry,
) -> Result<Servers, ServeError> {
    let socket = listeners.socket.clone();
    let unix_err = |source| ServeError::Unix {
        path: socket.clone(),
        source,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(unix_err)?;
    }
    // A socket file left by a killed agent would make bind fail.
    if std::fs::symlink_metadata(&socket).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(&socket).map_err(unix_err)?;
    }
    let unix = tokio::net::UnixListener::bind(&socket).map_err(unix_err)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(unix_err)?;
    let tls = match &listeners.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let tcp_listener = match listeners.tcp {
        Some(addr) if !addr.ip().is_loopback() && !listeners.allow_remote => {
            return Err(ServeError::Remote { addr });
        }
        Some(addr) if !addr.ip().is_loopback() && tls.is_none() && !listeners.allow_plain_http => {
            return Err(ServeError::Plain { addr });
        }
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Tcp { addr, source })?,
        ),
        None => None,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let replays = Arc::new(auth::Replays::default());
    let app = |require_auth| App {
        calls: calls.clone(),
        keys: keys.clone(),
        require_auth,
        replays: replays.clone(),
        telemetry: telemetry.clone(),
    };
    tasks.push(tokio::spawn(listen::serve(
        unix,
        router(app(false)),
        stop_rx.clone(),
        None,
    )));
    info!(socket = %socket.display(), "API listening");
    if let Some(listener) = tcp_listener {
        let addr = listener.local_addr().ok();
        let secure = tls.is_some();
        tasks.push(tokio::spawn(listen::serve(
            listener,
            router(app(true)),
            stop_rx.clone(),
            tls,
        )));
        info!(addr = ?addr, tls = secure, "API listening on TCP (signed requests only)");
    }
    Ok(Servers { tasks, stop, socket })
}

/// A random (version 4) UUID in uppercase hex. Request ids are not
/// secrets: if the random source fails, a counter stands in.
fn request_id() -> String {
    static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes = u128::from(n).to_be_bytes();
    }
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    let mut out = uuid::Uuid::encode_buffer();
    id.hyphenated().encode_upper(&mut out).to_owned()
}

async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let id = request_id();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let result = process(&app, &method, &uri, &path_and_query, &headers, body).await;
    let (status, mut out, action) = match result {
        Ok((action, Value::Object(m))) => (StatusCode::OK, m, action),
        Ok((action, other)) => {
            let mut m = Map::new();
            m.insert("Data".into(), other);
            (StatusCode::OK, m, action)
        }
        Err((action, e)) => {
            let mut m = Map::new();
            m.insert("Code".into(), Value::String(e.code.clone()));
            m.insert("Message".into(), Value::String(e.message.clone()));
            if e.status.is_server_error()
                || e.status == StatusCode::UNAUTHORIZED
                || e.status == StatusCode::FORBIDDEN
            {
                warn!(request_id = %id, action = %action, code = %e.code, message = %e.message, "request refused");
            }
            (e.status, m, action)
        }
    };
    out.insert("RequestId".into(), Value::String(id.clone()));
    count(&app.telemetry, &action, out.get("Code"));
    info!(request_id = %id, %action, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "api");
    let body = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Counts an answered request. Labels stay bounded whatever clients send:
/// an action the API does not have is `unknown`, and a code is its class
/// (`InvalidParameter`, not `InvalidParameter.<a client's name>`).
fn count(telemetry: &Telemetry, action: &str, code: Option<&Value>) {
    let action = if actions::Action::NAMES.contains(&action) {
        action
    } else {
        "unknown"
    };
    let code = code
        .and_then(Value::as_str)
        .map_or("Success", |c| c.split('.').next().unwrap_or(c));
    let labels = RequestLabels {
        action: action.to_owned(),
        code: code.to_owned(),
    };
    telemetry.api().requests.get_or_create(&labels).inc();
}

async fn process(
    app: &App,
    method: &Method,
    uri: &Uri,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, Value), (String, ApiError)> {
    let unknown = || "-".to_owned();
    let collect = http_body_util::Limited::new(body, MAX_BODY_BYTES).collect();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Ok(Ok(c)) => c.to_bytes(),
        Err(_) => {
            return Err((
                unknown(),
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    format!(
                        "the request body did not arrive within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                ),
            ));
        }
        Ok(Err(e)) if !e.is::<http_body_util::LengthLimitError>() => {
            return Err((
                unknown(),
                ApiError::invalid("Body", format!("reading the body: {e}")),
            ));
        }
        Ok(Err(_)) => {
            return Err((
                unknown(),
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "InvalidParameter.BodyTooLarge",
                    format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                ),
            ));
        }
    };
    if app.require_auth {
        let keys = app.keys.read().map(|k| k.clone()).unwrap_or_default();
        auth::verify(
            &keys,
            &app.replays,
            headers,
            method.as_str(),
            path_and_query,
            &bytes,
            crate::state::now_secs(),
        )
        .map_err(|e| (unknown(), e))?;
    }
    let (action, params) = parse_request(uri.path(), uri.query(), &bytes).map_err(|e| (unknown(), e))?;
    let typed = actions::Action::parse(&action, params).map_err(|e| (action.clone(), e))?;
    let (reply, rx) = oneshot::channel();
    let call = Call { action: typed, reply };
    if app.calls.send(call).await.is_err() {
        return Err((
            action,
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the agent is shutting down",
            ),
        ));
    }
    match rx.await {
        Ok(Reply::Done(Ok(v))) => Ok((action, v)),
        Ok(Reply::Published(v, published)) => {
            if tokio::time::timeout(PUBLISH_WAIT, published).await.is_err() {
                warn!(%action, "the window is not written yet; answering without waiting longer");
            }
            Ok((action, v))
        }
        Ok(Reply::Done(Err(e))) => Err((action, e)),
        Ok(Reply::Query(q)) => run_query(q)
            .await
            .map(|v| (action.clone(), v))
            .map_err(|e| (action, e)),
        Err(_) => Err((action, ApiError::internal("the control loop dropped the request"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_uuids() {
        let id = super::request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, super::request_id());
    }
}
