//! Large flow maps: preallocating millions of entries takes seconds, and
//! that must never hold up another flow log's windows or the API; sizes
//! the machine cannot afford are refused with the figures.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use flowlog_tests::{
    Filter,
    agent::{Agent, run_expecting_failure},
    privileged, sum,
    topology::{A_V4, B_V4, HostPair, RouterTopology},
    traffic,
};
use serde_json::json;

/// Entries of each namespace's IPv4 map: seconds to preallocate here.
const ENTRIES: &str = "2097152";

#[test]
fn loading_a_large_namespace_holds_up_neither_windows_nor_the_api() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    let pair = HostPair::with(true)?;
    let agent = Agent::start(&t.agent_args(
        "tc",
        &["--window-secs", "1", "--no-rtt", "--flow-map-entries", ENTRIES],
    ))?;
    agent.ok(
        "CreateFlowlog",
        json!({"FlowLogName": "second", "CenId": "cen-big", "ProjectName": "default",
               "LogStoreName": "flowlogs", "Interval": 1,
               "Attachments": [{"Interface": "eth0", "Netns": pair.a.name(), "Mode": "tc"}]}),
    );
    let described = agent.ok("DescribeFlowlogs", json!({"FlowLogName": "second"}));
    let id = described["FlowLogs"][0]["FlowLogId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let dst = SocketAddr::new(B_V4.parse()?, 9750);
    let port = traffic::udp(&t.a, &t.b, dst, &[])?;
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    let (activated, listed) = std::thread::scope(|s| {
        let streamer = s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                if traffic::udp_from_port(&t.a, &t.b, port, dst, &[100; 10]).is_ok() {
                    sent.fetch_add(10, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        // The new namespace's maps take seconds to preallocate.
        let activation = s.spawn(|| {
            let r = agent.call("ActiveFlowLog", json!({"FlowLogId": id}));
            (r.map(|(status, v)| (status, v.to_string())).ok(), Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300));
        let listed = (
            agent
                .call("ListProjects", json!({}))
                .ok()
                .map(|(status, _)| status),
            Instant::now(),
        );
        let activated = activation.join().unwrap_or((None, Instant::now()));
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::SeqCst);
        let _ = streamer.join();
        (activated, listed)
    });
    let ((answer, activated_at), (list_status, listed_at)) = (activated, listed);
    assert_eq!(
        answer.as_ref().map(|a| a.0),
        Some(200),
        "ActiveFlowLog: {answer:?}"
    );
    assert_eq!(list_status, Some(200), "ListProjects during the load");
    assert!(
        listed_at < activated_at,
        "ListProjects waited for the namespace load"
    );
    let status = agent.ok("DescribeFlowlogs", json!({"FlowLogId": id}));
    assert_eq!(status["FlowLogs"][0]["Status"], "Active", "{status}");
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    // The first flow log counted every datagram, in windows of one
    // second each, back to back, while the second one loaded.
    let n = sent.load(Ordering::SeqCst);
    let f = Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        srcaddr: Some(A_V4),
        srcport: Some(u64::from(port)),
        log_status: Some("OK"),
        ..Default::default()
    };
    assert_eq!(sum(&done.records, &f).0, n);
    // Every window between the first and the last (both partial) ran its
    // full second, back to back: no cut was held up.
    flowlog_tests::assert_windows_back_to_back(&done.records, "r-a", 1, 4);
    Ok(())
}

#[test]
fn maps_the_machine_cannot_afford_are_refused_with_the_figures() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let pair = HostPair::with(true)?;
    let (_, err) = run_expecting_failure(&[
        "--netns",
        pair.a.name(),
        "-i",
        "eth0",
        "--flow-map-entries",
        "16777216",
        "--flow-map-entries-ipv6",
        "16777216",
        "--overflow-ring-bytes",
        "1073741824",
    ])?;
    for part in [
        "16777216 IPv4 + 16777216 IPv6 entries",
        "MiB of kernel memory",
        "available",
        "lower flow-map-entries",
    ] {
        assert!(err.contains(part), "missing {part:?} in:\n{err}");
    }
    Ok(())
}
