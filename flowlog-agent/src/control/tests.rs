//! Each action's refusals, in the domain's terms, on an engine whose
//! kernel is [`crate::engine::fake`]: no root needed. The API contract
//! tests check the same refusals again as HTTP codes against a real agent.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{Control, ControlError, Defaults, RegionSource};
use crate::{
    api::{
        KeyTable,
        actions::{
            Action, ActiveFlowLog, Attachments, CreateFlowlog, CreateLogstore, CreateProject,
            DeactiveFlowLog, DeleteAccessKey, DeleteFlowlog, DeleteLogstore, DeleteProject, DescribeFlowlogs,
            ModifyFlowLogAttribute, ReloadRegionTable,
        },
    },
    engine::{
        WindowRecords,
        fake::{FakeKernel, Harness, harness},
    },
    enrich::SharedRegions,
    state::{AttachmentSpec, Store},
};

struct Plane {
    control: Control,
    kernel: FakeKernel,
    _published: mpsc::Receiver<WindowRecords>,
    _dir: flowlog_tests::agent::TempDir,
}

/// A control plane over a fake kernel with `eth0` and `eth1`, holding
/// Project `prod` with Logstore `flows`.
async fn plane() -> Plane {
    let Harness {
        engine,
        kernel,
        published,
        dir,
        ..
    } = harness(&[("eth0", 2), ("eth1", 3)], 0);
    let store = Store::open(dir.path()).expect("an empty state");
    let defaults = Defaults {
        account_id: "1".into(),
        interval_secs: 60,
        query_timeout: Duration::from_secs(5),
    };
    let regions = RegionSource {
        file: None,
        table: SharedRegions::default(),
    };
    let control = Control::new(dir.path(), store, engine, KeyTable::default(), defaults, regions);
    let mut p = Plane {
        control,
        kernel,
        _published: published,
        _dir: dir,
    };
    p.ok(Action::CreateProject(CreateProject {
        project_name: "prod".into(),
        description: None,
    }))
    .await;
    p.ok(Action::CreateLogstore(CreateLogstore {
        project_name: "prod".into(),
        log_store_name: "flows".into(),
        ttl: None,
    }))
    .await;
    p
}

fn flow_log(interfaces: &[&str]) -> CreateFlowlog {
    CreateFlowlog {
        flow_log_name: "edge".into(),
        cen_id: "cen-test".into(),
        project_name: "prod".into(),
        log_store_name: "flows".into(),
        attachments: Attachments(
            interfaces
                .iter()
                .map(|i| AttachmentSpec {
                    interface: (*i).into(),
                    netns: None,
                    mode: Default::default(),
                    attachment_id: None,
                    region_id: None,
                })
                .collect(),
        ),
        ..Default::default()
    }
}

impl Plane {
    async fn ok(&mut self, a: Action) -> Value {
        let name = a.name();
        match self.control.apply(a).await {
            Ok(v) => v,
            Err(e) => panic!("{name} refused: {e}"),
        }
    }

    async fn refused(&mut self, a: Action) -> ControlError {
        let name = a.name();
        match self.control.apply(a).await {
            Ok(v) => panic!("{name} was not refused: {v}"),
            Err(e) => e,
        }
    }

    async fn create(&mut self, interfaces: &[&str]) -> String {
        let v = self.ok(Action::CreateFlowlog(flow_log(interfaces))).await;
        v["FlowLogId"].as_str().expect("an id").to_owned()
    }

    async fn status_of(&mut self, id: &str) -> String {
        let v = self
            .ok(Action::DescribeFlowlogs(DescribeFlowlogs {
                flow_log_id: Some(id.into()),
                ..Default::default()
            }))
            .await;
        v["FlowLogs"][0]["Status"].as_str().unwrap_or_default().to_owned()
    }
}

fn kind(e: &ControlError) -> String {
    match e {
        ControlError::Invalid { param, .. } => format!("Invalid.{param}"),
        ControlError::Missing { param } => format!("Missing.{param}"),
        ControlError::NotFound { kind, .. } => format!("NotFound.{kind}"),
        ControlError::Exists { kind, .. } => format!("Exists.{kind}"),
        ControlError::IncorrectStatus { kind, .. } => format!("IncorrectStatus.{kind}"),
        ControlError::InUse { kind, .. } => format!("InUse.{kind}"),
        ControlError::Failed { what, .. } => format!("Failed.{what}"),
        ControlError::InvalidRegionTable(_) => "InvalidRegionTable".into(),
        ControlError::NoConfigFile => "NoConfigFile".into(),
        ControlError::Internal(_) => "Internal".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_and_logstores_refuse_bad_names_duplicates_and_deletions_in_use() {
    let mut p = plane().await;
    let cases = [
        (
            Action::CreateProject(CreateProject {
                project_name: "Bad_Name".into(),
                description: None,
            }),
            "Invalid.ProjectName",
        ),
        (
            Action::CreateProject(CreateProject {
                project_name: "prod".into(),
                description: None,
            }),
            "Exists.Project",
        ),
        (
            Action::CreateLogstore(CreateLogstore {
                project_name: "nowhere".into(),
                log_store_name: "flows".into(),
                ttl: None,
            }),
            "NotFound.Project",
        ),
        (
            Action::CreateLogstore(CreateLogstore {
                project_name: "prod".into(),
                log_store_name: "flows".into(),
                ttl: None,
            }),
            "Exists.LogStore",
        ),
        (
            Action::CreateLogstore(CreateLogstore {
                project_name: "prod".into(),
                log_store_name: "other".into(),
                ttl: Some(0),
            }),
            "Invalid.Ttl",
        ),
        (
            Action::DeleteProject(DeleteProject {
                project_name: "prod".into(),
            }),
            "InUse.Project",
        ),
        (
            Action::DeleteProject(DeleteProject {
                project_name: "nowhere".into(),
            }),
            "NotFound.Project",
        ),
    ];
    for (action, expected) in cases {
        let name = action.name();
        assert_eq!(kind(&p.refused(action).await), expected, "{name}");
    }
    // A Logstore a flow log writes to cannot go.
    p.create(&["eth0"]).await;
    let e = p
        .refused(Action::DeleteLogstore(DeleteLogstore {
            project_name: "prod".into(),
            log_store_name: "flows".into(),
        }))
        .await;
    assert_eq!(kind(&e), "InUse.LogStore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_log_actions_refuse_what_their_state_does_not_allow() {
    let mut p = plane().await;
    let mut bad = flow_log(&["eth0"]);
    bad.cen_id = "vpc-1".into();
    assert_eq!(
        kind(&p.refused(Action::CreateFlowlog(bad)).await),
        "Invalid.CenId"
    );
    let mut bad = flow_log(&["eth0"]);
    bad.interval = Some(0);
    assert_eq!(
        kind(&p.refused(Action::CreateFlowlog(bad)).await),
        "Invalid.Interval"
    );
    let mut bad = flow_log(&["eth0"]);
    bad.log_store_name = "missing".into();
    assert_eq!(
        kind(&p.refused(Action::CreateFlowlog(bad)).await),
        "NotFound.LogStore"
    );

    let id = p.create(&["eth0"]).await;
    let unknown = "fl-0000000000000000000x".to_owned();
    let e = p
        .refused(Action::ModifyFlowLogAttribute(ModifyFlowLogAttribute {
            flow_log_id: unknown.clone(),
            flow_log_name: Some("x".into()),
            ..Default::default()
        }))
        .await;
    assert_eq!(kind(&e), "NotFound.FlowLog");
    let e = p
        .refused(Action::ModifyFlowLogAttribute(ModifyFlowLogAttribute {
            flow_log_id: id.clone(),
            interval: Some(86_401),
            ..Default::default()
        }))
        .await;
    assert_eq!(kind(&e), "Invalid.Interval");
    let deactive = || {
        Action::DeactiveFlowLog(DeactiveFlowLog {
            flow_log_id: id.clone(),
        })
    };
    assert_eq!(kind(&p.refused(deactive()).await), "IncorrectStatus.FlowLog");

    p.ok(Action::ActiveFlowLog(ActiveFlowLog {
        flow_log_id: id.clone(),
    }))
    .await;
    assert_eq!(p.status_of(&id).await, "Active");
    let delete = || {
        Action::DeleteFlowlog(DeleteFlowlog {
            flow_log_id: id.clone(),
        })
    };
    assert_eq!(kind(&p.refused(delete()).await), "IncorrectStatus.FlowLog");
    p.ok(deactive()).await;
    p.ok(delete()).await;
    assert_eq!(kind(&p.refused(delete()).await), "NotFound.FlowLog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_the_kernel_refuses_leaves_the_flow_log_inactive_and_nothing_attached() {
    let mut p = plane().await;
    let id = p.create(&["eth0", "gone0"]).await;
    let e = p
        .refused(Action::ActiveFlowLog(ActiveFlowLog {
            flow_log_id: id.clone(),
        }))
        .await;
    assert!(kind(&e).starts_with("Failed."), "{e:?}");
    assert!(
        e.to_string().contains("gone0"),
        "the message names the interface: {e}"
    );
    assert_eq!(p.status_of(&id).await, "Inactive");
    assert!(p.kernel.lock().attached.is_empty(), "eth0 was detached again");
    // The state on disk says the same after a reload.
    let stored = Store::open(p._dir.path()).expect("state reads back");
    assert_eq!(stored.state.flow_logs[&id].status.as_str(), "Inactive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_region_reloads_refuse_what_is_not_there() {
    let mut p = plane().await;
    let e = p
        .refused(Action::DeleteAccessKey(DeleteAccessKey {
            access_key_id: "AK0000000000".into(),
        }))
        .await;
    assert_eq!(kind(&e), "NotFound.AccessKey");
    let e = p.refused(Action::ReloadRegionTable(ReloadRegionTable {})).await;
    assert_eq!(e, ControlError::NoConfigFile);
}
