//! Prometheus metrics: the figures the status file holds, plus per-interface
//! traffic and a drain-duration histogram, in the text exposition format,
//! served on their own (optional, loopback by default) listener.

use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr, time::Duration};

use axum::{Router, http::header, routing::get};
use tracing::{info, warn};

use crate::status::{Status, StatusBoard, Totals};

/// Upper bounds (seconds) of the drain-duration histogram buckets.
const DRAIN_BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counters that are not part of status.json.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Packets and bytes counted per (netns, interface, direction).
    pub seen: BTreeMap<(String, String, &'static str), Totals>,
    /// Flows read at the last drain and map capacity, per netns.
    pub map_fill: BTreeMap<(String, &'static str), (u64, u64)>,
    drain_buckets: [u64; DRAIN_BUCKETS.len()],
    drain_count: u64,
    drain_sum: f64,
    /// Records published and failed windows, per sink.
    pub records_by_sink: BTreeMap<String, u64>,
    pub errors_by_sink: BTreeMap<String, u64>,
    /// Records a sink lost: a file sink's failed window (taken back whole),
    /// the Logstore's windows dropped over the backlog bound.
    pub dropped_by_sink: BTreeMap<String, u64>,
}

impl Metrics {
    pub fn observe_drain(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, le) in self.drain_buckets.iter_mut().zip(DRAIN_BUCKETS) {
            if s <= le {
                *b += 1;
            }
        }
        self.drain_count += 1;
        self.drain_sum += s;
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends one metric family: HELP, TYPE and its samples (labels, value).
pub fn push(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Renders everything as Prometheus text exposition (version 0.0.4).
pub fn render(s: &Status, m: &Metrics) -> String {
    let mut out = String::new();
    let seen = |f: fn(&Totals) -> u64| -> Vec<(String, String)> {
        m.seen
            .iter()
            .map(|((ns, iface, dir), t)| {
                (
                    format!(
                        "netns=\"{}\",interface=\"{}\",direction=\"{dir}\"",
                        escape(ns),
                        escape(iface)
                    ),
                    f(t).to_string(),
                )
            })
            .collect()
    };
    push(
        &mut out,
        "flowlog_packets_total",
        "counter",
        "Packets counted into flows, per attachment and direction.",
        &seen(|t| t.packets),
    );
    push(
        &mut out,
        "flowlog_bytes_total",
        "counter",
        "IP bytes counted into flows, per attachment and direction.",
        &seen(|t| t.bytes),
    );
    let one = |v: u64| vec![(String::new(), v.to_string())];
    push(
        &mut out,
        "flowlog_pinned",
        "gauge",
        "1 when kernel state is pinned (counting goes on while the agent is down), else 0.",
        &one(u64::from(s.pinned)),
    );
    push(
        &mut out,
        "flowlog_journal_cuts_written_total",
        "counter",
        "Cuts journaled before their counts left the kernel.",
        &one(s.journal_cuts_written),
    );
    push(
        &mut out,
        "flowlog_journal_write_errors_total",
        "counter",
        "Journal writes that failed (those counts lived only in memory until published).",
        &one(s.journal_write_errors),
    );
    push(
        &mut out,
        "flowlog_journal_cuts_lost_total",
        "counter",
        "Cuts a restart needed but could not read back.",
        &one(s.journal_cuts_lost),
    );
    push(
        &mut out,
        "flowlog_journal_sealed_windows",
        "gauge",
        "Windows ended but not yet confirmed by every sink.",
        &one(s.journal_sealed_windows),
    );
    push(
        &mut out,
        "flowlog_flows_last_window",
        "gauge",
        "Flows in the last window drained.",
        &one(s.flows_last_window),
    );
    let fill: Vec<(String, String)> = m
        .map_fill
        .iter()
        .map(|((ns, family), (flows, cap))| {
            let ratio = if *cap == 0 {
                0.0
            } else {
                *flows as f64 / *cap as f64
            };
            (
                format!("netns=\"{}\",family=\"{family}\"", escape(ns)),
                format!("{ratio}"),
            )
        })
        .collect();
    push(
        &mut out,
        "flowlog_flow_map_fill_ratio",
        "gauge",
        "Flows read at the last drain over the entries of their family's flow map (ipv4, ipv6).",
        &fill,
    );
    push(
        &mut out,
        "flowlog_overflow_events_total",
        "counter",
        "Packets that found the flow map full and went through the overflow ring.",
        &one(s.overflow_events),
    );
    push(
        &mut out,
        "flowlog_skipped_packets_total",
        "counter",
        "Packets counted into SKIPDATA records.",
        &one(s.skipped.packets),
    );
    push(
        &mut out,
        "flowlog_skipped_bytes_total",
        "counter",
        "Bytes counted into SKIPDATA records.",
        &one(s.skipped.bytes),
    );
    let malformed: Vec<(String, String)> = s
        .malformed
        .iter()
        .map(|(k, t)| {
            let mut parts = k.splitn(3, '/');
            let (iface, dir, reason) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            (
                format!(
                    "interface=\"{}\",direction=\"{}\",reason=\"{}\"",
                    escape(iface),
                    escape(dir),
                    escape(reason)
                ),
                t.packets.to_string(),
            )
        })
        .collect();
    push(
        &mut out,
        "flowlog_malformed_packets_total",
        "counter",
        "Packets not attributed to a flow, by reason.",
        &malformed,
    );
    let _ = writeln!(
        out,
        "# HELP flowlog_drain_duration_seconds Time to drain one namespace's maps at a window cut."
    );
    let _ = writeln!(out, "# TYPE flowlog_drain_duration_seconds histogram");
    for (le, n) in DRAIN_BUCKETS.iter().zip(m.drain_buckets) {
        let _ = writeln!(out, "flowlog_drain_duration_seconds_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "flowlog_drain_duration_seconds_bucket{{le=\"+Inf\"}} {}",
        m.drain_count
    );
    let _ = writeln!(out, "flowlog_drain_duration_seconds_sum {}", m.drain_sum);
    let _ = writeln!(out, "flowlog_drain_duration_seconds_count {}", m.drain_count);
    let by_sink = |v: &BTreeMap<String, u64>| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, n)| (format!("sink=\"{}\"", escape(k)), n.to_string()))
            .collect()
    };
    push(
        &mut out,
        "flowlog_records_published_total",
        "counter",
        "Records written, per sink.",
        &by_sink(&m.records_by_sink),
    );
    push(
        &mut out,
        "flowlog_publish_errors_total",
        "counter",
        "Failed writes of a window, per sink.",
        &by_sink(&m.errors_by_sink),
    );
    push(
        &mut out,
        "flowlog_records_dropped_total",
        "counter",
        "Records a sink lost: failed file-sink windows, Logstore windows over the backlog bound.",
        &by_sink(&m.dropped_by_sink),
    );
    push(
        &mut out,
        "flowlog_windows_published_total",
        "counter",
        "Windows published, all flow logs together.",
        &one(s.windows_published),
    );
    push(
        &mut out,
        "flowlog_logstore_pending_records",
        "gauge",
        "Records kept for retry because the Logstore could not take them (spool depth).",
        &one(s.logstore_pending_records),
    );
    push(
        &mut out,
        "flowlog_logstore_dropped_records_total",
        "counter",
        "Records dropped because the kept backlog hit its bound.",
        &one(s.logstore_dropped_records),
    );
    for (name, kind, help, v) in [
        (
            "flowlog_jetstream_published_records_total",
            "counter",
            "Records JetStream acknowledged.",
            s.jetstream_published_records,
        ),
        (
            "flowlog_jetstream_queued_records",
            "gauge",
            "Records in the on-disk queue, not yet acknowledged.",
            s.jetstream_queued_records,
        ),
        (
            "flowlog_jetstream_queued_bytes",
            "gauge",
            "Bytes of the on-disk queue.",
            s.jetstream_queued_bytes,
        ),
        (
            "flowlog_jetstream_dropped_records_total",
            "counter",
            "Records dropped: queue bound reached, queue unwritable or unreadable.",
            s.jetstream_dropped_records,
        ),
        (
            "flowlog_jetstream_errors_total",
            "counter",
            "Failed attempts to publish a window.",
            s.jetstream_errors,
        ),
    ] {
        push(&mut out, name, kind, help, &one(v));
    }
    push(
        &mut out,
        "flowlog_drain_errors_total",
        "counter",
        "Drains that failed.",
        &one(s.drain_errors),
    );
    out
}

/// Serves the agent's `GET /metrics` until `stop` fires.
pub async fn serve(
    addr: SocketAddr,
    board: StatusBoard,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    serve_text(
        addr,
        move || {
            let s = board.lock().clone();
            let m = board.metrics();
            render(&s, &m)
        },
        stop,
    )
    .await
}

/// Serves `GET /metrics` with what `render` says at each scrape, until
/// `stop` fires.
pub async fn serve_text(
    addr: SocketAddr,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %addr, "metrics listening");
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render()) }
        }),
    );
    Ok(tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
            warn!(error = %e, "metrics listener failed");
        }
    }))
}
