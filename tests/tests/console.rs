//! The web console in a real browser (Debian's Chromium, driven by
//! Playwright) over real records: traffic of known size through the netns
//! router, the agent serving the console beside its API.
//!
//! - Every page's numbers equal the same figures from `flowlog query` SQL
//!   written here (totals, the series, NODATA/SKIPDATA counts, matrix cells,
//!   top-N, percentiles, a flows search, the query page), and the totals and
//!   percentiles equal the agent's own JSON records too.
//! - The flow-log lifecycle runs by clicking: create, activate, see records
//!   arrive, deactivate, delete.
//! - A hostile description renders as text; another site's requests are
//!   refused; the agent being down is a message, not a broken page; the
//!   pages work from the keyboard; beyond loopback people sign in, and the
//!   session cookie is HttpOnly and SameSite=Strict.
//! - No page logs a console error or asks another host for anything.
//!
//! Screenshots of every page go to `target/console-screenshots/`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::Path,
    time::Duration,
};

use flowlog_tests::{
    agent::{Agent, TempDir, logstore_json, num},
    console::{Console, drive, wait_listening},
    free_port,
    packet::{frames, inject},
    privileged,
    topology::{A_V4, B_V4, RouterTopology},
    traffic,
};
use serde_json::{Value, json};

const PROJECT: &str = "default";
const LOGSTORE: &str = "flowlogs";

fn config(t: &RouterTopology) -> String {
    format!(
        r#"window-secs = 1
flow-map-entries = 256
overflow-ring-bytes = 4096

{}
[[region]]
cidr = "10.1.0.0/24"
region-id = "cn-hangzhou"
network = "vpc-a"

[[region]]
cidr = "10.2.0.0/24"
region-id = "cn-shanghai"
"#,
        t.labelled_attachments_toml()
    )
}

fn shots() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../target/console-screenshots").to_owned()
}

/// Rows of `sql` over [from, to), from `flowlog query`.
fn sql(data: &Path, (from, to): (i64, i64), q: &str) -> Vec<Value> {
    let (from, to) = (from.to_string(), to.to_string());
    logstore_json(
        data,
        (PROJECT, LOGSTORE),
        "query",
        &["--from", &from, "--to", &to, q],
    )
    .unwrap_or_else(|e| panic!("{q}: {e:#}"))
    .0
}

/// A cell the page showed (its raw data-value) as a number.
fn cell(row: &Value, col: &str) -> f64 {
    row[col]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number in {col}: {row}"))
}

fn text(row: &Value, col: &str) -> String {
    row[col].as_str().unwrap_or_default().to_owned()
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn table<'a>(page: &'a Value, name: &str) -> &'a Vec<Value> {
    page["tables"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no table {name} on {}: {page}", page["page"]))
}

/// `percentile_cont`: linear interpolation between closest ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// The console's words for a region column's value.
fn region(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) if s.is_empty() => "(unmatched)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn the_console_shows_what_sql_says_and_runs_the_lifecycle() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    let dir = TempDir::new()?;
    let data = dir.path();
    let cfg = data.join("flowlog.toml");
    std::fs::write(&cfg, config(&t))?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let from = flowlog_agent::state::now_secs() - 5;
    let agent = Agent::start_in(
        data,
        &[
            "--config",
            cfg.to_str().unwrap_or_default(),
            "--console-listen",
            &listen,
        ],
    )?;
    let addr: SocketAddr = listen.parse()?;
    wait_listening(addr, Duration::from_secs(10))?;
    let url = format!("http://{listen}");

    // Known traffic: UDP both ways, one TCP transfer (a handshake RTT),
    // pings; a quiet spell (NODATA); a burst of distinct flows past the
    // 256-entry map (SKIPDATA).
    let b = SocketAddr::new(B_V4.parse()?, 5001);
    let a = SocketAddr::new(A_V4.parse()?, 5002);
    traffic::udp(&t.a, &t.b, b, &[100; 20])?;
    traffic::udp(&t.a, &t.b, b, &[1400; 10])?;
    traffic::udp(&t.b, &t.a, a, &[300; 15])?;
    for i in 0..3u16 {
        traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 5100 + i), 50_000)?;
    }
    traffic::ping(&t.a, B_V4.parse()?, 5, 56)?;
    std::thread::sleep(Duration::from_secs(3));
    let (burst, _) = frames::distinct_udp(3000, 20_000, 9, 50);
    inject(&t.a, "eth0", &burst)?;
    std::thread::sleep(Duration::from_secs(2));

    // The lifecycle, by clicking, on the agent's own console: a second flow
    // log on r-b with a hostile description.
    let q_live = format!("logstore={PROJECT}/{LOGSTORE}&range=1h");
    let ifaces = format!("r-b@{}", t.router.name());
    let Some(created) = drive(
        "create",
        &url,
        &q_live,
        &[
            ("name", "console-made"),
            ("project", PROJECT),
            ("logstore", LOGSTORE),
            ("interfaces", &ifaces),
            ("shots", &shots()),
        ],
    )?
    else {
        return Ok(());
    };
    let fid = created["flow_log_id"].as_str().unwrap_or_default().to_owned();
    assert!(fid.starts_with("fl-"), "{created}");
    assert_eq!(
        created["description_shown"], created["hostile"],
        "the description renders as text"
    );
    assert_eq!(
        created["injected"],
        json!({"pwned": null, "scripts": 0}),
        "{created}"
    );
    assert_eq!(created["status_after_activate"], "Active", "{created}");
    let listed = agent.ok("DescribeFlowlogs", json!({"FlowLogId": fid}));
    assert_eq!(
        listed["FlowLogs"][0]["Description"], created["hostile"],
        "{listed}"
    );
    // Records for it arrive once traffic crosses r-b.
    traffic::udp(&t.a, &t.b, b, &[500; 10])?;
    let watched = drive("watch", &url, &q_live, &[("flow-log-id", &fid)])?.unwrap_or_default();
    assert!(watched["records_seen"].as_u64() > Some(0), "{watched}");
    assert_eq!(watched["status_after_deactivate"], "Inactive", "{watched}");
    assert_eq!(watched["armed_text"], "Confirm delete", "{watched}");
    assert_eq!(watched["rows_left"], 0, "{watched}");
    let (status, gone) = agent.call("DescribeFlowlogs", json!({"FlowLogId": fid}))?;
    assert!(status == 200 && gone["TotalCount"] == 0, "{gone}");

    // Another site cannot act through the console: a flow log survives its
    // delete attempts.
    let victim = agent.ok(
        "CreateFlowlog",
        json!({"FlowLogName": "victim", "CenId": "cen-console", "ProjectName": PROJECT,
               "LogStoreName": LOGSTORE, "Attachments": [{"Interface": "r-a", "Netns": t.router.name()}]}),
    );
    let configured = victim["FlowLogId"].as_str().unwrap_or_default().to_owned();
    let cross = drive("cross-site", &url, &q_live, &[("flow-log-id", &configured)])?.unwrap_or_default();
    let responses = cross["responses"].as_array().cloned().unwrap_or_default();
    let posts: Vec<&Value> = responses.iter().filter(|r| r[0] == "POST").collect();
    assert_eq!(
        posts.len(),
        2,
        "the fetch and the form both reached the console: {cross}"
    );
    assert!(posts.iter().all(|r| r[2] == 403), "{cross}");
    assert_eq!(cross["still_listed"], 1, "{cross}");
    let still = agent.ok("DescribeFlowlogs", json!({"FlowLogId": configured}));
    assert_eq!(still["TotalCount"], 1, "{still}");

    // Keyboard only.
    let keys = drive("keyboard", &url, &q_live, &[])?.unwrap_or_default();
    assert_eq!(keys["reached"], "Top talkers", "{keys}");
    assert_eq!(keys["after_enter"], "top", "{keys}");
    assert_eq!(keys["record_open"], true, "{keys}");
    assert!(
        keys["record_fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "log-status")),
        "{keys}"
    );

    // Beyond loopback: sign in with an access key.
    let key = agent.ok("CreateAccessKey", json!({}));
    let (key_id, secret) = (
        key["AccessKeyId"].as_str().unwrap_or_default().to_owned(),
        key["AccessKeySecret"].as_str().unwrap_or_default().to_owned(),
    );
    let remote_port = free_port()?;
    let remote = Console::start(
        data,
        SocketAddr::from(([0, 0, 0, 0], remote_port)),
        &["--console-allow-remote", "--console-allow-plain-http"],
    )?;
    let signed = drive(
        "sign-in",
        &format!("http://127.0.0.1:{remote_port}"),
        &q_live,
        &[("key-id", &key_id), ("secret", &secret), ("shots", &shots())],
    )?
    .unwrap_or_default();
    assert_eq!(signed["form_shown"], true, "{signed}");
    assert_eq!(signed["panel_status_before"], 401, "{signed}");
    assert_eq!(signed["refusals_logged"], 2, "{signed}");
    assert!(
        signed["wrong_secret"]
            .as_str()
            .is_some_and(|s| s.contains("InvalidAccessKey")),
        "{signed}"
    );
    assert_eq!(signed["after"]["page"], "overview", "{signed}");
    assert!(
        signed["after"]["cards"]["in-bytes"].is_string(),
        "signed in, the page shows data: {signed}"
    );
    assert_eq!(signed["cookie_visible_to_script"], "", "{signed}");
    let cookie = &signed["cookies"][0];
    assert!(
        cookie["httpOnly"] == true && cookie["sameSite"] == "Strict",
        "{signed}"
    );
    assert_eq!(signed["signed_out_form"], true, "{signed}");
    drop(remote);

    // The agent stops: the records are final, and the console over the data
    // directory must agree with SQL over it.
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let to = flowlog_agent::state::now_secs() + 1;
    let range = (from, to);
    let console_port = free_port()?;
    let console = Console::start(data, SocketAddr::from(([127, 0, 0, 1], console_port)), &[])?;
    let curl = format!("http://127.0.0.1:{console_port}");
    let q = format!("logstore={PROJECT}/{LOGSTORE}&range=custom&from={from}&to={to}");

    let down = drive("agent-down", &curl, &q, &[("shots", &shots())])?.unwrap_or_default();
    assert!(
        down["agent_down_text"]
            .as_str()
            .is_some_and(|s| s.contains("does not answer")),
        "{down}"
    );
    assert!(down["overview"]["cards"]["in-bytes"].is_string(), "{down}");

    let pages = drive(
        "pages",
        &curl,
        &q,
        &[
            ("shots", &shots()),
            ("flows-filter", &format!("Addr={A_V4}&Protocol=17")),
            ("sql", "SELECT sum(bytes) AS b, count(*) AS n FROM logs"),
        ],
    )?
    .unwrap_or_default();
    drop(console);

    // Long-range charts read the files' rollups; the rest, the records.
    let sources = |page: &str| pages[page]["sources"].clone();
    assert_eq!(
        sources("overview"),
        json!({"totals-note": "rollups", "series": "rollups", "gaps": "rollups"}),
        "{pages}"
    );
    assert_eq!(sources("matrix"), json!({"matrix": "rollups"}));
    assert_eq!(sources("matrix_networks"), json!({"matrix": "records"}));
    assert_eq!(sources("top"), json!({"top": "sketches"}));
    check_overview(data, range, &pages, &done.records);
    check_matrix(data, range, &pages);
    check_top(data, range, &pages);
    check_latency(data, range, &pages, &done.records);
    check_flows(data, range, &pages);
    let mine = sql(data, range, "SELECT sum(bytes) AS b, count(*) AS n FROM logs");
    let shown = &table(&pages["query"], "query")[0];
    assert_eq!(cell(shown, "b"), f(&mine[0]["b"]), "query page");
    assert_eq!(cell(shown, "n"), f(&mine[0]["n"]), "query page");
    Ok(())
}

/// Totals, series and gaps; totals also against the agent's JSON records.
fn check_overview(data: &Path, range: (i64, i64), pages: &Value, records: &[Value]) {
    let cards = &pages["overview"]["cards"];
    let rows = sql(
        data,
        range,
        "SELECT direction, sum(bytes) AS b, sum(packets) AS p, count(*) AS n, \
         count(DISTINCT srcaddr || ' ' || CAST(srcport AS VARCHAR) || ' ' || dstaddr || ' ' || CAST(dstport AS VARCHAR) || ' ' || CAST(protocol AS VARCHAR)) AS f \
         FROM logs WHERE \"log-status\" = 'OK' GROUP BY direction",
    );
    let mut ok_records = 0.0;
    for r in &rows {
        let d = r["direction"].as_str().unwrap_or_default();
        assert_eq!(cell(cards, &format!("{d}-bytes")), f(&r["b"]), "{d} bytes");
        assert_eq!(cell(cards, &format!("{d}-packets")), f(&r["p"]), "{d} packets");
        assert_eq!(cell(cards, &format!("{d}-flows")), f(&r["f"]), "{d} flows");
        ok_records += f(&r["n"]);
    }
    assert_eq!(cell(cards, "records"), ok_records);
    // The JSON records of the same run, summed here.
    let (from, to) = range;
    let in_range = |r: &&Value| r["start"].as_i64().is_some_and(|s| s >= from && s < to);
    let mut by_dir: BTreeMap<String, (u64, u64, BTreeSet<String>)> = BTreeMap::new();
    for r in records
        .iter()
        .filter(in_range)
        .filter(|r| r["log-status"] == "OK")
    {
        let e = by_dir
            .entry(r["direction"].as_str().unwrap_or_default().to_owned())
            .or_default();
        e.0 += num(&r["bytes"]).unwrap_or(0);
        e.1 += num(&r["packets"]).unwrap_or(0);
        e.2.insert(format!(
            "{} {} {} {} {}",
            r["srcaddr"], r["srcport"], r["dstaddr"], r["dstport"], r["protocol"]
        ));
    }
    assert_eq!(by_dir.len(), 2, "{by_dir:?}");
    for (d, (bytes, packets, flows)) in &by_dir {
        assert_eq!(
            cell(cards, &format!("{d}-bytes")),
            *bytes as f64,
            "{d} bytes vs JSON records"
        );
        assert_eq!(
            cell(cards, &format!("{d}-packets")),
            *packets as f64,
            "{d} packets vs JSON records"
        );
        assert_eq!(
            cell(cards, &format!("{d}-flows")),
            flows.len() as f64,
            "{d} flows vs JSON records"
        );
    }
    // One point per window and direction.
    let want: BTreeMap<(i64, String), (f64, f64)> = sql(
        data,
        range,
        "SELECT start, direction, sum(bytes) AS b, sum(packets) AS p FROM logs \
         WHERE \"log-status\" = 'OK' GROUP BY start, direction",
    )
    .iter()
    .map(|r| {
        (
            (r["start"].as_i64().unwrap_or(0), text(r, "direction")),
            (f(&r["b"]), f(&r["p"])),
        )
    })
    .collect();
    let shown: BTreeMap<(i64, String), (f64, f64)> = table(&pages["overview"], "series")
        .iter()
        .map(|r| {
            (
                (cell(r, "start") as i64, text(r, "key")),
                (cell(r, "bytes"), cell(r, "packets")),
            )
        })
        .collect();
    assert_eq!(shown, want, "bytes and packets per window");
    assert!(want.len() >= 4, "{want:?}");
    let csv = pages["series_csv"].as_str().unwrap_or_default();
    assert!(csv.starts_with("start,end,key,bytes,packets,rate\n"), "{csv}");
    assert_eq!(
        csv.lines().count() - 1,
        table(&pages["overview_regions"], "series").len(),
        "the CSV holds the table's rows"
    );
    // Split by region pair, counted where traffic entered.
    let pairs: BTreeMap<(i64, String), f64> = sql(
        data,
        range,
        "SELECT start, \"src-region-id\" AS s, \"dst-region-id\" AS d, sum(bytes) AS b FROM logs \
         WHERE \"log-status\" = 'OK' AND direction = 'in' GROUP BY 1, 2, 3",
    )
    .iter()
    .map(|r| {
        (
            (
                r["start"].as_i64().unwrap_or(0),
                format!("{} → {}", region(&r["s"]), region(&r["d"])),
            ),
            f(&r["b"]),
        )
    })
    .collect();
    let shown: BTreeMap<(i64, String), f64> = table(&pages["overview_regions"], "series")
        .iter()
        .map(|r| ((cell(r, "start") as i64, text(r, "key")), cell(r, "bytes")))
        .collect();
    assert_eq!(shown, pairs, "bytes per window and region pair");
    // NODATA and SKIPDATA: windows and skipped packets.
    let gaps = sql(
        data,
        range,
        "SELECT \"log-status\" AS s, count(DISTINCT CAST(start AS VARCHAR) || interface) AS w, sum(packets) AS p \
         FROM logs WHERE \"log-status\" IN ('NODATA', 'SKIPDATA') GROUP BY 1",
    );
    let by: BTreeMap<String, (f64, f64)> = gaps
        .iter()
        .map(|r| (text(r, "s"), (f(&r["w"]), f(&r["p"]))))
        .collect();
    let (nodata, _) = by.get("NODATA").copied().unwrap_or_default();
    let (skipdata, skipped) = by.get("SKIPDATA").copied().unwrap_or_default();
    assert!(
        nodata > 0.0 && skipdata > 0.0 && skipped > 0.0,
        "both kinds of gap happened: {by:?}"
    );
    assert_eq!(cell(cards, "nodata"), nodata, "NODATA windows");
    assert_eq!(cell(cards, "skipdata"), skipdata, "SKIPDATA windows");
    assert_eq!(cell(cards, "skipped-packets"), skipped, "skipped packets");
    let gap_rows = table(&pages["overview"], "gaps");
    let marked: f64 = gap_rows
        .iter()
        .filter(|r| text(r, "status") == "SKIPDATA")
        .map(|r| cell(r, "packets"))
        .sum();
    assert_eq!(marked, skipped, "the gaps table");
}

fn check_matrix(data: &Path, range: (i64, i64), pages: &Value) {
    let want: BTreeMap<(String, String), (f64, f64)> = sql(
        data,
        range,
        "SELECT \"src-region-id\" AS s, \"dst-region-id\" AS d, sum(bytes) AS b, count(*) AS n FROM logs \
         WHERE \"log-status\" = 'OK' AND direction = 'in' GROUP BY 1, 2",
    )
    .iter()
    .map(|r| ((region(&r["s"]), region(&r["d"])), (f(&r["b"]), f(&r["n"]))))
    .collect();
    let shown: BTreeMap<(String, String), (f64, f64)> = table(&pages["matrix"], "matrix")
        .iter()
        .map(|r| {
            (
                (text(r, "src"), text(r, "dst")),
                (cell(r, "bytes"), cell(r, "records")),
            )
        })
        .collect();
    assert_eq!(shown, want, "matrix by region");
    assert!(
        want.contains_key(&("cn-hangzhou".into(), "cn-shanghai".into())),
        "{want:?}"
    );
    // Clicking a cell on the chart opens exactly its records.
    let click = &pages["matrix_click"];
    assert_eq!(click["page"], "flows", "{click}");
    let key = (
        click["cell"]["src"].as_str().unwrap_or_default().to_owned(),
        click["cell"]["dst"].as_str().unwrap_or_default().to_owned(),
    );
    let (_, records) = want[&key];
    assert_eq!(
        cell(&click["cards"], "matching"),
        records,
        "the clicked cell's flows: {click}"
    );
    // By network: the region table's names, else the /24.
    let nets: BTreeMap<(String, String), f64> = sql(
        data,
        range,
        "SELECT CASE WHEN \"src-network\" IS NULL OR \"src-network\" = '' THEN regexp_replace(srcaddr, '\\.\\d+$', '.0/24') ELSE \"src-network\" END AS s, \
                CASE WHEN \"dst-network\" IS NULL OR \"dst-network\" = '' THEN regexp_replace(dstaddr, '\\.\\d+$', '.0/24') ELSE \"dst-network\" END AS d, \
                sum(bytes) AS b FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' GROUP BY 1, 2",
    )
    .iter()
    .map(|r| ((text(r, "s"), text(r, "d")), f(&r["b"])))
    .collect();
    let shown: BTreeMap<(String, String), f64> = table(&pages["matrix_networks"], "matrix")
        .iter()
        .map(|r| ((text(r, "src"), text(r, "dst")), cell(r, "bytes")))
        .collect();
    assert_eq!(shown, nets, "matrix by network");
    assert!(nets.keys().any(|(s, _)| s == "vpc-a"), "{nets:?}");
    // By attachment: the same flow in on one and out on another.
    let att: BTreeMap<(String, String), f64> = sql(
        data,
        range,
        "SELECT i.\"attachment-id\" AS s, o.\"attachment-id\" AS d, sum(i.bytes) AS b \
         FROM logs i JOIN logs o ON i.\"flow-log-id\" = o.\"flow-log-id\" AND i.start = o.start \
          AND i.srcaddr = o.srcaddr AND i.dstaddr = o.dstaddr AND i.srcport = o.srcport \
          AND i.dstport = o.dstport AND i.protocol = o.protocol \
         WHERE i.direction = 'in' AND o.direction = 'out' AND i.interface <> o.interface \
           AND i.\"log-status\" = 'OK' AND o.\"log-status\" = 'OK' GROUP BY 1, 2",
    )
    .iter()
    .map(|r| ((text(r, "s"), text(r, "d")), f(&r["b"])))
    .collect();
    let shown: BTreeMap<(String, String), f64> = table(&pages["matrix_attachments"], "matrix")
        .iter()
        .map(|r| ((text(r, "src"), text(r, "dst")), cell(r, "bytes")))
        .collect();
    assert_eq!(shown, att, "matrix by attachment");
    assert!(
        att.contains_key(&("tr-att-a".into(), "tr-att-b".into())),
        "{att:?}"
    );
}

fn check_top(data: &Path, range: (i64, i64), pages: &Value) {
    let want: Vec<(String, f64)> = sql(
        data,
        range,
        "SELECT srcaddr, sum(bytes) AS b FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' \
         GROUP BY srcaddr ORDER BY b DESC, srcaddr LIMIT 10",
    )
    .iter()
    .map(|r| (text(r, "srcaddr"), f(&r["b"])))
    .collect();
    let shown: Vec<(String, f64)> = table(&pages["top"], "top")
        .iter()
        .map(|r| (text(r, "srcaddr"), cell(r, "bytes")))
        .collect();
    assert_eq!(shown, want, "top sources");
    let want: Vec<(String, String, f64)> = sql(
        data,
        range,
        "SELECT srcaddr, dstaddr, sum(packets) AS p FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' \
         GROUP BY 1, 2 ORDER BY p DESC, 1, 2 LIMIT 20",
    )
    .iter()
    .map(|r| (text(r, "srcaddr"), text(r, "dstaddr"), f(&r["p"])))
    .collect();
    let shown: Vec<(String, String, f64)> = table(&pages["top_pairs"], "top")
        .iter()
        .map(|r| (text(r, "srcaddr"), text(r, "dstaddr"), cell(r, "packets")))
        .collect();
    assert_eq!(shown, want, "top pairs by packets");
    let want: Vec<(f64, f64, f64)> = sql(
        data,
        range,
        "SELECT protocol, dstport, sum(bytes) AS b FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' \
         GROUP BY 1, 2 ORDER BY b DESC, 1, 2 LIMIT 10",
    )
    .iter()
    .map(|r| (f(&r["protocol"]), f(&r["dstport"]), f(&r["b"])))
    .collect();
    let shown: Vec<(f64, f64, f64)> = table(&pages["top_ports"], "top")
        .iter()
        .map(|r| {
            let port = r["dstport"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
            (cell(r, "protocol"), port, cell(r, "bytes"))
        })
        .collect();
    // ICMP has no port: NaN never equals, so compare it apart.
    assert_eq!(shown.len(), want.len(), "top ports");
    for (s, w) in shown.iter().zip(&want) {
        assert!(
            s.0 == w.0 && s.2 == w.2 && (s.1 == w.1 || (s.1.is_nan() && w.1.is_nan())),
            "top ports: {shown:?} vs {want:?}"
        );
    }
}

fn check_latency(data: &Path, range: (i64, i64), pages: &Value, records: &[Value]) {
    let want = sql(
        data,
        range,
        "SELECT \"src-region-id\" AS s, \"dst-region-id\" AS d, count(rtt) AS n, percentile_cont(rtt, 0.5) AS p50, \
                percentile_cont(rtt, 0.9) AS p90, percentile_cont(rtt, 0.99) AS p99 \
         FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' AND rtt IS NOT NULL GROUP BY 1, 2",
    );
    let shown = table(&pages["latency"], "latency");
    assert_eq!(shown.len(), want.len(), "{shown:?} vs {want:?}");
    assert!(!want.is_empty(), "the TCP transfers left RTT samples");
    let (from, to) = range;
    for w in &want {
        let (s, d) = (region(&w["s"]), region(&w["d"]));
        let row = shown
            .iter()
            .find(|r| text(r, "src") == s && text(r, "dst") == d)
            .unwrap_or_else(|| panic!("no latency row {s} → {d}: {shown:?}"));
        assert_eq!(cell(row, "samples"), f(&w["n"]));
        // From the JSON records as well: the same percentile, computed here.
        let mut rtts: Vec<f64> = records
            .iter()
            .filter(|r| r["start"].as_i64().is_some_and(|x| x >= from && x < to))
            .filter(|r| r["log-status"] == "OK" && r["direction"] == "in" && !r["rtt"].is_null())
            .filter(|r| region(&r["src-region-id"]) == s && region(&r["dst-region-id"]) == d)
            .map(|r| f(&r["rtt"]))
            .collect();
        rtts.sort_by(f64::total_cmp);
        for (col, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            assert!(
                close(cell(row, col), f(&w[col])),
                "{col} {s}→{d}: page {row} sql {w}"
            );
            assert!(
                close(cell(row, col), percentile(&rtts, p)),
                "{col} {s}→{d}: page {row}, records {rtts:?}"
            );
        }
    }
    let slowest = table(&pages["latency"], "slowest");
    let top = sql(
        data,
        range,
        "SELECT max(rtt) AS m FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in'",
    );
    assert_eq!(
        cell(&slowest[0], "rtt"),
        f(&top[0]["m"]),
        "the slowest connection"
    );
}

fn check_flows(data: &Path, range: (i64, i64), pages: &Value) {
    let want = sql(
        data,
        range,
        &format!(
            "SELECT count(*) AS n, sum(bytes) AS b, sum(packets) AS p FROM logs \
             WHERE (srcaddr = '{A_V4}' OR dstaddr = '{A_V4}') AND protocol = 17"
        ),
    );
    let cards = &pages["flows"]["cards"];
    assert_eq!(cell(cards, "matching"), f(&want[0]["n"]), "flows search");
    assert_eq!(cell(cards, "matching-bytes"), f(&want[0]["b"]), "flows search");
    assert_eq!(cell(cards, "matching-packets"), f(&want[0]["p"]), "flows search");
    let rows = table(&pages["flows"], "flows");
    assert_eq!(rows.len() as f64, f(&want[0]["n"]).min(50.0), "one page of them");
    assert!(rows.iter().all(|r| text(r, "protocol") == "17"), "{rows:?}");
}
