use serde_json::json;

use super::*;
use crate::{model::CaptureMode, state::AttachmentSpec};

fn parse(name: &str, v: serde_json::Value) -> Result<Action, ApiError> {
    Action::parse(name, Params::new(v.as_object().cloned().unwrap_or_default()))
}

fn code(r: Result<Action, ApiError>) -> String {
    r.err().map(|e| e.code).unwrap_or_default()
}

/// Every action, as the CLI would send it.
fn every_action() -> Vec<Action> {
    let id = || "fl-0123456789abcdefghij".to_owned();
    vec![
        Action::CreateProject(CreateProject {
            project_name: "prod".into(),
            description: Some("edge".into()),
        }),
        Action::DeleteProject(DeleteProject {
            project_name: "prod".into(),
        }),
        Action::ListProjects(ListProjects {}),
        Action::CreateLogstore(CreateLogstore {
            project_name: "prod".into(),
            log_store_name: "flows".into(),
            ttl: Some(7),
        }),
        Action::DeleteLogstore(DeleteLogstore {
            project_name: "prod".into(),
            log_store_name: "flows".into(),
        }),
        Action::ListLogstores(ListLogstores {
            project_name: "prod".into(),
        }),
        Action::CreateFlowlog(CreateFlowlog {
            flow_log_name: "edge-1".into(),
            description: None,
            cen_id: "cen-1".into(),
            project_name: "prod".into(),
            log_store_name: "flows".into(),
            attachments: Attachments(vec![AttachmentSpec {
                interface: "eth0".into(),
                netns: Some("router".into()),
                mode: CaptureMode::Tc,
                attachment_id: Some("att-1".into()),
                region_id: None,
            }]),
            interval: Some(60),
            account_id: None,
            log_format_string: Some("${srcaddr}${dstaddr}${bytes}".into()),
        }),
        Action::ModifyFlowLogAttribute(ModifyFlowLogAttribute {
            flow_log_id: id(),
            interval: Some(600),
            ..Default::default()
        }),
        Action::DescribeFlowlogs(DescribeFlowlogs {
            status: Some(crate::state::FlowLogStatus::Active),
            page_size: Some(10),
            ..Default::default()
        }),
        Action::ActiveFlowLog(ActiveFlowLog { flow_log_id: id() }),
        Action::DeactiveFlowLog(DeactiveFlowLog { flow_log_id: id() }),
        Action::DeleteFlowlog(DeleteFlowlog { flow_log_id: id() }),
        Action::CreateAccessKey(CreateAccessKey { description: None }),
        Action::DeleteAccessKey(DeleteAccessKey {
            access_key_id: "FLAK0123456789ABCDEF".into(),
        }),
        Action::ListAccessKeys(ListAccessKeys {}),
        Action::DescribeAgentStatus(DescribeAgentStatus {}),
        Action::ReloadRegionTable(ReloadRegionTable {}),
        Action::GetLogs(GetLogs {
            project_name: "prod".into(),
            log_store_name: "flows".into(),
            from: Some(1),
            query: Some("SELECT 1".into()),
            ..Default::default()
        }),
    ]
}

#[test]
fn what_the_client_sends_the_server_reads_back_for_every_action() {
    let all = every_action();
    assert_eq!(all.len(), Action::NAMES.len());
    for a in all {
        let back = Action::parse(a.name(), Params::new(a.params()));
        assert_eq!(back.as_ref().ok(), Some(&a), "{}: {back:?}", a.name());
    }
}

#[test]
fn parameter_errors_keep_their_codes() {
    assert_eq!(code(parse("NoSuchAction", json!({}))), "InvalidAction.NotFound");
    assert_eq!(
        code(parse("CreateProject", json!({}))),
        "MissingParameter.ProjectName"
    );
    assert_eq!(
        code(parse("CreateProject", json!({"ProjectName": 7}))),
        "InvalidParameter.ProjectName"
    );
    assert_eq!(
        code(parse("CreateProject", json!({"ProjectName": "p", "Extra": 1}))),
        "InvalidParameter.Extra"
    );
    assert_eq!(
        code(parse(
            "CreateLogstore",
            json!({"ProjectName": "p", "LogStoreName": "l", "Ttl": "-1"})
        )),
        "InvalidParameter.Ttl"
    );
    assert_eq!(
        code(parse("DescribeFlowlogs", json!({"Status": "Sleeping"}))),
        "InvalidParameter.Status"
    );
    // The first missing parameter in the action's order is the one named.
    assert_eq!(
        code(parse(
            "CreateFlowlog",
            json!({"FlowLogName": "f", "CenId": "cen-1", "ProjectName": "p", "LogStoreName": "l"})
        )),
        "MissingParameter.Attachments"
    );
    assert_eq!(
        code(parse(
            "CreateFlowlog",
            json!({"FlowLogName": "f", "CenId": "cen-1", "ProjectName": "p", "LogStoreName": "l", "Attachments": [{"Interface": "a/b"}]})
        )),
        "InvalidParameter.Attachments"
    );
    // The RPC envelope is accepted and ignored.
    assert!(
        parse(
            "ListProjects",
            json!({"Action": "ListProjects", "Version": "2017-09-12"})
        )
        .is_ok()
    );
}

#[test]
fn query_strings_carry_numbers_and_lists_as_text() {
    let a = parse(
        "CreateFlowlog",
        json!({"FlowLogName": "f", "CenId": "cen-1", "ProjectName": "p", "LogStoreName": "l",
               "Interval": "600", "Attachments": "[{\"Interface\": \"eth0\", \"Mode\": \"xdp\"}]"}),
    );
    let Ok(Action::CreateFlowlog(c)) = a else {
        panic!("{a:?}");
    };
    assert_eq!(c.interval, Some(600));
    assert_eq!(c.attachments.0[0].mode, CaptureMode::Xdp);
}

#[test]
fn field_names_are_the_api_s() {
    assert_eq!(pascal("log_store_name"), "LogStoreName");
    assert_eq!(pascal("ttl"), "Ttl");
    assert_eq!(pascal("flow_log_id"), "FlowLogId");
}

/// docs/api.md's table names every action the server knows, and no other.
#[test]
fn the_api_document_lists_exactly_the_actions() {
    let doc = include_str!("../../../../docs/api.md");
    let documented: std::collections::BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    let known: std::collections::BTreeSet<&str> = Action::NAMES.iter().copied().collect();
    assert_eq!(
        documented, known,
        "docs/api.md's action table and Action::NAMES differ"
    );
}

/// The view is the stored flow log's fields plus `Attached`, and reads back.
#[test]
fn a_flow_log_view_is_the_stored_fields_and_attached() {
    let stored: crate::state::FlowLog = serde_json::from_value(json!({
        "FlowLogId": "fl-0123456789abcdefghij", "FlowLogName": "edge", "Description": "",
        "CenId": "cen-a", "AccountId": "", "ProjectName": "prod", "LogStoreName": "flows",
        "Attachments": [{"Interface": "eth0"}], "Interval": 60, "Status": "Active",
        "CreationTime": 1,
    }))
    .expect("a stored flow log");
    let view = FlowLogView::of(&stored, "${srcaddr}", true);
    let v = serde_json::to_value(&view).expect("serializes");
    assert_eq!(v["Attached"], true);
    assert_eq!(v["LogFormatString"], "${srcaddr}");
    assert_eq!(v["FlowLogName"], "edge");
    let back: FlowLogView = serde_json::from_value(v).expect("reads back");
    assert_eq!(back, view);
}
