//! status.json and the status view: what the agent is and what is attached
//! where ([`AgentInfo`]), with a snapshot of its figures ([`Figures`], read
//! from the same metrics the endpoint serves). Written atomically to
//! `<data-dir>/status.json` after every window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// What status.json says: the agent's facts and its figures, side by
/// side in one object.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    #[serde(flatten)]
    pub agent: AgentInfo,
    #[serde(flatten)]
    pub figures: Figures,
}

/// What the agent is doing, as opposed to what it counted.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgentInfo {
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
    /// Unix seconds of the last published window.
    pub last_window_start: Option<i64>,
    pub last_window_end: Option<i64>,
    /// Entries of the region table in force, and why the last reload was
    /// refused (cleared by a good one).
    pub region_table_entries: u64,
    pub region_table_error: Option<String>,
}

/// The running totals, read from the metrics.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Figures {
    pub windows_published: u64,
    pub records_published: u64,
    pub publish_errors: u64,
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
    /// The journal: cuts written (and their bytes), failed writes, cuts a
    /// restart needed and could not read, windows sealed but not yet
    /// confirmed by every sink, and windows that could not be rendered.
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
    /// JetStream: records acknowledged, waiting in the on-disk queue (and
    /// its bytes), dropped (queue bound, unreadable queue file, queue write
    /// failure), queue files set aside, failed attempts, and whether the
    /// last attempt succeeded.
    pub jetstream_published_records: u64,
    pub jetstream_queued_records: u64,
    pub jetstream_queued_bytes: u64,
    pub jetstream_dropped_records: u64,
    pub jetstream_set_aside_files: u64,
    pub jetstream_errors: u64,
    pub jetstream_connected: bool,
    /// IPFIX export, per collector.
    #[serde(default)]
    pub ipfix: std::collections::BTreeMap<String, super::sinks::IpfixCollector>,
}
