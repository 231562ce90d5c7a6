//! The web console: the traffic of a data directory's Logstores as charts
//! and tables in a browser, and the flow-log lifecycle by clicking.
//!
//! It holds no data of its own. Each chart is one [`panels::Panel`], one
//! SQL query over `logs` run exactly as GetLogs runs queries (in a child
//! process, under the same limits), straight from the data directory, so
//! the traffic pages work whether or not an agent is running (a
//! collector's directory has none). Changes go to the agent's API
//! ([`agent`]). Served by `flowlog console`, or by the agent itself with
//! `--console-listen`.
//!
//! Routes: `/` and the embedded files ([`assets`]); `GET
//! /console/api/session`, `POST …/sign-in`, `POST …/sign-out`; `GET
//! …/logstores`; `GET …/panel/<panel>?Project=…&Logstore=…&From=…&To=…`;
//! `POST …/query` (GetLogs' parameters); `GET …/agent` (whether the agent
//! answers); `POST …/action/<Action>`.

pub mod agent;
pub mod assets;
pub mod panels;
pub mod session;

use std::{
    net::SocketAddr,
    path::{Path as FsPath, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::info;

use self::{panels::PanelParams, session::Sessions};
use crate::api::{
    ApiError, MAX_BODY_BYTES, Params, QuerySpec,
    actions::{FromParams as _, GetLogs},
    tls,
};

/// Where the console listens unless told.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// `[console]`: the web console the agent serves beside its API.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConsoleOptions {
    /// Serve the web console on this address (loopback unless
    /// --console-allow-remote).
    #[serde(default)]
    #[arg(id = "console-listen", long = "console-listen")]
    pub listen: Option<SocketAddr>,
    /// Allow --console-listen beyond loopback: people then sign in with an
    /// access key.
    #[serde(default)]
    #[arg(id = "console-allow-remote", long = "console-allow-remote")]
    pub allow_remote: bool,
    /// PEM certificate chain of the console (with --console-tls-key: HTTPS).
    #[serde(default)]
    #[arg(id = "console-tls-cert", long = "console-tls-cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the console.
    #[serde(default)]
    #[arg(id = "console-tls-key", long = "console-tls-key")]
    pub tls_key: Option<PathBuf>,
    /// Serve the console in plain HTTP beyond loopback (access keys and
    /// sessions cross the network in clear).
    #[serde(default)]
    #[arg(id = "console-allow-plain-http", long = "console-allow-plain-http")]
    pub allow_plain_http: bool,
}

/// A checked console listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleListen {
    pub addr: SocketAddr,
    pub remote: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl ConsoleOptions {
    /// The listener, if any; the message says what is wrong otherwise.
    pub fn validate(self) -> Result<Option<ConsoleListen>, String> {
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("console.tls-cert and console.tls-key go together".into()),
        };
        let Some(addr) = self.listen else {
            return Ok(None);
        };
        let remote = !addr.ip().is_loopback();
        if remote && !self.allow_remote {
            return Err(format!(
                "console.listen {addr} is not a loopback address; set console.allow-remote (--console-allow-remote) to expose the console"
            ));
        }
        if remote && tls.is_none() && !self.allow_plain_http {
            return Err(format!(
                "console.listen {addr} beyond loopback needs HTTPS: set console.tls-cert and console.tls-key, or console.allow-plain-http"
            ));
        }
        Ok(Some(ConsoleListen { addr, remote, tls }))
    }
}

/// What a console serves.
#[derive(Clone, Debug)]
pub struct ConsoleSettings {
    pub listen: ConsoleListen,
    /// The Logstores are under `<data_dir>/logstores`; access keys in its
    /// `state.json`.
    pub data_dir: PathBuf,
    /// The agent's API socket, for the flow-log page.
    pub agent_socket: PathBuf,
    /// Time one chart's query may take.
    pub query_timeout: Duration,
}

#[derive(Clone)]
struct App {
    settings: Arc<ConsoleSettings>,
    sessions: Arc<Sessions>,
    agent: agent::Agent,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Random(#[from] crate::state::random::RandomError),
}

/// A running console; dropped (or `shutdown`) to stop.
pub struct Console {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Console {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Binds the console's listener and serves it.
pub async fn serve(settings: ConsoleSettings) -> Result<Console, ConsoleError> {
    let tls = match &settings.listen.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let addr = settings.listen.addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ConsoleError::Listen { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ConsoleError::Listen { addr, source })?;
    let sessions = Sessions::new(
        addr,
        settings.listen.remote,
        tls.is_some(),
        settings.data_dir.clone(),
    )?;
    let app = App {
        agent: agent::Agent {
            socket: settings.agent_socket.clone(),
        },
        settings: Arc::new(settings),
        sessions: Arc::new(sessions),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let secure = tls.is_some();
    let task = tokio::spawn(crate::api::listen::serve(listener, router(app), stop_rx, tls));
    let scheme = if secure { "https" } else { "http" };
    info!(url = %format!("{scheme}://{addr}/"), "console listening");
    Ok(Console { addr, stop, task })
}

fn router(app: App) -> Router {
    Router::new()
        .route("/console/api/session", get(session_info))
        .route("/console/api/sign-in", post(sign_in))
        .route("/console/api/sign-out", post(sign_out))
        .route("/console/api/logstores", get(logstores))
        .route("/console/api/panel/{panel}", get(panel))
        .route("/console/api/query", post(query))
        .route("/console/api/agent", get(agent_probe))
        .route("/console/api/action/{action}", post(action))
        .fallback(asset)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(harden))
        .with_state(app)
}

async fn harden(mut r: Response) -> Response {
    assets::harden(r.headers_mut());
    r
}

/// An error as the API words it: `{"Code", "Message"}` with its status.
fn error(e: &ApiError) -> Response {
    (e.status, Json(json!({"Code": e.code, "Message": e.message}))).into_response()
}

fn answer(result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(&e),
    }
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    if uri.path().starts_with("/console/api/") {
        return error(&ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no console call {}", uri.path()),
        ));
    }
    match assets::find(uri.path()) {
        Some(a) => assets::serve(a, &headers),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SessionInfo {
    signed_in: bool,
    remote: bool,
    key_id: Option<String>,
    /// Only for a signed-in page (it came from this origin: another site
    /// cannot read it).
    csrf: Option<String>,
    data_dir: String,
    agent_socket: String,
    /// Rows one chart returns at most; GetLogs' `Line` cap for the query page.
    max_line: u64,
    query_timeout_secs: u64,
}

async fn session_info(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = app.sessions.same_site(&headers) {
        return error(&e);
    }
    let caller = app.sessions.caller(&headers);
    let s = &app.settings;
    Json(SessionInfo {
        signed_in: caller.is_some(),
        remote: app.sessions.remote(),
        key_id: caller.as_ref().and_then(|c| c.key_id.clone()),
        csrf: caller.map(|c| c.csrf),
        data_dir: s.data_dir.display().to_string(),
        agent_socket: s.agent_socket.display().to_string(),
        max_line: crate::api::query::MAX_LINE,
        query_timeout_secs: s.query_timeout.as_secs(),
    })
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SignIn {
    access_key_id: String,
    access_key_secret: String,
}

async fn sign_in(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = app.sessions.same_site(&headers) {
        return error(&e);
    }
    let req: SignIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(&ApiError::invalid(
                "Body",
                format!("expected {{\"AccessKeyId\", \"AccessKeySecret\"}}: {e}"),
            ));
        }
    };
    match app
        .sessions
        .sign_in(&req.access_key_id, &req.access_key_secret)
        .await
    {
        Ok((cookie, csrf)) => {
            info!(key_id = %req.access_key_id, "console sign-in");
            let mut r = Json(json!({"SignedIn": true, "Csrf": csrf})).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => {
            tracing::warn!(key_id = %req.access_key_id, code = %e.code, "console sign-in refused");
            error(&e)
        }
    }
}

async fn sign_out(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = app
        .sessions
        .same_site(&headers)
        .and_then(|()| app.sessions.require_csrf(&headers))
    {
        return error(&e);
    }
    let cookie = app.sessions.sign_out(&headers);
    let mut r = Json(json!({"SignedIn": false})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Reading: same site and signed in.
fn may_read(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    app.sessions.same_site(headers)?;
    app.sessions.require(headers).map(drop)
}

/// Changing (or a POST at all): also the CSRF token.
fn may_change(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    app.sessions.same_site(headers)?;
    app.sessions.require_csrf(headers).map(drop)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct LogstoreEntry {
    project: String,
    logstore: String,
}

/// The Logstores on disk: what the data directory holds, agent or not.
fn list_logstores(data_dir: &FsPath) -> Vec<LogstoreEntry> {
    let mut out = Vec::new();
    let root = data_dir.join(crate::store::LOGSTORES_DIR);
    let dirs = |p: &FsPath| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    };
    for project in dirs(&root) {
        if crate::model::validate::project_name(&project).is_err() {
            continue;
        }
        for logstore in dirs(&root.join(&project)) {
            if crate::model::validate::logstore_name(&logstore).is_ok() {
                out.push(LogstoreEntry {
                    project: project.clone(),
                    logstore,
                });
            }
        }
    }
    out
}

async fn logstores(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = may_read(&app, &headers) {
        return error(&e);
    }
    let dir = app.settings.data_dir.clone();
    match tokio::task::spawn_blocking(move || list_logstores(&dir)).await {
        Ok(list) => Json(json!({ "Logstores": list })).into_response(),
        Err(e) => error(&ApiError::internal(e.to_string())),
    }
}

/// Runs a query as GetLogs does, over a Logstore of the data directory,
/// and adds the SQL to the answer (the page shows what each chart ran).
async fn run(app: &App, spec: QuerySpec) -> Result<Value, ApiError> {
    if !spec.dir.is_dir() {
        return Err(ApiError::not_found(
            "LogStore",
            format!(
                "logstore {}/{} does not exist in {}",
                spec.project,
                spec.logstore,
                app.settings.data_dir.display()
            ),
        ));
    }
    let sql = spec.sql.clone();
    let mut v = crate::api::query::run_query(spec).await?;
    if let Value::Object(m) = &mut v {
        m.insert("Sql".into(), Value::String(sql));
    }
    Ok(v)
}

async fn panel(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Result<Query<PanelParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        may_read(&app, &headers)?;
        let panel = panels::Panel::parse(&name).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no panel {name:?}; there are {}", panels::Panel::NAMES.join(", ")),
            )
        })?;
        let Query(p) = params.map_err(|e| ApiError::invalid("Query", e.body_text()))?;
        let store = p.logstore()?;
        let spec = |sql: String, rollups: bool| QuerySpec {
            dir: crate::store::logstore_dir(&app.settings.data_dir, &store),
            range: crate::store::query::TimeRange::default(),
            sql,
            project: store.project.clone(),
            logstore: store.logstore.clone(),
            line: crate::store::query::MAX_ROWS,
            timeout: app.settings.query_timeout,
            rollups,
            sketch: None,
        };
        let range = p.range()?;
        // The sketches or rollups when every file in range has them and
        // they can answer; the records else.
        let fallback = |r: Result<Value, ApiError>| match r {
            Err(e) if e.code == crate::api::query::NO_ROLLUP => None,
            other => Some(other),
        };
        if p.source.unwrap_or_default() == panels::Source::Rollups {
            if let Some(q) = p.sketch_query(panel)? {
                let exact = q.is_exact();
                // The SQL shown is the records' query the sketch answers
                // for (exactly, or within its error).
                let spec = QuerySpec {
                    range,
                    sketch: Some(q),
                    ..spec(p.sql(panel)?, false)
                };
                if let Some(r) = fallback(run(&app, spec).await) {
                    return r.map(|v| with_source(with_exact(v, exact), "sketches"));
                }
            }
            if let Some(sql) = p.rollup_sql(panel)? {
                let spec = QuerySpec {
                    range,
                    ..spec(sql, true)
                };
                if let Some(r) = fallback(run(&app, spec).await) {
                    return r.map(|v| with_source(v, "rollups"));
                }
            }
        }
        let sql = p.sql(panel)?;
        if panel == panels::Panel::Flows
            && let Some((edge, size)) = p.newest_first()?
        {
            return newest_first(&app, spec(sql, false), range, edge, size).await;
        }
        run(
            &app,
            QuerySpec {
                range,
                ..spec(sql, false)
            },
        )
        .await
        .map(|v| with_source(v, "records"))
    }
    .await;
    answer(result)
}

/// A page of flows by window start: its rows lie in the windows nearest
/// the end it is sorted from, so it reads the newest (or oldest) hour
/// first and widens fourfold until the page is full or the range read —
/// opening a few files, not a day of them. Correct because a slice that
/// fills the page (LIMIT and OFFSET included) holds every row that sorts
/// before the page's last.
async fn newest_first(
    app: &App,
    spec: QuerySpec,
    range: crate::store::query::TimeRange,
    edge: panels::Edge,
    page_size: u32,
) -> Result<Value, ApiError> {
    let (from, to) = (range.from.unwrap_or(i64::MIN), range.to.unwrap_or(i64::MAX));
    let mut span = 3600i64;
    loop {
        let slice = match edge {
            panels::Edge::Newest => (to.saturating_sub(span).max(from), to),
            panels::Edge::Oldest => (from, from.saturating_add(span).min(to)),
        };
        let whole = slice == (from, to);
        let v = run(
            app,
            QuerySpec {
                range: crate::store::query::TimeRange {
                    from: Some(slice.0),
                    to: Some(slice.1),
                },
                ..spec.clone()
            },
        )
        .await?;
        let full = v["Count"].as_u64().unwrap_or(0) >= u64::from(page_size);
        if whole || full {
            return Ok(with_source(v, "records"));
        }
        span = span.saturating_mul(4);
    }
}

/// Says whether a sketch answer is exact (top talkers, slowest) or within
/// the sketches' error.
fn with_exact(mut v: Value, exact: bool) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("Exact".into(), Value::Bool(exact));
    }
    v
}

/// Says in an answer which table it came from.
fn with_source(mut v: Value, source: &str) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("Source".into(), Value::String(source.into()));
    }
    v
}

/// A JSON object body (the API's parameters).
fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("Body", "the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid("Body", format!("the body is not JSON: {e}"))),
    }
}

async fn query(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        may_change(&app, &headers)?;
        let mut p = Params::new(object(&body)?);
        let req = GetLogs::from_params(&mut p)?;
        p.finish()?;
        crate::model::validate::project_name(&req.project_name)
            .map_err(|m| ApiError::invalid("ProjectName", m))?;
        crate::model::validate::logstore_name(&req.log_store_name)
            .map_err(|m| ApiError::invalid("LogStoreName", m))?;
        let spec = QuerySpec::for_logs(req, &app.settings.data_dir, app.settings.query_timeout)?;
        run(&app, spec).await
    }
    .await;
    answer(result)
}

/// `{"Up": true}`, or `{"Up": false, "Message": why}`.
async fn agent_probe(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(e) = may_read(&app, &headers) {
        return error(&e);
    }
    match app.agent.probe().await {
        Ok(()) => Json(json!({"Up": true})).into_response(),
        Err(m) => Json(json!({"Up": false, "Message": m})).into_response(),
    }
}

async fn action(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        may_change(&app, &headers)?;
        app.agent.call(&name, object(&body)?).await
    }
    .await;
    answer(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_beyond_loopback_need_opt_in_and_https() {
        let o = |listen: &str, remote: bool, plain: bool, tls: bool| ConsoleOptions {
            listen: Some(listen.parse().unwrap()),
            allow_remote: remote,
            allow_plain_http: plain,
            tls_cert: tls.then(|| "c.pem".into()),
            tls_key: tls.then(|| "k.pem".into()),
        };
        assert!(
            !o("127.0.0.1:8090", false, false, false)
                .validate()
                .unwrap()
                .unwrap()
                .remote
        );
        assert!(
            o("0.0.0.0:8090", false, false, false)
                .validate()
                .unwrap_err()
                .contains("allow-remote")
        );
        assert!(
            o("0.0.0.0:8090", true, false, false)
                .validate()
                .unwrap_err()
                .contains("HTTPS")
        );
        assert!(
            o("0.0.0.0:8090", true, true, false)
                .validate()
                .unwrap()
                .unwrap()
                .remote
        );
        assert!(o("0.0.0.0:8090", true, false, true).validate().unwrap().is_some());
        assert_eq!(ConsoleOptions::default().validate(), Ok(None));
    }
}
