//! The `flowlog` control commands: one subcommand per API action, talking
//! to a running agent; human-readable tables by default, `--json` for the
//! raw answer.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::{
    api::{
        actions::{
            AccessKeyList, Action, ActiveFlowLog, AgentStatus, Attachments, CreateAccessKey, CreateFlowlog,
            CreateLogstore, CreateProject, DeactiveFlowLog, DeleteAccessKey, DeleteFlowlog, DeleteLogstore,
            DeleteProject, DescribeAgentStatus, DescribeFlowlogs, FlowLogPage, ListAccessKeys, ListLogstores,
            ListProjects, LogstoreList, ModifyFlowLogAttribute, ProjectList, ReloadRegionTable,
        },
        client::{self, Endpoint},
    },
    config::{API_SOCKET, CaptureMode, DEFAULT_DATA_DIR},
    state::{AttachmentSpec, FlowLogStatus},
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
            &crate::model::LogstoreRef {
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

/// One `--attach IFACE[,netns=NS][,mode=MODE][,attachment-id=ID][,region-id=REGION]`.
fn attachment(spec: &str) -> anyhow::Result<AttachmentSpec> {
    let mut parts = spec.split(',');
    let interface = parts
        .next()
        .filter(|s| !s.is_empty())
        .context("empty --attach value")?;
    let mut a = AttachmentSpec {
        interface: interface.to_owned(),
        netns: None,
        mode: CaptureMode::Auto,
        attachment_id: None,
        region_id: None,
    };
    for part in parts {
        match part.split_once('=') {
            Some(("netns", v)) => a.netns = Some(v.to_owned()),
            Some(("mode", v)) => a.mode = v.parse().map_err(anyhow::Error::msg)?,
            Some(("attachment-id", v)) => a.attachment_id = Some(v.to_owned()),
            Some(("region-id", v)) => a.region_id = Some(v.to_owned()),
            _ => bail!(
                "--attach {spec:?}: expected IFACE[,netns=NS][,mode=MODE][,attachment-id=ID][,region-id=REGION]"
            ),
        }
    }
    Ok(a)
}

/// The API action a control command sends (`None`: the command runs here,
/// or is a raw `call`).
fn action(cmd: &Command) -> anyhow::Result<Option<Action>> {
    let s = |v: &str| v.to_owned();
    let o = |v: &Option<String>| v.clone();
    Ok(Some(match cmd {
        Command::CreateProject { name, description } => Action::CreateProject(CreateProject {
            project_name: s(name),
            description: o(description),
        }),
        Command::DeleteProject { name } => Action::DeleteProject(DeleteProject {
            project_name: s(name),
        }),
        Command::ListProjects => Action::ListProjects(ListProjects {}),
        Command::CreateLogstore { project, name, ttl } => Action::CreateLogstore(CreateLogstore {
            project_name: s(project),
            log_store_name: s(name),
            ttl: *ttl,
        }),
        Command::DeleteLogstore { project, name } => Action::DeleteLogstore(DeleteLogstore {
            project_name: s(project),
            log_store_name: s(name),
        }),
        Command::ListLogstores { project } => Action::ListLogstores(ListLogstores {
            project_name: s(project),
        }),
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
        } => Action::CreateFlowlog(CreateFlowlog {
            flow_log_name: s(name),
            description: o(description),
            cen_id: s(cen_id),
            project_name: s(project),
            log_store_name: s(logstore),
            attachments: Attachments(
                attachments
                    .iter()
                    .map(|a| attachment(a))
                    .collect::<anyhow::Result<_>>()?,
            ),
            interval: *interval,
            account_id: o(account_id),
            log_format_string: o(log_format),
        }),
        Command::ModifyFlowlog {
            id,
            name,
            description,
            interval,
            log_format,
        } => Action::ModifyFlowLogAttribute(ModifyFlowLogAttribute {
            flow_log_id: s(id),
            flow_log_name: o(name),
            description: o(description),
            interval: *interval,
            log_format_string: o(log_format),
        }),
        Command::DescribeFlowlogs {
            id,
            name,
            cen_id,
            status,
            page,
            page_size,
        } => Action::DescribeFlowlogs(DescribeFlowlogs {
            flow_log_id: o(id),
            flow_log_name: o(name),
            cen_id: o(cen_id),
            status: match status.as_deref() {
                None => None,
                Some("Active") => Some(FlowLogStatus::Active),
                Some("Inactive") => Some(FlowLogStatus::Inactive),
                Some(other) => bail!("--status {other:?}: Active or Inactive"),
            },
            page_number: *page,
            page_size: *page_size,
        }),
        Command::ActiveFlowlog { id } => Action::ActiveFlowLog(ActiveFlowLog { flow_log_id: s(id) }),
        Command::DeactiveFlowlog { id } => Action::DeactiveFlowLog(DeactiveFlowLog { flow_log_id: s(id) }),
        Command::DeleteFlowlog { id } => Action::DeleteFlowlog(DeleteFlowlog { flow_log_id: s(id) }),
        Command::CreateAccessKey { description } => Action::CreateAccessKey(CreateAccessKey {
            description: o(description),
        }),
        Command::DeleteAccessKey { id } => Action::DeleteAccessKey(DeleteAccessKey { access_key_id: s(id) }),
        Command::ListAccessKeys => Action::ListAccessKeys(ListAccessKeys {}),
        Command::Status => Action::DescribeAgentStatus(DescribeAgentStatus {}),
        Command::ReloadRegions => Action::ReloadRegionTable(ReloadRegionTable {}),
        Command::Query { .. } | Command::Analyze { .. } | Command::Call { .. } => return Ok(None),
    }))
}

/// `flowlog call ACTION Key=Value…`: parameters sent as given (values that
/// parse as JSON are sent as JSON), for what the typed commands do not
/// cover.
fn raw_call(action: &str, params: &[String]) -> anyhow::Result<(String, Map<String, Value>)> {
    let mut m = Map::new();
    for kv in params {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("{kv:?}: expected Key=Value"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| json!(v));
        m.insert(k.into(), value);
    }
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
    let typed = action(cmd)?;
    let (name, params) = match (&typed, cmd) {
        (Some(a), _) => (a.name().to_owned(), a.params()),
        (None, Command::Call { action, params }) => raw_call(action, params)?,
        (None, _) => bail!("local commands need no agent"),
    };
    let timeout = std::time::Duration::from_secs(conn.timeout.max(1));
    let (status, answer) = client::call(&endpoint(conn)?, &name, &Value::Object(params), timeout).await?;
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
        print_human(typed.as_ref(), answer)?;
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

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
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

/// An answer for a person: a table for the listing actions, `Key: value`
/// lines for the others.
fn print_human(action: Option<&Action>, a: Value) -> anyhow::Result<()> {
    match action {
        Some(Action::ListProjects(_)) => {
            let a: ProjectList = serde_json::from_value(a)?;
            table(
                &["PROJECT", "LOGSTORES", "CREATED", "DESCRIPTION"],
                a.projects
                    .into_iter()
                    .map(|p| {
                        vec![
                            p.project_name,
                            p.log_store_count.to_string(),
                            p.creation_time.to_string(),
                            p.description,
                        ]
                    })
                    .collect(),
            );
        }
        Some(Action::ListLogstores(_)) => {
            let a: LogstoreList = serde_json::from_value(a)?;
            table(
                &["LOGSTORE", "TTL(DAYS)", "CREATED"],
                a.log_stores
                    .into_iter()
                    .map(|l| vec![l.log_store_name, l.ttl.to_string(), l.creation_time.to_string()])
                    .collect(),
            );
        }
        Some(Action::DescribeFlowlogs(_)) => {
            let a: FlowLogPage = serde_json::from_value(a)?;
            let rows = a
                .flow_logs
                .into_iter()
                .map(|v| {
                    let f = v.flow_log;
                    let atts: Vec<String> = f
                        .attachments
                        .iter()
                        .map(|x| match &x.netns {
                            Some(ns) => format!("{}@{ns}", x.interface),
                            None => x.interface.clone(),
                        })
                        .collect();
                    vec![
                        f.flow_log_id,
                        f.flow_log_name,
                        f.status.as_str().to_owned(),
                        f.cen_id,
                        format!("{}/{}", f.project_name, f.log_store_name),
                        f.interval.to_string(),
                        atts.join(","),
                    ]
                })
                .collect();
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
                rows,
            );
            println!(
                "page {} of size {}, {} in total",
                a.page_number, a.page_size, a.total_count
            );
        }
        Some(Action::ListAccessKeys(_)) => {
            let a: AccessKeyList = serde_json::from_value(a)?;
            table(
                &["ACCESS KEY ID", "CREATED", "DESCRIPTION"],
                a.access_keys
                    .into_iter()
                    .map(|k| vec![k.access_key_id, k.creation_time.to_string(), k.description])
                    .collect(),
            );
        }
        Some(Action::DescribeAgentStatus(_)) => print_status(serde_json::from_value(a)?),
        _ => {
            if let Some(o) = a.as_object() {
                for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "RequestId") {
                    println!("{k}: {}", text(v));
                }
            }
        }
    }
    Ok(())
}

fn print_status(a: AgentStatus) {
    let (s, f) = (&a.status.agent, &a.status.figures);
    println!(
        "state {}; windows published {}; records {}; last window {}..{}; pinned {}",
        s.state,
        f.windows_published,
        f.records_published,
        opt(s.last_window_start),
        opt(s.last_window_end),
        s.pinned
    );
    table(
        &["INTERFACE", "NETNS", "IFINDEX", "INGRESS", "EGRESS", "FLOW LOGS"],
        s.attachments
            .iter()
            .map(|x| {
                vec![
                    x.interface.clone(),
                    opt(x.netns.clone()),
                    x.ifindex.to_string(),
                    x.ingress_hook.clone(),
                    x.egress_hook.clone(),
                    x.flow_logs.join(","),
                ]
            })
            .collect(),
    );
    table(
        &["NETNS", "FAMILY", "FLOWS", "MAP ENTRIES", "FILL"],
        a.flow_maps
            .iter()
            .flat_map(|m| {
                [("ipv4", &m.ipv4), ("ipv6", &m.ipv6)].map(|(family, f)| {
                    vec![
                        opt(m.netns.clone()),
                        family.to_owned(),
                        f.flows_last_window.to_string(),
                        f.flow_map_entries.to_string(),
                        format!("{:.3}", f.fill_ratio),
                    ]
                })
            })
            .collect(),
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
        a.flow_logs
            .iter()
            .map(|f| {
                vec![
                    f.flow_log_id.clone(),
                    f.window_start.to_string(),
                    f.window_end.to_string(),
                    f.interval.to_string(),
                    opt(f.last_window_start),
                    opt(f.last_window_end),
                ]
            })
            .collect(),
    );
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
