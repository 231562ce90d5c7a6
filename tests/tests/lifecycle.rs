//! Flow logs over time: restarts (graceful and kill -9), flow logs sharing
//! an interface, the CLI end to end, and concurrent operations.

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
};

use flowlog_tests::{
    Filter,
    agent::{Agent, TempDir, binary},
    hooks_gone, hooks_on, privileged, sum,
    topology::{A_V4, B_V4, RouterTopology},
    traffic,
};
use serde_json::{Value, json};

fn create(a: &Agent, name: &str, netns: &str, ifaces: &[&str]) -> String {
    let atts: Vec<Value> = ifaces
        .iter()
        .map(|i| json!({"Interface": i, "Netns": netns, "Mode": "tc"}))
        .collect();
    let v = a.ok(
        "CreateFlowlog",
        json!({"FlowLogName": name, "CenId": "cen-life", "ProjectName": "proj", "LogStoreName": "flows", "Attachments": atts}),
    );
    v["FlowLogId"].as_str().unwrap_or_default().to_owned()
}

fn base(a: &Agent) {
    a.ok("CreateProject", json!({"ProjectName": "proj"}));
    a.ok(
        "CreateLogstore",
        json!({"ProjectName": "proj", "LogStoreName": "flows"}),
    );
}

fn udp_flow<'a>(flow_log: &'a str, port: u16) -> Filter<'a> {
    let _ = flow_log;
    Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        srcaddr: Some(A_V4),
        dstport: Some(u64::from(port)),
        log_status: Some("OK"),
        ..Default::default()
    }
}

fn of(records: &[Value], flow_log: &str) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["flow-log-id"] == flow_log)
        .cloned()
        .collect()
}

fn restart_keeps_flow_logs(kill: bool, pin: bool) -> anyhow::Result<()> {
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let dir = TempDir::new()?;
    let args: &[&str] = if pin { &[] } else { &["--no-pin"] };
    let a = Agent::start_in(dir.path(), args)?;
    base(&a);
    let on = create(&a, "on", &ns, &["r-a"]);
    let off = create(&a, "off", &ns, &["r-b"]);
    a.ok("ActiveFlowLog", json!({"FlowLogId": on}));
    let dst = SocketAddr::new(B_V4.parse()?, 9300);
    let port = traffic::udp(&t.a, &t.b, dst, &[100, 100])?;
    if kill {
        a.kill9()?;
    } else {
        assert!(a.stop()?.status.success());
    }
    // Pinned hooks go on counting while no agent runs; unpinned ones die
    // with the process (kill -9) or are detached by it (clean stop).
    let down = if pin { (1, 1, false) } else { (0, 0, false) };
    assert_eq!(hooks_on(&t.router, "r-a")?, down, "hooks while the agent is down");
    traffic::udp_from_port(&t.a, &t.b, port, dst, &[300])?;
    let b = Agent::start_in(dir.path(), args)?;
    assert_eq!(
        hooks_on(&t.router, "r-a")?,
        (1, 1, false),
        "Active flow log re-attached"
    );
    assert_eq!(
        hooks_on(&t.router, "r-b")?,
        (0, 0, false),
        "Inactive flow log stays detached"
    );
    let d = b.ok("DescribeFlowlogs", json!({}));
    let status = |id: &str| {
        d["FlowLogs"]
            .as_array()
            .and_then(|l| l.iter().find(|f| f["FlowLogId"] == id))
            .map(|f| f["Status"].clone())
    };
    assert_eq!(
        (status(&on), status(&off)),
        (Some(json!("Active")), Some(json!("Inactive")))
    );
    traffic::udp_from_port(&t.a, &t.b, port, dst, &[200, 200, 200])?;
    let done = b.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let (p, bytes, _) = sum(&of(&done.records, &on), &udp_flow(&on, 9300));
    // Pinned: every datagram, before, during and after the restart, once.
    // Unpinned: kill -9 loses the first run's open window, and nothing is
    // counted while no agent runs.
    let want = match (pin, kill) {
        (true, _) => (6, 2 * 128 + 328 + 3 * 228),
        (false, true) => (3, 3 * 228),
        (false, false) => (5, 2 * 128 + 3 * 228),
    };
    assert_eq!((p, bytes), want, "{}", done.stderr);
    flowlog_tests::assert_records_disjoint(&of(&done.records, &on));
    Ok(())
}

#[test]
fn graceful_restart_restores_active_flow_logs() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    restart_keeps_flow_logs(false, true)
}

#[test]
fn kill9_restart_restores_active_flow_logs() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    restart_keeps_flow_logs(true, true)
}

#[test]
fn unpinned_agents_detach_on_exit() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    restart_keeps_flow_logs(true, false)?;
    restart_keeps_flow_logs(false, false)
}

#[test]
fn flow_logs_sharing_an_interface_share_one_hook() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let a = Agent::start(&[])?;
    base(&a);
    let x = create(&a, "x", &ns, &["r-a"]);
    let y = create(&a, "y", &ns, &["r-b", "r-a"]);
    a.ok("ActiveFlowLog", json!({"FlowLogId": x}));
    a.ok("ActiveFlowLog", json!({"FlowLogId": y}));
    assert_eq!(
        hooks_on(&t.router, "r-a")?,
        (1, 1, false),
        "one hook per direction, however many flow logs"
    );
    let dst = SocketAddr::new(B_V4.parse()?, 9400);
    let port = traffic::udp(&t.a, &t.b, dst, &[10, 20, 30])?;
    a.ok("DeactiveFlowLog", json!({"FlowLogId": x}));
    assert_eq!(hooks_on(&t.router, "r-a")?, (1, 1, false), "y still uses r-a");
    traffic::udp_from_port(&t.a, &t.b, port, dst, &[40])?;
    // x's partial window was published when it was deactivated.
    let mid = a.records()?;
    assert_eq!(sum(&of(&mid, &x), &udp_flow(&x, 9400)), (3, 60 + 3 * 28, 1));
    a.ok("DeactiveFlowLog", json!({"FlowLogId": y}));
    assert_eq!(hooks_gone(&t.router, "r-a")?, (0, 0, false));
    let done = a.stop()?;
    assert!(done.status.success());
    let r = &done.records;
    assert_eq!(
        sum(&of(r, &x), &udp_flow(&x, 9400)),
        (3, 60 + 3 * 28, 1),
        "x saw only its time"
    );
    let (p, b, _) = sum(&of(r, &y), &udp_flow(&y, 9400));
    assert_eq!(
        (p, b),
        (4, 100 + 4 * 28),
        "y saw everything, across x's deactivation"
    );
    // y's second attachment has its own records.
    let out = Filter {
        interface: Some("r-b"),
        direction: Some("out"),
        dstport: Some(9400),
        ..Default::default()
    };
    assert_eq!(sum(&of(r, &y), &out).0, 4);
    assert_eq!(sum(&of(r, &x), &out).0, 0);
    Ok(())
}

#[test]
fn cli_end_to_end() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let a = Agent::start(&[])?;
    let sock = a.socket();
    let cli = |args: &[&str]| -> anyhow::Result<(bool, String, String)> {
        let out = Command::new(binary()?)
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let (okay, out, err) = cli(args)?;
        anyhow::ensure!(okay, "flowlog {args:?} failed: {err}");
        Ok(out)
    };
    run(&["create-project", "cli-proj", "--description", "from the CLI"])?;
    run(&["create-logstore", "--project", "cli-proj", "flows", "--ttl", "3"])?;
    let attach_a = format!("r-a,netns={},mode=tc", t.router.name());
    let attach_b = format!("r-b,netns={}", t.router.name());
    let created = run(&[
        "--json",
        "create-flowlog",
        "--name",
        "edge",
        "--cen-id",
        "cen-cli",
        "--project",
        "cli-proj",
        "--logstore",
        "flows",
        "--attach",
        &attach_a,
        "--attach",
        &attach_b,
        "--interval",
        "600",
    ])?;
    let id = serde_json::from_str::<Value>(&created)?["FlowLogId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let table = run(&["describe-flowlogs"])?;
    assert!(
        table.contains(&id) && table.contains("Inactive") && table.contains("cli-proj/flows"),
        "{table}"
    );
    run(&["active-flowlog", &id])?;
    assert!(run(&["describe-flowlogs", "--status", "Active"])?.contains(&id));
    let status = run(&["status"])?;
    assert!(status.contains("r-a") && status.contains(&id), "{status}");
    let port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9500), &[500, 600])?;
    run(&["deactive-flowlog", &id])?;
    let r = a.records()?;
    let f = Filter {
        interface: Some("r-a"),
        srcport: Some(port.into()),
        dstport: Some(9500),
        ..Default::default()
    };
    assert_eq!(sum(&of(&r, &id), &f), (2, 1100 + 56, 1));
    // Errors: non-zero exit, code and message on stderr.
    let (okay, _, err) = cli(&["delete-project", "cli-proj"])?;
    assert!(!okay && err.contains("DependencyViolation.Project"), "{err}");
    run(&["delete-flowlog", &id])?;
    run(&["delete-logstore", "--project", "cli-proj", "flows"])?;
    run(&["delete-project", "cli-proj"])?;
    assert!(!run(&["list-projects"])?.contains("cli-proj"));
    let (okay, _, err) = cli(&["active-flowlog", "fl-none"])?;
    assert!(!okay && err.contains("ResourceNotFound.FlowLog"), "{err}");
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn fifty_parallel_operations_leave_consistent_state() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let a = Agent::start(&[])?;
    base(&a);
    let fl = create(&a, "toggled", &ns, &["r-a"]);
    let results: Vec<(String, u16)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (a, fl) = (&a, &fl);
                s.spawn(move || {
                    let (action, params) = match i % 5 {
                        0 | 1 => ("CreateProject", json!({"ProjectName": format!("par-{i:02}")})),
                        2 => (
                            "CreateLogstore",
                            json!({"ProjectName": "proj", "LogStoreName": format!("ls-{i:02}")}),
                        ),
                        3 => ("ActiveFlowLog", json!({"FlowLogId": fl})),
                        _ => ("DeactiveFlowLog", json!({"FlowLogId": fl})),
                    };
                    let status = a.call(action, params).map_or(0, |(s, _)| s);
                    (action.to_owned(), status)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| ("panic".into(), 0)))
            .collect()
    });
    for (action, status) in &results {
        match action.as_str() {
            "CreateProject" | "CreateLogstore" => assert_eq!(*status, 200, "{action}"),
            _ => assert!(*status == 200 || *status == 409, "{action}: {status}"),
        }
    }
    assert_eq!(a.ok("ListProjects", json!({}))["TotalCount"], 21);
    assert_eq!(
        a.ok("ListLogstores", json!({"ProjectName": "proj"}))["TotalCount"],
        11
    );
    // Whatever order the toggles ran in, state and kernel agree.
    let st = a.ok("DescribeFlowlogs", json!({"FlowLogId": fl}))["FlowLogs"][0]["Status"].clone();
    let hooked = hooks_on(&t.router, "r-a")? == (1, 1, false);
    assert_eq!(st == "Active", hooked, "status {st} vs hooks");
    let state: Value = serde_json::from_slice(&std::fs::read(a.dir().join("state.json"))?)?;
    assert_eq!(state["Projects"].as_object().map(|o| o.len()), Some(21));
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn interval_changes_at_the_next_window_boundary() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let a = Agent::start(&[])?;
    base(&a);
    let atts = json!([{"Interface": "r-a", "Netns": t.router.name(), "Mode": "tc"}]);
    let v = a.ok(
        "CreateFlowlog",
        json!({"FlowLogName": "w", "CenId": "cen-w", "ProjectName": "proj", "LogStoreName": "flows", "Attachments": atts, "Interval": 1}),
    );
    let id = v["FlowLogId"].as_str().unwrap_or_default().to_owned();
    a.ok("ActiveFlowLog", json!({"FlowLogId": id}));
    a.wait_windows(2, std::time::Duration::from_secs(10))?;
    a.ok("ModifyFlowLogAttribute", json!({"FlowLogId": id, "Interval": 2}));
    a.wait_windows(6, std::time::Duration::from_secs(20))?;
    let done = a.stop()?;
    assert!(done.status.success());
    let mut windows: Vec<(i64, i64)> = of(&done.records, &id)
        .iter()
        .map(|r| (r["start"].as_i64().unwrap_or(0), r["end"].as_i64().unwrap_or(0)))
        .collect();
    windows.sort_unstable();
    windows.dedup();
    // Whole windows are 1 s, then 2 s aligned to even seconds once the
    // change took effect; the first and last are partial.
    let inner = &windows[1..windows.len() - 1];
    let lens: Vec<i64> = inner.iter().map(|(s, e)| e - s).collect();
    let first_two = lens.iter().position(|l| *l == 2).unwrap_or(lens.len());
    assert!(first_two > 0 && first_two < lens.len(), "{windows:?}");
    assert!(lens[..first_two].iter().all(|l| *l == 1), "{windows:?}");
    assert!(
        inner[first_two..].iter().all(|(s, e)| e - s == 2 && s % 2 == 0),
        "{windows:?}"
    );
    Ok(())
}
