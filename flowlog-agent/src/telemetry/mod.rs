//! The agent's figures, kept once, as `prometheus-client` metrics with
//! typed label families per component: capture and its journal, the sinks
//! (and the Logstore and JetStream among them), the control API. The
//! metrics endpoint encodes them; status.json and the status view are a
//! snapshot of the same values ([`Telemetry::snapshot`]), beside the
//! agent's facts ([`AgentInfo`]: state, attachments, last window).

mod api;
mod capture;
mod serve;
mod sinks;
mod status;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};

pub use api::{Api, RequestLabels};
pub use capture::{Capture, InterfaceLabels, Journal, JournalTotals, MalformedLabels, MapLabels};
pub use serve::{CONTENT_TYPE, serve};
pub use sinks::{Ipfix, IpfixCollector, JetStream, Logstore, SinkLabels, Sinks};
pub use status::{AgentInfo, AttachmentStatus, Figures, STATUS_FILE, Status, Totals};

/// Every metric name starts with this.
const PREFIX: &str = "flowlog";

/// Brings a counter up to a running total kept elsewhere (the journal's,
/// a namespace's handshake tracker): counters only go up, so a total that
/// went down (never expected) leaves it where it is.
pub fn advance(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// A figure as a gauge holds it.
pub fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

struct Inner {
    registry: Registry,
    capture: Capture,
    journal: Journal,
    sinks: Sinks,
    logstore: Logstore,
    jetstream: JetStream,
    ipfix: Ipfix,
    api: Api,
    info: Mutex<AgentInfo>,
    /// One status.json writer at a time (they share the temporary file).
    persisting: Mutex<()>,
    path: PathBuf,
}

/// Shared handle; every stage updates its component's figures.
#[derive(Clone)]
pub struct Telemetry(Arc<Inner>);

impl Telemetry {
    pub fn new(data_dir: &Path, info: AgentInfo) -> Self {
        let (capture, journal, sinks) = (Capture::default(), Journal::default(), Sinks::default());
        let (logstore, jetstream, api) = (Logstore::default(), JetStream::default(), Api::default());
        let mut registry = Registry::with_prefix(PREFIX);
        capture.register(&mut registry);
        journal.register(&mut registry);
        sinks.register(&mut registry);
        logstore.register(&mut registry);
        jetstream.register(&mut registry);
        let ipfix = Ipfix::default();
        ipfix.register(&mut registry);
        api.register(&mut registry);
        capture.pinned.set(i64::from(info.pinned));
        Self(Arc::new(Inner {
            registry,
            capture,
            journal,
            sinks,
            logstore,
            jetstream,
            ipfix,
            api,
            info: Mutex::new(info),
            persisting: Mutex::default(),
            path: data_dir.join(STATUS_FILE),
        }))
    }

    pub fn capture(&self) -> &Capture {
        &self.0.capture
    }

    pub fn journal(&self) -> &Journal {
        &self.0.journal
    }

    pub fn sinks(&self) -> &Sinks {
        &self.0.sinks
    }

    pub fn logstore(&self) -> &Logstore {
        &self.0.logstore
    }

    pub fn jetstream(&self) -> &JetStream {
        &self.0.jetstream
    }

    pub fn ipfix(&self) -> &Ipfix {
        &self.0.ipfix
    }

    pub fn api(&self) -> &Api {
        &self.0.api
    }

    /// The agent's facts, to read or change.
    pub fn info(&self) -> MutexGuard<'_, AgentInfo> {
        // A panic elsewhere must not take the status down with it.
        self.0.info.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Says whether kernel state is pinned, and where.
    pub fn set_pinned(&self, pin_dir: Option<String>) {
        self.0.capture.pinned.set(i64::from(pin_dir.is_some()));
        let mut info = self.info();
        info.pinned = pin_dir.is_some();
        info.pin_dir = pin_dir;
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }

    /// status.json's content: the facts, and the figures read now.
    pub fn snapshot(&self) -> Status {
        Status {
            agent: self.info().clone(),
            figures: self.figures(),
        }
    }

    fn figures(&self) -> Figures {
        let (c, j, s) = (&self.0.capture, &self.0.journal, &self.0.sinks);
        let (l, js) = (&self.0.logstore, &self.0.jetstream);
        let gauge = |g: &prometheus_client::metrics::gauge::Gauge| u64::try_from(g.get()).unwrap_or(0);
        Figures {
            windows_published: s.windows_published.get(),
            records_published: s.records_published.get(),
            publish_errors: s.publish_errors.get(),
            flows_last_window: gauge(&c.flows_last_window),
            overflow_events: c.overflow_events.get(),
            skipped: Totals {
                packets: c.skipped_packets.get(),
                bytes: c.skipped_bytes.get(),
            },
            malformed: c
                .malformed
                .totals()
                .into_iter()
                .map(|(k, packets, bytes)| {
                    (
                        format!("{}/{}/{}", k.interface, k.direction, k.reason),
                        Totals { packets, bytes },
                    )
                })
                .collect(),
            rtt_measured: c.rtt_measured.get(),
            rtt_ambiguous: c.rtt_ambiguous.get(),
            rtt_expired: c.rtt_expired.get(),
            drain_errors: c.drain_errors.get(),
            journal_cuts_written: j.cuts_written.get(),
            journal_bytes_written: j.bytes_written.get(),
            journal_write_errors: j.write_errors.get(),
            journal_cuts_lost: j.cuts_lost.get(),
            journal_sealed_windows: gauge(&j.sealed_windows),
            journal_windows_lost: j.windows_lost.get(),
            logstore_files_written: l.files_written.get(),
            logstore_write_errors: l.write_errors.get(),
            logstore_pending_records: gauge(&l.pending_records),
            logstore_dropped_records: l.dropped_records.get(),
            jetstream_published_records: js.published_records.get(),
            jetstream_queued_records: gauge(&js.queued_records),
            jetstream_queued_bytes: gauge(&js.queued_bytes),
            jetstream_dropped_records: js.dropped_records.get(),
            jetstream_set_aside_files: gauge(&js.set_aside_files),
            jetstream_errors: js.errors.get(),
            jetstream_connected: js.connected.get() > 0,
            ipfix: self.0.ipfix.collectors(s),
        }
    }

    /// Writes status.json via a temporary name, so readers never see half
    /// of it.
    pub fn persist(&self) -> std::io::Result<()> {
        let _one = self.0.persisting.lock().unwrap_or_else(PoisonError::into_inner);
        let json = serde_json::to_vec_pretty(&self.snapshot()).map_err(std::io::Error::other)?;
        crate::durable::write(&self.0.path, &json)
    }
}

#[cfg(test)]
mod tests;
