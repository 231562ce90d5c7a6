//! `cargo xtask run` with no agent arguments: a router namespace between two
//! hosts, steady mixed traffic, and the agent attached to the router, so a
//! newcomer sees flow-log records within one (10 s) window — with the two
//! hosts' networks in two regions, as a cross-region view would have them.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use flowlog_tests::{
    topology::{A_V4, A_V6, B_V4, B_V6, RouterTopology},
    traffic,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

pub fn run(agent: &Path, window_secs: u64, duration: Option<Duration>) -> anyhow::Result<()> {
    // Ctrl-C reaches the agent too (same process group); we only note it so
    // the namespaces are cleaned up after the agent's last window.
    // SAFETY: installing an async-signal-safe handler that stores a flag.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    flowlog_tests::netns::sweep_stale();
    let topo = RouterTopology::new().context("creating the demo namespaces")?;
    eprintln!(
        "demo: host {} ({A_V4}) ↔ router {} ↔ host {} ({B_V4}); agent on r-a and r-b, {window_secs} s windows. Ctrl-C stops.",
        topo.a.name(),
        topo.router.name(),
        topo.b.name()
    );
    let data_dir = std::env::current_dir()?.join("target/demo");
    std::fs::create_dir_all(&data_dir)?;
    let config = data_dir.join("flowlog.toml");
    std::fs::write(&config, demo_config(topo.router.name()))?;
    let mut child = Command::new(agent)
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .args(["--window-secs", &window_secs.to_string(), "--stdout"])
        // The demo's namespaces go away with it: nothing to keep counting.
        .arg("--no-pin")
        .arg("--data-dir")
        .arg(&data_dir)
        .spawn()
        .context("starting the agent")?;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic_stop = stop.clone();
    let topo = Arc::new(topo);
    let t = topo.clone();
    let generator = std::thread::spawn(move || generate(&t, &traffic_stop));

    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        let timed_out = duration.is_some_and(|d| started.elapsed() >= d);
        if timed_out || INTERRUPTED.load(Ordering::Relaxed) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    let _ = generator.join();
    drop(topo);
    eprintln!("demo: agent exited ({status}); namespaces removed");
    eprintln!(
        "demo: the records are in {}; try:\n  target/debug/flowlog query --data-dir target/demo --project default --logstore flowlogs 'SELECT interface, direction, sum(bytes) AS b FROM logs GROUP BY 1, 2'\n  target/debug/flowlog analyze --data-dir target/demo --project default --logstore flowlogs traffic-matrix --by-region",
        data_dir.join("logstores/default/flowlogs").display()
    );
    if !status.success() && !INTERRUPTED.load(Ordering::Relaxed) && duration.is_none() {
        anyhow::bail!("agent failed: {status}");
    }
    Ok(())
}

/// The demo's attachments (the router's two interfaces, each with an id and
/// a region) and a region table putting host a's networks in cn-hangzhou and
/// host b's in cn-shanghai.
fn demo_config(router: &str) -> String {
    let mut s = String::new();
    for (iface, id, region) in [
        ("r-a", "tr-att-a", "cn-hangzhou"),
        ("r-b", "tr-att-b", "cn-shanghai"),
    ] {
        s += &format!(
            "[[attachment]]\ninterface = \"{iface}\"\nnetns = \"{router}\"\nattachment-id = \"{id}\"\nregion-id = \"{region}\"\n\n"
        );
    }
    for (cidr, region, network) in [
        ("10.1.0.0/16", "cn-hangzhou", "vpc-a"),
        ("fd01::/48", "cn-hangzhou", "vpc-a"),
        ("10.2.0.0/16", "cn-shanghai", "vpc-b"),
        ("fd02::/48", "cn-shanghai", "vpc-b"),
    ] {
        s += &format!("[[region]]\ncidr = \"{cidr}\"\nregion-id = \"{region}\"\nnetwork = \"{network}\"\n\n");
    }
    s
}

/// Every second: UDP bursts both ways, pings over IPv4 and IPv6; every
/// fifth second a 256 KiB TCP transfer.
fn generate(t: &RouterTopology, stop: &AtomicBool) {
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let result = (|| -> anyhow::Result<()> {
            traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 5353), &[60, 200, 1200])?;
            traffic::udp(&t.b, &t.a, SocketAddr::new(A_V4.parse()?, 514), &[300])?;
            traffic::ping(&t.a, B_V4.parse()?, 1, 56)?;
            traffic::ping(&t.b, A_V6.parse()?, 1, 56)?;
            if tick.is_multiple_of(5) {
                traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V6.parse()?, 8080), 256 << 10)?;
            }
            Ok(())
        })();
        if let Err(e) = result
            && !stop.load(Ordering::Relaxed)
        {
            eprintln!("demo traffic: {e:#}");
        }
        tick += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
}
