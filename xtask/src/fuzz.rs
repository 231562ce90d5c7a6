//! `cargo xtask fuzz`: runs each fuzz target in `tests/fuzz` with cargo-fuzz
//! (libFuzzer, nightly) for a bounded time, starting from the committed
//! corpus. New corpus entries stay in `target/fuzz-corpus/`; inputs that
//! crash a target are copied into `tests/fuzz/regressions/<target>/`, which
//! the regression test replays in every `cargo xtask test` — commit them
//! with the fix.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::{cargo, run, workspace_root};

/// `cargo` of the nightly toolchain (cargo-fuzz needs it), whatever
/// toolchain runs xtask.
fn nightly_cargo() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo"]);
    c
}

pub const TARGETS: &[&str] = &[
    "api_request",
    "config_file",
    "state_files",
    "ring_events",
    "sql_params",
];

/// cargo-fuzz release line (installed with `cargo install` when missing).
const CARGO_FUZZ_VERSION: &str = "^0.13";

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let present = nightly_cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run(cargo().args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

pub fn run_all(secs: u64, only: &[String]) -> anyhow::Result<()> {
    crate::setup::ensure()?;
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz_dir = root.join("tests/fuzz");
    let targets: Vec<&str> = if only.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in only {
            if !TARGETS.contains(&t.as_str()) {
                bail!("unknown fuzz target {t}; targets: {}", TARGETS.join(", "));
            }
        }
        only.iter().map(String::as_str).collect()
    };
    let mut crashed = Vec::new();
    for target in &targets {
        // Work on a copy so the committed corpus only grows by hand.
        let work = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&work)?;
        copy_dir(&fuzz_dir.join("corpus").join(target), &work)?;
        // Fresh each run: what is found now is what gets reported.
        let artifacts = root.join("target/fuzz-artifacts").join(target);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts)?;
        eprintln!("fuzz: {target} for {secs} s");
        let status = nightly_cargo()
            .args(["fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            // Safe Rust: coverage and debug assertions find the bugs here;
            // AddressSanitizer would only slow the search down.
            .args(["--sanitizer", "none", "--debug-assertions", target])
            .arg(&work)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .args(["-timeout=20", "-rss_limit_mb=4096", "-max_len=8192"])
            .status()
            .with_context(|| format!("running cargo fuzz for {target}"))?;
        let regressions = fuzz_dir.join("regressions").join(target);
        let found = copy_findings(&artifacts, &regressions)?;
        if !status.success() || found > 0 {
            crashed.push(format!("{target} ({found} inputs in {})", regressions.display()));
        }
        let corpus = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
        eprintln!("fuzz: {target} done, corpus {corpus} inputs");
    }
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join("; "));
    }
    eprintln!(
        "fuzz: {} targets ran {secs} s each without a crash",
        targets.len()
    );
    Ok(())
}

/// Copies the files of `from` into `to`; returns how many were new.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<usize> {
    copy_matching(from, to, |_| true)
}

/// Copies what libFuzzer saved as a failure (a crash, a timeout, running
/// out of memory; not its `slow-unit-*` notes) into `to`.
fn copy_findings(from: &Path, to: &Path) -> anyhow::Result<usize> {
    copy_matching(from, to, |name| {
        ["crash-", "timeout-", "oom-", "leak-"]
            .iter()
            .any(|p| name.starts_with(p))
    })
}

fn copy_matching(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in entries.flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_file() && keep(&e.file_name().to_string_lossy()) && !dest.exists() {
            std::fs::create_dir_all(to)?;
            std::fs::copy(e.path(), &dest)?;
            n += 1;
        }
    }
    Ok(n)
}
