//! The metrics endpoint: it parses with the Prometheus client's own
//! OpenMetrics parser (strict: one `# EOF`, suffixes that match their
//! types), its counters move exactly with real traffic, it counts API
//! requests with bounded labels, and status.json shows the same figures.

use std::{io::Write as _, net::SocketAddr, process::Command};

use flowlog_tests::{
    agent::Agent,
    privileged, python,
    topology::{B_V4, RouterTopology},
    traffic,
};

/// Parses the exposition with prometheus_client and returns one sample.
fn sample(py: &std::path::Path, text: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect();
    let script = format!(
        "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n\
         want = {{{}}}\n\
         for fam in p(sys.stdin.read()):\n\
         \x20   for s in fam.samples:\n\
         \x20       if s.name == {name:?} and all(s.labels.get(k) == v for k, v in want.items()):\n\
         \x20           print(s.value); sys.exit(0)\n\
         print('missing'); sys.exit(1)\n",
        want.join(", ")
    );
    let mut child = Command::new(py)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdin"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    anyhow::ensure!(
        out.status.success(),
        "{name} {labels:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout.parse()?)
}

#[test]
fn metrics_parse_and_count_real_traffic() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let Some(py) = python() else { return Ok(()) };
    let t = RouterTopology::ipv4_only()?;
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(&t.agent_args("tc", &["--window-secs", "1", "--metrics-listen", &addr]))?;
    let r_a_in = [("interface", "r-a"), ("direction", "in")];
    let dst = SocketAddr::new(B_V4.parse()?, 9800);
    let src = traffic::udp(&t.a, &t.b, dst, &[100; 7])?;
    agent.wait_windows(2, std::time::Duration::from_secs(10))?;
    let text = flowlog_tests::scrape_metrics(&addr)?;
    assert_eq!(
        sample(&py, &text, "flowlog_packets_total", &r_a_in)?,
        7.0,
        "{text}"
    );
    assert_eq!(sample(&py, &text, "flowlog_bytes_total", &r_a_in)?, 7.0 * 128.0);
    assert!(sample(&py, &text, "flowlog_drain_duration_seconds_count", &[])? >= 2.0);
    assert_eq!(
        sample(
            &py,
            &text,
            "flowlog_records_published_total",
            &[("sink", "logstore")]
        )?,
        sample(
            &py,
            &text,
            "flowlog_records_published_total",
            &[(
                "sink",
                &format!("json-file:{}", agent.dir().join("records.jsonl").display())
            )]
        )?
    );
    // More traffic, more counts — exactly.
    traffic::udp_from_port(&t.a, &t.b, src, dst, &[200; 5])?;
    let before = agent.status()?["windows-published"].as_u64().unwrap_or(0);
    agent.wait_windows(before + 2, std::time::Duration::from_secs(10))?;
    let text = flowlog_tests::scrape_metrics(&addr)?;
    assert_eq!(sample(&py, &text, "flowlog_packets_total", &r_a_in)?, 12.0);
    assert_eq!(
        sample(&py, &text, "flowlog_bytes_total", &r_a_in)?,
        7.0 * 128.0 + 5.0 * 228.0
    );
    assert_eq!(
        sample(
            &py,
            &text,
            "flowlog_packets_total",
            &[("interface", "r-b"), ("direction", "out")]
        )?,
        12.0
    );
    assert_eq!(
        sample(
            &py,
            &text,
            "flowlog_publish_errors_total",
            &[("sink", "logstore")]
        )?,
        0.0
    );
    // API requests, counted by action and code class; an action the API
    // does not have is "unknown" whatever its name.
    agent.call("DescribeAgentStatus", serde_json::json!({}))?;
    let (code, _) = agent.call("NoSuchAction-Spelled-By-A-Client", serde_json::json!({}))?;
    assert_eq!(code, 400);
    let text = flowlog_tests::scrape_metrics(&addr)?;
    let requests = |action: &str, code: &str| {
        sample(
            &py,
            &text,
            "flowlog_api_requests_total",
            &[("action", action), ("code", code)],
        )
    };
    assert!(requests("DescribeAgentStatus", "Success")? >= 1.0);
    assert_eq!(requests("unknown", "InvalidAction")?, 1.0);
    assert!(
        !text.contains("NoSuchAction"),
        "a client's action name became a label"
    );
    // status.json is a snapshot of the same figures (traffic has stopped,
    // so they hold still).
    let status = agent.status()?;
    for (field, metric) in [
        ("overflow-events", "flowlog_overflow_events_total"),
        ("journal-cuts-lost", "flowlog_journal_cuts_lost_total"),
    ] {
        assert_eq!(
            status[field].as_f64(),
            Some(sample(&py, &text, metric, &[])?),
            "{field}"
        );
    }
    assert!(agent.stop()?.status.success());
    Ok(())
}
