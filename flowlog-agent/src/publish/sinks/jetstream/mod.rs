//! Publishing every window to NATS JetStream, at least once and in order.
//!
//! The fan-out hands each window to [`JetStreamPublisher`]'s
//! [`Sink::take`], which writes it to the on-disk [`queue`] and returns; a
//! sender task on the agent's runtime takes the oldest queued window, publishes it as protobuf
//! `FlowLogBatch` messages (at most [`BATCH_RECORDS`] records and
//! [`BATCH_BYTES`] each) to
//! `<subject>.<flow-log-id>`, waits for JetStream's acknowledgement of every
//! message, and only then removes it from the queue. Unreachable servers
//! just leave windows queued; a restart picks them up.
//!
//! Each message carries `Nats-Msg-Id: <flow-log-id>.<window start ns>.<n>`,
//! so a window sent again after a lost acknowledgement is recognised as a
//! duplicate by the stream (within its duplicate window), and headers naming
//! the Project and Logstore the records belong to.

pub mod auth;
mod config;
pub mod queue;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::{
    ConnectOptions,
    jetstream::{self, message::PublishMessage},
};
use bytes::Bytes;
pub use config::{
    DEFAULT_JETSTREAM_QUEUE_BYTES, DEFAULT_JETSTREAM_STREAM, DEFAULT_JETSTREAM_SUBJECT, JetStream,
    JetStreamFile,
};
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use self::queue::{Queue, QueueError, Queued};
use crate::{
    engine::WindowRecords,
    publish::{Sink, Taken},
    record::FlowLogRecord,
    telemetry::{Telemetry, gauge_value},
};

/// Records per message at most, and bytes (NATS's default payload limit is
/// 1 MiB): a collector writes each message as one Logstore file.
pub const BATCH_RECORDS: usize = 5000;
pub const BATCH_BYTES: usize = 768 * 1024;
/// Header names on every message.
pub const HEADER_PROJECT: &str = "Flowlog-Project";
pub const HEADER_LOGSTORE: &str = "Flowlog-Logstore";
pub const HEADER_FLOW_LOG: &str = "Flowlog-Flow-Log-Id";
/// How long a stopping agent keeps sending what is queued.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest one window's publishing may take before it counts as failed
/// (acknowledgements of a dying server are waited for one by one).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait between attempts while the servers do not answer (doubling).
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum JetStreamError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the JetStream sender needs a tokio runtime to run on")]
    NoRuntime,
}

pub struct JetStreamPublisher {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    sender: Option<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Handle,
    status: Telemetry,
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The queue's depth into the status.
fn report_queue(queue: &Mutex<Queue>, status: &Telemetry) {
    let q = lock(queue);
    let js = status.jetstream();
    js.queued_records.set(gauge_value(q.records()));
    js.queued_bytes.set(gauge_value(q.bytes()));
    js.set_aside_files.set(gauge_value(q.set_aside()));
}

impl JetStreamPublisher {
    /// Opens the queue in `<data-dir>/jetstream-queue` and starts sending,
    /// on the runtime this is called from.
    pub fn start(
        settings: JetStream,
        data_dir: &std::path::Path,
        status: Telemetry,
    ) -> Result<Self, JetStreamError> {
        let queue = Queue::open(&data_dir.join("jetstream-queue"), settings.queue_bytes)?;
        if queue.windows() > 0 {
            info!(
                windows = queue.windows(),
                records = queue.records(),
                "JetStream: windows queued by an earlier run will be sent first"
            );
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| JetStreamError::NoRuntime)?;
        let queue = Arc::new(Mutex::new(queue));
        let wake = Arc::new(Notify::new());
        let (stop, stopping) = watch::channel(false);
        let sender = Sender {
            settings,
            queue: queue.clone(),
            wake: wake.clone(),
            stop: stopping,
            status: status.clone(),
        };
        let handle = runtime.spawn(sender.send_loop());
        let p = Self {
            queue,
            wake,
            stop,
            sender: Some(handle),
            runtime,
            status,
        };
        p.report();
        Ok(p)
    }

    fn report(&self) {
        report_queue(&self.queue, &self.status);
    }
}

impl Sink for JetStreamPublisher {
    fn name(&self) -> &str {
        "jetstream"
    }

    /// Queues a window for sending; never waits for the servers. Once on
    /// disk the journal may let it go: the queue survives a restart.
    fn take(&mut self, batch: &WindowRecords) -> Taken {
        let pushed = lock(&self.queue).push(batch);
        let failed = match pushed {
            Ok(p) => {
                self.status.jetstream().dropped_records.inc_by(p.dropped_records);
                false
            }
            Err(e) => {
                error!(error = %crate::capture::chain(&e), records = batch.data.len(), "cannot queue a window for JetStream; its records are dropped");
                self.status
                    .jetstream()
                    .dropped_records
                    .inc_by(batch.data.len() as u64);
                true
            }
        };
        self.report();
        self.wake.notify_one();
        Taken {
            resolved: batch.seq.into_iter().collect(),
            failed,
        }
    }

    /// Stops the sender after it has sent what it can within a few seconds;
    /// the rest stays queued for the next start.
    fn close(&mut self) -> Taken {
        let _ = self.stop.send(true);
        if let Some(t) = self.sender.take()
            && self.runtime.block_on(t).is_err()
        {
            error!("JetStream sender failed");
        }
        self.report();
        let left = lock(&self.queue).records();
        if left > 0 {
            warn!(
                records = left,
                "JetStream: records still queued; they are sent at the next start"
            );
        }
        Taken::default()
    }
}

struct Sender {
    settings: JetStream,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    status: Telemetry,
}

impl Sender {
    async fn send_loop(mut self) {
        let mut js: Option<jetstream::Context> = None;
        let mut retry = RETRY_MIN;
        let mut deadline: Option<Instant> = None;
        loop {
            if *self.stop.borrow() {
                let d = *deadline.get_or_insert_with(|| Instant::now() + STOP_GRACE);
                if Instant::now() >= d || lock(&self.queue).windows() == 0 {
                    return;
                }
            }
            let next = lock(&self.queue).oldest();
            let window = match next {
                None => {
                    // Nothing queued: wait for a window or the stop.
                    tokio::select! {
                        () = self.wake.notified() => {}
                        changed = self.stop.changed() => {
                            // The publisher is gone without a stop: nothing
                            // more will come, and what is queued stays.
                            if changed.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                Some(Err((records, _))) => {
                    self.status.jetstream().dropped_records.inc_by(records);
                    continue;
                }
                Some(Ok(w)) => w,
            };
            let attempt = async {
                let ctx = match js.take() {
                    Some(ctx) => ctx,
                    None => self.connect().await?,
                };
                let r = self.send(&ctx, &window).await;
                js = Some(ctx);
                r
            };
            let sent = match tokio::time::timeout(SEND_TIMEOUT, attempt).await {
                Ok(r) => r,
                Err(_) => Err(format!("no acknowledgement within {} s", SEND_TIMEOUT.as_secs()).into()),
            };
            match sent {
                Ok(()) => {
                    let n = lock(&self.queue).remove(window.seq);
                    debug!(
                        window = window.seq,
                        records = n,
                        "JetStream acknowledged a window"
                    );
                    {
                        let js = self.status.jetstream();
                        js.published_records.inc_by(n);
                        js.connected.set(1);
                    }
                    retry = RETRY_MIN;
                }
                Err(e) => {
                    {
                        let js = self.status.jetstream();
                        js.errors.inc();
                        js.connected.set(0);
                    }
                    warn!(error = %e, window = window.seq, retry_in_ms = retry.as_millis() as u64, "JetStream publish failed; the window stays queued");
                    // A fresh connection next time: the old one may be gone
                    // for good (a server removed from the cluster).
                    js = None;
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            report_queue(&self.queue, &self.status);
            // status.json shows the queue as it is now, not as of the last
            // window boundary.
            if let Err(e) = self.status.persist() {
                debug!(error = %e, "cannot write status file");
            }
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, async_nats::Error> {
        let s = &self.settings;
        let opts = ConnectOptions::new()
            .name("flowlog-agent")
            .connection_timeout(Duration::from_secs(5))
            // The sender reconnects on its own terms (and reports it).
            .max_reconnects(Some(1));
        let opts = s.auth.apply(opts).await?;
        let client = opts.connect(s.servers.as_slice()).await?;
        let js = jetstream::new(client);
        if js.get_stream(&s.stream).await.is_err() {
            js.get_or_create_stream(jetstream::stream::Config {
                name: s.stream.clone(),
                subjects: vec![format!("{}.>", s.subject)],
                num_replicas: s.replicas as usize,
                duplicate_window: s.duplicate_window,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await?;
            info!(stream = %s.stream, subjects = %format!("{}.>", s.subject), replicas = s.replicas, "JetStream: created the stream");
        }
        info!(servers = ?s.servers, stream = %s.stream, "JetStream: connected");
        Ok(js)
    }

    /// Publishes every message of a window, then waits for all the
    /// acknowledgements (many in flight at once).
    async fn send(&self, js: &jetstream::Context, w: &Queued) -> Result<(), async_nats::Error> {
        let subject = format!("{}.{}", self.settings.subject, subject_token(&w.meta.flow_log_id));
        let mut acks = Vec::new();
        for (n, payload) in batches(&w.records).into_iter().enumerate() {
            let mut msg = PublishMessage::build()
                .payload(payload)
                .message_id(format!("{}.{}.{n}", w.meta.flow_log_id, w.meta.start_ns))
                .header(HEADER_FLOW_LOG, w.meta.flow_log_id.as_str());
            if let (Some(p), Some(l)) = (&w.meta.project, &w.meta.logstore) {
                msg = msg
                    .header(HEADER_PROJECT, p.as_str())
                    .header(HEADER_LOGSTORE, l.as_str());
            }
            acks.push(js.send_publish(subject.clone(), msg).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }
}

/// The window's records as encoded `FlowLogBatch` messages, field by field
/// (no copy of the records into batch values), in order; the same records
/// always give the same messages, so message ids stay stable on resend.
fn batches(records: &[FlowLogRecord]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0;
    for r in records {
        let len = prost::encoding::message::encoded_len(1, r);
        if n > 0 && (n == BATCH_RECORDS || buf.len() + len > BATCH_BYTES) {
            out.push(Bytes::from(std::mem::take(&mut buf)));
            n = 0;
        }
        prost::encoding::message::encode(1, r, &mut buf);
        n += 1;
    }
    if n > 0 {
        out.push(buf.into());
    }
    out
}

/// A flow log id as one subject token ('.', '*', '>' and spaces would
/// change the subject's meaning).
fn subject_token(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}
