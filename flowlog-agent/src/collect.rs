//! `flowlog collect`: the central side of JetStream publishing. A durable
//! pull consumer on the agents' stream (several collectors with the same
//! consumer name share the work) writes every message into the Project and
//! Logstore its headers name, under a central data directory, so the same
//! `flowlog query` and `flowlog analyze` commands work on the fleet's data.
//!
//! Each message becomes one Parquet file named after the message id
//! (`<start>-<end>-<flow log>-<hash of the message id>.parquet`), and is acknowledged
//! only once that file is durably in place. A message delivered again — the
//! collector died before its acknowledgement arrived, or another consumer
//! reads the stream — finds its file there and is acknowledged without
//! writing: every record is stored exactly once.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{self, AckKind, consumer};
use futures_util::StreamExt as _;
use prost::Message as _;
use sha2::Digest as _;
use tracing::{debug, info, warn};

use crate::{
    model::{LogstoreRef, Window},
    publish::sinks::jetstream::{HEADER_FLOW_LOG, HEADER_LOGSTORE, HEADER_PROJECT, auth::NatsAuth},
    record::FlowLogBatch,
    store::Writer,
};

/// What `flowlog collect` needs.
#[derive(Clone, Debug)]
pub struct CollectSettings {
    pub servers: Vec<String>,
    pub stream: String,
    pub consumer: String,
    pub data_dir: PathBuf,
    pub auth: NatsAuth,
    /// Messages fetched at once.
    pub batch: usize,
    /// Unacknowledged messages are delivered again after this.
    pub ack_wait: Duration,
    /// Stop once the consumer has nothing left to deliver or to be
    /// acknowledged (a one-off ingest).
    pub exit_when_idle: bool,
    /// Serve the totals as Prometheus metrics here.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Auth(#[from] crate::publish::sinks::jetstream::auth::AuthError),
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn nats<E: std::fmt::Display>(e: E) -> CollectError {
    CollectError::Nats(e.to_string())
}

/// Totals since the collector started.
#[derive(Clone, Copy, Debug, Default)]
pub struct Collected {
    pub messages: u64,
    pub records: u64,
    pub files: u64,
    /// Messages whose file was already stored (redeliveries).
    pub already_stored: u64,
    /// Messages that cannot be stored (not a FlowLogBatch): terminated.
    pub rejected: u64,
    /// Messages the Logstore could not take (handed back for redelivery).
    pub store_failures: u64,
    /// Fetches from the stream that failed.
    pub fetch_errors: u64,
}

impl Collected {
    /// The totals in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut r = prometheus_client::registry::Registry::with_prefix("flowlog_collect");
        for (name, help, v) in [
            (
                "messages",
                "Messages handled (stored, already stored, rejected or failed)",
                self.messages,
            ),
            ("records", "Records written to Logstores", self.records),
            ("files", "Logstore files written (one per message)", self.files),
            (
                "already_stored",
                "Messages whose file already existed (redeliveries)",
                self.already_stored,
            ),
            (
                "rejected",
                "Messages terminated: not a FlowLogBatch, or an invalid Project/Logstore",
                self.rejected,
            ),
            (
                "store_failures",
                "Messages the Logstore could not take, handed back for redelivery",
                self.store_failures,
            ),
            (
                "fetch_errors",
                "Fetches from the stream that failed",
                self.fetch_errors,
            ),
        ] {
            r.register(
                name,
                help,
                prometheus_client::metrics::counter::ConstCounter::new(v),
            );
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

/// Runs until `stop` resolves.
pub async fn run(
    s: CollectSettings,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Collected, CollectError> {
    let shared = Arc::new(Mutex::new(Collected::default()));
    let (metrics_stop, metrics_rx) = tokio::sync::watch::channel(false);
    let metrics = match s.metrics_listen {
        Some(addr) => {
            let sh = shared.clone();
            let encode = move || match sh.lock() {
                Ok(c) => c.encode(),
                Err(p) => p.into_inner().encode(),
            };
            Some(
                crate::telemetry::serve(addr, encode, metrics_rx)
                    .await
                    .map_err(|source| CollectError::Metrics { addr, source })?,
            )
        }
        None => None,
    };
    let result = collect(&s, stop, &shared).await;
    let _ = metrics_stop.send(true);
    if let Some(t) = metrics {
        let _ = t.await;
    }
    result
}

/// The durable pull consumer the collectors named `s.consumer` share.
async fn consumer(s: &CollectSettings) -> Result<consumer::PullConsumer, CollectError> {
    let opts = async_nats::ConnectOptions::new()
        .name("flowlog-collect")
        .retry_on_initial_connect();
    let opts = s.auth.apply(opts).await?;
    let client = opts.connect(s.servers.as_slice()).await.map_err(nats)?;
    let js = jetstream::new(client);
    let stream = js.get_stream(&s.stream).await.map_err(nats)?;
    stream
        .get_or_create_consumer(
            &s.consumer,
            consumer::pull::Config {
                durable_name: Some(s.consumer.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: s.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(nats)
}

async fn collect(
    s: &CollectSettings,
    stop: impl std::future::Future<Output = ()>,
    shared: &Mutex<Collected>,
) -> Result<Collected, CollectError> {
    let mut consumer = consumer(s).await?;
    info!(stream = %s.stream, consumer = %s.consumer, data_dir = %s.data_dir.display(), "collecting");
    let writer = Writer::new(&s.data_dir);
    let mut total = Collected::default();
    tokio::pin!(stop);
    loop {
        let fetch = consumer
            .fetch()
            .max_messages(s.batch)
            .expires(Duration::from_secs(1))
            .messages();
        let mut batch = tokio::select! {
            b = fetch => match b {
                Ok(b) => b,
                Err(e) => {
                    total.fetch_errors += 1;
                    report(shared, total);
                    warn!(error = %e, "fetching from the stream failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let mut got = 0;
        while let Some(m) = batch.next().await {
            got += 1;
            match m {
                Ok(m) => take(&writer, m, &mut total).await,
                Err(e) => {
                    warn!(error = %e, "reading a message failed");
                    break;
                }
            }
        }
        debug!(?total, "collected");
        report(shared, total);
        // An empty fetch is not the end under load (it expires after 1 s);
        // the consumer's own counts are.
        if got == 0 && s.exit_when_idle {
            match consumer.info().await {
                Ok(i) if i.num_pending == 0 && i.num_ack_pending == 0 => break,
                Ok(i) => debug!(
                    pending = i.num_pending,
                    ack_pending = i.num_ack_pending,
                    "not idle yet"
                ),
                Err(e) => warn!(error = %e, "cannot read the consumer's counts; fetching again"),
            }
        }
    }
    info!(
        messages = total.messages,
        records = total.records,
        files = total.files,
        already_stored = total.already_stored,
        rejected = total.rejected,
        "collector stopped"
    );
    Ok(total)
}

/// Stores one message and acknowledges it as its outcome deserves.
async fn take(writer: &Writer, m: jetstream::Message, total: &mut Collected) {
    // Parquet writing and fsync block: off the runtime's workers.
    let (w, parts) = (writer.clone(), Parts::of(&m));
    let outcome = tokio::task::spawn_blocking(move || store_message(&w, parts))
        .await
        .unwrap_or(Stored::Failed);
    let ack = match &outcome {
        Stored::Written { records } => {
            total.records += records;
            total.files += 1;
            AckKind::Ack
        }
        Stored::Already => {
            total.already_stored += 1;
            AckKind::Ack
        }
        // Nothing to retry: a message that is no FlowLogBatch.
        Stored::Rejected => {
            total.rejected += 1;
            AckKind::Term
        }
        // The Logstore cannot take it now (disk full): delivered again
        // later.
        Stored::Failed => {
            total.store_failures += 1;
            AckKind::Nak(Some(Duration::from_secs(5)))
        }
    };
    // Confirmed, so a lost acknowledgement shows (the message then comes
    // back and finds its file).
    if let Err(e) = m.double_ack_with(ack).await {
        debug!(error = %e, "acknowledgement not confirmed; the message may come again");
    }
    total.messages += 1;
}

/// Makes the totals visible to the metrics endpoint.
fn report(shared: &Mutex<Collected>, total: Collected) {
    match shared.lock() {
        Ok(mut c) => *c = total,
        Err(p) => *p.into_inner() = total,
    }
}

enum Stored {
    Written { records: u64 },
    Already,
    Rejected,
    Failed,
}

/// What storing a message needs of it, owned (to go to another thread).
struct Parts {
    subject: String,
    id: Option<String>,
    project: Option<String>,
    logstore: Option<String>,
    flow_log: Option<String>,
    payload: bytes::Bytes,
}

impl Parts {
    fn of(m: &async_nats::jetstream::Message) -> Self {
        let header =
            |name: &str| -> Option<String> { m.headers.as_ref()?.get(name).map(|v| v.as_str().to_owned()) };
        Self {
            subject: m.subject.to_string(),
            id: header("Nats-Msg-Id"),
            project: header(HEADER_PROJECT),
            logstore: header(HEADER_LOGSTORE),
            flow_log: header(HEADER_FLOW_LOG),
            payload: m.payload.clone(),
        }
    }
}

fn store_message(writer: &Writer, m: Parts) -> Stored {
    let Some(id) = m.id.as_deref() else {
        warn!(subject = %m.subject, "message without Nats-Msg-Id; rejected");
        return Stored::Rejected;
    };
    let batch = match FlowLogBatch::decode(m.payload.as_ref()) {
        Ok(b) => b,
        Err(e) => {
            warn!(id, error = %e, "message is not a FlowLogBatch; rejected");
            return Stored::Rejected;
        }
    };
    let Some(first) = batch.records.first() else {
        return Stored::Already;
    };
    let dest = LogstoreRef {
        project: m
            .project
            .unwrap_or_else(|| crate::config::DEFAULT_PROJECT.to_owned()),
        logstore: m
            .logstore
            .unwrap_or_else(|| crate::config::DEFAULT_LOGSTORE.to_owned()),
    };
    if crate::model::validate::project_name(&dest.project).is_err()
        || crate::model::validate::logstore_name(&dest.logstore).is_err()
    {
        warn!(id, project = %dest.project, logstore = %dest.logstore, "message names an invalid Project or Logstore; rejected");
        return Stored::Rejected;
    }
    let flow_log = m.flow_log.as_deref().unwrap_or(first.flow_log_id.as_str());
    let window = Window {
        start_ns: i128::from(first.start) * 1_000_000_000,
        end_ns: i128::from(first.end) * 1_000_000_000,
    };
    // The id hashed: message ids can be long, file names cannot.
    let unique = hex::encode(&sha2::Sha256::digest(id.as_bytes())[..12]);
    match writer.write_once(&dest, flow_log, window, &unique, &batch.records) {
        Ok(Some(path)) => {
            debug!(file = %path.display(), records = batch.records.len(), "stored");
            Stored::Written {
                records: batch.records.len() as u64,
            }
        }
        Ok(None) => {
            debug!(id, "already stored");
            Stored::Already
        }
        Err(e) => {
            warn!(id, error = %crate::capture::chain(&e), "cannot store a message; it will be delivered again");
            Stored::Failed
        }
    }
}
