//! The product's six flow-log operations.

use std::time::Duration;

use super::{
    Control, ControlError, MAX_PAGE_SIZE, attach_failed, bad, log_format, no_random, parsed_format, spec_of,
};
use crate::{
    api::actions::{
        ActiveFlowLog, CreateFlowlog, DeactiveFlowLog, DeleteFlowlog, DescribeFlowlogs, Done, FlowLogCreated,
        FlowLogPage, FlowLogView, ModifyFlowLogAttribute,
    },
    engine::FlowLogSpec,
    model::validate,
    record::format::LogFormat,
    state::{self, FlowLog, FlowLogStatus, random},
};

impl Control {
    pub fn create_flowlog(&mut self, r: CreateFlowlog) -> Result<FlowLogCreated, ControlError> {
        let name = r.flow_log_name;
        let description = r.description.unwrap_or_default();
        let (cen_id, project, logstore) = (r.cen_id, r.project_name, r.log_store_name);
        let interval = r.interval.unwrap_or(self.defaults.interval_secs);
        let account_id = r.account_id.unwrap_or_else(|| self.defaults.account_id.clone());
        let format = r.log_format_string;
        let log_format_string = format.as_deref().map(log_format).transpose()?;
        validate::flow_log_name(&name).map_err(bad("FlowLogName"))?;
        validate::description(&description).map_err(bad("Description"))?;
        validate::cen_id(&cen_id).map_err(bad("CenId"))?;
        validate::interval(interval).map_err(bad("Interval"))?;
        validate::account_id(&account_id).map_err(bad("AccountId"))?;
        let attachments = r.attachments.0;
        if !self.project(&project)?.logstores.contains_key(&logstore) {
            return Err(ControlError::not_found(
                "LogStore",
                format!("logstore {logstore:?} does not exist in project {project:?}; create it first"),
            ));
        }
        let id = format!(
            "fl-{}",
            random::string(random::LOWER_ALNUM, 20).map_err(no_random)?
        );
        self.change(|next| {
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
        })?;
        Ok(FlowLogCreated {
            flow_log_id: id,
            success: true,
        })
    }

    pub fn modify_flowlog(&mut self, r: ModifyFlowLogAttribute) -> Result<Done, ControlError> {
        let id = r.flow_log_id;
        let (name, description, interval, format) =
            (r.flow_log_name, r.description, r.interval, r.log_format_string);
        if name.is_none() && description.is_none() && interval.is_none() && format.is_none() {
            return Err(ControlError::missing("FlowLogName"));
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
        self.change(|next| {
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
        })?;
        // Both take effect at the running window's end.
        if let Some(i) = interval {
            self.engine.set_window(&id, Duration::from_secs(i));
        }
        if let Some(s) = &format {
            self.engine.set_format(&id, parsed_format(Some(s)));
        }
        Ok(Done::yes())
    }

    pub fn describe_flowlogs(&self, r: DescribeFlowlogs) -> Result<FlowLogPage, ControlError> {
        let (id, name, cen, status) = (r.flow_log_id, r.flow_log_name, r.cen_id, r.status);
        let page = r.page_number.unwrap_or(1);
        let size = r.page_size.unwrap_or(20);
        if page == 0 {
            return Err(ControlError::invalid("PageNumber", "PageNumber starts at 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ControlError::invalid(
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
        let all = LogFormat::all().to_string();
        let logs: Vec<FlowLogView> = matching
            .into_iter()
            .skip(start)
            .take(size as usize)
            .map(|f| FlowLogView::of(f, &all, self.engine.is_running(&f.flow_log_id)))
            .collect();
        Ok(FlowLogPage {
            total_count: total,
            page_number: page,
            page_size: size,
            flow_logs: logs,
        })
    }

    /// ActiveFlowLog, first half: which flow log, and may it start. The
    /// caller loads any namespace it needs off the control loop, then calls
    /// [`Self::finish_activation`].
    pub fn check_activation(&self, r: &ActiveFlowLog) -> Result<FlowLogSpec, ControlError> {
        self.activatable(&r.flow_log_id).map(|f| spec_of(&f))
    }

    fn activatable(&self, id: &str) -> Result<FlowLog, ControlError> {
        let f = self.flow_log(id)?.clone();
        if f.status == FlowLogStatus::Active {
            return Err(ControlError::incorrect_status(
                "FlowLog",
                format!("flow log {id} is already Active"),
            ));
        }
        Ok(f)
    }

    /// ActiveFlowLog, second half: attach and record the flow log Active.
    /// Its state is checked again: it may have changed while its programs
    /// loaded.
    pub async fn finish_activation(&mut self, id: &str) -> Result<Done, ControlError> {
        let f = self.activatable(id)?;
        self.engine
            .activate(spec_of(&f))
            .await
            .map_err(|e| attach_failed(id, &crate::capture::chain(&e)))?;
        if let Err(e) = self.change(|next| {
            if let Some(f) = next.flow_logs.get_mut(id) {
                f.status = FlowLogStatus::Active;
            }
        }) {
            // Not durable: undo the attach so state and kernel agree.
            let _ = self.engine.deactivate(id).await;
            return Err(e);
        }
        Ok(Done::yes())
    }

    pub async fn deactive_flowlog(&mut self, r: DeactiveFlowLog) -> Result<Done, ControlError> {
        let id = r.flow_log_id;
        if self.flow_log(&id)?.status == FlowLogStatus::Inactive {
            return Err(ControlError::incorrect_status(
                "FlowLog",
                format!("flow log {id} is already Inactive"),
            ));
        }
        self.change(|next| {
            if let Some(f) = next.flow_logs.get_mut(&id) {
                f.status = FlowLogStatus::Inactive;
            }
        })?;
        self.unattached.remove(&id);
        self.published = self.engine.deactivate(&id).await;
        Ok(Done::yes())
    }

    pub fn delete_flowlog(&mut self, r: DeleteFlowlog) -> Result<Done, ControlError> {
        let id = r.flow_log_id;
        if self.flow_log(&id)?.status == FlowLogStatus::Active {
            return Err(ControlError::incorrect_status(
                "FlowLog",
                format!("flow log {id} is Active; DeactiveFlowLog it before deleting"),
            ));
        }
        self.change(|next| {
            next.flow_logs.remove(&id);
        })?;
        Ok(Done::yes())
    }
}
