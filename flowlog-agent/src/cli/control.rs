//! The control commands: one subcommand per API action, sent as the typed
//! [`Action`] to a running agent, and the local `query` and `analyze`
//! over a data directory.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{
    logstore::{Analysis, LogstoreArgs},
    print::print_human,
};
use crate::{
    api::{
        actions::{
            Action, ActiveFlowLog, Attachments, CreateAccessKey, CreateFlowlog, CreateLogstore,
            CreateProject, DeactiveFlowLog, DeleteAccessKey, DeleteFlowlog, DeleteLogstore, DeleteProject,
            DescribeAgentStatus, DescribeFlowlogs, ListAccessKeys, ListLogstores, ListProjects,
            ModifyFlowLogAttribute, ReloadRegionTable,
        },
        client::{self, Endpoint},
    },
    config::{API_SOCKET, DEFAULT_DATA_DIR},
    model::CaptureMode,
    state::{AttachmentSpec, FlowLogStatus},
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
pub enum ControlCommand {
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
fn action(cmd: &ControlCommand) -> anyhow::Result<Option<Action>> {
    let s = |v: &str| v.to_owned();
    let o = |v: &Option<String>| v.clone();
    Ok(Some(match cmd {
        ControlCommand::CreateProject { name, description } => Action::CreateProject(CreateProject {
            project_name: s(name),
            description: o(description),
        }),
        ControlCommand::DeleteProject { name } => Action::DeleteProject(DeleteProject {
            project_name: s(name),
        }),
        ControlCommand::ListProjects => Action::ListProjects(ListProjects {}),
        ControlCommand::CreateLogstore { project, name, ttl } => Action::CreateLogstore(CreateLogstore {
            project_name: s(project),
            log_store_name: s(name),
            ttl: *ttl,
        }),
        ControlCommand::DeleteLogstore { project, name } => Action::DeleteLogstore(DeleteLogstore {
            project_name: s(project),
            log_store_name: s(name),
        }),
        ControlCommand::ListLogstores { project } => Action::ListLogstores(ListLogstores {
            project_name: s(project),
        }),
        ControlCommand::CreateFlowlog {
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
        ControlCommand::ModifyFlowlog {
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
        ControlCommand::DescribeFlowlogs {
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
        ControlCommand::ActiveFlowlog { id } => Action::ActiveFlowLog(ActiveFlowLog { flow_log_id: s(id) }),
        ControlCommand::DeactiveFlowlog { id } => {
            Action::DeactiveFlowLog(DeactiveFlowLog { flow_log_id: s(id) })
        }
        ControlCommand::DeleteFlowlog { id } => Action::DeleteFlowlog(DeleteFlowlog { flow_log_id: s(id) }),
        ControlCommand::CreateAccessKey { description } => Action::CreateAccessKey(CreateAccessKey {
            description: o(description),
        }),
        ControlCommand::DeleteAccessKey { id } => {
            Action::DeleteAccessKey(DeleteAccessKey { access_key_id: s(id) })
        }
        ControlCommand::ListAccessKeys => Action::ListAccessKeys(ListAccessKeys {}),
        ControlCommand::Status => Action::DescribeAgentStatus(DescribeAgentStatus {}),
        ControlCommand::ReloadRegions => Action::ReloadRegionTable(ReloadRegionTable {}),
        ControlCommand::Query { .. } | ControlCommand::Analyze { .. } | ControlCommand::Call { .. } => {
            return Ok(None);
        }
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
pub async fn run(conn: &Connection, cmd: &ControlCommand) -> anyhow::Result<()> {
    match cmd {
        ControlCommand::Query { target, sql } => return target.run(sql).await,
        ControlCommand::Analyze { target, analysis } => return target.analyze(analysis).await,
        _ => {}
    }
    let typed = action(cmd)?;
    let (name, params) = match (&typed, cmd) {
        (Some(a), _) => (a.name().to_owned(), a.params()),
        (None, ControlCommand::Call { action, params }) => raw_call(action, params)?,
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
