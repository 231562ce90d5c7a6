//! Kernel-side benchmark (run as root by `cargo xtask bench`): per-packet
//! eBPF cost against two reference programs, throughput with and without
//! the collector, drain cost, memory per flow, and handshake-sampling cost.
//! Prints one JSON object.
//!
//! Traffic runs only between the benchmark's own namespaces (host a →
//! router → host b), every loop is bounded by packet count or time, and the
//! namespaces are removed at the end.

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::{
    EbpfLoader,
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use flowlog_agent::{
    capture::{CaptureSettings, NetnsCapture, sys},
    config::{Attachment, CaptureMode},
    enrich::{RegionEntry, RegionTable},
    model::{AttachmentInfo, ClockOffset, Identity, Window},
};
use flowlog_common::{FlowKey, FlowKey4, FlowStats};
use flowlog_tests::topology::{A_V4, B_V4, RouterOptions, RouterTopology};
use serde_json::{Value, json};

static BENCH_PROGRAMS: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowlog-bench-programs"));

const RA_MAC: &str = "02:00:00:00:01:01";
const A_MAC: &str = "02:00:00:00:01:02";
const MAP_ENTRIES: u32 = 1 << 21;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

/// Two coprime port ranges whose product is about `flows`.
fn port_ranges(flows: u64) -> (u64, u64) {
    if flows <= 1 {
        return (1, 1);
    }
    let a = (flows as f64).sqrt().floor().max(1.0) as u64;
    (a, a + 1)
}

/// Result of one trafgen run.
struct Sent {
    cpu: Duration,
    wall: Duration,
}

fn rusage_of(pid: i32) -> anyhow::Result<(i32, Duration)> {
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: live status and rusage out-buffers; wait4 fills them for our child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok((status, tv(ru.ru_utime) + tv(ru.ru_stime)))
}

/// Sends `packets` 60-byte UDP frames (64 on the wire) from host a through
/// the router, cycling over about `flows` distinct port pairs.
fn trafgen(t: &RouterTopology, flows: u64, packets: u64) -> anyhow::Result<Sent> {
    let (a, b) = port_ranges(flows);
    let ports = if a == 1 {
        "sp=4000, dp=5000".to_owned()
    } else {
        format!("sp=dinc(1024, {}), dp=dinc(2048, {})", 1024 + a - 1, 2048 + b - 1)
    };
    let conf = format!(
        "{{ eth(da={RA_MAC}, sa={A_MAC}), ipv4(sa={A_V4}, da={B_V4}, ttl=64), udp({ports}), fill(0, 18) }}\n"
    );
    let path = std::env::temp_dir().join(format!("flowlog-bench-{}.cfg", std::process::id()));
    std::fs::File::create(&path)?.write_all(conf.as_bytes())?;
    let started = Instant::now();
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            t.a.name(),
            "trafgen",
            "-o",
            "eth0",
            "--cpus",
            "1",
            "-q",
            "-n",
        ])
        .arg(packets.to_string())
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting trafgen (package netsniff-ng)")?;
    let (status, cpu) = rusage_of(child.id() as i32)?;
    let wall = started.elapsed();
    if status != 0 {
        bail!("trafgen failed with status {status}");
    }
    Ok(Sent { cpu, wall })
}

/// CPU time of all ksoftirqd threads.
fn ksoftirqd_cpu() -> Duration {
    let tick = 1.0 / rustix::param::clock_ticks_per_second() as f64;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if !stat.contains("(ksoftirqd/") {
            continue;
        }
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let (u, s) = (fields.get(11), fields.get(12));
        if let (Some(u), Some(s)) = (
            u.and_then(|x| x.parse::<f64>().ok()),
            s.and_then(|x| x.parse::<f64>().ok()),
        ) {
            total += (u + s) * tick;
        }
    }
    Duration::from_secs_f64(total)
}

fn rx_packets(ns: &flowlog_tests::netns::Netns, ifname: &str) -> anyhow::Result<u64> {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", ifname])?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["stats64"]["rx"]["packets"].as_u64().context("no rx counter")
}

/// A program under test on r-a's ingress; reports kernel run statistics.
enum Arm {
    Reference {
        ebpf: aya::Ebpf,
        name: &'static str,
    },
    Flowlog {
        cap: Box<NetnsCapture>,
        prog: &'static str,
    },
}

impl Arm {
    fn stats(&self) -> (Duration, u64) {
        match self {
            Self::Reference { ebpf, name } => ebpf
                .program(name)
                .and_then(|p| p.info().ok())
                .map_or((Duration::ZERO, 0), |i| (i.run_time(), i.run_count())),
            Self::Flowlog { cap, prog } => cap
                .program_stats()
                .into_iter()
                .find(|(n, ..)| n == prog)
                .map_or((Duration::ZERO, 0), |(_, t, c)| (t, c)),
        }
    }
}

fn attach_arm(t: &RouterTopology, arm: &str, hook: &str) -> anyhow::Result<Arm> {
    let ns = t.router.name().to_owned();
    if arm == "flowlog" {
        let settings = CaptureSettings {
            flow_map_entries: MAP_ENTRIES,
            flow_map_entries_v6: 1024,
            overflow_ring_bytes: 1 << 20,
            rtt: true,
        };
        let mut cap = NetnsCapture::load(Some(&ns), "r-a", &settings, None)?;
        let mode = if hook == "xdp" {
            CaptureMode::Xdp
        } else {
            CaptureMode::Tc
        };
        cap.attach(&Attachment {
            interface: "r-a".into(),
            netns: Some(ns),
            mode,
            ..Default::default()
        })?;
        let prog = if hook == "xdp" {
            flowlog_common::PROG_XDP
        } else {
            flowlog_common::PROG_TC_INGRESS
        };
        return Ok(Arm::Flowlog {
            cap: Box::new(cap),
            prog,
        });
    }
    let mut ebpf = EbpfLoader::new()
        .map_max_entries("BENCH_FLOWS", MAP_ENTRIES)
        .load(BENCH_PROGRAMS)?;
    let name: &'static str = match (arm, hook) {
        ("empty", "xdp") => "bench_empty_xdp",
        ("empty", _) => "bench_empty_tc",
        ("minimal", "xdp") => "bench_minimal_xdp",
        _ => "bench_minimal_tc",
    };
    {
        let e = &mut ebpf;
        t.router.run(move || -> anyhow::Result<()> {
            let p = e.program_mut(name).context("program")?;
            if hook == "xdp" {
                let x: &mut Xdp = p.try_into()?;
                x.load()?;
                x.attach("r-a", XdpMode::Driver)?;
            } else {
                let c: &mut SchedClassifier = p.try_into()?;
                c.load()?;
                c.attach("r-a", TcAttachType::Ingress)?;
            }
            Ok(())
        })??;
    }
    Ok(Arm::Reference { ebpf, name })
}

/// ns per run of the arm's program while `packets` frames over `flows`
/// flows cross r-a (after one warm-up pass that creates the flows).
fn ebpf_cost(t: &RouterTopology, arm: &str, hook: &str, flows: u64, packets: u64) -> anyhow::Result<f64> {
    let a = attach_arm(t, arm, hook)?;
    trafgen(t, flows, flows.max(1000))?;
    let (t0, c0) = a.stats();
    trafgen(t, flows, packets)?;
    let (t1, c1) = a.stats();
    drop(a);
    let runs = c1.saturating_sub(c0);
    if runs == 0 {
        bail!("{arm}/{hook}: the program never ran (is bpf_stats enabled?)");
    }
    Ok((t1 - t0).as_nanos() as f64 / runs as f64)
}

/// Rounds of the three arms, interleaved; each arm's median is reported,
/// so drift on a shared machine hits all arms alike.
const ROUNDS: usize = 3;

fn section_ebpf(
    t: &RouterTopology,
    quick: bool,
    only_flows: Option<u64>,
    hooks: &[&str],
) -> anyhow::Result<Value> {
    let all: &[u64] = if quick {
        &[1, 10_000, 65_536]
    } else {
        &[1, 10_000, 65_536, 100_000, 800_000, 1_000_000]
    };
    let one = only_flows.map(|f| [f]);
    let mixes: &[u64] = match &one {
        Some(f) => f,
        None => all,
    };
    let packets = if quick { 200_000 } else { 500_000 };
    let mut rows = Vec::new();
    for &hook in hooks {
        for &flows in mixes {
            let mut runs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for _ in 0..ROUNDS {
                for arm in ["empty", "minimal", "flowlog"] {
                    runs.entry(arm)
                        .or_default()
                        .push(ebpf_cost(t, arm, hook, flows, packets.max(flows))?);
                }
            }
            let r: BTreeMap<&str, f64> = runs.into_iter().map(|(k, v)| (k, median(v))).collect();
            for (arm, ns) in &r {
                eprintln!(
                    "ebpf: {hook:>3} {flows:>8} flows {arm:>8}: {ns:7.1} ns/packet (median of {ROUNDS})"
                );
            }
            let floor = r["empty"];
            let ratio = (r["flowlog"] - floor) / (r["minimal"] - floor);
            rows.push(json!({
                "hook": hook, "flows": flows,
                "empty_ns": r["empty"], "minimal_ns": r["minimal"], "flowlog_ns": r["flowlog"],
                "ratio_over_floor": ratio,
            }));
        }
    }
    Ok(Value::Array(rows))
}

/// CPU ns per packet received at b, or bits/s for TCP, with the collector
/// (`attach`) or without.
fn udp_cpu_ns_per_packet(t: &RouterTopology, flows: u64, packets: u64) -> anyhow::Result<f64> {
    let rx0 = rx_packets(&t.b, "eth0")?;
    let k0 = ksoftirqd_cpu();
    let sent = trafgen(t, flows, packets)?;
    let k1 = ksoftirqd_cpu();
    let rx = rx_packets(&t.b, "eth0")? - rx0;
    let _ = sent.wall;
    Ok((sent.cpu + (k1 - k0)).as_nanos() as f64 / rx.max(1) as f64)
}

fn iperf_bits(t: &RouterTopology, secs: u32) -> anyhow::Result<f64> {
    let mut server = Command::new("ip")
        .args(["netns", "exec", t.b.name(), "iperf3", "-s", "-1", "-B", B_V4])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 (package iperf3)")?;
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            t.a.name(),
            "iperf3",
            "-c",
            B_V4,
            "-J",
            "-t",
            &secs.to_string(),
        ])
        .output()?;
    let _ = server.wait();
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 gave no result")
}

/// The collector on the router: on both interfaces (a routed packet then
/// meets two hooks, ingress on one and egress on the other) or on `r-a`
/// only (one hook per packet of the a→b flood).
fn collector(t: &RouterTopology, mode: CaptureMode, interfaces: &[&str]) -> anyhow::Result<NetnsCapture> {
    let ns = t.router.name().to_owned();
    let settings = CaptureSettings {
        flow_map_entries: MAP_ENTRIES,
        flow_map_entries_v6: 1024,
        overflow_ring_bytes: 1 << 20,
        rtt: true,
    };
    let mut cap = NetnsCapture::load(Some(&ns), "r-a", &settings, None)?;
    for &iface in interfaces {
        cap.attach(&Attachment {
            interface: iface.into(),
            netns: Some(ns.clone()),
            mode,
            ..Default::default()
        })?;
    }
    Ok(cap)
}

fn section_throughput(t: &RouterTopology, quick: bool) -> anyhow::Result<Value> {
    let trials = if quick { 2 } else { 5 };
    let packets = if quick { 300_000 } else { 1_000_000 };
    let (mut both, mut one, mut without) = (Vec::new(), Vec::new(), Vec::new());
    trafgen(t, 65_536, 65_536)?;
    for _ in 0..trials {
        without.push(udp_cpu_ns_per_packet(t, 65_536, packets)?);
        for (interfaces, out) in [(&["r-a", "r-b"][..], &mut both), (&["r-a"][..], &mut one)] {
            let cap = collector(t, CaptureMode::Auto, interfaces)?;
            // Warm the map: the figure is for 64k live flows.
            trafgen(t, 65_536, 65_536)?;
            out.push(udp_cpu_ns_per_packet(t, 65_536, packets)?);
            drop(cap);
        }
    }
    let (w, w1, wo) = (median(both), median(one), median(without));
    eprintln!(
        "throughput: 64-byte UDP at 64k flows: {wo:.0} ns/packet without, {w:.0} with (two hooks), {w1:.0} (one)"
    );
    let mut tcp = BTreeMap::new();
    let secs = if quick { 2 } else { 4 };
    for mode in [CaptureMode::Auto, CaptureMode::Xdp] {
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let trials = match (quick, mode) {
            (true, _) => 1,
            (false, CaptureMode::Auto) => 5,
            (false, _) => 3,
        };
        for _ in 0..trials {
            without.push(iperf_bits(t, secs)?);
            let cap = collector(t, mode, &["r-a", "r-b"])?;
            with.push(iperf_bits(t, secs)?);
            drop(cap);
        }
        let (w, wo) = (median(with), median(without));
        eprintln!(
            "throughput: TCP single stream, mode {mode}: {:.2} Gbit/s without, {:.2} with",
            wo / 1e9,
            w / 1e9
        );
        tcp.insert(
            mode.to_string(),
            json!({ "without_bps": wo, "with_bps": w, "ratio": w / wo }),
        );
    }
    Ok(json!({
        "udp64_64k_flows": {
            "without_ns_per_packet": wo,
            "with_ns_per_packet": w,
            "ratio": wo / w,
            "one_interface_ns_per_packet": w1,
            "one_interface_ratio": wo / w1,
        },
        "tcp_single_stream": tcp,
    }))
}

/// Thread CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock and timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Fills `cap`'s flow map with `n` flows, as traffic on both CPUs would.
fn fill(cap: &NetnsCapture, n: u64) -> anyhow::Result<()> {
    let cpus = aya::util::nr_cpus().map_err(|(w, e)| anyhow::anyhow!("{w}: {e}"))?;
    let chunk = 100_000u64;
    let mut done = 0;
    while done < n {
        let count = chunk.min(n - done);
        let mut keys = Vec::with_capacity(count as usize * size_of::<FlowKey4>());
        let mut values = Vec::with_capacity(count as usize * cpus * size_of::<FlowStats>());
        for i in done..done + count {
            let k = FlowKey4 {
                src_addr: [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
                dst_addr: [10, 2, 0, (i % 200) as u8],
                ifindex: 1,
                src_port: (i & 0xffff) as u16,
                dst_port: 443,
                protocol: 6,
                direction: (i & 1) as u8,
                generation: cap.generation() as u8,
                _pad: 0,
            };
            // SAFETY: FlowKey4 is plain bytes.
            keys.extend_from_slice(unsafe {
                std::slice::from_raw_parts((&raw const k).cast::<u8>(), size_of::<FlowKey4>())
            });
            for cpu in 0..cpus {
                let v = FlowStats {
                    packets: 10 + cpu as u64,
                    bytes: 6000 + i,
                    first_seen_jiffies: 1_000_000_000,
                    last_seen_jiffies: 2_000_000_000,
                    tcp_flags: 0x18,
                    _pad: [0; 6],
                };
                // SAFETY: as above.
                values.extend_from_slice(unsafe {
                    std::slice::from_raw_parts((&raw const v).cast::<u8>(), size_of::<FlowStats>())
                });
            }
        }
        sys::update_percpu_batch(cap.flow_map4_fd(), &keys, &values, count as usize)?;
        done += count;
    }
    Ok(())
}

fn section_drain(quick: bool) -> anyhow::Result<Value> {
    let sizes: &[u64] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let mut rows = Vec::new();
    for &n in sizes {
        let settings = CaptureSettings {
            flow_map_entries: (n as u32 * 2).max(1024),
            flow_map_entries_v6: 1024,
            overflow_ring_bytes: 1 << 20,
            rtt: false,
        };
        let mut cap = NetnsCapture::load(None, "bench", &settings, None)?;
        fill(&cap, n)?;
        let (w0, c0) = (Instant::now(), thread_cpu());
        let (drained, deletion) = cap.drain()?;
        cap.delete(deletion)?;
        let (w1, c1) = (Instant::now(), thread_cpu());
        let flows = drained.window.flows.len();
        let atts = [AttachmentInfo {
            ifindex: 1,
            interface: "eth0".into(),
            netns: None,
            ..Default::default()
        }];
        let id = Identity {
            account_id: "bench".into(),
            cen_id: "cen-bench".into(),
            flow_log_id: "fl-bench".into(),
        };
        let window = Window {
            start_ns: 0,
            end_ns: 600_000_000_000,
        };
        let mut clock = ClockOffset::sample();
        if let Some(j) = drained.jiffies {
            clock = clock.with_jiffies(j);
        }
        // Kept for the enrichment arms below (the largest size only).
        let last = n == *sizes.last().unwrap_or(&0);
        let aggregate = last.then(|| drained.window.clone());
        let data = drained
            .window
            .finish(window, atts.to_vec(), id.clone(), clock, Default::default());
        // Render every record, as a sink does.
        let mut records = 0usize;
        let _ = data.try_for_each_record(|r| {
            records += usize::from(r.packets.is_some_and(|p| p > 0));
            Ok::<(), ()>(())
        });
        let (w2, c2) = (Instant::now(), thread_cpu());
        anyhow::ensure!(flows as u64 == n && records as u64 == n, "drained {flows} of {n}");
        let total = (c2 - c0).as_secs_f64();
        eprintln!(
            "drain: {n:>8} flows: drain {:.3} s, records {:.3} s, CPU {total:.3} s",
            (w1 - w0).as_secs_f64(),
            (w2 - w1).as_secs_f64()
        );
        let mut row = json!({
            "flows": n,
            "drain_wall_s": (w1 - w0).as_secs_f64(), "drain_cpu_s": (c1 - c0).as_secs_f64(),
            "records_wall_s": (w2 - w1).as_secs_f64(),
            "total_wall_s": (w2 - w0).as_secs_f64(), "total_cpu_s": total,
            "records_per_s": n as f64 / (w2 - w0).as_secs_f64(),
        });
        if let Some(agg) = aggregate {
            let e = enrichment_cost(&agg, (c1 - c0).as_secs_f64(), |table| {
                agg.clone()
                    .finish(window, atts.to_vec(), id.clone(), clock, table)
            })?;
            row["enrichment"] = e;
        }
        rows.push(row);
    }
    Ok(Value::Array(rows))
}

/// A region table the size of a large enterprise network's: 10.0.0.0/8,
/// every /16 in it, and 10,240 /24s nested in those — 10,497 prefixes over
/// the addresses the drain benchmark's flows use.
fn bench_regions() -> anyhow::Result<RegionTable> {
    let mut rows = vec![RegionEntry {
        cidr: "10.0.0.0/8".into(),
        region_id: "corp".into(),
        network: None,
        line: 1,
    }];
    for a in 0..=255u32 {
        rows.push(RegionEntry {
            cidr: format!("10.{a}.0.0/16"),
            region_id: format!("region-{}", a % 16),
            network: Some(format!("vpc-{a}")),
            line: rows.len() + 1,
        });
    }
    for a in 0..40u32 {
        for b in 0..=255u32 {
            rows.push(RegionEntry {
                cidr: format!("10.{a}.{b}.0/24"),
                region_id: format!("zone-{}", (a + b) % 32),
                network: None,
                line: rows.len() + 1,
            });
        }
    }
    Ok(RegionTable::new(&rows)?)
}

/// CPU time to finish and render a window without and with a region
/// table (three interleaved rounds each, medians), and what enrichment adds
/// to the whole drain (drain + finish + render).
fn enrichment_cost(
    agg: &flowlog_agent::window::WindowAggregate,
    drain_cpu_s: f64,
    finish: impl Fn(std::sync::Arc<RegionTable>) -> flowlog_agent::window::WindowData,
) -> anyhow::Result<Value> {
    let table = std::sync::Arc::new(bench_regions()?);
    let empty = std::sync::Arc::new(RegionTable::default());
    let render = |t: &std::sync::Arc<RegionTable>| {
        let c0 = thread_cpu();
        let data = finish(t.clone());
        let mut labelled = 0u64;
        let _ = data.try_for_each_record(|r| {
            labelled += u64::from(r.src_region_id.as_deref().is_some_and(|s| !s.is_empty()));
            Ok::<(), ()>(())
        });
        ((thread_cpu() - c0).as_secs_f64(), labelled)
    };
    let (mut plain, mut enriched) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        plain.push(render(&empty).0);
        let (s, labelled) = render(&table);
        anyhow::ensure!(
            labelled as usize == agg.flows.len(),
            "{labelled} of {} flows labelled",
            agg.flows.len()
        );
        enriched.push(s);
    }
    let (p, e) = (median(plain), median(enriched));
    let added = (e - p) / (drain_cpu_s + p);
    eprintln!(
        "enrichment: {} prefixes; finish + render {p:.3} s plain, {e:.3} s enriched: +{:.1}% of the drain",
        table.len(),
        added * 100.0
    );
    Ok(json!({
        "prefixes": table.len(),
        "plain_cpu_s": p,
        "enriched_cpu_s": e,
        "added_fraction_of_drain": added,
    }))
}

fn memlock(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

fn section_memory(t: &RouterTopology, agent: Option<&Path>, quick: bool) -> anyhow::Result<Value> {
    let entries = 1u32 << 20;
    let settings = CaptureSettings {
        flow_map_entries: entries,
        flow_map_entries_v6: 1024,
        overflow_ring_bytes: 1 << 20,
        rtt: false,
    };
    let cap = NetnsCapture::load(None, "bench", &settings, None)?;
    let cpus = aya::util::nr_cpus().map_err(|(w, e)| anyhow::anyhow!("{w}: {e}"))? as u64;
    let value = (size_of::<FlowStats>() as u64).next_multiple_of(8) * cpus;
    let (formula, formula6) = (
        value + size_of::<FlowKey4>() as u64,
        value + size_of::<FlowKey>() as u64,
    );
    let lock = memlock(cap.flow_map4_fd()).unwrap_or(0);
    drop(cap);
    eprintln!(
        "memory: {formula} B/flow by max_entries × (value × CPUs + key); memlock {:.0} B/entry",
        lock as f64 / f64::from(entries)
    );
    let mut out = json!({
        "cpus": cpus,
        "map_bytes_per_flow": formula,
        "map_bytes_per_ipv6_flow": formula6,
        "memlock_bytes_per_entry": lock as f64 / f64::from(entries),
    });
    if let Some(bin) = agent {
        let flows: u64 = if quick { 200_000 } else { 1_000_000 };
        let dir = std::env::temp_dir().join(format!("flowlog-bench-agent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = Command::new(bin)
            .args([
                "agent",
                "--netns",
                t.router.name(),
                "-i",
                "r-a",
                "--mode",
                "tc",
                "--window-secs",
                "5",
            ])
            .args([
                "--flow-map-entries",
                &(flows * 5 / 4).to_string(),
                "--protobuf-file",
                "/dev/null",
                "--no-rtt",
            ])
            .arg("--data-dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(2));
        trafgen(t, flows, flows)?;
        // Two window boundaries: the flood's window is drained, written, freed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut published = 0;
        while Instant::now() < deadline && published < 3 {
            std::thread::sleep(Duration::from_millis(500));
            published = std::fs::read_to_string(dir.join("status.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .and_then(|v| v["windows-published"].as_u64())
                .unwrap_or(0);
        }
        let hwm = flowlog_tests::peak_rss_kib(child.id());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        let mib = hwm.map(|k| k as f64 / 1024.0);
        eprintln!("memory: agent peak RSS with {flows} flows in a window: {mib:?} MiB");
        out["agent_peak_rss_mib"] = json!(mib);
        out["agent_flows"] = json!(flows);
    }
    Ok(out)
}

/// Connections per second and flowlog ns/packet with RTT sampling on or off.
fn churn(t: &RouterTopology, cap: &mut NetnsCapture, rtt: bool, conns: u32) -> anyhow::Result<(f64, f64)> {
    cap.set_rtt(rtt)?;
    let listener = t.b.run(|| TcpListener::bind("0.0.0.0:7777"))??;
    let server = std::thread::spawn(move || {
        for _ in 0..conns {
            if listener.accept().is_err() {
                break;
            }
        }
    });
    let stats = |c: &NetnsCapture| {
        c.program_stats()
            .into_iter()
            .fold((Duration::ZERO, 0u64), |(t, n), (_, dt, dn)| (t + dt, n + dn))
    };
    let (t0, n0) = stats(cap);
    let dst: SocketAddr = SocketAddr::new(B_V4.parse()?, 7777);
    let started = Instant::now();
    t.a.run(move || -> anyhow::Result<()> {
        for _ in 0..conns {
            let s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
            drop(s);
        }
        Ok(())
    })??;
    let secs = started.elapsed().as_secs_f64();
    let _ = server.join();
    let (t1, n1) = stats(cap);
    Ok((
        f64::from(conns) / secs,
        (t1 - t0).as_nanos() as f64 / (n1 - n0).max(1) as f64,
    ))
}

fn section_churn(t: &RouterTopology, quick: bool) -> anyhow::Result<Value> {
    let mut cap = collector(t, CaptureMode::Tc, &["r-a", "r-b"])?;
    let conns = if quick { 500 } else { 3000 };
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        off.push(churn(t, &mut cap, false, conns)?);
        on.push(churn(t, &mut cap, true, conns)?);
    }
    let m = |v: &[(f64, f64)], i: usize| median(v.iter().map(|x| if i == 0 { x.0 } else { x.1 }).collect());
    let out = json!({
        "connections": conns,
        "conn_per_s_rtt_off": m(&off, 0), "conn_per_s_rtt_on": m(&on, 0),
        "ns_per_packet_rtt_off": m(&off, 1), "ns_per_packet_rtt_on": m(&on, 1),
        "cost_ratio": m(&on, 1) / m(&off, 1),
    });
    eprintln!("churn: {out}");
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the kernel benchmark needs root");
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let agent = std::env::var_os("FLOWLOG_BIN").map(PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let _guard = rt.enter();
    flowlog_tests::netns::sweep_stale();
    let stats_path = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(stats_path).unwrap_or_else(|_| "0".into());
    // Run-time statistics cost two clock reads per program run: on for the
    // sections that read them, off where the collector's real cost counts.
    let stats = |on: bool| {
        std::fs::write(stats_path, if on { "1" } else { "0" }).context("setting kernel.bpf_stats_enabled")
    };
    let t = RouterTopology::with(RouterOptions {
        ipv4_only: true,
        ..Default::default()
    })?;
    // `--only ebpf,drain` runs some sections.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.split(',').map(str::to_owned).collect());
    let want = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let result = (|| -> anyhow::Result<Value> {
        let mut out = serde_json::Map::new();
        if want("ebpf") {
            stats(true)?;
            let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
            let only_flows = flag("--flows").and_then(|v| v.parse().ok());
            let hooks: Vec<&str> = match flag("--hook") {
                Some(h) => vec![h.as_str()],
                None => vec!["xdp", "tc"],
            };
            out.insert("ebpf".into(), section_ebpf(&t, quick, only_flows, &hooks)?);
        }
        if want("throughput") {
            stats(false)?;
            out.insert("throughput".into(), section_throughput(&t, quick)?);
        }
        if want("churn") {
            stats(true)?;
            out.insert("churn".into(), section_churn(&t, quick)?);
        }
        if want("drain") {
            out.insert("drain".into(), section_drain(quick)?);
        }
        if want("memory") {
            stats(false)?;
            out.insert("memory".into(), section_memory(&t, agent.as_deref(), quick)?);
        }
        Ok(Value::Object(out))
    })();
    let _ = std::fs::write(stats_path, before.trim());
    drop(t);
    println!("{}", result?);
    Ok(())
}
