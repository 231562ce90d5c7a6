//! Agent configuration: one TOML file, every option also settable by flag
//! ([`options`]), validated once into a [`Config`] before anything touches
//! the kernel; each section checks its own values ([`sections`], and the
//! sinks' sections beside their sinks).

mod options;
mod sections;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use self::{
    options::{AgentArgs, AgentOptions, RegionFile},
    sections::{ApiOptions, DEFAULT_QUERY_TIMEOUT_SECS, MetricsOptions},
};
pub use crate::model::CaptureMode;
use crate::{
    api::Listeners,
    enrich::{RegionEntry, RegionTable},
    model::validate,
    publish::sinks::{file::Output, ipfix::Ipfix, jetstream::JetStream, logstore},
    record::format::LogFormat,
};

/// Longest window we accept: one day.
const WINDOW_MAX_SECS: u64 = 86_400;
pub const DEFAULT_WINDOW_SECS: u64 = 600;
pub const DEFAULT_FLOW_MAP_ENTRIES: u32 = 65_536;
pub const DEFAULT_OVERFLOW_RING_BYTES: u32 = 1 << 20;
pub const DEFAULT_DATA_DIR: &str = "/var/lib/flowlog";
/// Where kernel state is pinned (bpffs; mounted if absent).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/flowlog";
/// Where the configured flow log's records go in the embedded log service.
pub const DEFAULT_PROJECT: &str = "default";
pub const DEFAULT_LOGSTORE: &str = "flowlogs";
/// API socket file name inside the data directory.
pub const API_SOCKET: &str = "api.sock";
/// Ceiling on per-generation flow-map entries (two generations exist).
const FLOW_MAP_ENTRIES_MAX: u32 = 1 << 24;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys; the message
    /// carries the line and column.
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One interface to capture on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Attachment {
    pub interface: String,
    /// Named network namespace (`ip netns` name, under /run/netns); the
    /// agent's own namespace when absent.
    #[serde(default)]
    pub netns: Option<String>,
    #[serde(default)]
    pub mode: CaptureMode,
    /// Id and region of the attachment, carried on its records.
    #[serde(default)]
    pub attachment_id: Option<String>,
    #[serde(default)]
    pub region_id: Option<String>,
}

impl std::fmt::Display for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.netns {
            Some(ns) => write!(f, "{} (netns {ns})", self.interface),
            None => f.write_str(&self.interface),
        }
    }
}

/// Validated agent configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub account_id: String,
    pub cen_id: String,
    pub flow_log_id: String,
    pub project: String,
    pub logstore: String,
    /// The configured flow log's LogFormatString, canonical; all fields
    /// when absent.
    pub log_format: Option<String>,
    pub window: Duration,
    pub data_dir: PathBuf,
    /// Entries of the IPv4 flow map (per-CPU hash; both window generations
    /// share it).
    pub flow_map_entries: u32,
    /// Entries of the IPv6 flow map.
    pub flow_map_entries_v6: u32,
    pub overflow_ring_bytes: u32,
    pub rtt: bool,
    /// Attachments of the flow log defined by the configuration itself
    /// (flags or file); more come and go through the control API.
    pub attachments: Vec<Attachment>,
    pub output: Output,
    /// Where and how the control API listens.
    pub api: Listeners,
    /// Time one GetLogs query may take in all.
    pub query_timeout: Duration,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The web console served beside the API, if any.
    pub console: Option<crate::console::ConsoleListen>,
    /// Where kernel state is pinned; `None` when pinning is off.
    pub pin_dir: Option<PathBuf>,
    pub logstore_buffer_records: usize,
    /// Where windows are also published, if anywhere.
    pub jetstream: Option<JetStream>,
    /// The IPFIX collectors windows are exported to, if any.
    pub ipfix: Option<Ipfix>,
    /// The region table (checked: [`RegionTable::new`] accepts it).
    pub regions: Vec<RegionEntry>,
    /// The file this came from; SIGHUP and ReloadRegionTable re-read its
    /// region table.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Checks ranges and consistency; the one place a bad value is refused.
    pub fn validate(file: AgentOptions) -> Result<Self, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let window_secs = file.window_secs.unwrap_or(DEFAULT_WINDOW_SECS);
        if window_secs == 0 || window_secs > WINDOW_MAX_SECS {
            return invalid(format!(
                "window must be between 1 and {WINDOW_MAX_SECS} seconds, got {window_secs} \
                 (600 and 60 are the standard values)"
            ));
        }
        let (flow_map_entries, flow_map_entries_v6, ring) = map_sizes(&file)?;
        check_attachments(&file.attachments)?;
        let mut output = file.output.or_stdout();
        let ipfix = std::mem::take(&mut output.ipfix)
            .validate()
            .map_err(ConfigError::Invalid)?;
        let account_id = file.account_id.unwrap_or_else(|| "local".into());
        let cen_id = file.cen_id.unwrap_or_else(|| "cen-local".into());
        let flow_log_id = file.flow_log_id.unwrap_or_else(|| "fl-local".into());
        for (key, check) in [
            ("account-id", validate::account_id(&account_id)),
            ("cen-id", validate::cen_id(&cen_id)),
            ("flow-log-id", validate::flow_log_id(&flow_log_id)),
        ] {
            check.map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
        }
        let data_dir = file.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let pin_dir = match (file.pin.unwrap_or(true), file.pin_dir) {
            (false, _) => None,
            (true, Some(dir)) if !dir.is_absolute() => {
                return invalid(format!("pin-dir must be an absolute path, got {}", dir.display()));
            }
            (true, dir) => Some(dir.unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_DIR))),
        };
        let logstore_buffer_records =
            logstore::buffer_records(file.logstore_buffer_records).map_err(ConfigError::Invalid)?;
        let jetstream = file.jetstream.validate().map_err(ConfigError::Invalid)?;
        RegionTable::new(&file.region_entries)
            .map_err(|e| ConfigError::Invalid(format!("region table: {e}")))?;
        let (api, query_timeout) = file.api.validate(&data_dir).map_err(ConfigError::Invalid)?;
        let metrics_listen = file.metrics.validate().map_err(ConfigError::Invalid)?;
        let console = file.console.validate().map_err(ConfigError::Invalid)?;
        let project = file.project.unwrap_or_else(|| DEFAULT_PROJECT.into());
        let logstore = file.logstore.unwrap_or_else(|| DEFAULT_LOGSTORE.into());
        validate::project_name(&project).map_err(ConfigError::Invalid)?;
        validate::logstore_name(&logstore).map_err(ConfigError::Invalid)?;
        let log_format = file
            .log_format
            .map(|s| {
                LogFormat::parse(&s)
                    .map(|f| f.to_string())
                    .map_err(|e| ConfigError::Invalid(format!("log-format: {e}")))
            })
            .transpose()?;
        Ok(Self {
            project,
            logstore,
            log_format,
            account_id,
            cen_id,
            flow_log_id,
            window: Duration::from_secs(window_secs),
            data_dir,
            flow_map_entries,
            flow_map_entries_v6,
            overflow_ring_bytes: ring,
            rtt: file.rtt.unwrap_or(true),
            attachments: file.attachments,
            output,
            api,
            query_timeout,
            metrics_listen,
            console,
            pin_dir,
            logstore_buffer_records,
            jetstream,
            ipfix,
            regions: file.region_entries,
            file: None,
        })
    }
}

/// IPv4 and IPv6 flow-map entries and the overflow ring's bytes.
fn map_sizes(file: &AgentOptions) -> Result<(u32, u32, u32), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let flow_map_entries = file.flow_map_entries.unwrap_or(DEFAULT_FLOW_MAP_ENTRIES);
    if flow_map_entries == 0 || flow_map_entries > FLOW_MAP_ENTRIES_MAX {
        return invalid(format!(
            "flow-map-entries must be between 1 and {FLOW_MAP_ENTRIES_MAX}, got {flow_map_entries}"
        ));
    }
    let flow_map_entries_v6 = file
        .flow_map_entries_ipv6
        .unwrap_or((flow_map_entries / 4).max(1024));
    if flow_map_entries_v6 == 0 || flow_map_entries_v6 > FLOW_MAP_ENTRIES_MAX {
        return invalid(format!(
            "flow-map-entries-ipv6 must be between 1 and {FLOW_MAP_ENTRIES_MAX}, got {flow_map_entries_v6}"
        ));
    }
    let ring = file.overflow_ring_bytes.unwrap_or(DEFAULT_OVERFLOW_RING_BYTES);
    if ring < 4096 || !ring.is_power_of_two() {
        return invalid(format!(
            "overflow-ring-bytes must be a power of two of at least 4096, got {ring}"
        ));
    }
    Ok((flow_map_entries, flow_map_entries_v6, ring))
}

/// Each attachment valid, and none listed twice.
fn check_attachments(attachments: &[Attachment]) -> Result<(), ConfigError> {
    for (i, a) in attachments.iter().enumerate() {
        validate::attachment(
            &a.interface,
            a.netns.as_deref(),
            a.attachment_id.as_deref(),
            a.region_id.as_deref(),
        )
        .map_err(ConfigError::Invalid)?;
        if attachments[..i]
            .iter()
            .any(|b| b.interface == a.interface && b.netns == a.netns)
        {
            return Err(ConfigError::Invalid(format!("attachment {a} is listed twice")));
        }
    }
    Ok(())
}
