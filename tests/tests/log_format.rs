//! LogFormatString against a running agent: bad formats are refused naming
//! the token, a flow log keeps only the fields it names (in its JSON
//! records and in its Logstore), and a change applies from the next window.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use flowlog_tests::{
    agent::{Agent, TempDir, logstore_json, num},
    privileged,
    topology::{B_V4, RouterTopology},
    traffic,
};
use serde_json::{Value, json};

const FORMAT: &str = "${srcaddr}${dstaddr}${bytes}${packets}${direction}";

#[test]
fn a_flow_log_keeps_the_fields_its_format_names() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let a = Agent::start_in(dir.path(), &["--no-rtt"])?;
    a.ok("CreateProject", json!({"ProjectName": "fproj"}));
    a.ok(
        "CreateLogstore",
        json!({"ProjectName": "fproj", "LogStoreName": "flows"}),
    );
    let create = |format: &str| {
        a.call(
            "CreateFlowlog",
            json!({
                "FlowLogName": "fmt", "CenId": "cen-f", "ProjectName": "fproj", "LogStoreName": "flows",
                "Interval": 1, "LogFormatString": format,
                "Attachments": [{"Interface": "r-a", "Netns": t.router.name(), "Mode": "tc"}],
            }),
        )
    };
    // Bad formats: refused, naming the token.
    for (format, token) in [
        ("${srcaddr}${dstaddr}${bytes}${srcprot}", "${srcprot}"),
        ("${srcaddr}${bytes}${dstaddr}", "${bytes}"),
        ("${srcaddr}${dstaddr}${bytes} packets", "packets"),
    ] {
        let (code, answer) = create(format)?;
        assert_eq!(code, 400, "{format}: {answer}");
        assert_eq!(answer["Code"], "InvalidParameter.LogFormatString", "{answer}");
        let msg = answer["Message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("{token}:")), "{format}: {msg}");
    }
    assert_eq!(a.ok("DescribeFlowlogs", json!({}))["TotalCount"], 0);

    let (code, answer) = create(FORMAT)?;
    assert_eq!(code, 200, "{answer}");
    let id = answer["FlowLogId"].as_str().unwrap_or_default().to_owned();
    let described = a.ok("DescribeFlowlogs", json!({"FlowLogId": id}));
    assert_eq!(described["FlowLogs"][0]["LogFormatString"], FORMAT);
    a.ok("ActiveFlowLog", json!({"FlowLogId": id}));
    let dst = SocketAddr::new(B_V4.parse()?, 9995);
    let port = traffic::udp(&t.a, &t.b, dst, &[100, 200])?;
    a.wait_windows(2, Duration::from_secs(20))?;

    // Only the chosen fields (and the bookkeeping ones) are present.
    let records = a.records()?;
    let ours: Vec<&Value> = records.iter().filter(|r| r["log-status"] == "OK").collect();
    assert!(!ours.is_empty());
    for r in &ours {
        for kept in [
            "srcaddr",
            "dstaddr",
            "bytes",
            "packets",
            "direction",
            "start",
            "end",
            "log-status",
            "flow-log-id",
            "version",
        ] {
            assert!(!r[kept].is_null(), "{kept} missing: {r}");
        }
        for gone in [
            "srcport",
            "dstport",
            "protocol",
            "interface",
            "account-id",
            "cen-id",
            "src-region-id",
            "tcp-flags",
            "first-seen",
        ] {
            assert!(r[gone].is_null(), "{gone} kept: {r}");
        }
    }
    let sent: u64 = ours
        .iter()
        .filter(|r| r["dstaddr"] == B_V4)
        .map(|r| r["bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sent, 300 + 2 * 28);

    // Change the format: from the next window on, ports are kept too.
    let wider = format!("{FORMAT}${{srcport}}${{dstport}}");
    a.ok(
        "ModifyFlowLogAttribute",
        json!({"FlowLogId": id, "LogFormatString": wider}),
    );
    let (code, answer) = a.call(
        "ModifyFlowLogAttribute",
        json!({"FlowLogId": id, "LogFormatString": "${bytes}"}),
    )?;
    assert_eq!(
        (code, answer["Code"].as_str()),
        (400, Some("InvalidParameter.LogFormatString"))
    );
    let changed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        traffic::udp_from_port(&t.a, &t.b, port, dst, &[50])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    a.wait_windows(2, Duration::from_secs(20))?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let later: Vec<&Value> = done
        .records
        .iter()
        .filter(|r| r["log-status"] == "OK" && r["dstaddr"] == B_V4 && r["start"].as_i64() > Some(changed_at))
        .collect();
    assert!(!later.is_empty());
    for r in &later {
        assert_eq!(
            (r["srcport"].as_u64(), r["dstport"].as_u64()),
            (Some(port.into()), Some(9995)),
            "{r}"
        );
        assert!(r["protocol"].is_null(), "{r}");
    }
    // Every window is cut one way: ports on all of its records or none.
    for r in done.records.iter().filter(|r| r["log-status"] == "OK") {
        let same_window = done
            .records
            .iter()
            .filter(|o| o["start"] == r["start"] && o["log-status"] == "OK");
        assert!(
            same_window
                .into_iter()
                .all(|o| o["srcport"].is_null() == r["srcport"].is_null())
        );
    }

    // The Logstore keeps the same: chosen columns filled, others null.
    let sql = format!(
        "SELECT count(*) AS n, count(packets) AS with_packets, count(protocol) AS with_protocol, \
                count(interface) AS with_interface, sum(bytes) AS b \
         FROM logs WHERE \"log-status\" = 'OK' AND dstaddr = '{B_V4}' AND start <= {}",
        changed_at - 1
    );
    let (rows, _) = logstore_json(dir.path(), ("fproj", "flows"), "query", &[&sql])?;
    // Absent reads as u64::MAX: a missing column fails every check below.
    let n = |k: &str| num(&rows[0][k]).unwrap_or(u64::MAX);
    assert!(n("n") > 0, "{rows:?}");
    assert_eq!(
        (n("with_packets"), n("with_protocol"), n("with_interface")),
        (n("n"), 0, 0),
        "{rows:?}"
    );
    Ok(())
}
