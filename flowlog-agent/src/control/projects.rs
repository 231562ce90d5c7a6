//! Projects and Logstores: create, list, delete, the Logstore the
//! configured flow log writes to, and retention.

use tracing::{info, warn};

use super::{Control, ControlError, DEFAULT_TTL_DAYS, bad};
use crate::{
    api::actions::{
        CreateLogstore, CreateProject, DeleteLogstore, DeleteProject, Empty, ListLogstores, ListProjects,
        LogstoreCreated, LogstoreList, LogstoreView, ProjectCreated, ProjectList, ProjectView,
    },
    model::{LogstoreRef, validate},
    state::{self, Logstore, Project},
    store::{self},
};

impl Control {
    /// Creates a Project and Logstore if they do not exist yet (for the
    /// flow log the agent's own configuration defines).
    pub fn ensure_logstore(&mut self, l: &LogstoreRef) -> Result<(), ControlError> {
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
        self.change(|next| {
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
        })?;
        self.make_logstore_dir(l);
        info!(project = %l.project, logstore = %l.logstore, "created the default Logstore");
        Ok(())
    }

    pub(super) fn make_logstore_dir(&self, l: &LogstoreRef) {
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

    pub fn create_project(&mut self, r: CreateProject) -> Result<ProjectCreated, ControlError> {
        let name = r.project_name;
        let description = r.description.unwrap_or_default();
        validate::project_name(&name).map_err(bad("ProjectName"))?;
        validate::description(&description).map_err(bad("Description"))?;
        if self.store.state.projects.contains_key(&name) {
            return Err(ControlError::exists(
                "Project",
                format!("project {name:?} already exists"),
            ));
        }
        self.change(|next| {
            next.projects.insert(
                name.clone(),
                Project {
                    name: name.clone(),
                    description,
                    created: state::now_secs(),
                    logstores: Default::default(),
                },
            );
        })?;
        Ok(ProjectCreated { project_name: name })
    }

    pub fn delete_project(&mut self, r: DeleteProject) -> Result<Empty, ControlError> {
        let name = r.project_name;
        let project = self.project(&name)?;
        if !project.logstores.is_empty() {
            return Err(ControlError::in_use(
                "Project",
                format!(
                    "project {name:?} still has {} logstore(s); delete them first",
                    project.logstores.len()
                ),
            ));
        }
        self.change(|next| {
            next.projects.remove(&name);
        })?;
        let _ = std::fs::remove_dir_all(self.data_dir.join(store::LOGSTORES_DIR).join(&name));
        Ok(Empty {})
    }

    pub fn list_projects(&self, _: ListProjects) -> ProjectList {
        let projects: Vec<ProjectView> = self
            .store
            .state
            .projects
            .values()
            .map(|p| ProjectView {
                project_name: p.name.clone(),
                description: p.description.clone(),
                creation_time: p.created,
                log_store_count: p.logstores.len(),
            })
            .collect();
        ProjectList {
            total_count: projects.len(),
            projects,
        }
    }

    pub fn create_logstore(&mut self, r: CreateLogstore) -> Result<LogstoreCreated, ControlError> {
        let project = r.project_name;
        let name = r.log_store_name;
        let ttl = r.ttl.unwrap_or(DEFAULT_TTL_DAYS);
        validate::logstore_name(&name).map_err(bad("LogStoreName"))?;
        let ttl = u32::try_from(ttl).unwrap_or(u32::MAX);
        validate::ttl(ttl).map_err(bad("Ttl"))?;
        if self.project(&project)?.logstores.contains_key(&name) {
            return Err(ControlError::exists(
                "LogStore",
                format!("logstore {name:?} already exists in project {project:?}"),
            ));
        }
        self.change(|next| {
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
        })?;
        self.make_logstore_dir(&LogstoreRef {
            project: project.clone(),
            logstore: name.clone(),
        });
        Ok(LogstoreCreated {
            project_name: project,
            log_store_name: name,
        })
    }

    pub fn delete_logstore(&mut self, r: DeleteLogstore) -> Result<Empty, ControlError> {
        let (project, name) = (r.project_name, r.log_store_name);
        if !self.project(&project)?.logstores.contains_key(&name) {
            return Err(ControlError::not_found(
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
            return Err(ControlError::in_use(
                "LogStore",
                format!(
                    "flow log {} writes to logstore {name:?}; delete it first",
                    f.flow_log_id
                ),
            ));
        }
        self.change(|next| {
            if let Some(proj) = next.projects.get_mut(&project) {
                proj.logstores.remove(&name);
            }
        })?;
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
        Ok(Empty {})
    }

    pub fn list_logstores(&self, r: ListLogstores) -> Result<LogstoreList, ControlError> {
        let project = r.project_name;
        let stores: Vec<LogstoreView> = self
            .project(&project)?
            .logstores
            .values()
            .map(|l| LogstoreView {
                log_store_name: l.name.clone(),
                ttl: l.ttl,
                creation_time: l.created,
            })
            .collect();
        Ok(LogstoreList {
            project_name: project,
            total_count: stores.len(),
            log_stores: stores,
        })
    }
}
