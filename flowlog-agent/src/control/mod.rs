//! The control loop's operations, one typed method per action, grouped by
//! resource: Projects and Logstores ([`projects`]), the six flow-log
//! actions ([`flowlogs`]), access keys ([`keys`]), the status view and the
//! region table ([`status`]), GetLogs ([`logs`]). They apply to the
//! persisted [`Store`] and the running [`Engine`], and fail with a
//! [`ControlError`] in the domain's words (`api` gives it its HTTP status).
//!
//! Every mutation is built on a copy of the state, checked, committed
//! durably, and only then made visible; an activation that cannot attach
//! leaves both the kernel and the state as they were.

mod error;
mod flowlogs;
mod keys;
mod logs;
mod projects;
mod status;
#[cfg(test)]
mod tests;

pub use error::ControlError;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{error, info};

use crate::{
    api::{KeyTable, actions::Action},
    config::Attachment,
    engine::{Engine, FlowLogSpec},
    enrich::SharedRegions,
    model::{Identity, LogstoreRef},
    record::format::LogFormat,
    state::{self, FlowLog, FlowLogStatus, Project, State, Store},
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
fn no_random(e: state::random::RandomError) -> ControlError {
    ControlError::internal(e.to_string())
}

/// OperationFailed.Attach for a flow log that could not start, with the
/// reason (an error's whole chain).
pub fn attach_failed(id: &str, reason: &str) -> ControlError {
    ControlError::failed("Attach", format!("cannot start flow log {id}: {reason}"))
}

fn bad(param: &str) -> impl Fn(String) -> ControlError + '_ {
    move |m| ControlError::invalid(param, m)
}

/// A LogFormatString from a request, checked, in its canonical spelling.
fn log_format(s: &str) -> Result<String, ControlError> {
    LogFormat::parse(s)
        .map(|f| f.to_string())
        .map_err(|e| ControlError::invalid("LogFormatString", e.to_string()))
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

    /// Applies an edit to a copy of the state and saves it: the agent's
    /// state changes only once the change is on disk.
    fn change(&mut self, edit: impl FnOnce(&mut State)) -> Result<(), ControlError> {
        let mut next = self.store.state.clone();
        edit(&mut next);
        self.store.commit(next).map_err(|e| {
            error!(error = %crate::capture::chain(&e), "state not saved");
            ControlError::internal(format!(
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

    fn project(&self, name: &str) -> Result<&Project, ControlError> {
        self.store
            .state
            .projects
            .get(name)
            .ok_or_else(|| ControlError::not_found("Project", format!("project {name:?} does not exist")))
    }

    fn flow_log(&self, id: &str) -> Result<&FlowLog, ControlError> {
        self.store
            .state
            .flow_logs
            .get(id)
            .ok_or_else(|| ControlError::not_found("FlowLog", format!("flow log {id:?} does not exist")))
    }

    /// Carries out one action (GetLogs excepted: its query runs outside the
    /// control loop, see [`Self::get_logs`]); the answer as JSON.
    pub async fn apply(&mut self, action: Action) -> Result<Value, ControlError> {
        fn json(v: impl Serialize) -> Result<Value, ControlError> {
            serde_json::to_value(v).map_err(|e| ControlError::internal(e.to_string()))
        }
        match action {
            Action::CreateProject(r) => json(self.create_project(r)?),
            Action::DeleteProject(r) => json(self.delete_project(r)?),
            Action::ListProjects(r) => json(self.list_projects(r)),
            Action::CreateLogstore(r) => json(self.create_logstore(r)?),
            Action::DeleteLogstore(r) => json(self.delete_logstore(r)?),
            Action::ListLogstores(r) => json(self.list_logstores(r)?),
            Action::CreateFlowlog(r) => json(self.create_flowlog(r)?),
            Action::ModifyFlowLogAttribute(r) => json(self.modify_flowlog(r)?),
            Action::DescribeFlowlogs(r) => json(self.describe_flowlogs(r)?),
            Action::ActiveFlowLog(r) => {
                let spec = self.check_activation(&r)?;
                json(self.finish_activation(&spec.id).await?)
            }
            Action::DeactiveFlowLog(r) => json(self.deactive_flowlog(r).await?),
            Action::DeleteFlowlog(r) => json(self.delete_flowlog(r)?),
            Action::CreateAccessKey(r) => json(self.create_access_key(r)?),
            Action::DeleteAccessKey(r) => json(self.delete_access_key(r)?),
            Action::ListAccessKeys(r) => json(self.list_access_keys(r)),
            Action::DescribeAgentStatus(r) => json(self.agent_status(r)),
            Action::ReloadRegionTable(_) => json(self.reload_regions()?),
            Action::GetLogs(_) => Err(ControlError::internal("GetLogs runs outside the control loop")),
        }
    }
}
