//! Nothing drained is lost or counted twice, whatever instant the agent
//! dies: `kill -9` lands at many offsets just after window boundaries —
//! during the flip, the drain, the journal write, the render, a sink's
//! write — while thousands of flows cross the router; every restart
//! adopts the pinned maps and redoes what the journal says was in flight.
//!
//! The independent measure is what was injected into the router, less what
//! the kernel dropped before any hook (the interface's `rx_dropped`).

use std::{
    path::Path,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use flowlog_tests::{
    Filter,
    agent::{Agent, TempDir, logstore_json, num},
    packet::{frames, inject},
    privileged, sum,
    topology::{A_V4, B_V4, RouterTopology},
};

/// Distinct UDP flows a round injects (the probe's repro used 8,000).
const FLOWS: u16 = 8_000;
/// Frames per injection burst; a pause between bursts keeps the receiving
/// backlog from overflowing (what does overflow is measured anyway).
const BURST: usize = 400;
/// Milliseconds after a boundary at which the agent is killed.
const OFFSETS_MS: [u64; 12] = [0, 2, 5, 9, 14, 22, 35, 50, 75, 104, 150, 200];

/// The router's ingress drops before any hook ran.
fn rx_dropped(t: &RouterTopology) -> anyhow::Result<u64> {
    t.router.rx_dropped("r-a")
}

/// IP bytes of every injected frame (empty UDP payloads): one size, so
/// the bytes of what got through follow from its packets even if the
/// kernel dropped some frames before the hook.
const FRAME_IP_BYTES: u64 = 28;

/// Injects rounds of `FLOWS` distinct flows from a to b until `stop`.
fn inject_until(t: &RouterTopology, stop: &AtomicBool, packets: &AtomicU64) -> anyhow::Result<()> {
    let (round, bytes) = frames::distinct_udp(FLOWS, 10_000, 7_000, 1);
    anyhow::ensure!(
        bytes == u64::from(FLOWS) * FRAME_IP_BYTES,
        "frames of another size"
    );
    while !stop.load(Ordering::SeqCst) {
        for chunk in round.chunks(BURST) {
            inject(&t.a, "eth0", chunk)?;
            packets.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(8));
        }
    }
    Ok(())
}

/// Sleeps until `offset` past the next whole-second boundary.
fn sleep_past_boundary(offset: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let into = Duration::from_nanos((now.as_nanos() % 1_000_000_000) as u64);
    std::thread::sleep(Duration::from_secs(1) - into + offset);
}

fn flows<'a>(interface: &'a str, direction: &'a str) -> Filter<'a> {
    Filter {
        interface: Some(interface),
        direction: Some(direction),
        srcaddr: Some(A_V4),
        dstaddr: Some(B_V4),
        protocol: Some(17),
        log_status: Some("OK"),
        ..Default::default()
    }
}

/// Packets and bytes per (interface, direction) of the flood in the
/// agent's Logstore, by SQL.
fn logstore_sums(dir: &Path) -> anyhow::Result<Vec<(String, String, u64, u64)>> {
    let sql = format!(
        "SELECT interface, direction, sum(packets) AS p, sum(bytes) AS b FROM logs \
         WHERE srcaddr = '{A_V4}' AND dstaddr = '{B_V4}' AND \"log-status\" = 'OK' \
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let (rows, _) = logstore_json(dir, ("default", "flowlogs"), "query", &[&sql])?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r["interface"].as_str().unwrap_or_default().to_owned(),
                r["direction"].as_str().unwrap_or_default().to_owned(),
                num(&r["p"]).unwrap_or(0),
                num(&r["b"]).unwrap_or(0),
            )
        })
        .collect())
}

#[test]
fn kills_just_after_window_boundaries_lose_and_double_nothing() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    let dir = TempDir::new()?;
    let args = t.agent_args("tc", &["--window-secs", "1", "--no-rtt"]);
    let dropped_before = rx_dropped(&t)?;
    let mut agent = Agent::start_in(dir.path(), &args)?;
    let (stop, packets) = (AtomicBool::new(false), AtomicU64::new(0));
    let result = std::thread::scope(|s| -> anyhow::Result<Agent> {
        let injector = s.spawn(|| inject_until(&t, &stop, &packets));
        let run = (|| -> anyhow::Result<Agent> {
            std::thread::sleep(Duration::from_millis(1500));
            for offset in OFFSETS_MS {
                sleep_past_boundary(Duration::from_millis(offset));
                agent.kill9()?;
                agent = Agent::start_in(dir.path(), &args)?;
                std::thread::sleep(Duration::from_millis(300));
            }
            Ok(agent)
        })();
        stop.store(true, Ordering::SeqCst);
        injector
            .join()
            .map_err(|_| anyhow::anyhow!("injector panicked"))??;
        run
    });
    let agent = result?;
    // Let the last frames cross the router before the final window.
    std::thread::sleep(Duration::from_millis(300));
    let done = agent.stop()?;
    assert!(done.status.success(), "agent failed:\n{}", done.stderr);
    let dropped = rx_dropped(&t)? - dropped_before;
    let through = packets.load(Ordering::SeqCst) - dropped;
    let want = (through, through * FRAME_IP_BYTES);
    assert!(
        through >= 12 * u64::from(FLOWS),
        "only {through} frames got through"
    );
    for (iface, direction) in [("r-a", "in"), ("r-b", "out")] {
        let (p, b, records) = sum(&done.records, &flows(iface, direction));
        assert_eq!(
            (p, b),
            want,
            "{iface} {direction} in the JSON records ({records} records) after {} kills\n{}",
            OFFSETS_MS.len(),
            done.stderr
        );
    }
    flowlog_tests::assert_records_disjoint(&done.records);
    let stored = logstore_sums(dir.path())?;
    assert_eq!(
        stored,
        vec![
            ("r-a".to_owned(), "in".to_owned(), want.0, want.1),
            ("r-b".to_owned(), "out".to_owned(), want.0, want.1),
        ],
        "the Logstore's sums"
    );
    Ok(())
}
