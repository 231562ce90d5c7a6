//! The embedded log service on a real capture: every record lands in the
//! Logstore as Parquet, SQL reads it back exactly (CLI and API), another
//! engine (DuckDB) reads the same files, bad files and bad queries are
//! handled, retention expires old partitions, failed writes are retried, a
//! full disk costs a bounded, counted number of records and no torn ones.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use flowlog_tests::{
    Filter,
    agent::{Agent, TempDir, binary, logstore_json},
    disk::Tmpfs,
    metric, privileged, sum,
    topology::{A_V4, B_V4, RouterTopology},
    traffic,
};
use serde_json::{Value, json};

/// Project "lproj", Logstore "flows" (ttl days), and an Active flow log on r-a/r-b.
fn flow_log(a: &Agent, t: &RouterTopology, ttl: u64, interval: u64) -> String {
    a.ok("CreateProject", json!({"ProjectName": "lproj"}));
    a.ok(
        "CreateLogstore",
        json!({"ProjectName": "lproj", "LogStoreName": "flows", "Ttl": ttl}),
    );
    let atts = json!([
        {"Interface": "r-a", "Netns": t.router.name(), "Mode": "tc"},
        {"Interface": "r-b", "Netns": t.router.name(), "Mode": "tc"},
    ]);
    let v = a.ok(
        "CreateFlowlog",
        json!({"FlowLogName": "ls", "CenId": "cen-ls", "ProjectName": "lproj", "LogStoreName": "flows", "Attachments": atts, "Interval": interval}),
    );
    let id = v["FlowLogId"].as_str().unwrap_or_default().to_owned();
    a.ok("ActiveFlowLog", json!({"FlowLogId": id}));
    id
}

fn logstore_dir(data: &Path) -> PathBuf {
    data.join("logstores/lproj/flows")
}

/// `flowlog query` (local) as JSON rows; panics with stderr on failure.
fn cli_query(data: &Path, extra: &[&str], sql: &str) -> (Vec<Value>, String) {
    let args: Vec<&str> = extra.iter().copied().chain([sql]).collect();
    logstore_json(data, ("lproj", "flows"), "query", &args).unwrap_or_else(|e| panic!("query failed: {e:#}"))
}

/// A 1 MiB tmpfs at `<data>/full`, with the data directory's Logstores
/// (and, with `json`, its JSON sink file) moved onto it by symlinks.
fn small_disk_under(data: &Path, json: bool) -> anyhow::Result<Tmpfs> {
    let full = data.join("full");
    std::fs::create_dir(&full)?;
    let disk = Tmpfs::mount(&full, 1 << 20)?;
    std::fs::create_dir(full.join("logstores"))?;
    std::os::unix::fs::symlink(full.join("logstores"), data.join("logstores"))?;
    if json {
        std::os::unix::fs::symlink(full.join("records.jsonl"), data.join("records.jsonl"))?;
    }
    Ok(disk)
}

fn num(v: &Value) -> u64 {
    flowlog_tests::agent::num(v).unwrap_or(0)
}

#[test]
fn records_land_in_the_logstore_and_query_back_exactly() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let a = Agent::start(&[])?;
    let id = flow_log(&a, &t, 30, 600);
    let sizes = [10, 200, 1400, 33, 700];
    let port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9600), &sizes)?;
    let tcp = traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9601), 1 << 20)?;
    a.ok("DeactiveFlowLog", json!({"FlowLogId": id}));
    let records: Vec<Value> = a
        .records()?
        .into_iter()
        .filter(|r| r["flow-log-id"] == id.as_str())
        .collect();
    let data = a.dir().to_owned();

    // Every published record is in the Logstore.
    let (rows, _) = cli_query(&data, &[], "SELECT count(*) AS n FROM logs");
    assert_eq!(num(&rows[0]["n"]), records.len() as u64);
    // Per interface and direction, the UDP and TCP flows sum as published.
    for (iface, dir, dport) in [
        ("r-a", "in", 9600u64),
        ("r-b", "out", 9600),
        ("r-a", "in", 9601),
        ("r-a", "out", 0),
    ] {
        let f = if dport == 0 {
            Filter {
                interface: Some(iface),
                direction: Some(dir),
                srcport: Some(9601),
                dstport: Some(tcp.client_port.into()),
                ..Default::default()
            }
        } else {
            Filter {
                interface: Some(iface),
                direction: Some(dir),
                dstport: Some(dport),
                srcaddr: Some(A_V4),
                ..Default::default()
            }
        };
        let (p, b, _) = sum(&records, &f);
        let cond = if dport == 0 {
            format!("srcport = 9601 AND dstport = {}", tcp.client_port)
        } else {
            format!("dstport = {dport} AND srcaddr = '{A_V4}'")
        };
        let sql = format!(
            "SELECT sum(packets) AS p, sum(bytes) AS b FROM logs WHERE interface = '{iface}' AND direction = '{dir}' AND {cond}"
        );
        let (rows, _) = cli_query(&data, &[], &sql);
        assert_eq!((num(&rows[0]["p"]), num(&rows[0]["b"])), (p, b), "{sql}");
        assert!(p > 0);
    }
    let (p, b, _) = sum(
        &records,
        &Filter {
            interface: Some("r-a"),
            srcport: Some(port.into()),
            ..Default::default()
        },
    );
    assert_eq!((p, b), (5, sizes.iter().map(|s| *s as u64 + 28).sum()));

    // The API reads the same back; record field names are columns.
    let v = a.ok(
        "GetLogs",
        json!({"ProjectName": "lproj", "LogStoreName": "flows",
               "Query": format!("SELECT \"log-status\", sum(bytes) AS b FROM logs WHERE srcport = {port} AND interface = 'r-a' GROUP BY 1")}),
    );
    assert_eq!(v["Logs"], json!([{"log-status": "OK", "b": b}]), "{v}");
    assert_eq!(v["Complete"], true);
    let v = a.ok(
        "GetLogs",
        json!({"ProjectName": "lproj", "LogStoreName": "flows", "Line": 3}),
    );
    assert_eq!(v["Count"], 3);
    // Line caps any query's rows, and the answer says it cut.
    let v = a.ok(
        "GetLogs",
        json!({"ProjectName": "lproj", "LogStoreName": "flows", "Line": 2, "Query": "SELECT * FROM logs"}),
    );
    assert_eq!(
        (&v["Count"], &v["Truncated"], &v["Complete"]),
        (&json!(2), &json!(true), &json!(false)),
        "{v}"
    );
    // A query that fails on the data itself is the query's error: 400
    // with the engine's message, not an internal error.
    for sql in [
        "SELECT CAST(srcaddr AS INT) AS n FROM logs",
        "SELECT sum(bytes) / (count(*) - count(*)) AS n FROM logs",
    ] {
        let (status, v) = a.call(
            "GetLogs",
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "Query": sql}),
        )?;
        assert_eq!(
            (status, v["Code"].as_str()),
            (400, Some("InvalidParameter.Query")),
            "{sql}: {v}"
        );
        let message = v["Message"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            message.contains("cast") || message.contains("divide"),
            "{sql}: {v}"
        );
    }
    // A time range before the capture finds nothing.
    let v = a.ok(
        "GetLogs",
        json!({"ProjectName": "lproj", "LogStoreName": "flows", "To": 1_000_000, "Query": "SELECT count(*) AS n FROM logs"}),
    );
    assert_eq!(v["Logs"][0]["n"], 0);

    // Another engine reads the files as they are.
    if let Some(py) = flowlog_tests::python() {
        let glob = format!("{}/**/*.parquet", logstore_dir(&data).display());
        let script = format!(
            "import duckdb; print(duckdb.connect().execute(\"SELECT sum(bytes) FROM read_parquet('{glob}', hive_partitioning=true) WHERE srcport = {port} AND interface = 'r-a'\").fetchone()[0])"
        );
        let out = Command::new(py).args(["-c", &script]).output()?;
        assert!(
            out.status.success(),
            "duckdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let duck: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        let (_, want, _) = sum(
            &records,
            &Filter {
                interface: Some("r-a"),
                srcport: Some(port.into()),
                ..Default::default()
            },
        );
        assert_eq!(duck, want);
    }

    // A corrupt file is skipped, named, and the answer comes from the rest.
    let part = std::fs::read_dir(logstore_dir(&data))?
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|h| h.path())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no partition"))?;
    let junk = part.join("1796040000-1796040600-fl-x-junk01.parquet");
    std::fs::write(&junk, b"PAR1 definitely not parquet")?;
    let (rows, stderr) = cli_query(&data, &[], "SELECT count(*) AS n FROM logs");
    assert_eq!(num(&rows[0]["n"]), records.len() as u64);
    assert!(
        stderr.contains("junk01") && stderr.contains("partial result"),
        "{stderr}"
    );
    let v = a.ok(
        "GetLogs",
        json!({"ProjectName": "lproj", "LogStoreName": "flows", "Query": "SELECT count(*) AS n FROM logs"}),
    );
    assert_eq!(v["Complete"], false);
    assert!(
        v["SkippedFiles"][0]["File"]
            .as_str()
            .is_some_and(|f| f.contains("junk01")),
        "{v}"
    );
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn bad_queries_get_clear_errors() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let a = Agent::start(&[])?;
    flow_log(&a, &t, 30, 600);
    for (params, status, code) in [
        (
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "Query": "SELEC * FROM logs"}),
            400,
            "InvalidParameter.Query",
        ),
        (
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "Query": "SELECT nope FROM logs"}),
            400,
            "InvalidParameter.Query",
        ),
        (
            json!({"ProjectName": "lproj", "LogStoreName": "none"}),
            404,
            "ResourceNotFound.LogStore",
        ),
        (
            json!({"ProjectName": "none", "LogStoreName": "flows"}),
            404,
            "ResourceNotFound.Project",
        ),
        (
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "From": 10, "To": 5}),
            400,
            "InvalidParameter.From",
        ),
        (
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "Line": 0}),
            400,
            "InvalidParameter.Line",
        ),
        // Queries only read.
        (
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "Query": "COPY (SELECT 1) TO '/tmp/flowlog-api-copy.csv'"}),
            400,
            "InvalidParameter.Query",
        ),
        (
            json!({"ProjectName": "lproj", "LogStoreName": "flows", "Query": "CREATE EXTERNAL TABLE p (l VARCHAR) STORED AS CSV LOCATION '/etc/passwd'"}),
            400,
            "InvalidParameter.Query",
        ),
    ] {
        let (s, v) = a.call("GetLogs", params)?;
        assert_eq!((s, v["Code"].as_str()), (status, Some(code)), "{v}");
    }
    assert!(
        !Path::new("/tmp/flowlog-api-copy.csv").exists(),
        "COPY wrote a file"
    );
    let data = a.dir().to_owned();
    let run = |args: &[&str]| {
        Command::new(binary().unwrap_or_default())
            .arg("query")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let out = run(&[
        "--project",
        "lproj",
        "--logstore",
        "flows",
        "SELECT nope FROM logs",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("invalid query") && err.contains("nope"),
        "{err}"
    );
    let out = run(&["--project", "lproj", "--logstore", "gone", "SELECT 1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("lproj/gone does not exist"),
        "{err}"
    );
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn retention_removes_expired_partitions() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let a = Agent::start_in(dir.path(), &[])?;
    flow_log(&a, &t, 2, 600);
    assert!(a.stop()?.status.success());
    let store = logstore_dir(dir.path());
    let old = store.join("dt=2020-01-01/hour=00");
    std::fs::create_dir_all(&old)?;
    std::fs::write(old.join("1577836800-1577837400-fl-old-aaaaaa.parquet"), b"old")?;
    let today = flowlog_tests::api::now();
    let recent = store.join(format!("dt={}", civil(today)));
    std::fs::create_dir_all(recent.join("hour=00"))?;
    let b = Agent::start_in(dir.path(), &[])?;
    assert!(!store.join("dt=2020-01-01").exists(), "expired partition kept");
    assert!(recent.exists(), "today's partition removed");
    assert!(b.stderr().contains("expired Logstore partition removed"));
    let done = b.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time, for planting partitions.
fn civil(secs: i64) -> String {
    Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn failed_writes_are_kept_and_retried() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let a = Agent::start(&[])?;
    let store = logstore_dir(a.dir());
    // A file where today's partition directory must go: every write fails
    // (ENOTDIR) until it is removed.
    std::fs::create_dir_all(&store)?;
    let blocker = store.join(format!("dt={}", civil(flowlog_tests::api::now())));
    std::fs::write(&blocker, b"in the way")?;
    let id = flow_log(&a, &t, 30, 1);
    let port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9700), &[100, 200, 300])?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = a.status()?;
        if s["logstore-write-errors"].as_u64() >= Some(2) && s["logstore-pending-records"].as_u64() > Some(0)
        {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no write failure seen: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        a.stderr()
            .contains("Logstore write failed; keeping the records to retry")
    );
    std::fs::remove_file(&blocker)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.status()?["logstore-pending-records"].as_u64() != Some(0) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "kept records never written: {}",
            a.status()?
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.ok("DeactiveFlowLog", json!({"FlowLogId": id}));
    let records: Vec<Value> = a
        .records()?
        .into_iter()
        .filter(|r| r["flow-log-id"] == id.as_str())
        .collect();
    let (rows, _) = cli_query(a.dir(), &[], "SELECT count(*) AS n FROM logs");
    assert_eq!(
        num(&rows[0]["n"]),
        records.len() as u64,
        "every record reached the Logstore"
    );
    let (rows, _) = cli_query(
        a.dir(),
        &[],
        &format!("SELECT sum(bytes) AS b FROM logs WHERE srcport = {port} AND interface = 'r-a'"),
    );
    assert_eq!(num(&rows[0]["b"]), 600 + 3 * 28);
    let s = a.status()?;
    assert_eq!(s["logstore-dropped-records"], 0, "{s}");
    assert!(a.stop()?.status.success());
    Ok(())
}

#[test]
fn a_full_disk_is_bounded_counted_and_recovered_from() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    // The Logstore and the JSON sink on a 1 MiB tmpfs; state, status and
    // the agent's log stay on the real disk.
    let dir = TempDir::new()?;
    let disk = small_disk_under(dir.path(), true)?;
    let metrics = format!("127.0.0.1:{}", 30_000 + (std::process::id() % 20_000) + 7);
    let a = Agent::start_in(
        dir.path(),
        &["--logstore-buffer-records", "6", "--metrics-listen", &metrics],
    )?;
    let id = flow_log(&a, &t, 30, 1);
    let filler = disk.fill()?;
    let status = || -> anyhow::Result<Value> { Ok(a.ok("DescribeAgentStatus", json!({}))["Status"].clone()) };
    // A new flow every 400 ms, over several one-second windows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut port = 9900;
    loop {
        traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, port), &[100])?;
        port += 1;
        std::thread::sleep(Duration::from_millis(400));
        let s = status()?;
        if s["logstore-dropped-records"].as_u64() > Some(0) && s["publish-errors"].as_u64() > Some(2) {
            // The backlog stays within its bound while the disk is full.
            assert!(s["logstore-pending-records"].as_u64() <= Some(6), "{s}");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the full disk never showed: {s}");
    }
    let log = a.stderr();
    assert!(
        log.contains("Logstore write backlog over its bound: window dropped"),
        "{log}"
    );
    assert!(
        log.contains("publish failed; the window's records are not in this sink"),
        "{log}"
    );
    let json_sink = format!(
        "flowlog_records_dropped_total{{sink=\"json-file:{}\"}}",
        dir.path().join("records.jsonl").display()
    );
    assert!(metric(&metrics, &json_sink)? > 0);
    assert!(metric(&metrics, "flowlog_records_dropped_total{sink=\"logstore\"}")? > 0);

    // Room again: what was kept is written, and new windows go through.
    std::fs::remove_file(&filler)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while status()?["logstore-pending-records"].as_u64() != Some(0) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "kept records never written: {}",
            status()?
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let last = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, port), &[100])?;
    a.ok("DeactiveFlowLog", json!({"FlowLogId": id}));
    let s = status()?;
    let published = s["records-published"].as_u64().unwrap_or_default();

    // Every record is in a sink or counted as dropped by it; the JSON file
    // has no torn line (read_json_lines parses every one).
    let lines = a.records()?;
    assert_eq!(
        lines.len() as u64 + metric(&metrics, &json_sink)?,
        published,
        "{s}"
    );
    let (rows, _) = cli_query(a.dir(), &[], "SELECT count(*) AS n FROM logs");
    assert_eq!(
        num(&rows[0]["n"]) + s["logstore-dropped-records"].as_u64().unwrap_or_default(),
        published,
        "{s}"
    );
    let after = Filter {
        interface: Some("r-a"),
        srcport: Some(last.into()),
        dstport: Some(u64::from(port)),
        ..Default::default()
    };
    assert_eq!(sum(&lines, &after).0, 1);
    assert!(a.stop()?.status.success());
    drop(disk);
    Ok(())
}

#[test]
fn a_stop_while_the_disk_is_full_keeps_the_windows_for_the_next_start() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    // Only the Logstore on a 1 MiB tmpfs: the journal, the JSON sink and
    // the agent's log stay on the real disk.
    let dir = TempDir::new()?;
    let disk = small_disk_under(dir.path(), false)?;
    let a = Agent::start_in(dir.path(), &[])?;
    let id = flow_log(&a, &t, 30, 1);
    let filler = disk.fill()?;
    let dst = SocketAddr::new(B_V4.parse()?, 9950);
    let port = traffic::udp(&t.a, &t.b, dst, &[])?;
    let mut sent = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        traffic::udp_from_port(&t.a, &t.b, port, dst, &[300; 5])?;
        sent += 5;
        std::thread::sleep(Duration::from_millis(300));
        let s = a.status()?;
        if s["logstore-pending-records"].as_u64() > Some(3) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the full disk never showed: {s}");
    }
    // Stopped while the Logstore still cannot take the windows: the stop
    // ends within its bound and says where the windows are.
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr
            .contains("they stay in the journal and are written at the next start"),
        "{}",
        done.stderr
    );
    let (rows, _) = cli_query(dir.path(), &[], "SELECT count(*) AS n FROM logs");
    assert_eq!(num(&rows[0]["n"]), 0, "the full Logstore took records");
    // Room again; the next start writes what the last one could not.
    std::fs::remove_file(&filler)?;
    let b = Agent::start_in(dir.path(), &[])?;
    b.ok("DeactiveFlowLog", json!({"FlowLogId": id}));
    let done = b.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let want = sent * (300 + 28);
    let (rows, _) = cli_query(
        dir.path(),
        &[],
        &format!(
            "SELECT sum(packets) AS p, sum(bytes) AS b FROM logs WHERE srcport = {port} AND interface = 'r-a'"
        ),
    );
    assert_eq!(
        (num(&rows[0]["p"]), num(&rows[0]["b"])),
        (sent, want),
        "the Logstore after the restart"
    );
    // The JSON sink had every window the first time; the replay did not
    // write any of them again.
    let lines = done.records;
    let f = Filter {
        interface: Some("r-a"),
        srcport: Some(u64::from(port)),
        ..Default::default()
    };
    assert_eq!(sum(&lines, &f).0, sent, "the JSON sink");
    flowlog_tests::assert_records_disjoint(&lines);
    drop(disk);
    Ok(())
}
