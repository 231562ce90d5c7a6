//! Flow logs: the product's six operations.

use serde::{Deserialize, Serialize};

use super::{Param, request};
use crate::{
    api::{ApiError, Params},
    model::CaptureMode,
    model::validate,
    state::{AttachmentSpec, FlowLog, FlowLogStatus},
};

/// The interfaces of a new flow log: a JSON list of `{"Interface",
/// "Netns"?, "Mode"?, "AttachmentId"?, "RegionId"?}` (or that list as a
/// JSON string, from a query string), each checked by the one attachment
/// validator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Attachments(pub Vec<AttachmentSpec>);

impl Param for Attachments {
    fn read(p: &mut Params, name: &str) -> Result<Self, ApiError> {
        let v = p.opt_json(name)?.ok_or_else(|| ApiError::missing(name))?;
        parse_attachments(&v).map(Self)
    }
}

/// Reads and checks a list of attachments.
pub fn parse_attachments(v: &serde_json::Value) -> Result<Vec<AttachmentSpec>, ApiError> {
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

impl Param for Option<FlowLogStatus> {
    fn read(p: &mut Params, name: &str) -> Result<Self, ApiError> {
        match p.opt_str(name)?.as_deref() {
            None => Ok(None),
            Some("Active") => Ok(Some(FlowLogStatus::Active)),
            Some("Inactive") => Ok(Some(FlowLogStatus::Inactive)),
            Some(other) => Err(ApiError::invalid(
                name,
                format!("{name} must be Active or Inactive, got {other:?}"),
            )),
        }
    }

    fn is_absent(&self) -> bool {
        self.is_none()
    }
}

request! {
    /// CreateFlowlog: created Inactive. `Interval` defaults to the agent's
    /// window, `AccountId` to the agent's account.
    CreateFlowlog {
        flow_log_name: String,
        description: Option<String>,
        cen_id: String,
        project_name: String,
        log_store_name: String,
        attachments: Attachments,
        interval: Option<u64>,
        account_id: Option<String>,
        log_format_string: Option<String>,
    }
}

request! {
    /// ModifyFlowLogAttribute: window length and fields change at the next
    /// boundary.
    ModifyFlowLogAttribute {
        flow_log_id: String,
        flow_log_name: Option<String>,
        description: Option<String>,
        interval: Option<u64>,
        log_format_string: Option<String>,
    }
}

request! {
    /// DescribeFlowlogs: filters and paging.
    DescribeFlowlogs {
        flow_log_id: Option<String>,
        flow_log_name: Option<String>,
        cen_id: Option<String>,
        status: Option<FlowLogStatus>,
        page_number: Option<u64>,
        page_size: Option<u64>,
    }
}

request! {
    /// ActiveFlowLog: attaches and starts capturing.
    ActiveFlowLog {
        flow_log_id: String,
    }
}

request! {
    /// DeactiveFlowLog: publishes the partial window, detaches.
    DeactiveFlowLog {
        flow_log_id: String,
    }
}

request! {
    /// DeleteFlowlog (refused while Active).
    DeleteFlowlog {
        flow_log_id: String,
    }
}

/// CreateFlowlog's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowLogCreated {
    pub flow_log_id: String,
    pub success: bool,
}

/// One flow log in DescribeFlowlogs: what is stored, with the fields its
/// records keep spelled out, and whether it is attached now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowLogView {
    #[serde(flatten)]
    pub flow_log: FlowLog,
    pub attached: bool,
}

impl FlowLogView {
    /// `all_fields` is the LogFormatString of a flow log that keeps every
    /// field.
    pub fn of(f: &FlowLog, all_fields: &str, attached: bool) -> Self {
        let mut flow_log = f.clone();
        flow_log
            .log_format_string
            .get_or_insert_with(|| all_fields.to_owned());
        Self { flow_log, attached }
    }
}

/// DescribeFlowlogs' answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowLogPage {
    pub total_count: usize,
    pub page_number: u64,
    pub page_size: u64,
    pub flow_logs: Vec<FlowLogView>,
}
