//! The agent's status: what is attached where, and running totals that are
//! not records (malformed packets, overflow events, publish errors).
//! Written atomically to `<data-dir>/status.json` after every window.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// File name inside the data directory.
pub const STATUS_FILE: &str = "status.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AttachmentStatus {
    pub interface: String,
    pub netns: Option<String>,
    pub ifindex: u32,
    pub driver: String,
    pub ingress_hook: String,
    pub egress_hook: String,
    /// Flow logs sharing this interface's hooks.
    pub flow_logs: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Status {
    /// `starting`, `running` or `stopped`.
    pub state: String,
    pub pid: u32,
    pub window_secs: u64,
    pub flow_map_entries: u32,
    /// Whether kernel state is pinned in bpffs (counting goes on while the
    /// agent is down), and where.
    pub pinned: bool,
    pub pin_dir: Option<String>,
    pub attachments: Vec<AttachmentStatus>,
    pub windows_published: u64,
    /// Unix seconds of the last published window.
    pub last_window_start: Option<i64>,
    pub last_window_end: Option<i64>,
    pub records_published: u64,
    pub flows_last_window: u64,
    pub overflow_events: u64,
    /// Packets counted into SKIPDATA records.
    pub skipped: Totals,
    /// Packets not attributed to a flow, keyed `interface/direction/reason`.
    pub malformed: BTreeMap<String, Totals>,
    /// Handshakes measured, skipped as ambiguous, or expired incomplete.
    pub rtt_measured: u64,
    pub rtt_ambiguous: u64,
    pub rtt_expired: u64,
    pub drain_errors: u64,
    /// The journal: cuts written (and their bytes), failed writes (counts
    /// of those cuts live only in memory until published), cuts a restart
    /// needed and could not read, and windows sealed but not yet confirmed
    /// by every sink.
    pub journal_cuts_written: u64,
    pub journal_bytes_written: u64,
    pub journal_write_errors: u64,
    pub journal_cuts_lost: u64,
    pub journal_sealed_windows: u64,
    pub journal_windows_lost: u64,
    /// Parquet files written to Logstores, failed writes, records kept for
    /// retry, and records dropped because the kept backlog hit its bound.
    pub logstore_files_written: u64,
    pub logstore_write_errors: u64,
    pub logstore_pending_records: u64,
    pub logstore_dropped_records: u64,
    pub publish_errors: u64,
    /// JetStream: records acknowledged, waiting in the on-disk queue (and
    /// its bytes), dropped (queue bound, unreadable queue file, queue write
    /// failure), failed attempts, and whether the last attempt succeeded.
    pub jetstream_published_records: u64,
    pub jetstream_queued_records: u64,
    pub jetstream_queued_bytes: u64,
    pub jetstream_dropped_records: u64,
    /// Queue files that could not be read, renamed `*.bad` for a person.
    pub jetstream_set_aside_files: u64,
    pub jetstream_errors: u64,
    pub jetstream_connected: bool,
    /// Entries of the region table in force, and why the last reload was
    /// refused (cleared by a good one).
    pub region_table_entries: u64,
    pub region_table_error: Option<String>,
}

/// Shared handle; every stage updates its part.
#[derive(Clone)]
pub struct StatusBoard {
    inner: Arc<Mutex<Status>>,
    metrics: Arc<Mutex<Metrics>>,
    persisting: Arc<Mutex<()>>,
    path: PathBuf,
}

impl StatusBoard {
    pub fn new(data_dir: &Path, status: Status) -> Self {
        Self {
            inner: Arc::new(Mutex::new(status)),
            metrics: Arc::new(Mutex::new(Metrics::default())),
            persisting: Arc::default(),
            path: data_dir.join(STATUS_FILE),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Status> {
        // A panic elsewhere must not take the status down with it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counters that only the metrics endpoint shows.
    pub fn metrics(&self) -> MutexGuard<'_, Metrics> {
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes the file via a temporary name, so readers never see half of it.
    /// Several threads persist; one at a time shares the temporary file.
    pub fn persist(&self) -> std::io::Result<()> {
        let _one = self
            .persisting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let json = serde_json::to_vec_pretty(&*self.lock()).map_err(std::io::Error::other)?;
        crate::durable::write(&self.path, &json)
    }
}
