//! The flow-log text layout, read back by a published parser of VPC
//! flow-log lines (`flowlogs-reader` from PyPI, in the test venv): the text
//! sink's lines and `flowlog query --format text` parse field for field into
//! the same values as the agent's JSON records.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use flowlog_tests::{
    agent::{Agent, TempDir, logstore_command},
    privileged, python,
    topology::{B_V4, B_V6, RouterTopology},
    traffic,
};
use serde_json::Value;

/// Parses each line of `lines` with flowlogs-reader's `FlowRecord`, after
/// checking it has the layout's 14 fields; returns the parsed fields.
fn parse_with_flowlogs_reader(py: &Path, lines: &str) -> anyhow::Result<Vec<Value>> {
    let script = r#"
import calendar, json, sys
from flowlogs_reader import FlowRecord
out = []
for line in sys.stdin.read().splitlines():
    assert len(line.split(' ')) == 14, line
    r = FlowRecord.from_cwl_event({'message': line})
    out.append({
        'version': r.version, 'account_id': r.account_id, 'interface_id': r.interface_id,
        'srcaddr': r.srcaddr, 'dstaddr': r.dstaddr, 'srcport': r.srcport, 'dstport': r.dstport,
        'protocol': r.protocol, 'packets': r.packets, 'bytes': r.bytes,
        'start': calendar.timegm(r.start.timetuple()), 'end': calendar.timegm(r.end.timetuple()),
        'action': r.action, 'log_status': r.log_status,
    })
print(json.dumps(out))
"#;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(lines.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A parsed line equals the record it was written from.
fn assert_same(parsed: &Value, r: &Value) {
    let pairs = [
        ("account_id", "account-id"),
        ("interface_id", "interface"),
        ("srcaddr", "srcaddr"),
        ("dstaddr", "dstaddr"),
        ("srcport", "srcport"),
        ("dstport", "dstport"),
        ("protocol", "protocol"),
        ("packets", "packets"),
        ("bytes", "bytes"),
        ("start", "start"),
        ("end", "end"),
        ("action", "direction"),
        ("log_status", "log-status"),
    ];
    assert_eq!(parsed["version"], 2, "{parsed}");
    for (p, j) in pairs {
        assert_eq!(parsed[p], r[j], "{p} of {parsed} vs {j} of {r}");
    }
}

#[test]
fn text_lines_parse_with_a_published_vpc_flow_log_parser() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let Some(py) = python() else {
        return Ok(());
    };
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let text_file = dir.path().join("records.txt");
    let a = Agent::start_in(
        dir.path(),
        &t.agent_args(
            "tc",
            &[
                "--window-secs",
                "1",
                "--no-rtt",
                "--text-file",
                text_file.to_str().unwrap_or_default(),
            ],
        ),
    )?;
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9996), &[100, 200])?;
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V6.parse()?, 9996), &[300])?;
    a.wait_windows(3, Duration::from_secs(20))?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);

    // The sink: one line per record, in the same order as the JSON sink.
    let text = std::fs::read_to_string(&text_file)?;
    let parsed = parse_with_flowlogs_reader(&py, &text)?;
    assert_eq!(parsed.len(), done.records.len());
    for (p, r) in parsed.iter().zip(&done.records) {
        assert_same(p, r);
    }
    for status in ["OK", "NODATA"] {
        assert!(
            parsed.iter().any(|p| p["log_status"] == status),
            "no {status} line:\n{text}"
        );
    }
    let udp_bytes: u64 = parsed
        .iter()
        .filter(|p| p["dstport"] == 9996 && p["action"] == "in" && p["interface_id"] == "r-a")
        .map(|p| p["bytes"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(udp_bytes, 300 + 2 * 28 + 300 + 48);

    // The query output format: the same records from the Logstore.
    let (lines, _) = logstore_command(
        dir.path(),
        ("default", "flowlogs"),
        "query",
        "text",
        &["SELECT * FROM logs"],
    )?;
    let from_query = parse_with_flowlogs_reader(&py, &lines)?;
    let key = |v: &Value| v.to_string();
    let mut a: Vec<String> = from_query.iter().map(key).collect();
    let mut b: Vec<String> = parsed.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the query's lines differ from the sink's");
    Ok(())
}
