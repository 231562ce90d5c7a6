//! `cargo xtask soak`: ten minutes (by default) of mixed traffic through a
//! router namespace while the agent is restarted again and again — SIGTERM
//! during floods, SIGKILL mid-window — then the books are balanced: every
//! packet sent into the router must be in an OK record or in a SKIPDATA
//! count, exactly.
//!
//! Traffic from host a into the router's r-a: steady UDP from eight
//! sockets (v4; the topology has IPv6 off so no neighbour discovery adds
//! packets nobody counted) and, in the first third of every cycle, floods
//! of 20 480 distinct five-tuples injected raw — five times the flow map —
//! so SKIPDATA is exercised all along.
//!
//! SIGKILL lands just after a window boundary, at a different offset (0 to
//! 200 ms) each time — during the flip, the drain, the journal write, the
//! render or a sink's write — in the quiet part of the cycle: overflow
//! events the agent had read from the ring but not yet journaled would die
//! with it (README, "Restarts lose nothing", names this limit).
//!
//! All along, a thread sends hostile GetLogs queries (gigabytes of memory,
//! hours of work) next to the live traffic; each must be refused, and the
//! books must still balance.

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use flowlog_tests::{
    Filter,
    agent::{Agent, read_json_lines},
    packet::{frames, inject},
    sum,
    topology::{A_V4, B_V4, RouterTopology},
};

const WINDOW_SECS: u64 = 5;
const FLOW_MAP_ENTRIES: &str = "4096";
const FLOOD_FLOWS: u16 = 20_480;
/// One restart per cycle, alternating SIGTERM (during the floods) and
/// SIGKILL (in the quiet part).
const CYCLE: Duration = Duration::from_secs(60);
/// Where after a window boundary each SIGKILL lands, in turn.
const KILL_OFFSETS_MS: [u64; 8] = [0, 5, 14, 22, 50, 104, 150, 200];
/// GetLogs queries that must be refused, sent one after another.
const HOSTILE: [&str; 2] = [
    "SELECT length(repeat('x', 2000000000)) AS n",
    "SELECT sum(value) AS s FROM range(1000000000000)",
];

/// Sends the hostile queries to whichever agent runs in `dir` until `stop`;
/// counts (refused, answered, not reached).
fn hostile_queries(dir: &Path, stop: &AtomicBool) -> (u64, u64, u64) {
    let (mut refused, mut answered, mut missed) = (0, 0, 0);
    for sql in HOSTILE.iter().cycle() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let params = serde_json::json!({"ProjectName": "default", "LogStoreName": "flowlogs", "Query": sql, "Line": 10});
        match flowlog_tests::api::call_unix(&dir.join("api.sock"), "GetLogs", &params) {
            Ok((400, _)) => refused += 1,
            Ok(_) => answered += 1,
            // The agent is restarting.
            Err(_) => missed += 1,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (refused, answered, missed)
}

/// Sleeps until `offset` past the next window boundary.
fn sleep_past_boundary(offset: Duration) -> anyhow::Result<()> {
    let window = Duration::from_secs(WINDOW_SECS);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let into = Duration::from_nanos((now.as_nanos() % window.as_nanos()) as u64);
    std::thread::sleep(window - into + offset);
    Ok(())
}

#[derive(Default)]
struct Sent {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl Sent {
    fn add(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }
}

/// Eight UDP flows from a, ten 100–400-byte datagrams every 10 ms.
fn steady(t: &RouterTopology, stop: &AtomicBool, sent: &Sent) -> anyhow::Result<()> {
    let dst: SocketAddr = SocketAddr::new(B_V4.parse()?, 9);
    let sockets = (0..8)
        .map(|i| {
            let bind = SocketAddr::new("0.0.0.0".parse().map_err(anyhow::Error::from)?, 41_000 + i);
            t.a.run(move || UdpSocket::bind(bind))?
                .map_err(anyhow::Error::from)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        for _ in 0..10 {
            let size = 100 + (n * 37) % 300;
            let s = &sockets[n % sockets.len()];
            if s.send_to(&vec![0x5a; size], dst).is_ok() {
                sent.add(1, size as u64 + 28);
            }
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// One flood: distinct five-tuples, one packet each; `round` picks the
/// destination port so every flood is new flows.
fn flood(t: &RouterTopology, round: u16, sent: &Sent) -> anyhow::Result<()> {
    let (batch, bytes) = frames::distinct_udp(FLOOD_FLOWS, 1024, 20_000 + round % 10_000, 64);
    inject(&t.a, "eth0", &batch)?;
    sent.add(u64::from(FLOOD_FLOWS), bytes);
    Ok(())
}

/// Packets r-a dropped before any hook could see them (backlog overflow):
/// those would be missing from the books through no fault of the agent.
fn ingress_drops(t: &RouterTopology) -> anyhow::Result<u64> {
    t.router.rx_dropped("r-a")
}

fn start(dir: &Path, t: &RouterTopology) -> anyhow::Result<Agent> {
    Agent::start_in(
        dir,
        &t.agent_args(
            "tc",
            &[
                "--window-secs",
                &WINDOW_SECS.to_string(),
                "--flow-map-entries",
                FLOW_MAP_ENTRIES,
                "--overflow-ring-bytes",
                "65536",
                "--no-rtt",
                // Endless hostile queries are cut off well within the
                // client's own wait.
                "--query-timeout-secs",
                "5",
            ],
        ),
    )
}

pub fn run(agent: &Path, minutes: u64) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the soak loads eBPF programs and creates namespaces: run it as root");
    }
    // SAFETY: setting an environment variable before any thread starts.
    unsafe { std::env::set_var("FLOWLOG_BIN", agent) };
    flowlog_tests::netns::sweep_stale();
    let t = Arc::new(RouterTopology::ipv4_only()?);
    let dir = std::env::current_dir()?.join("target/soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let drops_before = ingress_drops(&t)?;
    let mut a = start(&dir, &t)?;
    a.wait_windows(1, Duration::from_secs(30))?;

    let sent = Arc::new(Sent::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stream = {
        let (t, stop, sent) = (t.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || steady(&t, &stop, &sent))
    };
    let queries = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || hostile_queries(&dir, &stop))
    };
    let total = Duration::from_secs(minutes * 60);
    let began = Instant::now();
    let (mut restarts, mut kills, mut peak_kib, mut round) = (0u32, 0u32, 0u64, 0u16);
    let mut cycle = 0u32;
    eprintln!(
        "soak: {minutes} min, {WINDOW_SECS} s windows, flow map {FLOW_MAP_ENTRIES}, a restart every {CYCLE:?}"
    );
    while began.elapsed() < total {
        let cycle_start = Instant::now();
        let graceful = cycle.is_multiple_of(2);
        // Floods in the first 20 s; a SIGTERM restart right in the middle.
        let mut terminated = false;
        while cycle_start.elapsed() < Duration::from_secs(20) {
            flood(&t, round, &sent)?;
            round = round.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(2500));
            if graceful && !terminated && cycle_start.elapsed() >= Duration::from_secs(10) {
                terminated = true;
                peak_kib = peak_kib.max(a.pid().and_then(flowlog_tests::peak_rss_kib).unwrap_or(0));
                let done = a.stop()?;
                if !done.status.success() {
                    bail!("agent exited with {} on SIGTERM:\n{}", done.status, done.stderr);
                }
                a = start(&dir, &t)?;
                restarts += 1;
            }
        }
        // Quiet part: the floods' windows get published, then SIGKILL
        // mid-window.
        let kill_at = Duration::from_secs(45);
        while cycle_start.elapsed() < kill_at {
            std::thread::sleep(Duration::from_millis(200));
        }
        if !graceful {
            let offset = KILL_OFFSETS_MS[kills as usize % KILL_OFFSETS_MS.len()];
            sleep_past_boundary(Duration::from_millis(offset))?;
            peak_kib = peak_kib.max(a.pid().and_then(flowlog_tests::peak_rss_kib).unwrap_or(0));
            a.kill9()?;
            std::thread::sleep(Duration::from_millis(500));
            a = start(&dir, &t)?;
            restarts += 1;
            kills += 1;
        }
        while cycle_start.elapsed() < CYCLE && began.elapsed() < total {
            std::thread::sleep(Duration::from_millis(200));
        }
        cycle += 1;
        eprintln!(
            "soak: {:>4.0} s, {} packets sent, {restarts} restarts ({kills} SIGKILL)",
            began.elapsed().as_secs_f64(),
            sent.packets.load(Ordering::SeqCst)
        );
    }
    stop.store(true, Ordering::SeqCst);
    stream
        .join()
        .map_err(|_| anyhow::anyhow!("traffic thread panicked"))??;
    let (refused, answered, missed) = queries
        .join()
        .map_err(|_| anyhow::anyhow!("query thread panicked"))?;
    // Let the last packets reach the hooks, then a final graceful stop.
    std::thread::sleep(Duration::from_millis(500));
    peak_kib = peak_kib.max(a.pid().and_then(flowlog_tests::peak_rss_kib).unwrap_or(0));
    let done = a.stop()?;
    if !done.status.success() {
        bail!("agent exited with {}:\n{}", done.status, done.stderr);
    }
    // The stopped agent left its hooks pinned for a next start that will
    // not come: free them with the namespaces.
    let _ = std::fs::remove_dir_all(flowlog_tests::agent::pin_dir(&dir));
    let records = read_json_lines(&dir.join("records.jsonl")).context("reading the records")?;
    let at = |status| Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        log_status: Some(status),
        ..Default::default()
    };
    let ok = sum(
        &records,
        &Filter {
            srcaddr: Some(A_V4),
            ..at("OK")
        },
    );
    let skipped = sum(&records, &at("SKIPDATA"));
    let (packets, bytes) = (
        sent.packets.load(Ordering::SeqCst),
        sent.bytes.load(Ordering::SeqCst),
    );
    let drops = ingress_drops(&t)?.saturating_sub(drops_before);
    let diff = i128::from(ok.0 + skipped.0) - i128::from(packets);
    let diff_bytes = i128::from(ok.1 + skipped.1) - i128::from(bytes);
    println!("soak results ({minutes} min, {} records):", records.len());
    println!("  packets sent            {packets}");
    println!("  packets in OK records   {}", ok.0);
    println!("  packets in SKIPDATA     {}", skipped.0);
    println!("  difference              {diff} packets, {diff_bytes} bytes");
    println!("  dropped before the hook {drops}");
    println!("  agent peak RSS          {:.1} MiB", peak_kib as f64 / 1024.0);
    println!(
        "  restarts survived       {restarts} ({kills} SIGKILL just after a boundary, {} SIGTERM)",
        restarts - kills
    );
    println!("  hostile queries         {refused} refused, {answered} answered, {missed} during restarts");
    let summary = serde_json::json!({
        "minutes": minutes,
        "sent_packets": packets,
        "ok_packets": ok.0,
        "skipdata_packets": skipped.0,
        "difference_packets": diff as i64,
        "difference_bytes": diff_bytes as i64,
        "ingress_drops": drops,
        "peak_rss_mib": peak_kib as f64 / 1024.0,
        "restarts": restarts,
        "sigkill": kills,
        "hostile_queries_refused": refused,
        "hostile_queries_answered": answered,
    });
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&summary)?)?;
    if diff != 0 || diff_bytes != 0 {
        bail!("the books do not balance: {diff} packets, {diff_bytes} bytes");
    }
    if answered > 0 || refused == 0 {
        bail!("hostile queries: {refused} refused, {answered} answered (every one must be refused)");
    }
    Ok(())
}
