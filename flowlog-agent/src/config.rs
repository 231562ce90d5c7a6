//! Agent configuration: one TOML file, every option also settable by flag,
//! validated once into a [`Config`] before anything touches the kernel.

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use serde::Deserialize;

use crate::{
    enrich::{RegionEntry, RegionTable},
    model::validate,
    publish::sinks::{
        file::Output,
        jetstream::{JetStream, JetStreamFile},
        logstore,
    },
    record::format::LogFormat,
};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
/// Longest window we accept: one day.
const WINDOW_MAX_SECS: u64 = 86_400;
pub const DEFAULT_WINDOW_SECS: u64 = 600;
pub const DEFAULT_FLOW_MAP_ENTRIES: u32 = 65_536;
/// Time one GetLogs query may take by default.
pub const DEFAULT_QUERY_TIMEOUT_SECS: u64 = 60;
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
/// About 250 MiB of kept windows (~124 bytes per record in memory).

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

/// How an attachment's programs are hooked in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    /// TC for virtual devices (veth, tun, bridges…), XDP in driver mode
    /// for physical NICs that support it; see README "Capture modes".
    #[default]
    Auto,
    /// XDP on ingress (driver mode, else generic), TC on egress.
    Xdp,
    /// TC on ingress and egress.
    Tc,
}

impl FromStr for CaptureMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "xdp" => Ok(Self::Xdp),
            "tc" => Ok(Self::Tc),
            other => Err(format!(
                "unknown capture mode {other:?} (expected auto, xdp or tc)"
            )),
        }
    }
}

impl fmt::Display for CaptureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Xdp => "xdp",
            Self::Tc => "tc",
        })
    }
}

/// One interface to capture on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
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

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.netns {
            Some(ns) => write!(f, "{} (netns {ns})", self.interface),
            None => f.write_str(&self.interface),
        }
    }
}

/// The control API's listeners.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApiFile {
    /// Unix socket path (default `<data-dir>/api.sock`), mode 0600.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// TCP address for signed requests, e.g. `127.0.0.1:7654`; off when absent.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Allow `listen` beyond loopback.
    #[serde(default)]
    pub allow_remote: bool,
    /// Time one GetLogs query may take, waiting for its turn, planning
    /// and opening files included (default 60 s).
    #[serde(default)]
    pub query_timeout_secs: Option<u64>,
    /// PEM certificate chain and private key: the TCP listener speaks TLS.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP beyond loopback (off: remote clients need TLS).
    #[serde(default)]
    pub allow_plain_http: bool,
}

/// The Prometheus metrics listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsFile {
    /// Address for `GET /metrics`, e.g. `127.0.0.1:9464`; off when absent.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// Allow `listen` beyond loopback.
    #[serde(default)]
    pub allow_remote: bool,
}

/// The file's shape; every field optional so flags can fill gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub account_id: Option<String>,
    pub cen_id: Option<String>,
    pub flow_log_id: Option<String>,
    /// Project and Logstore the configured flow log writes to.
    pub project: Option<String>,
    pub logstore: Option<String>,
    /// LogFormatString of the configured flow log.
    pub log_format: Option<String>,
    pub window_secs: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub flow_map_entries: Option<u32>,
    /// IPv6 flows have a map of their own (default: a quarter of the IPv4
    /// one, at least 1024).
    pub flow_map_entries_ipv6: Option<u32>,
    pub overflow_ring_bytes: Option<u32>,
    /// Sample TCP handshakes for RTT (default true).
    pub rtt: Option<bool>,
    /// Pin maps and hooks in bpffs so counting survives agent restarts
    /// (default true).
    pub pin: Option<bool>,
    /// Where to pin them (default /sys/fs/bpf/flowlog).
    pub pin_dir: Option<PathBuf>,
    /// Records kept in memory while the Logstore cannot be written (disk
    /// full); beyond this the oldest windows are dropped and counted.
    pub logstore_buffer_records: Option<u64>,
    #[serde(default, rename = "attachment")]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub output: Option<Output>,
    #[serde(default)]
    pub api: Option<ApiFile>,
    #[serde(default)]
    pub metrics: Option<MetricsFile>,
    #[serde(default)]
    pub jetstream: Option<JetStreamFile>,
    /// The CIDR → region table (`[[region]]` entries).
    #[serde(default, rename = "region")]
    pub regions: Vec<toml::Spanned<RegionFile>>,
    /// `regions` with the line each entry starts on (filled by `parse`).
    #[serde(skip)]
    pub region_entries: Vec<RegionEntry>,
}

/// One `[[region]]` entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RegionFile {
    pub cidr: String,
    pub region_id: String,
    pub network: Option<String>,
}

impl FileConfig {
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
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
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
    pub api_socket: PathBuf,
    pub api_listen: Option<std::net::SocketAddr>,
    pub api_allow_remote: bool,
    /// Certificate and key of the TCP listener.
    pub api_tls: Option<(PathBuf, PathBuf)>,
    pub api_allow_plain_http: bool,
    pub query_timeout: std::time::Duration,
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where kernel state is pinned; `None` when pinning is off.
    pub pin_dir: Option<PathBuf>,
    pub logstore_buffer_records: usize,
    /// Where windows are also published, if anywhere.
    pub jetstream: Option<JetStream>,
    /// The region table (checked: [`RegionTable::new`] accepts it).
    pub regions: Vec<RegionEntry>,
    /// The file this came from; SIGHUP and ReloadRegionTable re-read its
    /// region table.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Checks ranges and consistency; the one place a bad value is refused.
    pub fn validate(file: FileConfig) -> Result<Self, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let window_secs = file.window_secs.unwrap_or(DEFAULT_WINDOW_SECS);
        if window_secs == 0 || window_secs > WINDOW_MAX_SECS {
            return invalid(format!(
                "window must be between 1 and {WINDOW_MAX_SECS} seconds, got {window_secs} \
                 (600 and 60 are the standard values)"
            ));
        }
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
        for (i, a) in file.attachments.iter().enumerate() {
            validate::attachment(
                &a.interface,
                a.netns.as_deref(),
                a.attachment_id.as_deref(),
                a.region_id.as_deref(),
            )
            .map_err(ConfigError::Invalid)?;
            if file.attachments[..i]
                .iter()
                .any(|b| b.interface == a.interface && b.netns == a.netns)
            {
                return invalid(format!("attachment {a} is listed twice"));
            }
        }
        let mut output = file.output.unwrap_or_default();
        if !output.stdout
            && output.json_file.is_none()
            && output.protobuf_file.is_none()
            && output.text_file.is_none()
        {
            output.stdout = true;
        }
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
        let jetstream = file
            .jetstream
            .unwrap_or_default()
            .validate()
            .map_err(ConfigError::Invalid)?;
        RegionTable::new(&file.region_entries)
            .map_err(|e| ConfigError::Invalid(format!("region table: {e}")))?;
        let api = file.api.unwrap_or_default();
        let query_timeout_secs = api.query_timeout_secs.unwrap_or(DEFAULT_QUERY_TIMEOUT_SECS);
        if !(1..=3600).contains(&query_timeout_secs) {
            return invalid(format!(
                "api.query-timeout-secs must be between 1 and 3600, got {query_timeout_secs}"
            ));
        }
        let api_tls = match (api.tls_cert.clone(), api.tls_key.clone()) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return invalid("api.tls-cert and api.tls-key go together".into()),
        };
        if let Some(addr) = api.listen
            && !addr.ip().is_loopback()
            && api.allow_remote
            && api_tls.is_none()
            && !api.allow_plain_http
        {
            return invalid(format!(
                "api.listen = {addr} beyond loopback needs TLS: set api.tls-cert and api.tls-key, or api.allow-plain-http = true"
            ));
        }
        let metrics = file.metrics.unwrap_or_default();
        if let Some(addr) = metrics.listen
            && !addr.ip().is_loopback()
            && !metrics.allow_remote
        {
            return invalid(format!(
                "metrics.listen {addr} is not a loopback address; set metrics.allow-remote = true to expose it"
            ));
        }
        let api_socket = api.socket.unwrap_or_else(|| data_dir.join(API_SOCKET));
        if api_socket.as_os_str().len() > 100 {
            return invalid(format!(
                "API socket path {} is too long for a Unix socket",
                api_socket.display()
            ));
        }
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
            api_socket,
            api_listen: api.listen,
            api_allow_remote: api.allow_remote,
            api_tls,
            api_allow_plain_http: api.allow_plain_http,
            query_timeout: std::time::Duration::from_secs(query_timeout_secs),
            metrics_listen: metrics.listen,
            pin_dir,
            logstore_buffer_records,
            jetstream,
            regions: file.region_entries,
            file: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_iface(mut f: FileConfig) -> FileConfig {
        f.attachments.push(Attachment {
            interface: "eth0".into(),
            netns: None,
            mode: CaptureMode::Auto,
            ..Default::default()
        });
        f
    }

    #[test]
    fn defaults() {
        let c = Config::validate(with_iface(FileConfig::default())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.api_socket, PathBuf::from("/var/lib/flowlog/api.sock"));
        assert_eq!(c.api_listen, None);
        assert_eq!(c.window, Duration::from_secs(600));
        assert!(c.output.stdout);
        assert_eq!(c.flow_map_entries, DEFAULT_FLOW_MAP_ENTRIES);
        assert_eq!(c.pin_dir, Some(PathBuf::from(DEFAULT_PIN_DIR)));
        let mut f = with_iface(FileConfig::default());
        f.pin = Some(false);
        f.pin_dir = Some("/elsewhere".into());
        assert_eq!(Config::validate(f).map(|c| c.pin_dir).ok(), Some(None));
    }

    #[test]
    fn parses_a_full_file() {
        let text = r#"
account-id = "123"
cen-id = "cen-1"
window-secs = 60
flow-map-entries = 1000
[[attachment]]
interface = "r-a"
netns = "router"
mode = "tc"
[[attachment]]
interface = "r-b"
[output]
protobuf-file = "/tmp/x.pb"
"#;
        let c = Config::validate(FileConfig::parse(text).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.attachments.len(), 2);
        assert_eq!(c.attachments[0].mode, CaptureMode::Tc);
        assert_eq!(c.attachments[0].netns.as_deref(), Some("router"));
        assert!(!c.output.stdout);
        assert_eq!(c.window, Duration::from_secs(60));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let e = FileConfig::parse("account-id = \"a\"\nwindow-secs = \"ten\"\n").err();
        let e = e.unwrap_or_default();
        assert!(e.starts_with("line 2, column 15"), "{e}");
        let e = FileConfig::parse("\n\nbogus = 1\n").err().unwrap_or_default();
        assert!(e.starts_with("line 3") && e.contains("bogus"), "{e}");
        let e = FileConfig::parse("[[attachment]]\ninterface = \"a\"\nmode = \"fast\"\n")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("line 3") && e.contains("fast"), "{e}");
    }

    #[test]
    fn rejects_bad_values() {
        type Mutation = fn(&mut FileConfig);
        let cases: [(&str, Mutation); 11] = [
            ("window must be", |f| f.window_secs = Some(0)),
            ("flow-map-entries", |f| f.flow_map_entries = Some(0)),
            ("power of two", |f| f.overflow_ring_bytes = Some(5000)),
            ("not a valid interface", |f| {
                f.attachments[0].interface = "a/b".into()
            }),
            ("listed twice", |f| {
                let a = f.attachments[0].clone();
                f.attachments.push(a);
            }),
            ("cen-id", |f| f.cen_id = Some(String::new())),
            ("absolute", |f| f.pin_dir = Some("relative/pins".into())),
            ("logstore-buffer-records", |f| f.logstore_buffer_records = Some(0)),
            ("nats://host:port", |f| {
                f.jetstream = Some(JetStreamFile {
                    servers: vec!["http://x:1".into()],
                    ..Default::default()
                })
            }),
            ("replicas must be 1, 3 or 5", |f| {
                f.jetstream = Some(JetStreamFile {
                    servers: vec!["nats://x:1".into()],
                    replicas: Some(2),
                    ..Default::default()
                })
            }),
            ("jetstream subject", |f| {
                f.jetstream = Some(JetStreamFile {
                    servers: vec!["nats://x:1".into()],
                    subject: Some("a.*".into()),
                    ..Default::default()
                })
            }),
        ];
        for (want, mutate) in cases {
            let mut f = with_iface(FileConfig::default());
            mutate(&mut f);
            let e = Config::validate(f)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains(want), "{want}: {e}");
        }
        // No attachment is fine: flow logs can come through the API.
        assert!(Config::validate(FileConfig::default()).is_ok());
    }

    #[test]
    fn region_entries_keep_their_lines_and_bad_ones_are_named() {
        let text = "account-id = \"a\"\n\n[[region]]\ncidr = \"10.1.0.0/16\"\nregion-id = \"cn-hangzhou\"\n\n[[region]]\ncidr = \"10.2.0.0/16\"\nregion-id = \"cn-shanghai\"\nnetwork = \"vpc-sh\"\n";
        let f = FileConfig::parse(text).unwrap_or_else(|e| panic!("{e}"));
        let lines: Vec<usize> = f.region_entries.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 7]);
        assert_eq!(f.region_entries[1].network.as_deref(), Some("vpc-sh"));
        let c = Config::validate(f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.regions.len(), 2);

        let bad = text.replace("10.2.0.0/16", "10.1.0.0/16");
        let e = Config::validate(FileConfig::parse(&bad).unwrap_or_else(|e| panic!("{e}")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("line 7: 10.1.0.0/16 is already mapped on line 3"),
            "{e}"
        );
        let bad = text.replace("10.2.0.0/16", "10.2.0.0/99");
        let e = Config::validate(FileConfig::parse(&bad).unwrap_or_else(|e| panic!("{e}")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 7: bad CIDR"), "{e}");
    }
}
