//! Every agent option, declared once: [`AgentOptions`] is both the TOML
//! file's shape (kebab-case keys, `[section]`s) and the `flowlog agent`
//! flags (`--window-secs`, `--api-listen`, …), with one doc comment that
//! is the flag's help. [`AgentArgs`] adds the flags that have no key of
//! their own (the file's path, `--interface`, `--no-pin`) and turns both
//! into one [`Config`].
//!
//! Flags win over the file. The two are merged as data: a flag that was
//! not given serializes as nothing, `false` or `[]` and leaves the file's
//! value; any other value replaces it, section by section.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Attachment, Config, ConfigError,
    sections::{ApiOptions, MetricsOptions},
};
use crate::{
    enrich::RegionEntry,
    model::CaptureMode,
    publish::sinks::{file::Output, jetstream::JetStreamFile},
};

/// The options of the file and the flags; every value optional so that
/// either may leave it to the other or to the default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentOptions {
    /// Account that owns the configured flow log (default `local`).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Enterprise network of the configured flow log (default `cen-local`).
    #[arg(long)]
    pub cen_id: Option<String>,
    /// Id of the configured flow log (default `fl-local`).
    #[arg(long)]
    pub flow_log_id: Option<String>,
    /// Project the configured flow log writes to (created if missing).
    #[arg(long)]
    pub project: Option<String>,
    /// Logstore the configured flow log writes to (created if missing).
    #[arg(long)]
    pub logstore: Option<String>,
    /// Fields the configured flow log keeps: `${srcaddr}${dstaddr}${bytes}…`
    /// (LogFormatString; default all).
    #[arg(long)]
    pub log_format: Option<String>,
    /// Capture window length in seconds (600 and 60 are standard; ≥ 1).
    #[arg(long)]
    pub window_secs: Option<u64>,
    /// Directory for state, status, the journal, the Logstores and the API
    /// socket (default /var/lib/flowlog).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// IPv4 flow-map entries (both window generations share them).
    #[arg(long)]
    pub flow_map_entries: Option<u32>,
    /// IPv6 flow-map entries (default: a quarter of the IPv4 ones, at least
    /// 1024).
    #[arg(long)]
    pub flow_map_entries_ipv6: Option<u32>,
    /// Overflow ring size in bytes (power of two, ≥ 4096).
    #[arg(long)]
    pub overflow_ring_bytes: Option<u32>,
    /// Sample TCP handshakes for RTT (default true; `--no-rtt`).
    #[arg(skip)]
    pub rtt: Option<bool>,
    /// Pin maps and hooks in bpffs so counting survives agent restarts
    /// (default true; `--no-pin`).
    #[arg(skip)]
    pub pin: Option<bool>,
    /// Where to pin kernel state (bpffs) so counting survives restarts
    /// (default /sys/fs/bpf/flowlog).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Records kept in memory while the Logstore cannot be written (disk
    /// full); beyond this the oldest windows are dropped and counted.
    #[arg(long)]
    pub logstore_buffer_records: Option<u64>,
    /// `[[attachment]]`: the configured flow log's interfaces.
    #[serde(default, rename = "attachment")]
    #[arg(skip)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    #[command(flatten)]
    pub output: Output,
    #[serde(default)]
    #[command(flatten)]
    pub api: ApiOptions,
    #[serde(default)]
    #[command(flatten)]
    pub metrics: MetricsOptions,
    #[serde(default)]
    #[command(flatten)]
    pub console: crate::console::ConsoleOptions,
    #[serde(default)]
    #[command(flatten)]
    pub jetstream: JetStreamFile,
    /// `[[region]]`: the CIDR → region table, with the line each entry
    /// starts on (filled by [`AgentOptions::parse`]).
    #[serde(default, rename = "region", skip_serializing)]
    #[arg(skip)]
    pub regions: Vec<toml::Spanned<RegionFile>>,
    #[serde(skip)]
    #[arg(skip)]
    pub region_entries: Vec<RegionEntry>,
}

/// One `[[region]]` entry of the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegionFile {
    pub cidr: String,
    pub region_id: String,
    pub network: Option<String>,
}

impl AgentOptions {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error names the line and column.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut file: Self = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_owned();
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("line {line}, column {col}: {msg}")
                }
                None => msg,
            }
        })?;
        file.region_entries = file
            .regions
            .iter()
            .map(|r| {
                let line = line_col(text, r.span().start).0;
                let r = r.get_ref();
                RegionEntry {
                    cidr: r.cidr.clone(),
                    region_id: r.region_id.clone(),
                    network: r.network.clone(),
                    line,
                }
            })
            .collect();
        Ok(file)
    }

    /// These options with `flags` laid over them.
    pub fn overlay(self, flags: &Self) -> Result<Self, ConfigError> {
        let as_value =
            |o: &Self| serde_json::to_value(o).map_err(|e| ConfigError::Invalid(format!("options: {e}")));
        let mut merged = as_value(&self)?;
        overlay(&mut merged, as_value(flags)?);
        let mut out: Self =
            serde_json::from_value(merged).map_err(|e| ConfigError::Invalid(format!("options: {e}")))?;
        out.regions = self.regions;
        out.region_entries = self.region_entries;
        Ok(out)
    }
}

/// Lays `flags` over `file`: objects key by key, anything set replaces.
fn overlay(file: &mut Value, flags: Value) {
    let (Value::Object(file), Value::Object(flags)) = (file, flags) else {
        return;
    };
    for (key, flag) in flags {
        match (file.get_mut(&key), flag) {
            (_, Value::Null | Value::Bool(false)) => {}
            (_, Value::Array(a)) if a.is_empty() => {}
            (Some(f @ Value::Object(_)), flag @ Value::Object(_)) => overlay(f, flag),
            (_, flag) => {
                file.insert(key, flag);
            }
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `flowlog agent`'s command line: the options, and the flags that have no
/// key of their own in the file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AgentArgs {
    /// TOML configuration file (every option below has a key there).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Interface to capture on (repeatable); added to the file's attachments.
    #[arg(long = "interface", short = 'i', value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Network namespace (an `ip netns` name) of the --interface flags.
    #[arg(long)]
    pub netns: Option<String>,
    /// Capture mode of the --interface flags: auto, xdp or tc.
    #[arg(long, default_value = "auto")]
    pub mode: CaptureMode,
    /// Do not sample TCP handshakes (no `rtt` on records).
    #[arg(long)]
    pub no_rtt: bool,
    /// Do not pin: hooks detach when the agent stops.
    #[arg(long)]
    pub no_pin: bool,
    #[command(flatten)]
    pub options: AgentOptions,
}

impl AgentArgs {
    /// The file (if any) with the flags over it, validated. `socket`: the
    /// global `--socket` flag, which names the API socket for the agent as
    /// it does for the control commands.
    pub fn into_config(self, socket: Option<PathBuf>) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => AgentOptions::load(path)?,
            None => AgentOptions::default(),
        };
        let mut flags = self.options;
        flags.api.socket = socket;
        // Choosing what stdout prints asks for stdout.
        flags.output.stdout |= flags.output.stdout_format.is_some();
        let mut options = file.overlay(&flags)?;
        options
            .attachments
            .extend(self.interfaces.into_iter().map(|interface| Attachment {
                interface,
                netns: self.netns.clone(),
                mode: self.mode,
                ..Default::default()
            }));
        if self.no_rtt {
            options.rtt = Some(false);
        }
        if self.no_pin {
            options.pin = Some(false);
        }
        let mut config = Config::validate(options)?;
        config.file = self.config;
        Ok(config)
    }
}
