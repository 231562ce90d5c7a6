//! The sinks' figures: records and windows published, failures and losses
//! per sink, the Logstore's retry backlog, JetStream's on-disk queue.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
}

impl SinkLabels {
    pub fn of(sink: &str) -> Self {
        Self {
            sink: sink.to_owned(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Sinks {
    pub records_by_sink: Family<SinkLabels, Counter>,
    pub errors_by_sink: Family<SinkLabels, Counter>,
    pub dropped_by_sink: Family<SinkLabels, Counter>,
    /// Windows and their records, all flow logs together (once each,
    /// however many sinks took them), and windows some sink failed.
    pub windows_published: Counter,
    pub records_published: Counter,
    pub publish_errors: Counter,
}

impl Sinks {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "records_published",
            "Records written, per sink",
            self.records_by_sink.clone(),
        );
        r.register(
            "publish_errors",
            "Failed writes of a window, per sink",
            self.errors_by_sink.clone(),
        );
        r.register(
            "records_dropped",
            "Records a sink lost: failed file-sink windows, Logstore windows over the backlog bound",
            self.dropped_by_sink.clone(),
        );
        r.register(
            "windows_published",
            "Windows published, all flow logs together",
            self.windows_published.clone(),
        );
    }
}

#[derive(Debug, Default)]
pub struct Logstore {
    pub files_written: Counter,
    pub write_errors: Counter,
    pub pending_records: Gauge,
    pub dropped_records: Counter,
}

impl Logstore {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "logstore_files_written",
            "Parquet files written to Logstores",
            self.files_written.clone(),
        );
        r.register(
            "logstore_write_errors",
            "Logstore writes that failed (their records are kept for retry)",
            self.write_errors.clone(),
        );
        r.register(
            "logstore_pending_records",
            "Records kept for retry because the Logstore could not take them (spool depth)",
            self.pending_records.clone(),
        );
        r.register(
            "logstore_dropped_records",
            "Records dropped because the kept backlog hit its bound",
            self.dropped_records.clone(),
        );
    }
}

#[derive(Debug, Default)]
pub struct JetStream {
    pub published_records: Counter,
    pub queued_records: Gauge,
    pub queued_bytes: Gauge,
    pub dropped_records: Counter,
    pub set_aside_files: Gauge,
    pub errors: Counter,
    pub connected: Gauge,
}

impl JetStream {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "jetstream_published_records",
            "Records JetStream acknowledged",
            self.published_records.clone(),
        );
        r.register(
            "jetstream_queued_records",
            "Records in the on-disk queue, not yet acknowledged",
            self.queued_records.clone(),
        );
        r.register(
            "jetstream_queued_bytes",
            "Bytes of the on-disk queue",
            self.queued_bytes.clone(),
        );
        r.register(
            "jetstream_dropped_records",
            "Records dropped: queue bound reached, queue unwritable or unreadable",
            self.dropped_records.clone(),
        );
        r.register(
            "jetstream_set_aside_files",
            "Queue files that could not be read, renamed *.bad for a person",
            self.set_aside_files.clone(),
        );
        r.register(
            "jetstream_errors",
            "Failed attempts to publish a window",
            self.errors.clone(),
        );
        r.register(
            "jetstream_connected",
            "1 when the last attempt to publish succeeded, else 0",
            self.connected.clone(),
        );
    }
}
