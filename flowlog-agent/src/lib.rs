//! flowlog agent: kernel-assisted flow logs for Linux routers.
//!
//! # Layout
//!
//! The modules follow the data flow:
//!
//! - [`config`]: the validated [`Config`](config::Config) (file + flags).
//! - [`capture`]: load and attach the eBPF programs per network namespace,
//!   drain the flow maps at each window boundary (generation flip, program
//!   barrier, batch read), read the overflow ring.
//! - [`window`]: pure aggregation of one window and wall-clock alignment;
//!   turns drained flows into records, including NODATA and SKIPDATA.
//! - [`rtt`]: pure matching of TCP handshake samples into round-trip times.
//! - [`journal`]: drained counts and windows in flight, on disk, so that
//!   nothing drained is lost or counted twice whenever the agent dies.
//! - [`durable`]: the one atomic, fsynced file replacement.
//! - [`enrich`]: the CIDR → region table records are labelled with.
//! - [`record`]: the protobuf record type (from `proto/flowlog.proto`) and
//!   its builders.
//! - [`publish`]: sinks records go to (JSON or text lines on stdout or in
//!   files, a protobuf file, the Logstore, NATS JetStream).
//! - [`store`]: the embedded Logstores (Parquet), retention, SQL queries.
//! - [`metrics`]: Prometheus text exposition of the counters.
//! - [`status`]: attachments and running totals, in `status.json`.
//! - [`engine`]: active flow logs on shared interfaces; window cuts.
//! - [`state`]: persisted Projects, Logstores, flow logs, access keys.
//! - [`control`]: the control actions applied to state and engine.
//! - [`api`]: HTTP+JSON control API (Unix socket, signed TCP) and client.
//! - [`console`]: the web console (charts and tables over the Logstores,
//!   the flow-log lifecycle) that `flowlog console` and the agent serve.
//! - [`cli`]: the `flowlog` control subcommands.
//! - [`pipeline`]: wires the stages; [`run`] is the entry point.

pub mod api;
pub mod capture;
pub mod cli;
pub mod collect;
pub mod config;
pub mod console;
pub mod control;
pub mod durable;
pub mod engine;
pub mod enrich;
pub mod journal;
pub mod model;
pub mod pipeline;
pub mod publish;
pub mod record;
pub mod rtt;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod window;

pub use pipeline::{RunError, run};
