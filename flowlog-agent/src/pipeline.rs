//! The one place the stages are wired:
//!
//! ```text
//! capture task (one per netns) ──WindowBatch──► window stage ──records──► publisher thread
//!   tick: flip + drain              build records         sinks (stdout, files)
//!   ring readable: overflow         NODATA/SKIPDATA        status.json
//! ```
//!
//! Channels are bounded, so a slow sink slows window building, never the
//! kernel side: the kernel keeps counting into the active generation.

use std::{collections::BTreeMap, future::Future, time::Duration};

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    capture::{CaptureError, Drained, NetnsCapture},
    config::{Attachment, Config},
    publish::{self, PublishError, Sink},
    record::{FlowLogRecord, Identity},
    status::{AttachmentStatus, Status, StatusBoard},
    window::{AttachmentInfo, ClockOffset, Window, clock},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The data directory could not be created or written.
    #[error("data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One namespace's drained window, on its way to record building.
struct WindowBatch {
    window: Window,
    drained: Drained,
    attachments: Vec<AttachmentInfo>,
    clock: ClockOffset,
}

/// Runs the agent until `shutdown` resolves, then publishes the partial
/// window and detaches everything.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let sinks = publish::open_sinks(&config.output)?;
    let captures = start_captures(&config)?;
    let status = StatusBoard::new(&config.data_dir, initial_status(&config, &captures));
    persist(&status);
    info!(
        attachments = config.attachments.len(),
        window_secs = config.window.as_secs(),
        "capture running"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (batch_tx, batch_rx) = mpsc::channel::<WindowBatch>(4);
    let (record_tx, record_rx) = mpsc::channel::<RecordBatch>(4);
    let publisher = spawn_publisher(sinks, record_rx, status.clone());
    let identity = Identity {
        account_id: config.account_id.clone(),
        cen_id: config.cen_id.clone(),
        flow_log_id: config.flow_log_id.clone(),
    };
    let window_stage = tokio::spawn(window_stage(batch_rx, record_tx, identity, status.clone()));
    let mut tasks = Vec::new();
    for cap in captures {
        tasks.push(tokio::spawn(capture_loop(
            cap,
            config.window,
            batch_tx.clone(),
            stop_rx.clone(),
            status.clone(),
        )));
    }
    drop(batch_tx);

    shutdown.await;
    info!("shutting down: publishing the partial window");
    let _ = stop_tx.send(true);
    for t in tasks {
        if let Err(e) = t.await {
            error!(error = %e, "capture task failed");
        }
    }
    if let Err(e) = window_stage.await {
        error!(error = %e, "window stage failed");
    }
    if tokio::task::spawn_blocking(move || publisher.join())
        .await
        .is_err()
    {
        error!("publisher thread failed");
    }
    status.lock().state = "stopped".into();
    persist(&status);
    info!("stopped; all programs detached");
    Ok(())
}

fn persist(status: &StatusBoard) {
    if let Err(e) = status.persist() {
        warn!(error = %e, "cannot write status file");
    }
}

/// Groups attachments by namespace and starts one capture per namespace.
/// Any failure drops (detaches) the captures already started.
fn start_captures(config: &Config) -> Result<Vec<NetnsCapture>, CaptureError> {
    let mut by_ns: BTreeMap<Option<&str>, Vec<&Attachment>> = BTreeMap::new();
    for a in &config.attachments {
        by_ns.entry(a.netns.as_deref()).or_default().push(a);
    }
    let mut out = Vec::new();
    for (ns, atts) in by_ns {
        out.push(NetnsCapture::start(ns, &atts, config)?);
    }
    Ok(out)
}

fn initial_status(config: &Config, captures: &[NetnsCapture]) -> Status {
    Status {
        state: "running".into(),
        pid: std::process::id(),
        window_secs: config.window.as_secs(),
        flow_map_entries: config.flow_map_entries,
        attachments: captures
            .iter()
            .flat_map(|c| c.attached())
            .map(|a| AttachmentStatus {
                interface: a.info.interface.clone(),
                netns: a.info.netns.clone(),
                ifindex: a.info.ifindex,
                driver: a.driver.clone(),
                ingress_hook: a.ingress.to_string(),
                egress_hook: a.egress.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

enum Wake {
    Tick,
    Overflow,
    Handshakes,
    Stop,
}

async fn capture_loop(
    mut cap: NetnsCapture,
    window_len: Duration,
    out: mpsc::Sender<WindowBatch>,
    mut stop: watch::Receiver<bool>,
    status: StatusBoard,
) {
    let attachments = cap.attachment_infos();
    let mut start = clock::unix_now_ns();
    let mut end = clock::next_boundary(start, window_len);
    loop {
        let wait = Duration::from_nanos((end - clock::unix_now_ns()).max(0) as u64);
        let wake = tokio::select! {
            () = tokio::time::sleep(wait) => Wake::Tick,
            r = cap.ring().readable() => match r {
                Ok(mut guard) => { guard.clear_ready(); Wake::Overflow }
                Err(e) => { warn!(error = %e, "overflow ring not pollable"); Wake::Tick }
            },
            r = cap.handshake_ring().readable() => match r {
                Ok(mut guard) => { guard.clear_ready(); Wake::Handshakes }
                Err(e) => { warn!(error = %e, "handshake ring not pollable"); Wake::Tick }
            },
            _ = stop.changed() => Wake::Stop,
        };
        match wake {
            Wake::Overflow => {
                cap.poll_overflow();
                continue;
            }
            Wake::Handshakes => {
                cap.poll_handshakes();
                continue;
            }
            Wake::Tick if clock::unix_now_ns() < end => continue,
            Wake::Tick => {}
            Wake::Stop => end = clock::unix_now_ns(),
        }
        let window = Window {
            start_ns: start,
            end_ns: end,
        };
        match tokio::task::block_in_place(|| cap.drain()) {
            Ok(drained) => {
                {
                    let r = cap.rtt_stats();
                    let mut s = status.lock();
                    s.rtt_measured = r.measured;
                    s.rtt_ambiguous = r.ambiguous;
                    s.rtt_expired = r.expired;
                }
                let batch = WindowBatch {
                    window,
                    drained,
                    attachments: attachments.clone(),
                    clock: ClockOffset::sample(),
                };
                if out.send(batch).await.is_err() {
                    error!("window stage gone; stopping capture");
                    return;
                }
            }
            Err(e) => {
                error!(netns = cap.netns().unwrap_or("-"), error = %e, "drain failed");
                status.lock().drain_errors += 1;
            }
        }
        if matches!(wake, Wake::Stop) {
            return;
        }
        start = end;
        end = clock::next_boundary(end, window_len);
    }
}

/// Records of one window of one namespace.
struct RecordBatch {
    window: Window,
    records: Vec<FlowLogRecord>,
}

async fn window_stage(
    mut input: mpsc::Receiver<WindowBatch>,
    out: mpsc::Sender<RecordBatch>,
    id: Identity,
    status: StatusBoard,
) {
    while let Some(batch) = input.recv().await {
        let WindowBatch {
            window,
            drained,
            attachments,
            clock,
        } = batch;
        {
            let mut s = status.lock();
            s.flows_last_window = drained.window.flows.len() as u64;
            s.overflow_events += drained.overflow_events;
            for c in drained.window.skipped.values() {
                s.skipped.packets += c.packets;
                s.skipped.bytes += c.bytes;
            }
            for m in &drained.malformed {
                let name = attachments
                    .iter()
                    .find(|a| a.ifindex == m.ifindex)
                    .map_or_else(|| m.ifindex.to_string(), |a| a.interface.clone());
                let key = format!("{name}/{}/{}", m.direction.as_str(), m.reason.as_str());
                let t = s.malformed.entry(key).or_default();
                t.packets += m.counters.packets;
                t.bytes += m.counters.bytes;
            }
        }
        let id = id.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut records = Vec::new();
            drained
                .window
                .flush_into(window, &attachments, &id, clock, &mut records);
            records
        })
        .await;
        match built {
            Ok(records) => {
                if out.send(RecordBatch { window, records }).await.is_err() {
                    error!("publisher gone; dropping window");
                    return;
                }
            }
            Err(e) => error!(error = %e, "building records failed"),
        }
    }
}

fn spawn_publisher(
    mut sinks: Vec<Box<dyn Sink>>,
    mut input: mpsc::Receiver<RecordBatch>,
    status: StatusBoard,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while let Some(batch) = input.blocking_recv() {
            let mut errors = 0u64;
            for sink in &mut sinks {
                if let Err(e) = sink.write(&batch.records).and_then(|()| sink.flush()) {
                    error!(sink = sink.name(), error = %e, records = batch.records.len(), "publish failed");
                    errors += 1;
                }
            }
            {
                let mut s = status.lock();
                s.windows_published += 1;
                s.records_published += batch.records.len() as u64;
                s.publish_errors += errors;
                s.last_window_start = Some(batch.window.start_secs());
                s.last_window_end = Some(batch.window.end_secs());
            }
            info!(
                start = batch.window.start_secs(),
                end = batch.window.end_secs(),
                records = batch.records.len(),
                "window published"
            );
            persist(&status);
        }
    })
}
