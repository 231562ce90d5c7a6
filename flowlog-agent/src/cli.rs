//! The `flowlog` control commands: one subcommand per API action, talking
//! to a running agent; human-readable tables by default, `--json` for the
//! raw answer.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::{
    api::client::{self, Endpoint},
    config::{API_SOCKET, DEFAULT_DATA_DIR},
    store::{
        analyses::{self, Metric},
        query::{self, Format, TimeRange},
    },
};

/// Where and how to reach the agent.
#[derive(Args, Debug)]
pub struct Connection {
    /// The agent's Unix socket.
    #[arg(long, env = "FLOWLOG_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// The agent's TCP API (`host:port`) instead of the socket; needs an access key.
    #[arg(long, env = "FLOWLOG_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    #[arg(long, env = "FLOWLOG_ACCESS_KEY_ID", global = true)]
    pub access_key_id: Option<String>,
    #[arg(
        long,
        env = "FLOWLOG_ACCESS_KEY_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub access_key_secret: Option<String>,
    /// CA certificate (PEM) the TCP API's certificate must chain to: talk
    /// TLS to --endpoint.
    #[arg(long, env = "FLOWLOG_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Seconds to wait for the agent's answer, connecting included.
    #[arg(long, env = "FLOWLOG_TIMEOUT", global = true, default_value_t = 60)]
    pub timeout: u64,
    /// Print the agent's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a Project (a namespace for Logstores).
    CreateProject {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an empty Project.
    DeleteProject { name: String },
    /// List Projects.
    ListProjects,
    /// Create a Logstore in a Project.
    CreateLogstore {
        #[arg(long)]
        project: String,
        name: String,
        /// Retention in days.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Delete a Logstore no flow log writes to.
    DeleteLogstore {
        #[arg(long)]
        project: String,
        name: String,
    },
    /// List the Logstores of a Project.
    ListLogstores {
        #[arg(long)]
        project: String,
    },
    /// Create a flow log (Inactive until active-flowlog).
    CreateFlowlog {
        #[arg(long)]
        name: String,
        #[arg(long)]
        cen_id: String,
        #[arg(long)]
        project: String,
        #[arg(long)]
        logstore: String,
        /// Interface to capture:
        /// `IFACE[,netns=NS][,mode=auto|xdp|tc][,attachment-id=ID][,region-id=REGION]`
        /// (repeatable).
        #[arg(long = "attach", required = true)]
        attachments: Vec<String>,
        /// Window length in seconds (600 or 60).
        #[arg(long)]
        interval: Option<u64>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        account_id: Option<String>,
        /// Fields to keep: `${srcaddr}${dstaddr}${bytes}…` (default all).
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Change a flow log's name, description, window or fields (window and
    /// fields from its next boundary).
    ModifyFlowlog {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        interval: Option<u64>,
        #[arg(long)]
        log_format: Option<String>,
    },
    /// List flow logs, with filters and paging.
    DescribeFlowlogs {
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        cen_id: Option<String>,
        /// Active or Inactive.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        page: Option<u64>,
        #[arg(long)]
        page_size: Option<u64>,
    },
    /// Start capturing (attaches to the flow log's interfaces).
    ActiveFlowlog { id: String },
    /// Stop capturing (publishes the partial window, detaches).
    DeactiveFlowlog { id: String },
    /// Delete an Inactive flow log.
    DeleteFlowlog { id: String },
    /// Create an access key pair for the TCP API (the secret is shown once).
    CreateAccessKey {
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete an access key.
    DeleteAccessKey { id: String },
    /// List access key ids.
    ListAccessKeys,
    /// What is attached where, map fill, last windows.
    Status,
    /// Re-read the region table from the agent's configuration file (as
    /// SIGHUP does); a bad table is refused and the old one stays.
    ReloadRegions,
    /// Call any action with `Key=Value` parameters (values that parse as
    /// JSON are sent as JSON).
    Call { action: String, params: Vec<String> },
    /// Run SQL over a Logstore, reading the data directory directly. Tables:
    /// `logs` (record names; quote hyphenated ones: "log-status") and
    /// `logs_raw` (snake_case, as stored).
    Query {
        #[command(flatten)]
        target: LogstoreArgs,
        sql: String,
    },
    /// Built-in analyses over a Logstore.
    Analyze {
        #[command(flatten)]
        target: LogstoreArgs,
        #[command(subcommand)]
        analysis: Analysis,
    },
}

/// Which Logstore, which time range, which output.
#[derive(Args, Debug)]
pub struct LogstoreArgs {
    #[arg(long)]
    pub project: String,
    #[arg(long)]
    pub logstore: String,
    /// Only windows that started within this long before now: 30m, 1h, 7d…
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Window start at or after this time (Unix seconds or YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long)]
    pub from: Option<String>,
    /// Window start before this time.
    #[arg(long)]
    pub to: Option<String>,
    /// table, json, csv or text (flow-log text lines, for record rows).
    #[arg(long, default_value = "table")]
    pub format: Format,
    /// The agent's data directory.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum Analysis {
    /// Largest sources, per direction.
    TopTalkers {
        /// bytes or packets.
        #[arg(long, default_value = "bytes")]
        by: Metric,
        /// Only in or out.
        #[arg(long)]
        direction: Option<String>,
        /// Largest source regions instead of source addresses.
        #[arg(long)]
        by_region: bool,
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
    /// Traffic between attachments (in on one, out on another), between
    /// /24 networks with --by-subnet, or between regions (source region →
    /// destination region, from the region table) with --by-region.
    TrafficMatrix {
        #[arg(long, default_value = "bytes")]
        by: Metric,
        #[arg(long, conflicts_with = "by_region")]
        by_subnet: bool,
        #[arg(long)]
        by_region: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Windows with NODATA or SKIPDATA.
    Gaps {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// TCP connections with the longest handshake RTT.
    Slowest {
        #[arg(long, default_value_t = 10)]
        limit: u32,
    },
}

/// Seconds in a `30s`/`15m`/`1h`/`7d` duration (any humantime spelling).
pub fn parse_duration(s: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = s.parse::<u64>() {
        return i64::try_from(secs).with_context(|| format!("duration {s:?} is too long"));
    }
    let d = humantime::parse_duration(s)
        .with_context(|| format!("bad duration {s:?}: expected e.g. 30m, 1h, 7d"))?;
    i64::try_from(d.as_secs()).with_context(|| format!("duration {s:?} is too long"))
}

/// Unix seconds from `1796040000`, `2026-11-30T10:00:00Z` (RFC 3339) or
/// `2026-11-30 10:00:00` (UTC).
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| anyhow::anyhow!("bad time {s:?}: use Unix seconds or YYYY-MM-DDTHH:MM:SSZ (UTC)"))
}

impl LogstoreArgs {
    fn range(&self) -> anyhow::Result<TimeRange> {
        let now = crate::state::now_secs();
        if let Some(since) = &self.since {
            return Ok(TimeRange {
                from: Some(
                    now.checked_sub(parse_duration(since)?)
                        .context("--since reaches before any representable time")?,
                ),
                to: None,
            });
        }
        Ok(TimeRange {
            from: self.from.as_deref().map(parse_time).transpose()?,
            to: self.to.as_deref().map(parse_time).transpose()?,
        })
    }

    /// Runs `sql` over this Logstore and prints the result.
    async fn run(&self, sql: &str) -> anyhow::Result<()> {
        let dir = crate::store::logstore_dir(
            &self.data_dir,
            &crate::store::LogstoreRef {
                project: self.project.clone(),
                logstore: self.logstore.clone(),
            },
        );
        if !dir.is_dir() {
            bail!(
                "logstore {}/{} does not exist in {} (flowlog list-logstores --project {} lists them)",
                self.project,
                self.logstore,
                self.data_dir.display(),
                self.project
            );
        }
        let result = query::run(&dir, self.range()?, sql).await?;
        print!("{}", query::render(&result.batches, self.format)?);
        if self.format == Format::Table {
            println!();
        }
        for (file, why) in &result.skipped {
            eprintln!("warning: skipped {}: {why}", file.display());
        }
        if !result.skipped.is_empty() {
            eprintln!(
                "warning: partial result: {} of {} file(s) skipped",
                result.skipped.len(),
                result.skipped.len() + result.files
            );
        }
        if result.truncated {
            eprintln!("warning: only the first {} rows are shown", query::MAX_ROWS);
        }
        Ok(())
    }
}

fn attachment(spec: &str) -> anyhow::Result<Value> {
    let mut parts = spec.split(',');
    let interface = parts
        .next()
        .filter(|s| !s.is_empty())
        .context("empty --attach value")?;
    let mut obj = Map::new();
    obj.insert("Interface".into(), json!(interface));
    for part in parts {
        match part.split_once('=') {
            Some(("netns", v)) => obj.insert("Netns".into(), json!(v)),
            Some(("mode", v)) => obj.insert("Mode".into(), json!(v)),
            Some(("attachment-id", v)) => obj.insert("AttachmentId".into(), json!(v)),
            Some(("region-id", v)) => obj.insert("RegionId".into(), json!(v)),
            _ => bail!(
                "--attach {spec:?}: expected IFACE[,netns=NS][,mode=MODE][,attachment-id=ID][,region-id=REGION]"
            ),
        };
    }
    Ok(Value::Object(obj))
}

/// Adds `key: value` when the value is present.
fn put(m: &mut Map<String, Value>, key: &str, v: Option<impl Into<Value>>) {
    if let Some(v) = v {
        m.insert(key.into(), v.into());
    }
}

fn request(cmd: &Command) -> anyhow::Result<(String, Map<String, Value>)> {
    let mut m = Map::new();
    let action = match cmd {
        Command::CreateProject { name, description } => {
            put(&mut m, "ProjectName", Some(name.as_str()));
            put(&mut m, "Description", description.as_deref());
            "CreateProject"
        }
        Command::DeleteProject { name } => {
            put(&mut m, "ProjectName", Some(name.as_str()));
            "DeleteProject"
        }
        Command::ListProjects => "ListProjects",
        Command::CreateLogstore { project, name, ttl } => {
            put(&mut m, "ProjectName", Some(project.as_str()));
            put(&mut m, "LogStoreName", Some(name.as_str()));
            put(&mut m, "Ttl", *ttl);
            "CreateLogstore"
        }
        Command::DeleteLogstore { project, name } => {
            put(&mut m, "ProjectName", Some(project.as_str()));
            put(&mut m, "LogStoreName", Some(name.as_str()));
            "DeleteLogstore"
        }
        Command::ListLogstores { project } => {
            put(&mut m, "ProjectName", Some(project.as_str()));
            "ListLogstores"
        }
        Command::CreateFlowlog {
            name,
            cen_id,
            project,
            logstore,
            attachments,
            interval,
            description,
            account_id,
            log_format,
        } => {
            put(&mut m, "FlowLogName", Some(name.as_str()));
            put(&mut m, "CenId", Some(cen_id.as_str()));
            put(&mut m, "ProjectName", Some(project.as_str()));
            put(&mut m, "LogStoreName", Some(logstore.as_str()));
            let list = attachments
                .iter()
                .map(|a| attachment(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            m.insert("Attachments".into(), Value::Array(list));
            put(&mut m, "Interval", *interval);
            put(&mut m, "Description", description.as_deref());
            put(&mut m, "AccountId", account_id.as_deref());
            put(&mut m, "LogFormatString", log_format.as_deref());
            "CreateFlowlog"
        }
        Command::ModifyFlowlog {
            id,
            name,
            description,
            interval,
            log_format,
        } => {
            put(&mut m, "FlowLogId", Some(id.as_str()));
            put(&mut m, "FlowLogName", name.as_deref());
            put(&mut m, "Description", description.as_deref());
            put(&mut m, "Interval", *interval);
            put(&mut m, "LogFormatString", log_format.as_deref());
            "ModifyFlowLogAttribute"
        }
        Command::DescribeFlowlogs {
            id,
            name,
            cen_id,
            status,
            page,
            page_size,
        } => {
            put(&mut m, "FlowLogId", id.as_deref());
            put(&mut m, "FlowLogName", name.as_deref());
            put(&mut m, "CenId", cen_id.as_deref());
            put(&mut m, "Status", status.as_deref());
            put(&mut m, "PageNumber", *page);
            put(&mut m, "PageSize", *page_size);
            "DescribeFlowlogs"
        }
        Command::ActiveFlowlog { id } => {
            put(&mut m, "FlowLogId", Some(id.as_str()));
            "ActiveFlowLog"
        }
        Command::DeactiveFlowlog { id } => {
            put(&mut m, "FlowLogId", Some(id.as_str()));
            "DeactiveFlowLog"
        }
        Command::DeleteFlowlog { id } => {
            put(&mut m, "FlowLogId", Some(id.as_str()));
            "DeleteFlowlog"
        }
        Command::CreateAccessKey { description } => {
            put(&mut m, "Description", description.as_deref());
            "CreateAccessKey"
        }
        Command::DeleteAccessKey { id } => {
            put(&mut m, "AccessKeyId", Some(id.as_str()));
            "DeleteAccessKey"
        }
        Command::ListAccessKeys => "ListAccessKeys",
        Command::Status => "DescribeAgentStatus",
        Command::ReloadRegions => "ReloadRegionTable",
        Command::Query { .. } | Command::Analyze { .. } => bail!("local commands need no agent"),
        Command::Call { action, params } => {
            for kv in params {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("{kv:?}: expected Key=Value"))?;
                let value = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
                m.insert(k.into(), value);
            }
            return Ok((action.clone(), m));
        }
    };
    Ok((action.to_owned(), m))
}

fn endpoint(c: &Connection) -> anyhow::Result<Endpoint> {
    if let Some(addr) = &c.endpoint {
        let (Some(key_id), Some(secret)) = (&c.access_key_id, &c.access_key_secret) else {
            bail!(
                "--endpoint needs --access-key-id and --access-key-secret (create one with `flowlog create-access-key`)"
            );
        };
        let tls = match &c.tls_ca {
            Some(ca) => Some(crate::api::tls::connector(ca)?),
            None => None,
        };
        return Ok(Endpoint::Tcp {
            addr: addr.clone(),
            key_id: key_id.clone(),
            secret: secret.clone(),
            tls,
        });
    }
    Ok(Endpoint::Unix(c.socket.clone().unwrap_or_else(|| {
        PathBuf::from(DEFAULT_DATA_DIR).join(API_SOCKET)
    })))
}

/// Runs one control command; the process exit code is non-zero on errors.
pub async fn run(conn: &Connection, cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::Query { target, sql } => return target.run(sql).await,
        Command::Analyze { target, analysis } => {
            let sql = match analysis {
                Analysis::TopTalkers {
                    by,
                    direction,
                    by_region,
                    limit,
                } => analyses::top_talkers(*by, direction.as_deref(), *by_region, *limit)
                    .map_err(anyhow::Error::msg)?,
                Analysis::TrafficMatrix {
                    by,
                    by_subnet,
                    by_region,
                    limit,
                } => {
                    let between = match (by_subnet, by_region) {
                        (true, _) => analyses::Between::Subnets,
                        (_, true) => analyses::Between::Regions,
                        _ => analyses::Between::Attachments,
                    };
                    analyses::traffic_matrix(*by, between, *limit)
                }
                Analysis::Gaps { limit } => analyses::gaps(*limit),
                Analysis::Slowest { limit } => analyses::slowest(*limit),
            };
            return target.run(&sql).await;
        }
        _ => {}
    }
    let (action, params) = request(cmd)?;
    let timeout = std::time::Duration::from_secs(conn.timeout.max(1));
    let (status, answer) = client::call(&endpoint(conn)?, &action, &Value::Object(params), timeout).await?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    }
    if status != 200 {
        bail!(
            "{}: {} (RequestId {})",
            answer["Code"].as_str().unwrap_or("Error"),
            answer["Message"].as_str().unwrap_or(""),
            answer["RequestId"].as_str().unwrap_or("-")
        );
    }
    if !conn.json {
        print_human(cmd, &answer);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r);
    }
}

fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| fields.iter().map(|f| text(&i[*f])).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn print_human(cmd: &Command, a: &Value) {
    match cmd {
        Command::ListProjects => table(
            &["PROJECT", "LOGSTORES", "CREATED", "DESCRIPTION"],
            rows(
                &a["Projects"],
                &["ProjectName", "LogStoreCount", "CreationTime", "Description"],
            ),
        ),
        Command::ListLogstores { .. } => table(
            &["LOGSTORE", "TTL(DAYS)", "CREATED"],
            rows(&a["LogStores"], &["LogStoreName", "Ttl", "CreationTime"]),
        ),
        Command::DescribeFlowlogs { .. } => {
            let list: Vec<Vec<String>> = a["FlowLogs"]
                .as_array()
                .map(|fl| {
                    fl.iter()
                        .map(|f| {
                            let atts: Vec<String> = f["Attachments"]
                                .as_array()
                                .map(|v| {
                                    v.iter()
                                        .map(|x| match x["Netns"].as_str() {
                                            Some(ns) => format!("{}@{ns}", text(&x["Interface"])),
                                            None => text(&x["Interface"]),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            vec![
                                text(&f["FlowLogId"]),
                                text(&f["FlowLogName"]),
                                text(&f["Status"]),
                                text(&f["CenId"]),
                                format!("{}/{}", text(&f["ProjectName"]), text(&f["LogStoreName"])),
                                text(&f["Interval"]),
                                atts.join(","),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "CEN",
                    "PROJECT/LOGSTORE",
                    "INTERVAL",
                    "ATTACHMENTS",
                ],
                list,
            );
            println!(
                "page {} of size {}, {} in total",
                text(&a["PageNumber"]),
                text(&a["PageSize"]),
                text(&a["TotalCount"])
            );
        }
        Command::ListAccessKeys => table(
            &["ACCESS KEY ID", "CREATED", "DESCRIPTION"],
            rows(&a["AccessKeys"], &["AccessKeyId", "CreationTime", "Description"]),
        ),
        Command::Status => {
            let s = &a["Status"];
            println!(
                "state {}; windows published {}; records {}; last window {}..{}",
                text(&s["state"]),
                text(&s["windows-published"]),
                text(&s["records-published"]),
                text(&s["last-window-start"]),
                text(&s["last-window-end"])
            );
            table(
                &["INTERFACE", "NETNS", "IFINDEX", "INGRESS", "EGRESS", "FLOW LOGS"],
                rows(
                    &s["attachments"],
                    &[
                        "interface",
                        "netns",
                        "ifindex",
                        "ingress-hook",
                        "egress-hook",
                        "flow-logs",
                    ],
                ),
            );
            table(
                &["NETNS", "FLOWS", "MAP ENTRIES", "FILL"],
                rows(
                    &a["FlowMaps"],
                    &["Netns", "FlowsLastWindow", "FlowMapEntries", "FillRatio"],
                ),
            );
            table(
                &[
                    "FLOW LOG",
                    "WINDOW START",
                    "WINDOW END",
                    "INTERVAL",
                    "LAST START",
                    "LAST END",
                ],
                rows(
                    &a["FlowLogs"],
                    &[
                        "FlowLogId",
                        "WindowStart",
                        "WindowEnd",
                        "Interval",
                        "LastWindowStart",
                        "LastWindowEnd",
                    ],
                ),
            );
        }
        _ => {
            if let Some(o) = a.as_object() {
                for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "RequestId") {
                    println!("{k}: {}", text(v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90").ok(), Some(90));
        assert_eq!(parse_duration("15m").ok(), Some(900));
        assert_eq!(parse_duration("7d").ok(), Some(604_800));
        assert_eq!(parse_duration("1w").ok(), Some(604_800));
        assert!(parse_duration("h").is_err() && parse_duration("-5m").is_err());
        // Sizes that would overflow are refused, never wrapped.
        assert!(parse_duration("999999999999999999d").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
        assert!(parse_time("99999999999999-01-01T00:00:00Z").is_err());
        assert_eq!(parse_time("1796040000").ok(), Some(1_796_040_000));
        assert_eq!(parse_time("2026-11-30T12:00:00Z").ok(), Some(1_796_040_000));
        assert_eq!(parse_time("2026-11-30 12:00:00").ok(), Some(1_796_040_000));
        assert!(parse_time("2026-13-30T12:00:00Z").is_err() && parse_time("yesterday").is_err());
    }
}
