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

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    api::{self, ApiError, Call, KeyTable, Reply, ServeError, actions::Action},
    capture::{CaptureError, CaptureSettings, KernelLoader, pins::PinRoot},
    config::Config,
    control::{Control, Defaults, RegionSource},
    engine::{Engine, FlowLogSpec, WindowRecords},
    enrich::{RegionTable, SharedRegions},
    journal::{Journal, JournalError, marks::Marks},
    model::clock,
    model::{Identity, LogstoreRef},
    publish::{
        self, Sink,
        sinks::{
            file::{self, FileSinkError},
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
    /// The data directory could not be created or written.
    #[error("data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How often Active flow logs whose interfaces were missing are retried.
const RETRY_EVERY: Duration = Duration::from_secs(10);
/// How often expired Logstore partitions are removed.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often past hours' small Logstore files are merged.
const COMPACT_EVERY: Duration = Duration::from_secs(600);

enum Wake {
    Deadline,
    Rings(Option<String>),
    Call(Call),
    Retry,
    Retention,
    Compact,
    /// SIGHUP: reload the region table.
    Reload,
    /// Windows every sink has.
    Resolved(Vec<u64>),
    /// A namespace finished loading for an activation.
    Loaded(Box<activation::Loaded>),
    Stop,
}

/// Runs the agent until `shutdown` resolves, then publishes every partial
/// window and detaches everything.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    // SIGHUP reloads the region table; installed first, because its default
    // action would end the agent.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|e| warn!(error = %e, "cannot handle SIGHUP; reload the region table through the API"))
        .ok();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Maps too large for this machine are refused before anything starts.
    crate::capture::budget::check_here(&CaptureSettings::from(&config)).map_err(CaptureError::from)?;
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
    let (resolved_tx, mut resolved_rx) = mpsc::unbounded_channel::<u64>();
    let publisher = publish::fanout::spawn(sinks, batch_rx, resolved_tx, status.clone());
    // Config::validate accepted these entries, so this cannot fail here.
    let table = RegionTable::new(&config.regions).unwrap_or_default();
    let regions = SharedRegions::new(table);
    let loader = KernelLoader {
        settings: CaptureSettings::from(&config),
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
    let mut control = Control::new(
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
    let result = match configured_flow_log(&config, &mut control) {
        Ok(spec) => control.restore(spec).await.map_err(RunError::from),
        Err(e) => Err(e),
    };
    let servers = match result {
        Ok(()) => {
            control.expire_logstores();
            let (call_tx, call_rx) = mpsc::channel::<Call>(64);
            let listeners = api::Listeners {
                socket: config.api_socket.clone(),
                tcp: config.api_listen,
                allow_remote: config.api_allow_remote,
                tls: config.api_tls.clone(),
                allow_plain_http: config.api_allow_plain_http,
            };
            match api::serve(&listeners, call_tx, control.keys(), status.clone()).await {
                Ok(s) => Some((s, call_rx)),
                Err(e) => {
                    finish(control, publisher, resolved_rx, &status).await;
                    return Err(e.into());
                }
            }
        }
        Err(e) => {
            finish(control, publisher, resolved_rx, &status).await;
            return Err(e);
        }
    };
    let Some((servers, mut calls)) = servers else {
        return Ok(());
    };
    let (metrics_stop, metrics_rx) = tokio::sync::watch::channel(false);
    let metrics_task = match config.metrics_listen {
        Some(addr) => match {
            let t = status.clone();
            crate::telemetry::serve(addr, move || t.encode(), metrics_rx)
        }
        .await
        {
            Ok(t) => Some(t),
            Err(source) => {
                servers.shutdown().await;
                finish(control, publisher, resolved_rx, &status).await;
                return Err(RunError::Metrics { addr, source });
            }
        },
        None => None,
    };
    status.info().state = "running".into();
    persist(&status);
    info!(window_secs = config.window.as_secs(), socket = %config.api_socket.display(), "capture running");

    tokio::pin!(shutdown);
    let mut retry = tokio::time::interval(RETRY_EVERY);
    let mut retention = tokio::time::interval(RETENTION_EVERY);
    retention.tick().await;
    let mut compaction = tokio::time::interval(COMPACT_EVERY);
    compaction.tick().await;
    let compacting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut activations = activation::Activations::default();
    loop {
        let wait = control
            .engine
            .next_deadline()
            .map_or(Duration::from_secs(3600), |d| {
                Duration::from_nanos((d - clock::unix_now_ns()).max(0) as u64)
            });
        let wake = tokio::select! {
            () = tokio::time::sleep(wait) => Wake::Deadline,
            ns = control.engine.rings_ready() => match ns {
                Some(ns) => Wake::Rings(ns),
                None => Wake::Deadline,
            },
            call = calls.recv() => match call {
                Some(c) => Wake::Call(c),
                None => Wake::Stop,
            },
            _ = retry.tick() => Wake::Retry,
            _ = retention.tick() => Wake::Retention,
            _ = compaction.tick() => Wake::Compact,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::Reload,
            loaded = activations.next() => Wake::Loaded(Box::new(loaded)),
            Some(first) = resolved_rx.recv() => {
                let mut seqs = vec![first];
                while let Ok(s) = resolved_rx.try_recv() {
                    seqs.push(s);
                }
                Wake::Resolved(seqs)
            }
            () = &mut shutdown => Wake::Stop,
        };
        match wake {
            Wake::Deadline => {
                if control
                    .engine
                    .next_deadline()
                    .is_some_and(|d| d <= clock::unix_now_ns())
                {
                    control.engine.tick().await;
                }
            }
            Wake::Rings(ns) => control.engine.poll_rings(&ns),
            Wake::Loaded(done) => activations.loaded(&mut control, *done).await,
            Wake::Call(Call {
                action: Action::ActiveFlowLog(r),
                reply,
            }) => {
                // Namespaces to load are loaded off the loop; the answer
                // waits for them, the loop does not.
                match control.check_activation(&r) {
                    Err(e) => {
                        let _ = reply.send(Reply::Done(Err(e.into())));
                    }
                    Ok(spec) => {
                        if let Some((spec, reply)) = activations.start(&control, spec, Some(reply)) {
                            let result = control.finish_activation(&spec.id).await;
                            if let Some(r) = reply {
                                let _ = r.send(Reply::Done(json_answer(result)));
                            }
                        }
                    }
                }
            }
            Wake::Call(Call {
                action: Action::GetLogs(q),
                reply,
            }) => {
                let _ = reply.send(match control.get_logs(q) {
                    Ok(q) => Reply::Query(q),
                    Err(e) => Reply::Done(Err(e.into())),
                });
            }
            Wake::Call(Call { action, reply }) => {
                let result = control.apply(action).await.map_err(ApiError::from);
                let answer = match (result, control.take_published()) {
                    (Ok(v), Some(published)) => Reply::Published(v, published),
                    (result, _) => Reply::Done(result),
                };
                let _ = reply.send(answer);
            }
            Wake::Retention => control.expire_logstores(),
            Wake::Compact => {
                // One pass at a time, in a process of its own.
                if !compacting.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let (dir, busy) = (config.data_dir.clone(), compacting.clone());
                    tokio::spawn(async move {
                        store::compact::run_in_background(std::path::Path::new("/proc/self/exe"), &dir).await;
                        busy.store(false, std::sync::atomic::Ordering::SeqCst);
                    });
                }
            }
            Wake::Reload => {
                info!("SIGHUP: reloading the region table");
                // Its outcome is logged and shown in the status.
                let _ = control.reload_regions();
            }
            Wake::Retry => {
                for spec in control.unattached_specs() {
                    if let Some((spec, _)) = activations.start(&control, spec, None) {
                        control.retry_unattached(spec).await;
                    }
                }
            }
            Wake::Resolved(seqs) => control.engine.resolved(&seqs),
            Wake::Stop => break,
        }
    }
    info!("shutting down: publishing partial windows");
    // Calls still queued or arriving now are answered "shutting down"
    // instead of waiting for a loop that has ended.
    drop(calls);
    servers.shutdown().await;
    let _ = metrics_stop.send(true);
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    finish(control, publisher, resolved_rx, &status).await;
    Ok(())
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
