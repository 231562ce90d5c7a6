//! The control loop's operations: the six flow-log actions of the product,
//! Projects and Logstores, access keys and the status view, applied to the
//! persisted [`Store`] and the running [`Engine`].
//!
//! Every mutation is built on a copy of the state, checked, committed
//! durably, and only then made visible; an activation that cannot attach
//! leaves both the kernel and the state as they were.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::{
    api::{ApiError, KeyTable, Params, QuerySpec},
    config::{Attachment, CaptureMode, FileConfig},
    engine::{Engine, FlowLogSpec},
    enrich::{RegionTable, SharedRegions},
    record::{Identity, format::LogFormat},
    state::{
        self, AccessKey, AttachmentSpec, FlowLog, FlowLogStatus, Logstore, Project, State, Store, random,
        validate,
    },
    store::{self, LogstoreRef, query::TimeRange},
};

/// Days a Logstore keeps its partitions when `Ttl` does not say.
const DEFAULT_TTL_DAYS: u64 = 30;
const MAX_PAGE_SIZE: u64 = 100;

/// Values a request may leave out.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub account_id: String,
    pub interval_secs: u64,
    /// Time one GetLogs query may take in all.
    pub query_timeout: Duration,
}

pub struct Control {
    data_dir: PathBuf,
    store: Store,
    pub engine: Engine,
    keys: KeyTable,
    defaults: Defaults,
    /// Active flow logs whose interfaces could not be attached (yet).
    unattached: BTreeSet<String>,
    /// The last call's window on its way to the sinks (DeactiveFlowLog).
    published: Option<oneshot::Receiver<()>>,
    regions: RegionSource,
}

/// Where the region table comes from, and the one in force.
pub struct RegionSource {
    /// The configuration file whose `[[region]]` entries a reload reads.
    pub file: Option<PathBuf>,
    pub table: SharedRegions,
}

/// No id or secret can be made without the OS random source.
fn no_random(e: state::random::RandomError) -> ApiError {
    ApiError::internal(e.to_string())
}

/// OperationFailed.Attach for a flow log that could not start, with the
/// reason (an error's whole chain).
pub fn attach_failed(id: &str, reason: &str) -> ApiError {
    ApiError::failed("Attach", format!("cannot start flow log {id}: {reason}"))
}

fn bad(param: &str) -> impl Fn(String) -> ApiError + '_ {
    move |m| ApiError::invalid(param, m)
}

/// A LogFormatString from a request, checked, in its canonical spelling.
fn log_format(s: &str) -> Result<String, ApiError> {
    LogFormat::parse(s)
        .map(|f| f.to_string())
        .map_err(|e| ApiError::invalid("LogFormatString", e.to_string()))
}

/// The format a flow log's records are cut to (`None`: every field).
pub fn parsed_format(s: Option<&str>) -> Option<Arc<LogFormat>> {
    // State::check and the API accepted it; a failure keeps every field.
    s.and_then(|s| LogFormat::parse(s).ok()).map(Arc::new)
}

/// The engine's view of a persisted flow log.
pub fn spec_of(f: &FlowLog) -> FlowLogSpec {
    FlowLogSpec {
        id: f.flow_log_id.clone(),
        identity: Identity {
            account_id: f.account_id.clone(),
            cen_id: f.cen_id.clone(),
            flow_log_id: f.flow_log_id.clone(),
        },
        attachments: f
            .attachments
            .iter()
            .map(|a| Attachment {
                interface: a.interface.clone(),
                netns: a.netns.clone(),
                mode: a.mode,
                attachment_id: a.attachment_id.clone(),
                region_id: a.region_id.clone(),
            })
            .collect(),
        window: Duration::from_secs(f.interval),
        format: parsed_format(f.log_format_string.as_deref()),
        logstore: Some(LogstoreRef {
            project: f.project_name.clone(),
            logstore: f.log_store_name.clone(),
        }),
    }
}

pub fn parse_attachments(v: &Value) -> Result<Vec<AttachmentSpec>, ApiError> {
    let err = |m: String| ApiError::invalid("Attachments", m);
    let list = v.as_array().ok_or_else(|| {
        err("Attachments must be a list of {\"Interface\", \"Netns\", \"Mode\", \"AttachmentId\", \"RegionId\"} objects".into())
    })?;
    if list.is_empty() || list.len() > validate::MAX_ATTACHMENTS {
        return Err(err(format!(
            "a flow log has 1 to {} attachments, got {}",
            validate::MAX_ATTACHMENTS,
            list.len()
        )));
    }
    let mut out: Vec<AttachmentSpec> = Vec::new();
    for item in list {
        let obj = item
            .as_object()
            .ok_or_else(|| err(format!("attachment {item} is not an object")))?;
        let mut p = Params::new(obj.clone());
        let interface = p.str("Interface").map_err(|e| err(e.message))?;
        let netns = p.opt_str("Netns").map_err(|e| err(e.message))?;
        let mode = match p.opt_str("Mode").map_err(|e| err(e.message))? {
            None => CaptureMode::Auto,
            Some(m) => m.parse::<CaptureMode>().map_err(err)?,
        };
        let attachment_id = p.opt_str("AttachmentId").map_err(|e| err(e.message))?;
        let region_id = p.opt_str("RegionId").map_err(|e| err(e.message))?;
        p.finish().map_err(|e| err(e.message))?;
        validate::attachment(
            &interface,
            netns.as_deref(),
            attachment_id.as_deref(),
            region_id.as_deref(),
        )
        .map_err(err)?;
        if out.iter().any(|a| a.interface == interface && a.netns == netns) {
            return Err(err(format!("interface {interface} is listed twice")));
        }
        out.push(AttachmentSpec {
            interface,
            netns,
            mode,
            attachment_id,
            region_id,
        });
    }
    Ok(out)
}

impl Control {
    pub fn new(
        data_dir: &Path,
        store: Store,
        engine: Engine,
        keys: KeyTable,
        defaults: Defaults,
        regions: RegionSource,
    ) -> Self {
        let c = Self {
            data_dir: data_dir.to_owned(),
            store,
            engine,
            keys,
            defaults,
            unattached: BTreeSet::new(),
            published: None,
            regions,
        };
        c.publish_keys();
        c.report_regions(None);
        c
    }

    /// Re-reads the region table from the configuration file (SIGHUP,
    /// ReloadRegionTable). A bad table is refused whole, naming the line
    /// and the reason, and the table in force stays; a good one labels
    /// each flow log's windows from its next window on.
    pub fn reload_regions(&mut self) -> Result<Value, ApiError> {
        let refuse = |m: String| ApiError::new(axum::http::StatusCode::BAD_REQUEST, "InvalidRegionTable", m);
        let Some(path) = self.regions.file.clone() else {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "NoConfigFile",
                "the agent was started without --config: there is no region table file to reload",
            ));
        };
        let loaded = FileConfig::load(&path).map_err(|e| e.to_string()).and_then(|f| {
            RegionTable::new(&f.region_entries).map_err(|e| format!("{}: region table: {e}", path.display()))
        });
        match loaded {
            Ok(table) => {
                let entries = table.len();
                self.regions.table.replace(table);
                info!(entries, file = %path.display(), "region table reloaded; in force from each flow log's next window");
                self.report_regions(None);
                Ok(json!({ "Entries": entries, "InForce": "from each flow log's next window" }))
            }
            Err(m) => {
                warn!(error = %m, "region table not reloaded; the previous table stays in force");
                self.report_regions(Some(m.clone()));
                Err(refuse(m))
            }
        }
    }

    fn report_regions(&self, error: Option<String>) {
        let entries = self.regions.table.current().len();
        let mut s = self.engine.status_board().lock();
        s.region_table_entries = entries as u64;
        s.region_table_error = error;
    }

    /// The key table the API's TCP listener checks signatures against.
    pub fn keys(&self) -> KeyTable {
        self.keys.clone()
    }

    fn publish_keys(&self) {
        let table = self
            .store
            .state
            .access_keys
            .values()
            .map(|k| (k.access_key_id.clone(), k.access_key_secret.clone()))
            .collect();
        if let Ok(mut k) = self.keys.write() {
            *k = table;
        }
    }

    /// Starts the configuration's own flow log (`configured`; its failure
    /// is returned) and re-activates every flow log persisted as Active.
    pub async fn restore(
        &mut self,
        configured: Option<FlowLogSpec>,
    ) -> Result<(), crate::capture::CaptureError> {
        let active: Vec<FlowLog> = self
            .store
            .state
            .flow_logs
            .values()
            .filter(|f| f.status == FlowLogStatus::Active)
            .cloned()
            .collect();
        let first = configured.as_ref().map(|s| s.id.clone());
        let specs = configured.into_iter().chain(active.iter().map(spec_of)).collect();
        let mut failed = None;
        for (id, result) in self.engine.restore(specs).await {
            match result {
                Err(e) if Some(&id) == first.as_ref() => failed = Some(e),
                Ok(()) => info!(flow_log = %id, "restored active flow log"),
                Err(e) => {
                    error!(flow_log = %id, error = %crate::capture::chain(&e), "cannot attach active flow log; retrying");
                    self.unattached.insert(id);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Active flow logs whose interfaces were missing, to try again;
    /// those no longer Active are forgotten.
    pub fn unattached_specs(&mut self) -> Vec<FlowLogSpec> {
        let state = &self.store.state;
        self.unattached.retain(|id| {
            state
                .flow_logs
                .get(id)
                .is_some_and(|f| f.status == FlowLogStatus::Active)
        });
        self.unattached
            .iter()
            .filter_map(|id| state.flow_logs.get(id))
            .map(spec_of)
            .collect()
    }

    /// Attaches an Active flow log whose interfaces were missing.
    pub async fn retry_unattached(&mut self, spec: FlowLogSpec) {
        let id = spec.id.clone();
        match self.engine.activate(spec).await {
            Ok(()) => {
                info!(flow_log = %id, "active flow log attached");
                self.unattached.remove(&id);
            }
            Err(e) => {
                tracing::debug!(flow_log = %id, error = %crate::capture::chain(&e), "still cannot attach")
            }
        }
    }

    fn commit(&mut self, next: State) -> Result<(), ApiError> {
        self.store.commit(next).map_err(|e| {
            error!(error = %crate::capture::chain(&e), "state not saved");
            ApiError::internal(format!(
                "the agent could not save its state: {}",
                crate::capture::chain(&e)
            ))
        })
    }

    /// What tells when the window the last call published reached the
    /// sinks, if it published one.
    pub fn take_published(&mut self) -> Option<oneshot::Receiver<()>> {
        self.published.take()
    }

    pub async fn handle(&mut self, action: &str, p: Params) -> Result<Value, ApiError> {
        let out = match action {
            "CreateProject" => self.create_project(p),
            "DeleteProject" => self.delete_project(p),
            "ListProjects" => p.finish().map(|()| self.list_projects()),
            "CreateLogstore" => self.create_logstore(p),
            "DeleteLogstore" => self.delete_logstore(p),
            "ListLogstores" => self.list_logstores(p),
            "CreateFlowlog" => self.create_flowlog(p),
            "ModifyFlowLogAttribute" => self.modify_flowlog(p),
            "DescribeFlowlogs" => self.describe_flowlogs(p),
            "ActiveFlowLog" => {
                let spec = self.check_activation(p)?;
                self.finish_activation(&spec.id).await
            }
            "DeactiveFlowLog" => self.deactive_flowlog(p).await,
            "DeleteFlowlog" => self.delete_flowlog(p),
            "CreateAccessKey" => self.create_access_key(p),
            "DeleteAccessKey" => self.delete_access_key(p),
            "ListAccessKeys" => p.finish().map(|()| self.list_access_keys()),
            "DescribeAgentStatus" => p.finish().map(|()| self.agent_status()),
            "ReloadRegionTable" => p.finish().and_then(|()| self.reload_regions()),
            other => {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "InvalidAction.NotFound",
                    format!("unknown action {other:?}"),
                ));
            }
        }?;
        Ok(out)
    }

    /// Creates a Project and Logstore if they do not exist yet (for the
    /// flow log the agent's own configuration defines).
    pub fn ensure_logstore(&mut self, l: &LogstoreRef) -> Result<(), ApiError> {
        validate::project_name(&l.project).map_err(bad("ProjectName"))?;
        validate::logstore_name(&l.logstore).map_err(bad("LogStoreName"))?;
        if self
            .store
            .state
            .projects
            .get(&l.project)
            .is_some_and(|p| p.logstores.contains_key(&l.logstore))
        {
            return Ok(());
        }
        let mut next = self.store.state.clone();
        let now = state::now_secs();
        let project = next.projects.entry(l.project.clone()).or_insert_with(|| Project {
            name: l.project.clone(),
            description: "created by the agent for its configured flow log".into(),
            created: now,
            logstores: Default::default(),
        });
        project.logstores.insert(
            l.logstore.clone(),
            Logstore {
                name: l.logstore.clone(),
                ttl: DEFAULT_TTL_DAYS as u32,
                created: now,
            },
        );
        self.commit(next)?;
        self.make_logstore_dir(l);
        info!(project = %l.project, logstore = %l.logstore, "created the default Logstore");
        Ok(())
    }

    fn make_logstore_dir(&self, l: &LogstoreRef) {
        let dir = store::logstore_dir(&self.data_dir, l);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "cannot create the Logstore directory");
        }
    }

    /// Removes partitions older than each Logstore's retention.
    pub fn expire_logstores(&self) {
        let now = state::now_secs();
        for p in self.store.state.projects.values() {
            for l in p.logstores.values() {
                let r = LogstoreRef {
                    project: p.name.clone(),
                    logstore: l.name.clone(),
                };
                match store::expire(&store::logstore_dir(&self.data_dir, &r), l.ttl, now) {
                    Ok(removed) => {
                        for dir in removed {
                            info!(dir = %dir.display(), ttl_days = l.ttl, "expired Logstore partition removed");
                        }
                    }
                    Err(e) => {
                        warn!(project = %p.name, logstore = %l.name, error = %e, "retention sweep failed")
                    }
                }
            }
        }
    }

    /// Validates a GetLogs request into a query for the API task to run.
    pub fn get_logs(&self, mut p: Params) -> Result<QuerySpec, ApiError> {
        let project = p.str("ProjectName")?;
        let logstore = p.str("LogStoreName")?;
        let from = p.opt_u64("From")?;
        let to = p.opt_u64("To")?;
        let sql = p.opt_str("Query")?;
        let line = p.opt_u64("Line")?.unwrap_or(100);
        p.finish()?;
        if !self.project(&project)?.logstores.contains_key(&logstore) {
            return Err(ApiError::not_found(
                "LogStore",
                format!("logstore {logstore:?} does not exist in project {project:?}"),
            ));
        }
        if !(1..=10_000).contains(&line) {
            return Err(ApiError::invalid("Line", "Line must be between 1 and 10000"));
        }
        let as_secs = |v: Option<u64>, name: &str| -> Result<Option<i64>, ApiError> {
            v.map(|x| {
                i64::try_from(x).map_err(|_| ApiError::invalid(name, format!("{name} is out of range")))
            })
            .transpose()
        };
        let range = TimeRange {
            from: as_secs(from, "From")?,
            to: as_secs(to, "To")?,
        };
        let sql = sql.unwrap_or_else(|| format!("SELECT * FROM logs ORDER BY start, interface LIMIT {line}"));
        let dir = store::logstore_dir(
            &self.data_dir,
            &LogstoreRef {
                project: project.clone(),
                logstore: logstore.clone(),
            },
        );
        Ok(QuerySpec {
            dir,
            range,
            sql,
            project,
            logstore,
            line: line as usize,
            timeout: self.defaults.query_timeout,
        })
    }

    fn project(&self, name: &str) -> Result<&Project, ApiError> {
        self.store
            .state
            .projects
            .get(name)
            .ok_or_else(|| ApiError::not_found("Project", format!("project {name:?} does not exist")))
    }

    fn flow_log(&self, id: &str) -> Result<&FlowLog, ApiError> {
        self.store
            .state
            .flow_logs
            .get(id)
            .ok_or_else(|| ApiError::not_found("FlowLog", format!("flow log {id:?} does not exist")))
    }

    fn create_project(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let name = p.str("ProjectName")?;
        let description = p.opt_str("Description")?.unwrap_or_default();
        p.finish()?;
        validate::project_name(&name).map_err(bad("ProjectName"))?;
        validate::description(&description).map_err(bad("Description"))?;
        if self.store.state.projects.contains_key(&name) {
            return Err(ApiError::exists(
                "Project",
                format!("project {name:?} already exists"),
            ));
        }
        let mut next = self.store.state.clone();
        next.projects.insert(
            name.clone(),
            Project {
                name: name.clone(),
                description,
                created: state::now_secs(),
                logstores: Default::default(),
            },
        );
        self.commit(next)?;
        Ok(json!({ "ProjectName": name }))
    }

    fn delete_project(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let name = p.str("ProjectName")?;
        p.finish()?;
        let project = self.project(&name)?;
        if !project.logstores.is_empty() {
            return Err(ApiError::in_use(
                "Project",
                format!(
                    "project {name:?} still has {} logstore(s); delete them first",
                    project.logstores.len()
                ),
            ));
        }
        let mut next = self.store.state.clone();
        next.projects.remove(&name);
        self.commit(next)?;
        let _ = std::fs::remove_dir_all(self.data_dir.join(store::LOGSTORES_DIR).join(&name));
        Ok(json!({}))
    }

    fn list_projects(&self) -> Value {
        let projects: Vec<Value> = self
            .store
            .state
            .projects
            .values()
            .map(|p| {
                json!({
                    "ProjectName": p.name,
                    "Description": p.description,
                    "CreationTime": p.created,
                    "LogStoreCount": p.logstores.len(),
                })
            })
            .collect();
        json!({ "TotalCount": projects.len(), "Projects": projects })
    }

    fn create_logstore(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let project = p.str("ProjectName")?;
        let name = p.str("LogStoreName")?;
        let ttl = p.opt_u64("Ttl")?.unwrap_or(DEFAULT_TTL_DAYS);
        p.finish()?;
        validate::logstore_name(&name).map_err(bad("LogStoreName"))?;
        let ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
        validate::ttl(ttl).map_err(bad("Ttl"))?;
        if self.project(&project)?.logstores.contains_key(&name) {
            return Err(ApiError::exists(
                "LogStore",
                format!("logstore {name:?} already exists in project {project:?}"),
            ));
        }
        let mut next = self.store.state.clone();
        if let Some(proj) = next.projects.get_mut(&project) {
            proj.logstores.insert(
                name.clone(),
                Logstore {
                    name: name.clone(),
                    ttl,
                    created: state::now_secs(),
                },
            );
        }
        self.commit(next)?;
        self.make_logstore_dir(&LogstoreRef {
            project: project.clone(),
            logstore: name.clone(),
        });
        Ok(json!({ "ProjectName": project, "LogStoreName": name }))
    }

    fn delete_logstore(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let project = p.str("ProjectName")?;
        let name = p.str("LogStoreName")?;
        p.finish()?;
        if !self.project(&project)?.logstores.contains_key(&name) {
            return Err(ApiError::not_found(
                "LogStore",
                format!("logstore {name:?} does not exist in project {project:?}"),
            ));
        }
        if let Some(f) = self
            .store
            .state
            .flow_logs
            .values()
            .find(|f| f.project_name == project && f.log_store_name == name)
        {
            return Err(ApiError::in_use(
                "LogStore",
                format!(
                    "flow log {} writes to logstore {name:?}; delete it first",
                    f.flow_log_id
                ),
            ));
        }
        let mut next = self.store.state.clone();
        if let Some(proj) = next.projects.get_mut(&project) {
            proj.logstores.remove(&name);
        }
        self.commit(next)?;
        // The Logstore's data goes with it, as in the product.
        let dir = store::logstore_dir(
            &self.data_dir,
            &LogstoreRef {
                project,
                logstore: name,
            },
        );
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(dir = %dir.display(), error = %e, "cannot remove the deleted Logstore's data");
        }
        Ok(json!({}))
    }

    fn list_logstores(&self, mut p: Params) -> Result<Value, ApiError> {
        let project = p.str("ProjectName")?;
        p.finish()?;
        let stores: Vec<Value> = self
            .project(&project)?
            .logstores
            .values()
            .map(|l| json!({ "LogStoreName": l.name, "Ttl": l.ttl, "CreationTime": l.created }))
            .collect();
        Ok(json!({ "ProjectName": project, "TotalCount": stores.len(), "LogStores": stores }))
    }

    fn create_flowlog(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let name = p.str("FlowLogName")?;
        let description = p.opt_str("Description")?.unwrap_or_default();
        let cen_id = p.str("CenId")?;
        let project = p.str("ProjectName")?;
        let logstore = p.str("LogStoreName")?;
        let attachments = p
            .opt_json("Attachments")?
            .ok_or_else(|| ApiError::missing("Attachments"))?;
        let interval = p.opt_u64("Interval")?.unwrap_or(self.defaults.interval_secs);
        let account_id = p
            .opt_str("AccountId")?
            .unwrap_or_else(|| self.defaults.account_id.clone());
        let format = p.opt_str("LogFormatString")?;
        p.finish()?;
        let log_format_string = format.as_deref().map(log_format).transpose()?;
        validate::flow_log_name(&name).map_err(bad("FlowLogName"))?;
        validate::description(&description).map_err(bad("Description"))?;
        validate::cen_id(&cen_id).map_err(bad("CenId"))?;
        validate::interval(interval).map_err(bad("Interval"))?;
        validate::account_id(&account_id).map_err(bad("AccountId"))?;
        let attachments = parse_attachments(&attachments)?;
        if !self.project(&project)?.logstores.contains_key(&logstore) {
            return Err(ApiError::not_found(
                "LogStore",
                format!("logstore {logstore:?} does not exist in project {project:?}; create it first"),
            ));
        }
        let id = format!(
            "fl-{}",
            random::string(random::LOWER_ALNUM, 20).map_err(no_random)?
        );
        let mut next = self.store.state.clone();
        next.flow_logs.insert(
            id.clone(),
            FlowLog {
                flow_log_id: id.clone(),
                flow_log_name: name,
                description,
                cen_id,
                account_id,
                project_name: project,
                log_store_name: logstore,
                attachments,
                interval,
                status: FlowLogStatus::Inactive,
                creation_time: state::now_secs(),
                log_format_string,
            },
        );
        self.commit(next)?;
        Ok(json!({ "FlowLogId": id, "Success": true }))
    }

    fn modify_flowlog(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let id = p.str("FlowLogId")?;
        let name = p.opt_str("FlowLogName")?;
        let description = p.opt_str("Description")?;
        let interval = p.opt_u64("Interval")?;
        let format = p.opt_str("LogFormatString")?;
        p.finish()?;
        if name.is_none() && description.is_none() && interval.is_none() && format.is_none() {
            return Err(ApiError::missing("FlowLogName"));
        }
        let format = format.as_deref().map(log_format).transpose()?;
        if let Some(n) = &name {
            validate::flow_log_name(n).map_err(bad("FlowLogName"))?;
        }
        if let Some(d) = &description {
            validate::description(d).map_err(bad("Description"))?;
        }
        if let Some(i) = interval {
            validate::interval(i).map_err(bad("Interval"))?;
        }
        self.flow_log(&id)?;
        let mut next = self.store.state.clone();
        if let Some(f) = next.flow_logs.get_mut(&id) {
            if let Some(n) = name {
                f.flow_log_name = n;
            }
            if let Some(d) = description {
                f.description = d;
            }
            if let Some(i) = interval {
                f.interval = i;
            }
            if let Some(s) = &format {
                f.log_format_string = Some(s.clone());
            }
        }
        self.commit(next)?;
        // Both take effect at the running window's end.
        if let Some(i) = interval {
            self.engine.set_window(&id, Duration::from_secs(i));
        }
        if let Some(s) = &format {
            self.engine.set_format(&id, parsed_format(Some(s)));
        }
        Ok(json!({ "Success": true }))
    }

    fn describe_flowlogs(&self, mut p: Params) -> Result<Value, ApiError> {
        let id = p.opt_str("FlowLogId")?;
        let name = p.opt_str("FlowLogName")?;
        let cen = p.opt_str("CenId")?;
        let status = match p.opt_str("Status")?.as_deref() {
            None => None,
            Some("Active") => Some(FlowLogStatus::Active),
            Some("Inactive") => Some(FlowLogStatus::Inactive),
            Some(other) => {
                return Err(ApiError::invalid(
                    "Status",
                    format!("Status must be Active or Inactive, got {other:?}"),
                ));
            }
        };
        let page = p.opt_u64("PageNumber")?.unwrap_or(1);
        let size = p.opt_u64("PageSize")?.unwrap_or(20);
        p.finish()?;
        if page == 0 {
            return Err(ApiError::invalid("PageNumber", "PageNumber starts at 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::invalid(
                "PageSize",
                format!("PageSize must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        let mut matching: Vec<&FlowLog> = self
            .store
            .state
            .flow_logs
            .values()
            .filter(|f| id.as_ref().is_none_or(|v| &f.flow_log_id == v))
            .filter(|f| name.as_ref().is_none_or(|v| &f.flow_log_name == v))
            .filter(|f| cen.as_ref().is_none_or(|v| &f.cen_id == v))
            .filter(|f| status.is_none_or(|s| f.status == s))
            .collect();
        matching.sort_by(|a, b| (a.creation_time, &a.flow_log_id).cmp(&(b.creation_time, &b.flow_log_id)));
        let total = matching.len();
        let start = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
        let logs: Vec<Value> = matching
            .into_iter()
            .skip(start)
            .take(size as usize)
            .map(|f| {
                let mut v = serde_json::to_value(f).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("Status".into(), Value::String(f.status.as_str().into()));
                    if f.log_format_string.is_none() {
                        o.insert(
                            "LogFormatString".into(),
                            Value::String(LogFormat::all().to_string()),
                        );
                    }
                    o.insert(
                        "Attached".into(),
                        Value::Bool(self.engine.is_running(&f.flow_log_id)),
                    );
                }
                v
            })
            .collect();
        Ok(json!({ "TotalCount": total, "PageNumber": page, "PageSize": size, "FlowLogs": logs }))
    }

    /// ActiveFlowLog, first half: which flow log, and may it start. The
    /// caller loads any namespace it needs off the control loop, then calls
    /// [`Self::finish_activation`].
    pub fn check_activation(&self, mut p: Params) -> Result<FlowLogSpec, ApiError> {
        let id = p.str("FlowLogId")?;
        p.finish()?;
        self.activatable(&id).map(|f| spec_of(&f))
    }

    fn activatable(&self, id: &str) -> Result<FlowLog, ApiError> {
        let f = self.flow_log(id)?.clone();
        if f.status == FlowLogStatus::Active {
            return Err(ApiError::incorrect_status(
                "FlowLog",
                format!("flow log {id} is already Active"),
            ));
        }
        Ok(f)
    }

    /// ActiveFlowLog, second half: attach and record the flow log Active.
    /// Its state is checked again: it may have changed while its programs
    /// loaded.
    pub async fn finish_activation(&mut self, id: &str) -> Result<Value, ApiError> {
        let f = self.activatable(id)?;
        self.engine
            .activate(spec_of(&f))
            .await
            .map_err(|e| attach_failed(id, &crate::capture::chain(&e)))?;
        let mut next = self.store.state.clone();
        if let Some(f) = next.flow_logs.get_mut(id) {
            f.status = FlowLogStatus::Active;
        }
        if let Err(e) = self.commit(next) {
            // Not durable: undo the attach so state and kernel agree.
            let _ = self.engine.deactivate(id).await;
            return Err(e);
        }
        Ok(json!({ "Success": true }))
    }

    async fn deactive_flowlog(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let id = p.str("FlowLogId")?;
        p.finish()?;
        if self.flow_log(&id)?.status == FlowLogStatus::Inactive {
            return Err(ApiError::incorrect_status(
                "FlowLog",
                format!("flow log {id} is already Inactive"),
            ));
        }
        let mut next = self.store.state.clone();
        if let Some(f) = next.flow_logs.get_mut(&id) {
            f.status = FlowLogStatus::Inactive;
        }
        self.commit(next)?;
        self.unattached.remove(&id);
        self.published = self.engine.deactivate(&id).await;
        Ok(json!({ "Success": true }))
    }

    fn delete_flowlog(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let id = p.str("FlowLogId")?;
        p.finish()?;
        if self.flow_log(&id)?.status == FlowLogStatus::Active {
            return Err(ApiError::incorrect_status(
                "FlowLog",
                format!("flow log {id} is Active; DeactiveFlowLog it before deleting"),
            ));
        }
        let mut next = self.store.state.clone();
        next.flow_logs.remove(&id);
        self.commit(next)?;
        Ok(json!({ "Success": true }))
    }

    fn create_access_key(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let description = p.opt_str("Description")?.unwrap_or_default();
        p.finish()?;
        validate::description(&description).map_err(bad("Description"))?;
        let id = format!(
            "FLAK{}",
            random::string(random::UPPER_ALNUM, 16).map_err(no_random)?
        );
        let secret = random::string(random::ALNUM, 40).map_err(no_random)?;
        let mut next = self.store.state.clone();
        next.access_keys.insert(
            id.clone(),
            AccessKey {
                access_key_id: id.clone(),
                access_key_secret: secret.clone(),
                description,
                creation_time: state::now_secs(),
            },
        );
        self.commit(next)?;
        self.publish_keys();
        info!(access_key_id = %id, "access key created");
        Ok(json!({ "AccessKeyId": id, "AccessKeySecret": secret }))
    }

    fn delete_access_key(&mut self, mut p: Params) -> Result<Value, ApiError> {
        let id = p.str("AccessKeyId")?;
        p.finish()?;
        if !self.store.state.access_keys.contains_key(&id) {
            return Err(ApiError::not_found(
                "AccessKey",
                format!("access key {id:?} does not exist"),
            ));
        }
        let mut next = self.store.state.clone();
        next.access_keys.remove(&id);
        self.commit(next)?;
        self.publish_keys();
        warn!(access_key_id = %id, "access key deleted");
        Ok(json!({ "Success": true }))
    }

    fn list_access_keys(&self) -> Value {
        let keys: Vec<Value> = self
            .store
            .state
            .access_keys
            .values()
            .map(|k| json!({ "AccessKeyId": k.access_key_id, "Description": k.description, "CreationTime": k.creation_time }))
            .collect();
        json!({ "AccessKeys": keys })
    }

    fn agent_status(&self) -> Value {
        let fill: Vec<Value> = self
            .engine
            .map_fill()
            .into_iter()
            .map(|(ns, fill)| {
                let family = |flows: u64, entries: u32| {
                    json!({
                        "FlowsLastWindow": flows,
                        "FlowMapEntries": entries,
                        "FillRatio": crate::capture::MapFill::ratio(flows, entries),
                    })
                };
                json!({
                    "Netns": ns,
                    "Ipv4": family(fill.ipv4, fill.ipv4_entries),
                    "Ipv6": family(fill.ipv6, fill.ipv6_entries),
                })
            })
            .collect();
        json!({
            "Status": serde_json::to_value(&*self.engine.status_board().lock()).unwrap_or_default(),
            "FlowMaps": fill,
            "FlowLogs": self.engine.runtime(),
            "Unattached": self.unattached.iter().collect::<Vec<_>>(),
        })
    }
}
