//! GetLogs: a request checked against the state, turned into a query the
//! API task runs (outside the control loop, in a process of its own).

use super::{Control, ControlError};
use crate::{
    api::{QuerySpec, actions::GetLogs},
    model::LogstoreRef,
    store::{self, query::TimeRange},
};

impl Control {
    /// Validates a GetLogs request into a query for the API task to run.
    pub fn get_logs(&self, r: GetLogs) -> Result<QuerySpec, ControlError> {
        let (project, logstore) = (r.project_name, r.log_store_name);
        let (from, to, sql) = (r.from, r.to, r.query);
        let line = r.line.unwrap_or(100);
        if !self.project(&project)?.logstores.contains_key(&logstore) {
            return Err(ControlError::not_found(
                "LogStore",
                format!("logstore {logstore:?} does not exist in project {project:?}"),
            ));
        }
        if !(1..=10_000).contains(&line) {
            return Err(ControlError::invalid("Line", "Line must be between 1 and 10000"));
        }
        let as_secs = |v: Option<u64>, name: &str| -> Result<Option<i64>, ControlError> {
            v.map(|x| {
                i64::try_from(x).map_err(|_| ControlError::invalid(name, format!("{name} is out of range")))
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
}
