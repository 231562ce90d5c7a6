//! `flowlog` command line: argument parsing, logging, signals. Everything
//! else lives in the library.

use anyhow::Context as _;
use clap::Parser as _;
use flowlog_agent::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

/// Installs the SIGINT/SIGTERM handlers now (not when the returned future
/// is first polled: a signal arriving before that would kill the process
/// with nothing published); the future resolves on either signal. Needs
/// the runtime entered.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()));
    async move {
        match handlers {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line; no backtrace for operator errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    if let Command::QueryWorker = cli.command {
        // No multi-threaded runtime: the worker's address space is limited.
        let code = flowlog_agent::store::query::isolated::worker_main();
        std::process::exit(code);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let _runtime = rt.enter();
    match cli.command {
        Command::Agent(args) => {
            let config = args.into_config(cli.conn.socket.clone())?;
            rt.block_on(flowlog_agent::run(config, shutdown_signal()))?;
        }
        Command::Control(cmd) => rt.block_on(flowlog_agent::cli::run(&cli.conn, &cmd))?,
        Command::Collect(a) => {
            rt.block_on(flowlog_agent::collect::run(a.into_settings(), shutdown_signal()))?;
        }
        Command::Console(args) => {
            let settings = args.into_settings(cli.conn.socket.clone())?;
            rt.block_on(async {
                let console = flowlog_agent::console::serve(settings).await?;
                println!("console: http://{}/", console.addr);
                shutdown_signal().await;
                console.shutdown().await;
                anyhow::Ok(())
            })?;
        }
        Command::QueryWorker => {}
        Command::Compact {
            data_dir,
            grace_secs,
            min_files,
        } => {
            let now = flowlog_agent::state::now_secs();
            let done =
                flowlog_agent::store::compact::compact_data_dir(&data_dir, now, grace_secs, min_files)?;
            println!(
                "compacted {} partitions: {} files merged ({} records), {} leftovers removed",
                done.partitions, done.files_merged, done.records, done.leftovers_removed
            );
        }
        Command::Unpin { pin_dir } => {
            let done = flowlog_agent::capture::unpin::unpin(&pin_dir)?;
            if done == Default::default() {
                println!("nothing pinned at {}", pin_dir.display());
            } else {
                println!(
                    "unpinned {}: {} links detached, {} maps freed in {} namespaces",
                    pin_dir.display(),
                    done.links,
                    done.maps,
                    done.namespaces
                );
            }
        }
    }
    Ok(())
}
