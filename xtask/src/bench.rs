//! `cargo xtask bench`: runs the benchmark programs in release mode, prints
//! their figures next to the targets, and saves them as JSON.

use anyhow::Context as _;
use serde_json::Value;

use crate::{cargo, setup, workspace_root};

/// Runs `cargo bench --bench <name> -- <args>` and parses the last stdout
/// line as JSON.
fn bench_json(name: &str, args: &[String]) -> anyhow::Result<Value> {
    let out = cargo()
        .args(["bench", "--package", "flowlog-agent", "--bench", name, "--"])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running bench {name}"))?;
    anyhow::ensure!(out.status.success(), "bench {name} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("bench printed no JSON")?;
    Ok(serde_json::from_str(line)?)
}

fn row(metric: &str, value: String, target: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    };
    println!("| {metric:<44} | {value:>14} | {target:<12} | {verdict:<6} |");
}

pub fn run(records: u64) -> anyhow::Result<()> {
    setup::ensure()?;
    let root = workspace_root();
    let logstore = bench_json("logstore", &["--records".into(), records.to_string()])?;
    let l = &logstore["logstore"];
    let f = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "| {:<44} | {:>14} | {:<12} | {:<6} |",
        "metric", "value", "target", ""
    );
    println!(
        "|{}|{}|{}|{}|",
        "-".repeat(46),
        "-".repeat(16),
        "-".repeat(14),
        "-".repeat(8)
    );
    row(
        "Logstore write rate (records/s)",
        format!("{:.0}", f("write_records_per_s")),
        ">= 1000000",
        Some(f("write_records_per_s") >= 1e6),
    );
    row(
        &format!("Logstore on-disk bytes per record ({} records)", l["records"]),
        format!("{:.1}", f("bytes_per_record")),
        "<= 20",
        Some(f("bytes_per_record") <= 20.0),
    );
    row(
        &format!("top-10 srcaddr by bytes over {} records (s)", l["records"]),
        format!("{:.3}", f("top10_query_seconds")),
        "<= 1",
        Some(f("top10_query_seconds") <= 1.0),
    );
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let all = serde_json::json!({ "logstore": l });
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&all)?)?;
    println!("\nsaved {}", path.display());
    Ok(())
}
