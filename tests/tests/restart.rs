//! Nothing lost across agent restarts: hooks and maps are pinned, so a
//! stream that keeps flowing through the router while the agent is killed,
//! stopped, restarted or its flow log toggled is counted exactly once.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use flowlog_tests::{
    Filter,
    agent::{Agent, TempDir, pin_dir},
    hooks_on, privileged, sum,
    topology::{A_V4, B_V4, RouterTopology},
    traffic,
};
use serde_json::json;

const PAYLOAD: usize = 100;
/// IPv4 + UDP headers on top of the payload.
const IP_BYTES: u64 = PAYLOAD as u64 + 28;
const WINDOW_SECS: u64 = 2;

/// Datagrams sent by [`stream`]: all of them, and those sent while the
/// flow log was certainly active.
#[derive(Default)]
struct Sent {
    all: AtomicU64,
    while_active: AtomicU64,
}

/// Sends 100-byte datagrams from a to b on one flow, 10 every 10 ms (each
/// confirmed received), until `stop`.
fn stream(t: &RouterTopology, port: u16, dst: SocketAddr, stop: &AtomicBool, gate: &AtomicBool, sent: &Sent) {
    let batch = [PAYLOAD; 10];
    while !stop.load(Ordering::SeqCst) {
        let active = !gate.load(Ordering::SeqCst);
        if traffic::udp_from_port(&t.a, &t.b, port, dst, &batch).is_err() {
            continue;
        }
        sent.all.fetch_add(10, Ordering::SeqCst);
        if active && !gate.load(Ordering::SeqCst) {
            sent.while_active.fetch_add(10, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sleeps until `offset` into the current window (or the next one), so a
/// kill lands mid-window, away from the drain at the boundary.
fn sleep_to_mid_window(offset: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let len = Duration::from_secs(WINDOW_SECS);
    let into = Duration::from_nanos((now.as_nanos() % len.as_nanos()) as u64);
    let wait = if into < offset {
        offset - into
    } else {
        len - into + offset
    };
    std::thread::sleep(wait);
}

fn flow<'a>(interface: &'a str, direction: &'a str, port: u16) -> Filter<'a> {
    Filter {
        interface: Some(interface),
        direction: Some(direction),
        srcaddr: Some(A_V4),
        dstaddr: Some(B_V4),
        srcport: Some(u64::from(port)),
        protocol: Some(17),
        log_status: Some("OK"),
        ..Default::default()
    }
}

/// TCX program ids on r-a's ingress.
fn ingress_programs(t: &RouterTopology) -> anyhow::Result<Vec<u32>> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let ids = t.router.run(|| -> anyhow::Result<Vec<u32>> {
        let (_, progs) = SchedClassifier::query_tcx("r-a", TcAttachType::Ingress)?;
        Ok(progs.iter().map(|p| p.id()).collect())
    })??;
    Ok(ids)
}

/// Runs a stream through the router while `disrupt` stops and restarts
/// the agent; then checks every datagram was counted exactly once on both
/// router interfaces.
fn counts_survive(kill: bool) -> anyhow::Result<()> {
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let dir = TempDir::new()?;
    let window = WINDOW_SECS.to_string();
    let args = [
        "--netns",
        &ns,
        "-i",
        "r-a",
        "-i",
        "r-b",
        "--mode",
        "tc",
        "--window-secs",
        &window,
    ];
    let dst = SocketAddr::new(B_V4.parse()?, 9400);
    // A fixed source port keeps all datagrams in one flow.
    let port = traffic::udp(&t.a, &t.b, dst, &[])?;
    let first = Agent::start_in(dir.path(), &args)?;
    let (stop, gate, sent) = (AtomicBool::new(false), AtomicBool::new(false), Sent::default());
    let mut programs = Vec::new();
    let agent = std::thread::scope(|s| -> anyhow::Result<Agent> {
        let streamer = s.spawn(|| stream(&t, port, dst, &stop, &gate, &sent));
        let result = (|| -> anyhow::Result<Agent> {
            let mut agent = first;
            for _ in 0..2 {
                sleep_to_mid_window(Duration::from_millis(900));
                programs.push(ingress_programs(&t)?);
                if kill {
                    agent.kill9()?;
                } else {
                    let done = agent.stop()?;
                    anyhow::ensure!(done.status.success(), "agent failed:\n{}", done.stderr);
                }
                // Counting goes on with no agent at all.
                assert_eq!(
                    hooks_on(&t.router, "r-a")?,
                    (1, 1, false),
                    "hooks while the agent is down"
                );
                std::thread::sleep(Duration::from_millis(700));
                agent = Agent::start_in(dir.path(), &args)?;
            }
            sleep_to_mid_window(Duration::from_millis(500));
            Ok(agent)
        })();
        stop.store(true, Ordering::SeqCst);
        let _ = streamer.join();
        result
    })?;
    programs.push(ingress_programs(&t)?);
    let done = agent.stop()?;
    assert!(done.status.success(), "agent failed:\n{}", done.stderr);
    let n = sent.all.load(Ordering::SeqCst);
    assert!(n > 100, "only {n} datagrams sent");
    let want = (n, n * IP_BYTES);
    for (iface, dir) in [("r-a", "in"), ("r-b", "out")] {
        let (p, b, records) = sum(&done.records, &flow(iface, dir, port));
        assert_eq!(
            (p, b),
            want,
            "{iface} {dir} over {records} records\n{}",
            done.stderr
        );
    }
    flowlog_tests::assert_records_disjoint(&done.records);
    assert!(
        done.stderr.contains("adopted pinned maps"),
        "restarted agent should adopt:\n{}",
        done.stderr
    );
    // Each restart swapped a new program into the same hook: one program
    // at a time, a different one after each restart.
    for ids in &programs {
        assert_eq!(ids.len(), 1, "exactly one ingress program: {programs:?}");
    }
    assert!(programs.windows(2).all(|w| w[0] != w[1]), "{programs:?}");
    Ok(())
}

#[test]
fn kill9_mid_window_counts_every_packet_once() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    counts_survive(true)
}

#[test]
fn graceful_restart_counts_every_packet_once() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    counts_survive(false)
}

#[test]
fn deactivate_activate_cycles_never_double_count() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let agent = Agent::start(&["--window-secs", "1"])?;
    agent.ok("CreateProject", json!({"ProjectName": "proj"}));
    agent.ok(
        "CreateLogstore",
        json!({"ProjectName": "proj", "LogStoreName": "flows"}),
    );
    let v = agent.ok(
        "CreateFlowlog",
        json!({"FlowLogName": "cycle", "CenId": "cen-r", "ProjectName": "proj", "LogStoreName": "flows",
               "Attachments": [{"Interface": "r-a", "Netns": ns, "Mode": "tc"}]}),
    );
    let id = v["FlowLogId"].as_str().unwrap_or_default().to_owned();
    let dst = SocketAddr::new(B_V4.parse()?, 9401);
    let port = traffic::udp(&t.a, &t.b, dst, &[])?;
    agent.ok("ActiveFlowLog", json!({"FlowLogId": id}));
    let (stop, gate, sent) = (AtomicBool::new(false), AtomicBool::new(false), Sent::default());
    std::thread::scope(|s| {
        let streamer = s.spawn(|| stream(&t, port, dst, &stop, &gate, &sent));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(600));
            gate.store(true, Ordering::SeqCst);
            agent.ok("DeactiveFlowLog", json!({"FlowLogId": id}));
            std::thread::sleep(Duration::from_millis(200));
            agent.ok("ActiveFlowLog", json!({"FlowLogId": id}));
            gate.store(false, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(600));
        stop.store(true, Ordering::SeqCst);
        let _ = streamer.join();
    });
    let done = agent.stop()?;
    assert!(done.status.success(), "agent failed:\n{}", done.stderr);
    let (p, _, _) = sum(&done.records, &flow("r-a", "in", port));
    let (all, active) = (
        sent.all.load(Ordering::SeqCst),
        sent.while_active.load(Ordering::SeqCst),
    );
    // Datagrams sent while inactive may or may not be counted; those sent
    // while certainly active must be; none may be counted twice.
    assert!(
        active <= p && p <= all,
        "counted {p}, sent {all} ({active} while active)"
    );
    flowlog_tests::assert_records_disjoint(&done.records);
    Ok(())
}

#[test]
fn mismatched_pinned_state_is_replaced_with_a_log_line() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let ns = t.router.name().to_owned();
    let dir = TempDir::new()?;
    // State of a future layout version: removed, not read.
    let foreign = pin_dir(dir.path()).join("v999").join(format!("ns-{ns}"));
    std::fs::create_dir_all(&foreign)?;
    let args = |entries: &'static str| {
        [
            "--netns",
            ns.as_str(),
            "-i",
            "r-a",
            "--mode",
            "tc",
            "--window-secs",
            "600",
            "--flow-map-entries",
            entries,
        ]
        .map(str::to_owned)
    };
    let first = args("4096");
    let a = Agent::start_in(dir.path(), &first.each_ref().map(String::as_str))?;
    let dst = SocketAddr::new(B_V4.parse()?, 9402);
    let port = traffic::udp(&t.a, &t.b, dst, &[PAYLOAD; 3])?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stderr.contains("another flowlog version"), "{}", done.stderr);
    assert!(!foreign.exists(), "foreign state left behind");
    let (p, _, _) = sum(&done.records, &flow("r-a", "in", port));
    assert_eq!(p, 3);

    // Another map size: the pinned maps cannot be adopted.
    let second = args("8192");
    let b = Agent::start_in(dir.path(), &second.each_ref().map(String::as_str))?;
    traffic::udp_from_port(&t.a, &t.b, port, dst, &[PAYLOAD; 5])?;
    let done = b.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stderr.contains("pinned state does not match") && done.stderr.contains("FLOWS4"),
        "{}",
        done.stderr
    );
    // One hook, not the old one plus a new one, and every packet of the
    // second run counted once.
    assert_eq!(hooks_on(&t.router, "r-a")?, (1, 1, false));
    let (p, _, _) = sum(&done.records, &flow("r-a", "in", port));
    assert_eq!(p, 3 + 5, "{}", done.stderr);
    Ok(())
}
