//! Answers for a person: tables for the listings and the status, `Key:
//! value` lines for the rest.

use serde_json::Value;

use crate::api::actions::{AccessKeyList, Action, AgentStatus, FlowLogPage, LogstoreList, ProjectList};

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
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

/// An answer for a person: a table for the listing actions, `Key: value`
/// lines for the others.
pub fn print_human(action: Option<&Action>, a: Value) -> anyhow::Result<()> {
    match action {
        Some(Action::ListProjects(_)) => {
            let a: ProjectList = serde_json::from_value(a)?;
            table(
                &["PROJECT", "LOGSTORES", "CREATED", "DESCRIPTION"],
                a.projects
                    .into_iter()
                    .map(|p| {
                        vec![
                            p.project_name,
                            p.log_store_count.to_string(),
                            p.creation_time.to_string(),
                            p.description,
                        ]
                    })
                    .collect(),
            );
        }
        Some(Action::ListLogstores(_)) => {
            let a: LogstoreList = serde_json::from_value(a)?;
            table(
                &["LOGSTORE", "TTL(DAYS)", "CREATED"],
                a.log_stores
                    .into_iter()
                    .map(|l| vec![l.log_store_name, l.ttl.to_string(), l.creation_time.to_string()])
                    .collect(),
            );
        }
        Some(Action::DescribeFlowlogs(_)) => {
            let a: FlowLogPage = serde_json::from_value(a)?;
            let rows = a
                .flow_logs
                .into_iter()
                .map(|v| {
                    let f = v.flow_log;
                    let atts: Vec<String> = f
                        .attachments
                        .iter()
                        .map(|x| match &x.netns {
                            Some(ns) => format!("{}@{ns}", x.interface),
                            None => x.interface.clone(),
                        })
                        .collect();
                    vec![
                        f.flow_log_id,
                        f.flow_log_name,
                        f.status.as_str().to_owned(),
                        f.cen_id,
                        format!("{}/{}", f.project_name, f.log_store_name),
                        f.interval.to_string(),
                        atts.join(","),
                    ]
                })
                .collect();
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
                rows,
            );
            println!(
                "page {} of size {}, {} in total",
                a.page_number, a.page_size, a.total_count
            );
        }
        Some(Action::ListAccessKeys(_)) => {
            let a: AccessKeyList = serde_json::from_value(a)?;
            table(
                &["ACCESS KEY ID", "CREATED", "DESCRIPTION"],
                a.access_keys
                    .into_iter()
                    .map(|k| vec![k.access_key_id, k.creation_time.to_string(), k.description])
                    .collect(),
            );
        }
        Some(Action::DescribeAgentStatus(_)) => print_status(serde_json::from_value(a)?),
        _ => {
            if let Some(o) = a.as_object() {
                for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "RequestId") {
                    println!("{k}: {}", text(v));
                }
            }
        }
    }
    Ok(())
}

fn print_status(a: AgentStatus) {
    let (s, f) = (&a.status.agent, &a.status.figures);
    println!(
        "state {}; windows published {}; records {}; last window {}..{}; pinned {}",
        s.state,
        f.windows_published,
        f.records_published,
        opt(s.last_window_start),
        opt(s.last_window_end),
        s.pinned
    );
    table(
        &["INTERFACE", "NETNS", "IFINDEX", "INGRESS", "EGRESS", "FLOW LOGS"],
        s.attachments
            .iter()
            .map(|x| {
                vec![
                    x.interface.clone(),
                    opt(x.netns.clone()),
                    x.ifindex.to_string(),
                    x.ingress_hook.clone(),
                    x.egress_hook.clone(),
                    x.flow_logs.join(","),
                ]
            })
            .collect(),
    );
    table(
        &["NETNS", "FAMILY", "FLOWS", "MAP ENTRIES", "FILL"],
        a.flow_maps
            .iter()
            .flat_map(|m| {
                [("ipv4", &m.ipv4), ("ipv6", &m.ipv6)].map(|(family, f)| {
                    vec![
                        opt(m.netns.clone()),
                        family.to_owned(),
                        f.flows_last_window.to_string(),
                        f.flow_map_entries.to_string(),
                        format!("{:.3}", f.fill_ratio),
                    ]
                })
            })
            .collect(),
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
        a.flow_logs
            .iter()
            .map(|f| {
                vec![
                    f.flow_log_id.clone(),
                    f.window_start.to_string(),
                    f.window_end.to_string(),
                    f.interval.to_string(),
                    opt(f.last_window_start),
                    opt(f.last_window_end),
                ]
            })
            .collect(),
    );
}
