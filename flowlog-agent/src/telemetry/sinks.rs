//! The sinks' figures: records and windows published, failures and losses
//! per sink, the Logstore's retry backlog, JetStream's on-disk queue,
//! IPFIX export per collector.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, PoisonError},
};

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

/// IPFIX export, per collector (labelled by its sink name), with the
/// collectors known (a family cannot be listed, and status.json lists them).
#[derive(Debug, Default)]
pub struct Ipfix {
    pub messages_sent: Family<SinkLabels, Counter>,
    pub templates_sent: Family<SinkLabels, Counter>,
    pub send_errors: Family<SinkLabels, Counter>,
    pub queued_records: Family<SinkLabels, Gauge>,
    pub connected: Family<SinkLabels, Gauge>,
    collectors: Mutex<BTreeSet<SinkLabels>>,
}

/// One collector's figures, as status.json shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IpfixCollector {
    pub records_sent: u64,
    pub records_dropped: u64,
    pub messages_sent: u64,
    pub templates_sent: u64,
    pub send_errors: u64,
    pub queued_records: u64,
    pub connected: bool,
}

impl Ipfix {
    /// A collector's sink starts: it is listed from now on.
    pub fn add_collector(&self, labels: &SinkLabels) {
        self.collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(labels.clone());
    }

    /// Every collector's figures, by sink name.
    pub fn collectors(&self, sinks: &Sinks) -> BTreeMap<String, IpfixCollector> {
        let known = self
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        known
            .into_iter()
            .map(|l| {
                let f = IpfixCollector {
                    records_sent: sinks.records_by_sink.get_or_create(&l).get(),
                    records_dropped: sinks.dropped_by_sink.get_or_create(&l).get(),
                    messages_sent: self.messages_sent.get_or_create(&l).get(),
                    templates_sent: self.templates_sent.get_or_create(&l).get(),
                    send_errors: self.send_errors.get_or_create(&l).get(),
                    queued_records: u64::try_from(self.queued_records.get_or_create(&l).get()).unwrap_or(0),
                    connected: self.connected.get_or_create(&l).get() > 0,
                };
                (l.sink, f)
            })
            .collect()
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "ipfix_messages_sent",
            "IPFIX messages sent, templates included, per collector",
            self.messages_sent.clone(),
        );
        r.register(
            "ipfix_templates_sent",
            "Template records sent (first use, refresh, each new TCP connection), per collector",
            self.templates_sent.clone(),
        );
        r.register(
            "ipfix_send_errors",
            "Messages a collector's connection refused, per collector",
            self.send_errors.clone(),
        );
        r.register(
            "ipfix_queued_records",
            "Records kept while a TCP collector is away, per collector",
            self.queued_records.clone(),
        );
        r.register(
            "ipfix_connected",
            "1 while the collector's connection works, else 0",
            self.connected.clone(),
        );
    }
}
