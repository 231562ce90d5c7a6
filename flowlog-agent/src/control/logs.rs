//! GetLogs: a request checked against the state, turned into a query the
//! API task runs (outside the control loop, in a process of its own).

use super::{Control, ControlError};
use crate::api::{QuerySpec, actions::GetLogs};

impl Control {
    /// Validates a GetLogs request into a query for the API task to run.
    pub fn get_logs(&self, r: GetLogs) -> Result<QuerySpec, ControlError> {
        if !self
            .project(&r.project_name)?
            .logstores
            .contains_key(&r.log_store_name)
        {
            return Err(ControlError::not_found(
                "LogStore",
                format!(
                    "logstore {:?} does not exist in project {:?}",
                    r.log_store_name, r.project_name
                ),
            ));
        }
        Ok(QuerySpec::for_logs(
            r,
            &self.data_dir,
            self.defaults.query_timeout,
        )?)
    }
}
