//! Queries never hold up capture: GetLogs calls that would take gigabytes
//! of memory or run for ever are refused with a clear answer while a
//! stream crosses the router, and capture carries on untouched — every
//! datagram counted once, every window published at its own length, the
//! API answering, the agent's own memory where it was.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::Duration,
};

use flowlog_tests::{
    Filter,
    agent::Agent,
    peak_rss_kib, privileged, sum,
    topology::{A_V4, B_V4, RouterTopology},
    traffic,
};
use serde_json::{Value, json};

const PAYLOAD: usize = 200;

/// Queries that would take gigabytes, or run for hours, two at a time
/// (the agent runs two at once), with what their refusal must say.
const HOSTILE: [[(&str, &[&str]); 2]; 2] = [
    [
        ("SELECT length(repeat('x', 2000000000)) AS n", &["memory"]),
        ("SELECT length(repeat('x', 2000000000)) AS n", &["memory"]),
    ],
    [
        // 600 MB of answer: out of memory, or out of time first.
        (
            "SELECT repeat('x', 30000000) AS s FROM range(20)",
            &["memory", "ran longer than 4 s"],
        ),
        (
            "SELECT sum(value) AS s FROM range(1000000000000)",
            &["ran longer than 4 s"],
        ),
    ],
];

/// Sends 10 datagrams every 10 ms from a to b on one flow (each confirmed
/// received) until `stop`; counts them.
fn stream(t: &RouterTopology, port: u16, dst: SocketAddr, stop: &AtomicBool, sent: &AtomicU64) {
    let batch = [PAYLOAD; 10];
    while !stop.load(Ordering::SeqCst) {
        if traffic::udp_from_port(&t.a, &t.b, port, dst, &batch).is_ok() {
            sent.fetch_add(10, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Child processes of `pid` still alive.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid)
            && let Some(child) = e.file_name().to_str().and_then(|s| s.parse().ok())
        {
            out.push(child);
        }
    }
    out
}

fn get_logs(agent: &Agent, sql: &str) -> (u16, Value) {
    agent
        .call(
            "GetLogs",
            json!({"ProjectName": "default", "LogStoreName": "flowlogs", "Query": sql, "Line": 20}),
        )
        .unwrap_or_else(|e| panic!("GetLogs {sql}: {e:#}"))
}

#[test]
fn hostile_queries_never_hold_up_capture() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    let agent = Agent::start(&t.agent_args(
        "tc",
        &["--window-secs", "1", "--no-rtt", "--query-timeout-secs", "4"],
    ))?;
    let pid = agent.pid().unwrap_or_default();
    let rss_before = peak_rss_kib(pid).unwrap_or_default();
    let dst = SocketAddr::new(B_V4.parse()?, 9700);
    let port = traffic::udp(&t.a, &t.b, dst, &[])?;
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    let answers = std::thread::scope(|s| {
        let streamer = s.spawn(|| stream(&t, port, dst, &stop, &sent));
        std::thread::sleep(Duration::from_millis(1500));
        let mut answers = Vec::new();
        let mut listed = Vec::new();
        let agent = &agent;
        for pair in &HOSTILE {
            let queries: Vec<_> = pair
                .iter()
                .map(|&(sql, expect)| s.spawn(move || (sql, expect, get_logs(agent, sql))))
                .collect();
            // The API answers while they run.
            std::thread::sleep(Duration::from_millis(500));
            listed.push(
                agent
                    .call("ListProjects", json!({}))
                    .map(|(status, _)| status)
                    .ok(),
            );
            answers.extend(queries.into_iter().filter_map(|q| q.join().ok()));
        }
        // An honest query still answers, from what was published.
        let honest = get_logs(agent, "SELECT count(*) AS n FROM logs");
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::SeqCst);
        let _ = streamer.join();
        (answers, listed, honest)
    });
    let (answers, listed, honest) = answers;
    assert_eq!(listed, vec![Some(200); 2], "ListProjects while queries ran");
    assert_eq!(honest.0, 200, "{}", honest.1);
    assert_eq!(answers.len(), 4);
    for (sql, expect, (status, v)) in &answers {
        assert_eq!(*status, 400, "{sql}: {v}");
        assert_eq!(v["Code"], "InvalidParameter.Query", "{sql}: {v}");
        let message = v["Message"].as_str().unwrap_or_default();
        assert!(expect.iter().any(|e| message.contains(e)), "{sql}: {v}");
    }
    // No query process outlives its answer.
    assert_eq!(children(pid), Vec::<u32>::new(), "query processes left behind");
    let rss_after = peak_rss_kib(pid).unwrap_or_default();
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    // The gigabytes the queries asked for were never the agent's.
    assert!(
        rss_after < rss_before + 256 * 1024,
        "agent peak RSS went from {rss_before} KiB to {rss_after} KiB"
    );
    let n = sent.load(Ordering::SeqCst);
    let want = (n, n * (PAYLOAD as u64 + 28));
    for (iface, direction) in [("r-a", "in"), ("r-b", "out")] {
        let f = Filter {
            interface: Some(iface),
            direction: Some(direction),
            srcaddr: Some(A_V4),
            srcport: Some(u64::from(port)),
            log_status: Some("OK"),
            ..Default::default()
        };
        let (p, b, _) = sum(&done.records, &f);
        assert_eq!((p, b), want, "{iface} {direction}");
    }
    // Every window between the first and the last (both partial) ran its
    // full second, back to back: no cut was held up.
    flowlog_tests::assert_windows_back_to_back(&done.records, "r-a", 1, 6);
    Ok(())
}
