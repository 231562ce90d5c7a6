//! The `flowlog` command line, all of it, in the library so that tests,
//! man pages and completions see the same definitions the binary parses:
//! the agent ([`crate::config::AgentArgs`]), the collector, the maintenance
//! commands and the control commands ([`control`]), with `query` and
//! `analyze` ([`logstore`]) and what they print ([`print`]).

pub mod control;
pub mod logstore;
pub mod print;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

pub use self::control::{Connection, ControlCommand, run};
use crate::{
    collect::CollectSettings,
    config::{AgentArgs, DEFAULT_PIN_DIR},
    publish::sinks::jetstream::{DEFAULT_JETSTREAM_STREAM, auth::NatsAuth},
};

#[derive(Parser)]
#[command(
    name = "flowlog",
    version,
    about = "Kernel-assisted flow logs for Linux routers"
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the capture agent (needs root: it loads eBPF programs).
    Agent(Box<AgentArgs>),
    /// Detach every hook a stopped agent left counting, and free its maps
    /// (all pinned state under the pin directory). Stop the agent first.
    Unpin {
        /// The agent's pin directory.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
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
        #[arg(long, default_value_t = crate::store::compact::GRACE_SECS)]
        grace_secs: i64,
        /// Merge a partition once it holds this many files.
        #[arg(long, default_value_t = 2)]
        min_files: usize,
    },
    /// Serve the web console over a data directory (the agent's or a
    /// collector's): charts and tables of its Logstores, and the flow-log
    /// lifecycle through the agent's API (--socket).
    Console(ConsoleArgs),
    /// Runs one query given on stdin (the agent starts it for each GetLogs
    /// call, in a process of its own).
    #[command(hide = true)]
    QueryWorker,
    #[command(flatten)]
    Control(ControlCommand),
}

#[derive(Args)]
pub struct ConsoleArgs {
    /// The data directory whose Logstores the console shows.
    #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Seconds one chart's query may take.
    #[arg(long, default_value_t = crate::config::DEFAULT_QUERY_TIMEOUT_SECS)]
    pub query_timeout_secs: u64,
    #[command(flatten)]
    pub options: crate::console::ConsoleOptions,
}

impl ConsoleArgs {
    /// The console's settings; `socket` is the global `--socket`.
    pub fn into_settings(self, socket: Option<PathBuf>) -> anyhow::Result<crate::console::ConsoleSettings> {
        let mut options = self.options;
        if options.listen.is_none() {
            options.listen = Some(crate::console::DEFAULT_LISTEN.parse()?);
        }
        let listen = options
            .validate()
            .map_err(anyhow::Error::msg)?
            .ok_or_else(|| anyhow::anyhow!("no console address"))?;
        if !(1..=3600).contains(&self.query_timeout_secs) {
            anyhow::bail!(
                "--query-timeout-secs must be between 1 and 3600, got {}",
                self.query_timeout_secs
            );
        }
        Ok(crate::console::ConsoleSettings {
            listen,
            agent_socket: socket.unwrap_or_else(|| self.data_dir.join(crate::config::API_SOCKET)),
            data_dir: self.data_dir,
            query_timeout: Duration::from_secs(self.query_timeout_secs),
        })
    }
}

#[derive(Args)]
pub struct CollectArgs {
    /// NATS server URL (repeatable).
    #[arg(long = "server", required = true)]
    servers: Vec<String>,
    #[arg(long, default_value = DEFAULT_JETSTREAM_STREAM)]
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
    metrics_listen: Option<SocketAddr>,
}

impl CollectArgs {
    pub fn into_settings(self) -> CollectSettings {
        CollectSettings {
            servers: self.servers,
            stream: self.stream,
            consumer: self.consumer,
            data_dir: self.data_dir,
            auth: NatsAuth {
                token: self.token,
                nkey_seed: self.nkey_seed,
                credentials: self.credentials,
                tls_ca: self.tls_ca,
            },
            batch: self.batch.clamp(1, 10_000),
            ack_wait: Duration::from_secs(self.ack_wait_secs.max(1)),
            exit_when_idle: self.exit_when_idle,
            metrics_listen: self.metrics_listen,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap's own checks of the whole command line (unique names, valid
    /// defaults), which otherwise run only when a debug build parses.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
