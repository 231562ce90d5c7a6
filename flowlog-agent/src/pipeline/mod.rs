//! The one place the stages are wired:
//!
//! ```text
//!  API (Unix socket / signed TCP) ──Call──►┐
//!                                          │  control loop (one task)
//!  window deadlines ──────────────────────►├─ control: state.json, actions
//!  ring readiness (overflow, handshakes) ─►└─ engine: captures per netns,
//!                                               cuts, per-flow-log windows
//!                                                   │ WindowRecords (bounded)
//!                                                   ▼
//!                                          fan-out: a task per sink, status.json
//! ```
//!
//! One task owns the state and the kernel side, so API calls, window cuts
//! and ring reads never interleave. The channel to the fan-out is bounded,
//! and so is each sink's: a slow sink slows window building, never the
//! kernel side, which keeps counting into the active generation.

mod activation;
mod event_loop;

use std::{future::Future, sync::Arc};

use tokio::sync::mpsc;

use self::event_loop::ControlLoop;
use tracing::{error, info, warn};

use crate::{
    api::{self, ApiError, Call, KeyTable, ServeError},
    capture::{CaptureError, CaptureSettings, KernelLoader, pins::PinRoot},
    config::Config,
    control::{Control, Defaults, RegionSource},
    engine::{Engine, FlowLogSpec, WindowRecords},
    enrich::{RegionTable, SharedRegions},
    journal::{Journal, JournalError, marks::Marks},
    model::{Identity, LogstoreRef},
    publish::{
        self, Sink,
        sinks::{
            file::{self, FileSinkError},
            ipfix,
            jetstream::{JetStreamError, JetStreamPublisher},
            logstore::LogstoreSink,
        },
    },
    state::{StateError, Store},
    store::{self},
    telemetry::{AgentInfo, Telemetry},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Publish(#[from] FileSinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Api(#[from] ServeError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The pin directory asked for cannot be used.
    #[error("cannot pin kernel state")]
    Pins(#[source] crate::capture::pins::PinError),
    /// The configured flow log's Logstore could not be set up.
    #[error("default Logstore {0}")]
    Logstore(String),
    /// The metrics listener could not bind.
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The web console could not be served.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// The data directory could not be created or written.
    #[error("data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` resolves, then publishes every partial
/// window and detaches everything.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    // SIGHUP reloads the region table; installed first, because its default
    // action would end the agent.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|e| warn!(error = %e, "cannot handle SIGHUP; reload the region table through the API"))
        .ok();
    let Started {
        mut control,
        publisher,
        resolved,
        status,
    } = start(&config)?;
    let served = match restore_and_serve(&config, &mut control, &status).await {
        Ok(s) => s,
        Err(e) => {
            finish(control, publisher, resolved, &status).await;
            return Err(e);
        }
    };
    status.info().state = "running".into();
    persist(&status);
    info!(window_secs = config.window.as_secs(), socket = %config.api.socket.display(), "capture running");

    let Served {
        servers,
        calls,
        metrics,
        console,
    } = served;
    let mut control_loop = ControlLoop::new(control, calls, resolved, hangup, &config.data_dir).await;
    control_loop.run(shutdown).await;
    let ControlLoop {
        control,
        calls,
        resolved,
        ..
    } = control_loop;
    info!("shutting down: publishing partial windows");
    // Calls still queued or arriving now are answered "shutting down"
    // instead of waiting for a loop that has ended.
    drop(calls);
    servers.shutdown().await;
    if let Some((stop, task)) = metrics {
        let _ = stop.send(true);
        let _ = task.await;
    }
    if let Some(c) = console {
        c.shutdown().await;
    }
    finish(control, publisher, resolved, &status).await;
    Ok(())
}

/// What runs once the agent has started: the control plane with the
/// engine, the fan-out to the sinks, and the figures.
struct Started {
    control: Control,
    publisher: tokio::task::JoinHandle<()>,
    resolved: mpsc::UnboundedReceiver<u64>,
    status: Telemetry,
}

/// Opens the data directory, the journal, the pins and every sink, and
/// wires them to the engine and the control plane. Nothing is attached yet.
fn start(config: &Config) -> Result<Started, RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Maps too large for this machine are refused before anything starts.
    crate::capture::budget::check_here(&CaptureSettings::from(config)).map_err(CaptureError::from)?;
    let store = Store::open(&config.data_dir)?;
    let journal = Journal::open(&config.data_dir)?;
    let marks = Marks::new(journal.dir());
    let status = Telemetry::new(
        &config.data_dir,
        AgentInfo {
            state: "starting".into(),
            pid: std::process::id(),
            window_secs: config.window.as_secs(),
            flow_map_entries: config.flow_map_entries,
            ..Default::default()
        },
    );
    // Pinning that was asked for and cannot be had stops the agent: running
    // unpinned would lose every count at the next restart.
    let pins = config
        .pin_dir
        .as_deref()
        .map(PinRoot::open)
        .transpose()
        .map_err(RunError::Pins)?;
    status.set_pinned(pins.as_ref().map(|p| p.path().display().to_string()));
    let (batch_tx, batch_rx) = mpsc::channel::<WindowRecords>(8);
    let mut sinks: Vec<Box<dyn Sink>> = file::open(&config.output, &marks, &status)?;
    if let Some(ipfix) = &config.ipfix {
        sinks.extend(ipfix::open(ipfix, &marks, &status));
    }
    if let Some(js) = config.jetstream.clone() {
        sinks.push(Box::new(JetStreamPublisher::start(
            js,
            &config.data_dir,
            status.clone(),
        )?));
    }
    sinks.push(Box::new(LogstoreSink::new(
        store::Writer::new(&config.data_dir),
        config.logstore_buffer_records,
        status.clone(),
    )));
    let (resolved_tx, resolved) = mpsc::unbounded_channel::<u64>();
    let publisher = publish::fanout::spawn(sinks, batch_rx, resolved_tx, status.clone());
    // Config::validate accepted these entries, so this cannot fail here.
    let table = RegionTable::new(&config.regions).unwrap_or_default();
    let regions = SharedRegions::new(table);
    let loader = KernelLoader {
        settings: CaptureSettings::from(config),
        pins: pins.clone(),
    };
    let engine = Engine::new(
        Arc::new(loader),
        pins,
        Some(journal),
        batch_tx,
        status.clone(),
        regions.clone(),
    );
    let control = Control::new(
        &config.data_dir,
        store,
        engine,
        KeyTable::default(),
        Defaults {
            account_id: config.account_id.clone(),
            interval_secs: config.window.as_secs(),
            query_timeout: config.query_timeout,
        },
        RegionSource {
            file: config.file.clone(),
            table: regions,
        },
    );
    Ok(Started {
        control,
        publisher,
        resolved,
        status,
    })
}

/// The API, metrics and console listeners of a running agent.
struct Served {
    servers: api::Servers,
    calls: mpsc::Receiver<Call>,
    metrics: Option<(tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    console: Option<crate::console::Console>,
}

/// Brings back the flow logs of the last run and the configured one, then
/// opens the API, the metrics endpoint and the console.
async fn restore_and_serve(
    config: &Config,
    control: &mut Control,
    status: &Telemetry,
) -> Result<Served, RunError> {
    let spec = configured_flow_log(config, control)?;
    control.restore(spec).await?;
    control.expire_logstores();
    let (call_tx, calls) = mpsc::channel::<Call>(64);
    let servers = api::serve(&config.api, call_tx, control.keys(), status.clone()).await?;
    let metrics = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let t = status.clone();
            match crate::telemetry::serve(addr, move || t.encode(), stopped).await {
                Ok(task) => Some((stop, task)),
                Err(source) => {
                    servers.shutdown().await;
                    return Err(RunError::Metrics { addr, source });
                }
            }
        }
    };
    let console = match &config.console {
        None => None,
        Some(listen) => {
            let settings = crate::console::ConsoleSettings {
                listen: listen.clone(),
                data_dir: config.data_dir.clone(),
                agent_socket: config.api.socket.clone(),
                query_timeout: config.query_timeout,
            };
            match crate::console::serve(settings).await {
                Ok(c) => Some(c),
                Err(e) => {
                    servers.shutdown().await;
                    if let Some((stop, task)) = metrics {
                        let _ = stop.send(true);
                        let _ = task.await;
                    }
                    return Err(e.into());
                }
            }
        }
    };
    Ok(Served {
        servers,
        calls,
        metrics,
        console,
    })
}

/// A typed answer as the API's JSON.
pub(crate) fn json_answer<T: serde::Serialize>(
    r: Result<T, crate::control::ControlError>,
) -> Result<serde_json::Value, ApiError> {
    r.map_err(ApiError::from)
        .and_then(|v| serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string())))
}

/// The flow log the configuration itself defines, if any, with its
/// Logstore created when missing.
fn configured_flow_log(config: &Config, control: &mut Control) -> Result<Option<FlowLogSpec>, RunError> {
    if config.attachments.is_empty() {
        return Ok(None);
    }
    let logstore = LogstoreRef {
        project: config.project.clone(),
        logstore: config.logstore.clone(),
    };
    control
        .ensure_logstore(&logstore)
        .map_err(|e| RunError::Logstore(format!("{}/{}: {e}", logstore.project, logstore.logstore)))?;
    let spec = FlowLogSpec {
        id: config.flow_log_id.clone(),
        identity: Identity {
            account_id: config.account_id.clone(),
            cen_id: config.cen_id.clone(),
            flow_log_id: config.flow_log_id.clone(),
        },
        attachments: config.attachments.clone(),
        window: config.window,
        logstore: Some(logstore),
        format: crate::control::parsed_format(config.log_format.as_deref()),
    };
    Ok(Some(spec))
}

/// Publishes the partial windows, lets go of the kernel state, and drains
/// the publisher; windows some sink could not take stay in the journal
/// for the next start.
async fn finish(
    mut control: Control,
    publisher: tokio::task::JoinHandle<()>,
    mut resolved: mpsc::UnboundedReceiver<u64>,
    status: &Telemetry,
) {
    control.engine.shutdown().await;
    control.engine.close_publisher();
    if publisher.await.is_err() {
        error!("the publisher failed");
    }
    let mut seqs = Vec::new();
    while let Ok(s) = resolved.try_recv() {
        seqs.push(s);
    }
    control.engine.resolved(&seqs);
    let left = control.engine.unresolved_windows();
    if left > 0 {
        warn!(
            windows = left,
            "windows not yet in every sink are kept in the journal; the next start writes them"
        );
    }
    if control.engine.pinned() {
        info!("stopped; hooks stay attached and counting in pinned maps");
    } else {
        info!("stopped; all programs detached");
    }
    drop(control);
    status.info().state = "stopped".into();
    persist(status);
}

fn persist(status: &Telemetry) {
    if let Err(e) = status.persist() {
        warn!(error = %e, "cannot write status file");
    }
}
