//! Console benchmark (run by `cargo xtask bench`): a day of 10-minute
//! windows holding `--records` (default 10M) records, compacted as the
//! agent leaves them, served by `flowlog console` ($FLOWLOG_BIN). Each page's
//! data is loaded `--loads` times (20) the way the page loads it — all its
//! panels at once — over the whole day, once from the rollups in the
//! files' footers and once from the records themselves; then Chromium's
//! first contentful paint over as many loads, and the page's gzipped
//! weight. Prints one JSON object. With $FLOWLOG_BENCH_DATA, the day is
//! kept in that directory and reused by the next run (to iterate on the
//! read side without writing 10M records again).

#[path = "common/args.rs"]
mod args;
#[path = "common/records.rs"]
mod records;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use args::arg;
use flowlog_agent::{
    model::LogstoreRef,
    store::{Writer, compact, logstore_dir},
};
use records::{Rng, sort_like_the_agent, window_records, write_window};
use serde_json::{Value, json};

const PROJECT: &str = "bench";
const LOGSTORE: &str = "flows";
/// On an hour: 1_796_000_400 is a multiple of 3600.
const DAY_START: i64 = 1_796_000_400;

/// The panels each page asks for at once.
const PAGES: &[(&str, &[&str])] = &[
    (
        "overview",
        &["totals", "distinct-flows", "series?Split=direction", "gaps"],
    ),
    ("matrix", &["matrix?Between=regions&By=bytes"]),
    ("top", &["top?Talkers=sources&By=bytes&Direction=in&Limit=10"]),
    ("latency", &["latency", "latency-series", "slowest?Limit=20"]),
    (
        "flows",
        &["flows-count", "flows?Sort=start&Order=desc&PageSize=50"],
    ),
];

/// One HTTP/1.1 GET; the status and body.
fn get(addr: SocketAddr, path: &str, gzip: bool) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(180)))?;
    let enc = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{enc}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

/// A day of windows with regions, attachments, a little NODATA and
/// SKIPDATA; compacted to a file an hour.
fn write_day(data: &std::path::Path, total: usize) -> anyhow::Result<(usize, f64)> {
    let dest = LogstoreRef {
        project: PROJECT.into(),
        logstore: LOGSTORE.into(),
    };
    let writer = Writer::new(data);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let windows = 144usize;
    let per_window = total.div_ceil(windows);
    let mut written = 0;
    for w in 0..windows {
        let start = DAY_START + w as i64 * 600;
        let n = per_window.min(total - written);
        let mut records = window_records(&mut rng, n, start);
        for r in &mut records {
            let iface = r.interface.clone().unwrap_or_default();
            r.attachment_id = Some(format!("tr-att-{iface}"));
            if r.rtt.is_some() {
                let rtt = r.rtt.unwrap_or_default();
                r.rtt_client_side = Some(rtt / 3);
                r.rtt_server_side = Some(rtt - rtt / 3);
            }
        }
        if w % 24 == 5
            && let Some(r) = records.first_mut()
        {
            r.log_status = "SKIPDATA".into();
            r.srcaddr = None;
            r.dstaddr = None;
        }
        sort_like_the_agent(&mut records);
        write_window(&writer, &dest, start, 600, &records)?;
        written += n;
    }
    let dir = logstore_dir(data, &dest);
    let t = Instant::now();
    compact::compact_logstore(&dir, DAY_START + 3 * 86_400, compact::GRACE_SECS, 2)?;
    Ok((written, t.elapsed().as_secs_f64()))
}

/// Each page's data `loads` times: seconds until its last panel answered.
fn page_times(addr: SocketAddr, loads: usize, source: &str) -> anyhow::Result<Value> {
    let (from, to) = (DAY_START, DAY_START + 86_400);
    let mut out = serde_json::Map::new();
    for (page, panels) in PAGES {
        let mut times = Vec::new();
        let mut files = 0;
        let mut sources = serde_json::Map::new();
        for _ in 0..loads {
            let t = Instant::now();
            let answers: Vec<anyhow::Result<(u16, Vec<u8>)>> = std::thread::scope(|s| {
                let handles: Vec<_> = panels
                    .iter()
                    .map(|p| {
                        let (name, extra) = p.split_once('?').unwrap_or((p, ""));
                        let path = format!(
                            "/console/api/panel/{name}?Project={PROJECT}&Logstore={LOGSTORE}&From={from}&To={to}&Source={source}{}{extra}",
                            if extra.is_empty() { "" } else { "&" }
                        );
                        s.spawn(move || get(addr, &path, false))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("panicked"))))
                    .collect()
            });
            times.push(t.elapsed().as_secs_f64());
            for (a, panel) in answers.into_iter().zip(panels.iter()) {
                let (status, body) = a?;
                if status != 200 {
                    bail!(
                        "{page} ({source}): HTTP {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                let v: Value = serde_json::from_slice(&body)?;
                files = v["FilesRead"].as_u64().unwrap_or(0);
                sources.insert((*panel).into(), v["Source"].clone());
            }
        }
        out.insert(
            (*page).into(),
            json!({
                "p50_s": percentile(times.clone(), 0.5),
                "p95_s": percentile(times, 0.95),
                "files_read": files,
                "sources": sources,
            }),
        );
    }
    Ok(Value::Object(out))
}

fn main() -> anyhow::Result<()> {
    let total = arg("--records", 10_000_000) as usize;
    let loads = arg("--loads", 20) as usize;
    let bin = std::env::var_os("FLOWLOG_BIN").context("FLOWLOG_BIN names the flowlog binary")?;
    let kept = std::env::var_os("FLOWLOG_BENCH_DATA").map(std::path::PathBuf::from);
    let data = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("flowlog-bench-console-{}", std::process::id()))
    });
    let done = data.join(format!(".written-{total}"));
    let t = Instant::now();
    let (written, compact_s) = if kept.is_some() && done.exists() {
        (total, f64::NAN)
    } else {
        let _ = std::fs::remove_dir_all(&data);
        let w = write_day(&data, total)?;
        std::fs::write(&done, b"")?;
        w
    };
    let write_s = t.elapsed().as_secs_f64();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut console = Command::new(&bin)
        .arg("console")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--console-listen",
            &addr.to_string(),
            "--query-timeout-secs",
            "300",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = (|| -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the console did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let rollups = page_times(addr, loads, "rollups")?;
        let raw = page_times(addr, loads, "records")?;
        let mut weight = 0;
        for path in [
            "/",
            "/app.js",
            "/app.css",
            "/vendor/echarts.min.js",
            "/favicon.svg",
        ] {
            weight += get(addr, path, true)?.1.len();
        }
        let paint = match std::env::var_os("FLOWLOG_PYTHON") {
            Some(py) => {
                let out = Command::new(py)
                    .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/console/drive.py"))
                    .args(["paint", "--url", &format!("http://{addr}")])
                    .args([
                        "--query",
                        &format!(
                            "logstore={PROJECT}/{LOGSTORE}&range=custom&from={DAY_START}&to={}",
                            DAY_START + 86_400
                        ),
                    ])
                    .args(["--loads", &loads.to_string()])
                    .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
                    .stderr(Stdio::inherit())
                    .output()?;
                anyhow::ensure!(out.status.success(), "the paint phase failed");
                serde_json::from_slice::<Value>(&out.stdout)?
            }
            None => json!({"skipped": "FLOWLOG_PYTHON is not set"}),
        };
        Ok(json!({
            "records": written,
            "write_seconds": write_s,
            "compact_seconds": compact_s,
            "loads": loads,
            "rollups": rollups,
            "records_scan": raw,
            "page_weight_gzip_bytes": weight,
            "paint": paint,
        }))
    })();
    let _ = console.kill();
    let _ = console.wait();
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&data);
    }
    println!("{}", serde_json::json!({ "console": result? }));
    Ok(())
}
