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
        /// Interface to capture: `IFACE[,netns=NS][,mode=auto|xdp|tc]` (repeatable).
        #[arg(long = "attach", required = true)]
        attachments: Vec<String>,
        /// Window length in seconds (600 or 60).
        #[arg(long)]
        interval: Option<u64>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        account_id: Option<String>,
    },
    /// Change a flow log's name, description or window (from its next boundary).
    ModifyFlowlog {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        interval: Option<u64>,
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
    /// Call any action with `Key=Value` parameters (values that parse as
    /// JSON are sent as JSON).
    Call { action: String, params: Vec<String> },
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
            _ => bail!("--attach {spec:?}: expected IFACE[,netns=NS][,mode=MODE]"),
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
            "CreateFlowlog"
        }
        Command::ModifyFlowlog {
            id,
            name,
            description,
            interval,
        } => {
            put(&mut m, "FlowLogId", Some(id.as_str()));
            put(&mut m, "FlowLogName", name.as_deref());
            put(&mut m, "Description", description.as_deref());
            put(&mut m, "Interval", *interval);
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
        return Ok(Endpoint::Tcp {
            addr: addr.clone(),
            key_id: key_id.clone(),
            secret: secret.clone(),
        });
    }
    Ok(Endpoint::Unix(c.socket.clone().unwrap_or_else(|| {
        PathBuf::from(DEFAULT_DATA_DIR).join(API_SOCKET)
    })))
}

/// Runs one control command; the process exit code is non-zero on errors.
pub async fn run(conn: &Connection, cmd: &Command) -> anyhow::Result<()> {
    let (action, params) = request(cmd)?;
    let (status, answer) = client::call(&endpoint(conn)?, &action, &Value::Object(params)).await?;
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
