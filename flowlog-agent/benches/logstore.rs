//! Logstore benchmark (run by `cargo xtask bench`): write rate, on-disk
//! bytes per record, and a day-sized top-10 query. Prints one JSON object.
//!
//! Synthetic records follow a router's shape: a few thousand skewed source
//! and destination addresses, ephemeral and well-known ports, mostly TCP,
//! heavy-tailed packet counts. One Parquet file per window, as the agent
//! writes them.
//!
//! A second arm writes `--small-files` (default 100,000) one-second windows
//! of a few records each — a day and more of 1-s windows — and times the
//! top-10 query over one hour and over everything before and after the
//! compaction pass the agent runs in the background.

#[path = "common/args.rs"]
mod args;
#[path = "common/records.rs"]
mod records;

use args::arg;
use records::{Rng, sort_like_the_agent, window_records, write_window};
use std::time::Instant;

use flowlog_agent::{
    model::{LogstoreRef, Window},
    store::{
        Writer, compact, logstore_dir, query,
        summary::{Row, Summaries},
    },
};

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Best of three runs of the top-10 query over `range`: seconds, or the
/// refusal's text.
fn top10(rt: &tokio::runtime::Runtime, dir: &std::path::Path, range: query::TimeRange) -> serde_json::Value {
    let sql = "SELECT srcaddr, sum(bytes) AS bytes FROM logs GROUP BY srcaddr ORDER BY bytes DESC LIMIT 10";
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        match rt.block_on(query::run(dir, range, sql)) {
            Ok(_) => best = best.min(t.elapsed().as_secs_f64()),
            Err(e) => return serde_json::json!({ "refused": e.to_string() }),
        }
    }
    serde_json::json!({ "seconds": best })
}

/// `n` one-second windows of 4 records each, one file per window; the
/// top-10 query before and after compaction.
fn small_files(n: usize, rt: &tokio::runtime::Runtime) -> anyhow::Result<serde_json::Value> {
    let data = std::env::temp_dir().join(format!("flowlog-bench-small-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let dest = LogstoreRef {
        project: "bench".into(),
        logstore: "small".into(),
    };
    let writer = Writer::new(&data);
    let mut rng = Rng(0x51_7cc1_b727_220a);
    // On an hour: 1_796_000_400 is a multiple of 3600.
    let t0 = 1_796_000_400i64;
    let t = Instant::now();
    for i in 0..n {
        let start = t0 + i as i64;
        let mut records = window_records(&mut rng, 4, start);
        for r in &mut records {
            r.end = start + 1;
        }
        let window = Window {
            start_ns: i128::from(start) * 1_000_000_000,
            end_ns: i128::from(start + 1) * 1_000_000_000,
        };
        writer.write_records(&dest, "fl-bench", window, &records)?;
    }
    let write_seconds = t.elapsed().as_secs_f64();
    let dir = logstore_dir(&data, &dest);
    let hour = query::TimeRange {
        from: Some(t0 + 3600),
        to: Some(t0 + 7200),
    };
    let all = query::TimeRange::default();
    let before = (top10(rt, &dir, hour), top10(rt, &dir, all));
    let end = t0 + n as i64;
    let t = Instant::now();
    let done = compact::compact_logstore(&dir, end + compact::GRACE_SECS + 3600, compact::GRACE_SECS, 2)?;
    let compact_seconds = t.elapsed().as_secs_f64();
    let files_after = query::files_in_range(&dir, all).len();
    let after = (top10(rt, &dir, hour), top10(rt, &dir, all));
    let _ = std::fs::remove_dir_all(&data);
    Ok(serde_json::json!({
        "files": n,
        "write_seconds": write_seconds,
        "hour_before": before.0,
        "all_before": before.1,
        "compact_seconds": compact_seconds,
        "files_merged": done.files_merged,
        "files_after": files_after,
        "hour_after": after.0,
        "all_after": after.1,
    }))
}

fn main() -> anyhow::Result<()> {
    let total = arg("--records", 10_000_000) as usize;
    let per_window = arg("--per-window", 100_000) as usize;
    let data = std::env::temp_dir().join(format!("flowlog-bench-logstore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let dest = LogstoreRef {
        project: "bench".into(),
        logstore: "flows".into(),
    };
    let writer = Writer::new(&data);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let day_start = 1_796_000_400i64;
    let mut written = 0usize;
    let mut write_secs = 0.0;
    let mut files = 0;
    // The footer's summaries alone (rollup and sketches, built and
    // encoded) on one thread, over the same records: the CPU they take,
    // beside the write's wall time (in which they run on a second thread).
    let mut summary_secs = 0.0;
    while written < total {
        let n = per_window.min(total - written);
        let start = day_start + (files as i64) * 600;
        let mut records = window_records(&mut rng, n, start);
        sort_like_the_agent(&mut records);
        let t = Instant::now();
        write_window(&writer, &dest, start, 600, &records)?;
        write_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut s = Summaries::default();
        for r in &records {
            s.add(&Row::of(r));
        }
        std::hint::black_box(s.key_values());
        summary_secs += t.elapsed().as_secs_f64();
        drop(records);
        written += n;
        files += 1;
    }
    let dir = logstore_dir(&data, &dest);
    let disk = dir_size(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let sql = "SELECT srcaddr, sum(bytes) AS bytes FROM logs GROUP BY srcaddr ORDER BY bytes DESC LIMIT 10";
    let mut best = f64::MAX;
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let r = rt.block_on(query::run(&dir, query::TimeRange::default(), sql))?;
        best = best.min(t.elapsed().as_secs_f64());
        rows = r.batches.iter().map(|b| b.num_rows()).sum();
    }
    if std::env::var_os("FLOWLOG_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&data);
    } else {
        eprintln!("kept {}", data.display());
    }
    let small = small_files(arg("--small-files", 100_000) as usize, &rt)?;
    let out = serde_json::json!({
        "small_files": small,
        "logstore": {
            "records": written,
            "files": files,
            "write_seconds": write_secs,
            "write_records_per_s": written as f64 / write_secs,
            "footer_summaries_seconds": summary_secs,
            "footer_summaries_cpu_per_write_second": summary_secs / write_secs,
            "disk_bytes": disk,
            "bytes_per_record": disk as f64 / written as f64,
            "top10_query_seconds": best,
            "top10_rows": rows,
        }
    });
    println!("{out}");
    Ok(())
}
