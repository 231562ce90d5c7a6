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
//!                                          publisher thread: sinks, status.json
//! ```
//!
//! One task owns the state and the kernel side, so API calls, window cuts
//! and ring reads never interleave. The channel to the publisher is bounded:
//! a slow sink slows window building, never the kernel side, which keeps
//! counting into the active generation.

use std::{future::Future, time::Duration};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::{
    api::{self, Call, KeyTable, Reply, ServeError},
    capture::{CaptureError, CaptureSettings, pins::PinRoot},
    config::Config,
    control::{Control, Defaults, RegionSource},
    engine::{Engine, FlowLogSpec, WindowRecords},
    enrich::{RegionTable, SharedRegions},
    publish::{
        self, PublishError, Sink,
        jetstream::{JetStreamError, JetStreamPublisher},
        logstore::LogstoreSink,
    },
    record::Identity,
    state::{StateError, Store},
    status::{Status, StatusBoard},
    store::{self, LogstoreRef},
    window::{clock, progress::Progress},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Api(#[from] ServeError),
    #[error(transparent)]
    JetStream(#[from] JetStreamError),
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

enum Wake {
    Deadline,
    Rings(Option<String>),
    Call(Call),
    Retry,
    Retention,
    /// SIGHUP: reload the region table.
    Reload,
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
    let store = Store::open(&config.data_dir)?;
    let sinks = publish::open_sinks(&config.output)?;
    let status = StatusBoard::new(
        &config.data_dir,
        Status {
            state: "starting".into(),
            pid: std::process::id(),
            window_secs: config.window.as_secs(),
            flow_map_entries: config.flow_map_entries,
            ..Default::default()
        },
    );
    let (batch_tx, batch_rx) = mpsc::channel::<WindowRecords>(8);
    let logstores = LogstoreSink::new(
        store::Writer::new(&config.data_dir),
        config.logstore_buffer_records,
    );
    let jetstream = match config.jetstream.clone() {
        Some(js) => Some(JetStreamPublisher::start(js, &config.data_dir, status.clone())?),
        None => None,
    };
    let publisher = spawn_publisher(sinks, logstores, jetstream, batch_rx, status.clone());
    let pins = config.pin_dir.as_deref().and_then(|dir| {
        PinRoot::open(dir)
            .inspect_err(|e| {
                warn!(error = %crate::capture::chain(e), "cannot pin kernel state; counting will stop while the agent is down");
            })
            .ok()
    });
    let progress = Progress::load(&config.data_dir);
    // Config::validate accepted these entries, so this cannot fail here.
    let table = RegionTable::new(&config.regions).unwrap_or_default();
    let regions = SharedRegions::new(table);
    let engine = Engine::new(
        CaptureSettings::from(&config),
        pins,
        Some(progress),
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
        },
        RegionSource {
            file: config.file.clone(),
            table: regions,
        },
    );
    let result = configured_flow_log(&config, &mut control)
        .and_then(|spec| control.restore(spec).map_err(RunError::from));
    let servers = match result {
        Ok(()) => {
            control.expire_logstores();
            let (call_tx, call_rx) = mpsc::channel::<Call>(64);
            match api::serve(
                config.api_socket.clone(),
                config.api_listen,
                config.api_allow_remote,
                call_tx,
                control.keys(),
            )
            .await
            {
                Ok(s) => Some((s, call_rx)),
                Err(e) => {
                    finish(control, publisher, &status).await;
                    return Err(e.into());
                }
            }
        }
        Err(e) => {
            finish(control, publisher, &status).await;
            return Err(e);
        }
    };
    let Some((servers, mut calls)) = servers else {
        return Ok(());
    };
    let (metrics_stop, metrics_rx) = tokio::sync::watch::channel(false);
    let metrics_task = match config.metrics_listen {
        Some(addr) => match crate::metrics::serve(addr, status.clone(), metrics_rx).await {
            Ok(t) => Some(t),
            Err(source) => {
                servers.shutdown().await;
                finish(control, publisher, &status).await;
                return Err(RunError::Metrics { addr, source });
            }
        },
        None => None,
    };
    status.lock().state = "running".into();
    persist(&status);
    info!(window_secs = config.window.as_secs(), socket = %config.api_socket.display(), "capture running");

    tokio::pin!(shutdown);
    let mut retry = tokio::time::interval(RETRY_EVERY);
    let mut retention = tokio::time::interval(RETENTION_EVERY);
    retention.tick().await;
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
            Some(()) = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => Wake::Reload,
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
            Wake::Call(c) => {
                let reply = if c.action == "GetLogs" {
                    match control.get_logs(c.params) {
                        Ok(q) => Reply::Query(q),
                        Err(e) => Reply::Done(Err(e)),
                    }
                } else {
                    let result = control.handle(&c.action, c.params).await;
                    match (result, control.take_published()) {
                        (Ok(v), Some(published)) => Reply::Published(v, published),
                        (result, _) => Reply::Done(result),
                    }
                };
                let _ = c.reply.send(reply);
            }
            Wake::Retention => control.expire_logstores(),
            Wake::Reload => {
                info!("SIGHUP: reloading the region table");
                // Its outcome is logged and shown in the status.
                let _ = control.reload_regions();
            }
            Wake::Retry => control.retry_unattached().await,
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
    finish(control, publisher, &status).await;
    info!("stopped; all programs detached");
    Ok(())
}

/// Activates the flow log the configuration itself defines, if any, writing
/// to its Logstore (created when missing).
/// The flow log the configuration itself defines, if any, with its
/// Logstore created.
fn configured_flow_log(config: &Config, control: &mut Control) -> Result<Option<FlowLogSpec>, RunError> {
    if config.attachments.is_empty() {
        return Ok(None);
    }
    let logstore = LogstoreRef {
        project: config.project.clone(),
        logstore: config.logstore.clone(),
    };
    control.ensure_logstore(&logstore).map_err(|e| {
        RunError::Logstore(format!(
            "{}/{}: {}",
            logstore.project, logstore.logstore, e.message
        ))
    })?;
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

/// Publishes the partial windows, detaches, and drains the publisher.
async fn finish(mut control: Control, publisher: std::thread::JoinHandle<()>, status: &StatusBoard) {
    control.engine.shutdown().await;
    // Dropping the engine closes the publisher's channel.
    drop(control);
    if tokio::task::spawn_blocking(move || publisher.join())
        .await
        .is_err()
    {
        error!("publisher thread failed");
    }
    status.lock().state = "stopped".into();
    persist(status);
}

fn persist(status: &StatusBoard) {
    if let Err(e) = status.persist() {
        warn!(error = %e, "cannot write status file");
    }
}

fn spawn_publisher(
    mut sinks: Vec<Box<dyn Sink>>,
    mut logstores: LogstoreSink,
    jetstream: Option<JetStreamPublisher>,
    mut input: mpsc::Receiver<WindowRecords>,
    status: StatusBoard,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        loop {
            // With windows kept for retry, wake up every second to retry.
            let batch = if logstores.pending_records() > 0 {
                match input.try_recv() {
                    Ok(b) => b,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_secs(1));
                        let o = logstores.retry();
                        record_logstore(&status, o, logstores.pending_records());
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match input.blocking_recv() {
                    Some(b) => b,
                    None => break,
                }
            };
            let mut batch = batch;
            let mut errors = 0u64;
            for sink in &mut sinks {
                let result = sink.write(&batch.data);
                {
                    let mut m = status.metrics();
                    let name = sink.name().to_owned();
                    match &result {
                        Ok(()) => *m.records_by_sink.entry(name).or_default() += batch.data.len() as u64,
                        Err(_) => {
                            *m.errors_by_sink.entry(name.clone()).or_default() += 1;
                            *m.dropped_by_sink.entry(name).or_default() += batch.data.len() as u64;
                        }
                    }
                }
                if let Err(e) = result {
                    error!(sink = sink.name(), error = %e, records = batch.data.len(), "publish failed; the window's records are not in this sink");
                    errors += 1;
                }
            }
            let o = logstores.publish(&batch);
            record_logstore(&status, o, logstores.pending_records());
            if let Some(js) = &jetstream {
                js.publish(&batch);
            }
            {
                let mut s = status.lock();
                s.windows_published += 1;
                s.records_published += batch.data.len() as u64;
                s.publish_errors += errors;
                s.last_window_start = Some(batch.data.window.start_secs());
                s.last_window_end = Some(batch.data.window.end_secs());
            }
            info!(
                flow_log = %batch.flow_log_id,
                start = batch.data.window.start_secs(),
                end = batch.data.window.end_secs(),
                records = batch.data.len(),
                "window published"
            );
            persist(&status);
            if let Some(tx) = batch.published.take() {
                let _ = tx.send(());
            }
        }
        if let Some(js) = jetstream {
            js.shutdown();
        }
        // Last chance for kept windows before the agent exits.
        let o = logstores.retry();
        record_logstore(&status, o, logstores.pending_records());
        if logstores.pending_records() > 0 {
            error!(
                records = logstores.pending_records(),
                "exiting with records the Logstore could not take"
            );
        }
    })
}

fn record_logstore(status: &StatusBoard, o: crate::publish::logstore::Outcome, pending: usize) {
    {
        let mut m = status.metrics();
        *m.records_by_sink.entry("logstore".into()).or_default() += o.records_written;
        *m.errors_by_sink.entry("logstore".into()).or_default() += o.write_errors;
        *m.dropped_by_sink.entry("logstore".into()).or_default() += o.dropped_records;
    }
    let mut s = status.lock();
    s.logstore_files_written += o.files_written;
    s.logstore_write_errors += o.write_errors;
    s.logstore_dropped_records += o.dropped_records;
    s.logstore_pending_records = pending as u64;
}
