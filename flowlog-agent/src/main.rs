//! `flowlog` command line: argument parsing, logging, signals. Everything
//! else lives in the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use flowlog_agent::{
    cli,
    config::{ApiFile, Attachment, CaptureMode, Config, FileConfig, MetricsFile},
    publish::sinks::file::Output,
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "flowlog",
    version,
    about = "Kernel-assisted flow logs for Linux routers"
)]
struct Cli {
    #[command(flatten)]
    conn: cli::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the capture agent (needs root: it loads eBPF programs).
    Agent(Box<AgentArgs>),
    /// Detach every hook a stopped agent left counting, and free its maps
    /// (all pinned state under the pin directory). Stop the agent first.
    Unpin {
        /// The agent's pin directory.
        #[arg(long, default_value = flowlog_agent::config::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Central collector: ingest the agents' JetStream stream into the
    /// Logstores of a data directory (run several to share the work).
    Collect(CollectArgs),
    /// Merge each past hour's small Logstore files into one file (the agent
    /// does this every 10 minutes; run it on a collector's data directory).
    Compact {
        #[arg(long)]
        data_dir: PathBuf,
        /// Leave partitions alone until this long after their hour ended.
        #[arg(long, default_value_t = flowlog_agent::store::compact::GRACE_SECS)]
        grace_secs: i64,
        /// Merge a partition once it holds this many files.
        #[arg(long, default_value_t = 2)]
        min_files: usize,
    },
    /// Runs one query given on stdin (the agent starts it for each GetLogs
    /// call, in a process of its own).
    #[command(hide = true)]
    QueryWorker,
    #[command(flatten)]
    Control(cli::Command),
}

#[derive(Args)]
struct CollectArgs {
    /// NATS server URL (repeatable).
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    #[arg(long, default_value = flowlog_agent::publish::sinks::jetstream::DEFAULT_JETSTREAM_STREAM)]
    stream: String,
    /// Durable consumer name; collectors with the same name share the work.
    #[arg(long, default_value = "flowlog-collect")]
    consumer: String,
    /// Central data directory; Logstores go under <data-dir>/logstores.
    #[arg(long)]
    data_dir: PathBuf,
    /// Authentication: a token, a file holding a user NKey seed, or a
    /// credentials (JWT + NKey) file; one of them.
    #[arg(long, env = "FLOWLOG_NATS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long)]
    nkey_seed: Option<PathBuf>,
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// CA certificate (PEM) of the servers; requires TLS.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Messages fetched at once.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds before an unacknowledged message is delivered again.
    #[arg(long, default_value_t = 30)]
    ack_wait_secs: u64,
    /// Exit once the stream has nothing left for this consumer.
    #[arg(long)]
    exit_when_idle: bool,
    /// Serve Prometheus metrics (GET /metrics) on this address.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Every option of the configuration file, as flags; flags win over the file.
#[derive(Args)]
struct AgentArgs {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Interface to capture on (repeatable); added to the file's attachments.
    #[arg(long = "interface", short = 'i', value_name = "IFACE")]
    interfaces: Vec<String>,
    /// Network namespace (an `ip netns` name) of the --interface flags.
    #[arg(long)]
    netns: Option<String>,
    /// Capture mode of the --interface flags: auto, xdp or tc.
    #[arg(long, default_value = "auto")]
    mode: CaptureMode,
    /// Capture window length in seconds (600 and 60 are standard; ≥ 1).
    #[arg(long)]
    window_secs: Option<u64>,
    #[arg(long)]
    account_id: Option<String>,
    #[arg(long)]
    cen_id: Option<String>,
    #[arg(long)]
    flow_log_id: Option<String>,
    /// Project the configured flow log writes to (created if missing).
    #[arg(long)]
    project: Option<String>,
    /// Logstore the configured flow log writes to (created if missing).
    #[arg(long)]
    logstore: Option<String>,
    /// Fields the configured flow log keeps: `${srcaddr}${dstaddr}${bytes}…`
    /// (LogFormatString; default all).
    #[arg(long)]
    log_format: Option<String>,
    /// IPv4 flow-map entries (both window generations share them).
    #[arg(long)]
    flow_map_entries: Option<u32>,
    /// IPv6 flow-map entries (default: a quarter of the IPv4 ones, at least 1024).
    #[arg(long)]
    flow_map_entries_ipv6: Option<u32>,
    /// Overflow ring size in bytes (power of two, ≥ 4096).
    #[arg(long)]
    overflow_ring_bytes: Option<u32>,
    /// Do not sample TCP handshakes (no `rtt` on records).
    #[arg(long)]
    no_rtt: bool,
    /// Where to pin kernel state (bpffs) so counting survives restarts.
    #[arg(long)]
    pin_dir: Option<PathBuf>,
    /// Do not pin: hooks detach when the agent stops.
    #[arg(long)]
    no_pin: bool,
    /// Records kept in memory while the Logstore cannot be written.
    #[arg(long)]
    logstore_buffer_records: Option<u64>,
    /// Also publish every window to this NATS JetStream server (repeatable
    /// for a cluster; the file's [jetstream] section has every setting).
    #[arg(long = "jetstream-server")]
    jetstream_servers: Vec<String>,
    /// Bound of the on-disk queue of windows JetStream has not acknowledged.
    #[arg(long)]
    jetstream_queue_bytes: Option<u64>,
    /// Directory for state, status and the API socket.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print records as JSON lines on stdout (the default when no other
    /// output is given).
    #[arg(long)]
    stdout: bool,
    /// Append records as JSON lines to this file.
    #[arg(long)]
    json_file: Option<PathBuf>,
    /// Append records as length-delimited protobuf to this file.
    #[arg(long)]
    protobuf_file: Option<PathBuf>,
    /// Append records as flow-log text lines (the VPC flow-log layout).
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// What --stdout prints: json or text (flow-log text lines).
    #[arg(long, value_enum)]
    stdout_format: Option<flowlog_agent::publish::sinks::file::LineFormat>,
    /// Also serve the API on this TCP address (signed requests only).
    #[arg(long)]
    api_listen: Option<std::net::SocketAddr>,
    /// Allow --api-listen beyond loopback.
    #[arg(long)]
    allow_remote_api: bool,
    /// Seconds one GetLogs query may take in all (default 60).
    #[arg(long)]
    query_timeout_secs: Option<u64>,
    /// PEM certificate chain of the TCP API (with --api-tls-key: TLS).
    #[arg(long)]
    api_tls_cert: Option<PathBuf>,
    #[arg(long)]
    api_tls_key: Option<PathBuf>,
    /// Serve plain HTTP beyond loopback (secrets cross the network in clear).
    #[arg(long)]
    api_allow_plain_http: bool,
    /// Serve Prometheus metrics on this address (loopback unless the file
    /// sets metrics.allow-remote).
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

impl AgentArgs {
    /// `socket`: the global `--socket` flag, which names the API socket
    /// for the agent as it does for the control commands.
    fn into_config(self, socket: Option<PathBuf>) -> anyhow::Result<Config> {
        let mut file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        if socket.is_some() {
            file.api.get_or_insert_with(ApiFile::default).socket = socket;
        }
        for interface in self.interfaces {
            file.attachments.push(Attachment {
                interface,
                netns: self.netns.clone(),
                mode: self.mode,
                ..Default::default()
            });
        }
        macro_rules! overlay {
            ($($f:ident),*) => { $( if self.$f.is_some() { file.$f = self.$f; } )* };
        }
        overlay!(
            project,
            logstore,
            window_secs,
            account_id,
            cen_id,
            flow_log_id,
            flow_map_entries,
            flow_map_entries_ipv6,
            overflow_ring_bytes,
            data_dir,
            pin_dir,
            logstore_buffer_records,
            log_format
        );
        {
            let api = file.api.get_or_insert_with(ApiFile::default);
            if self.api_listen.is_some() {
                api.listen = self.api_listen;
            }
            api.allow_remote |= self.allow_remote_api;
            api.allow_plain_http |= self.api_allow_plain_http;
            if self.query_timeout_secs.is_some() {
                api.query_timeout_secs = self.query_timeout_secs;
            }
            if self.api_tls_cert.is_some() {
                api.tls_cert = self.api_tls_cert;
            }
            if self.api_tls_key.is_some() {
                api.tls_key = self.api_tls_key;
            }
        }
        if !self.jetstream_servers.is_empty() || self.jetstream_queue_bytes.is_some() {
            let js = file.jetstream.get_or_insert_with(Default::default);
            if !self.jetstream_servers.is_empty() {
                js.servers = self.jetstream_servers;
            }
            if self.jetstream_queue_bytes.is_some() {
                js.queue_bytes = self.jetstream_queue_bytes;
            }
        }
        if self.metrics_listen.is_some() {
            file.metrics.get_or_insert_with(MetricsFile::default).listen = self.metrics_listen;
        }
        if self.no_rtt {
            file.rtt = Some(false);
        }
        if self.no_pin {
            file.pin = Some(false);
        }
        if self.stdout
            || self.json_file.is_some()
            || self.protobuf_file.is_some()
            || self.text_file.is_some()
            || self.stdout_format.is_some()
        {
            let out = file.output.get_or_insert_with(Output::default);
            out.stdout |= self.stdout || self.stdout_format.is_some();
            if let Some(f) = self.stdout_format {
                out.stdout_format = f;
            }
            if self.text_file.is_some() {
                out.text_file = self.text_file;
            }
            if self.json_file.is_some() {
                out.json_file = self.json_file;
            }
            if self.protobuf_file.is_some() {
                out.protobuf_file = self.protobuf_file;
            }
        }
        let mut config = Config::validate(file)?;
        config.file = self.config;
        Ok(config)
    }
}

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
        Command::Control(cmd) => rt.block_on(cli::run(&cli.conn, &cmd))?,
        Command::Collect(a) => {
            let settings = flowlog_agent::collect::CollectSettings {
                servers: a.servers,
                stream: a.stream,
                consumer: a.consumer,
                data_dir: a.data_dir,
                auth: flowlog_agent::publish::sinks::jetstream::auth::NatsAuth {
                    token: a.token,
                    nkey_seed: a.nkey_seed,
                    credentials: a.credentials,
                    tls_ca: a.tls_ca,
                },
                batch: a.batch.clamp(1, 10_000),
                ack_wait: std::time::Duration::from_secs(a.ack_wait_secs.max(1)),
                exit_when_idle: a.exit_when_idle,
                metrics_listen: a.metrics_listen,
            };
            rt.block_on(flowlog_agent::collect::run(settings, shutdown_signal()))?;
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
