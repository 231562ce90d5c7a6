//! IPFIX export (RFC 7011) to the collectors operators already run
//! (nfdump, pmacct, ntopng, SIEMs): one sink per collector, one data
//! record per flow-log record.
//!
//! - **Templates** ([`encode`]): one per record shape — IPv4 flow, IPv6
//!   flow, SKIPDATA, NODATA — and flow log's LogFormatString, using IANA's
//!   elements where one exists and our own, under a configurable Private
//!   Enterprise Number, for the rest ([`elements`]; docs/ipfix.md).
//! - **SKIPDATA and NODATA** go out as data records with `flowlogLogStatus`
//!   set, under templates without the five-tuple: the product's records
//!   reach an IPFIX user as they are, and a collector's totals over all
//!   records equal SQL's over the Logstore.
//! - **UDP** (the default): templates go first, then again every
//!   `template-refresh-secs` or `template-refresh-messages`, whichever
//!   comes first (§8.4), so a restarted collector has them again within
//!   the interval. Delivery is not acknowledged; failed sends are counted.
//! - **TCP**: templates once per connection, before the first data
//!   referring to them. While the collector is away windows are kept, up
//!   to `queue-records` (the oldest beyond it dropped and counted), and
//!   sent in order when it is back. A window in flight when a connection
//!   broke is sent again whole.
//! - **Replays** after a restart are skipped when this collector's mark
//!   says it has the window (see [`crate::journal::marks`]).

mod config;
pub mod elements;
pub mod encode;
mod transport;

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

pub use config::{Collector, DEFAULT_ENTERPRISE_NUMBER, IPFIX_PORT, Ipfix, IpfixOptions, Transport};
use tracing::{info, warn};

use self::{encode::Encoder, transport::Connection};
use super::super::{Sink, Taken};
use crate::{
    engine::WindowRecords,
    journal::marks::{Mark, Marks, Plan, plan},
    telemetry::{SinkLabels, Telemetry, gauge_value},
    window::WindowData,
};

/// A sink per collector `settings` names.
pub fn open(settings: &Ipfix, marks: &Marks, telemetry: &Telemetry) -> Vec<Box<dyn Sink>> {
    settings
        .collectors
        .iter()
        .map(|c| Box::new(IpfixSink::new(c.clone(), settings, marks, telemetry)) as Box<dyn Sink>)
        .collect()
}

/// A window waiting for a TCP collector.
struct Kept {
    seq: Option<u64>,
    replay: bool,
    data: Arc<WindowData>,
}

pub struct IpfixSink {
    name: String,
    labels: SinkLabels,
    collector: Collector,
    encoder: Encoder,
    connection: Option<Connection>,
    /// Templates the collector has on this connection (TCP) or since the
    /// last refresh (UDP).
    sent: HashSet<u16>,
    last_refresh: Instant,
    messages_since_refresh: u64,
    refresh: std::time::Duration,
    refresh_messages: u64,
    kept: VecDeque<Kept>,
    kept_records: usize,
    queue_records: usize,
    marks: Marks,
    mark: Option<Mark>,
    telemetry: Telemetry,
}

/// Seconds since the epoch, as the message header carries them.
fn export_secs() -> u32 {
    u32::try_from(crate::state::now_secs().max(0)).unwrap_or(u32::MAX)
}

impl IpfixSink {
    pub fn new(collector: Collector, settings: &Ipfix, marks: &Marks, telemetry: &Telemetry) -> Self {
        let name = format!("ipfix:{collector}");
        telemetry.ipfix().add_collector(&SinkLabels::of(&name));
        Self {
            labels: SinkLabels::of(&name),
            mark: marks.load(&name),
            name,
            collector,
            encoder: Encoder::new(
                settings.observation_domain_id,
                settings.enterprise_number,
                settings.mtu,
            ),
            connection: None,
            sent: HashSet::new(),
            last_refresh: Instant::now(),
            messages_since_refresh: 0,
            refresh: settings.template_refresh,
            refresh_messages: settings.template_refresh_messages,
            kept: VecDeque::new(),
            kept_records: 0,
            queue_records: settings.queue_records,
            marks: marks.clone(),
            telemetry: telemetry.clone(),
        }
    }

    fn tcp(&self) -> bool {
        self.collector.transport == Transport::Tcp
    }

    /// A working connection, opened (and its session begun) if needed.
    fn connection(&mut self) -> std::io::Result<&mut Connection> {
        if self.connection.as_ref().is_some_and(|c| !c.alive()) {
            warn!(sink = %self.name, "the collector closed the connection");
            self.disconnect();
        }
        if self.connection.is_none() {
            let c = Connection::open(&self.collector)?;
            if self.tcp() {
                info!(sink = %self.name, "connected");
                self.encoder.new_session();
            }
            self.sent.clear();
            self.connection = Some(c);
            self.set_connected(true);
        }
        self.connection
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    fn disconnect(&mut self) {
        self.connection = None;
        self.sent.clear();
        self.set_connected(false);
    }

    fn set_connected(&self, up: bool) {
        self.telemetry
            .ipfix()
            .connected
            .get_or_create(&self.labels)
            .set(i64::from(up));
    }

    /// Sends one window: the templates the collector lacks, then its data.
    fn send(&mut self, data: &WindowData) -> std::io::Result<u64> {
        // Connected first: a new TCP session restarts the sequence numbers
        // and needs every template again.
        self.connection()?;
        if !self.tcp()
            && (self.last_refresh.elapsed() >= self.refresh
                || self.messages_since_refresh >= self.refresh_messages)
        {
            self.sent.clear();
        }
        let now = export_secs();
        let mut used = Vec::new();
        let encoded = self.encoder.window(data, now, &mut used);
        let refresh = self.sent.is_empty() && !self.tcp();
        let missing: Vec<u16> = if refresh {
            // A refresh sends every template there is.
            self.encoder.templates().iter().map(|t| t.id).collect()
        } else {
            used.into_iter().filter(|id| !self.sent.contains(id)).collect()
        };
        let templates = self
            .encoder
            .template_messages(&missing, now, encoded.first_sequence);
        let conn = self
            .connection
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))?;
        for m in templates.iter().chain(&encoded.messages) {
            conn.send(m)?;
        }
        if refresh {
            self.last_refresh = Instant::now();
            self.messages_since_refresh = 0;
        }
        self.sent.extend(missing.iter().copied());
        let ipfix = self.telemetry.ipfix();
        ipfix
            .templates_sent
            .get_or_create(&self.labels)
            .inc_by(missing.len() as u64);
        let messages = (templates.len() + encoded.messages.len()) as u64;
        self.messages_since_refresh += messages;
        ipfix.messages_sent.get_or_create(&self.labels).inc_by(messages);
        Ok(encoded.records)
    }

    /// Sends a window once: `Ok(false)` when the collector already has it
    /// (a replay the mark says went out whole).
    fn send_marked(&mut self, seq: Option<u64>, replay: bool, data: &WindowData) -> std::io::Result<bool> {
        let Some(seq) = seq else {
            self.send(data)?;
            return Ok(true);
        };
        if plan(self.mark.as_ref(), seq, replay, None) == Plan::Skip {
            info!(sink = %self.name, window = seq, "the collector already has this window");
            return Ok(false);
        }
        let mut m = Mark {
            seq,
            offset: None,
            file: None,
            complete: false,
        };
        self.save(&m);
        self.send(data)?;
        m.complete = true;
        self.save(&m);
        self.mark = Some(m);
        Ok(true)
    }

    fn save(&self, m: &Mark) {
        if let Err(e) = self.marks.save(&self.name, m) {
            warn!(sink = %self.name, error = %e, "cannot save the sink's mark");
        }
    }

    /// Counts a sent window, or a failed one.
    fn count(&mut self, records: u64, result: &std::io::Result<bool>) {
        let sinks = self.telemetry.sinks();
        match result {
            Ok(_) => {
                sinks.records_by_sink.get_or_create(&self.labels).inc_by(records);
            }
            Err(e) => {
                warn!(sink = %self.name, error = %e, "cannot send to the collector");
                self.telemetry
                    .ipfix()
                    .send_errors
                    .get_or_create(&self.labels)
                    .inc();
                sinks.errors_by_sink.get_or_create(&self.labels).inc();
                self.disconnect();
            }
        }
    }

    /// Keeps a window for later, dropping the oldest beyond the bound;
    /// returns the journal numbers of those dropped.
    fn keep(&mut self, k: Kept) -> Vec<u64> {
        self.kept_records += k.data.len();
        self.kept.push_back(k);
        let mut dropped = Vec::new();
        while self.kept_records > self.queue_records && self.kept.len() > 1 {
            let Some(old) = self.kept.pop_front() else { break };
            self.kept_records -= old.data.len();
            let n = old.data.len() as u64;
            warn!(sink = %self.name, records = n, "the collector is away too long; the oldest window is dropped");
            self.telemetry
                .sinks()
                .dropped_by_sink
                .get_or_create(&self.labels)
                .inc_by(n);
            dropped.extend(old.seq);
        }
        self.report_kept();
        dropped
    }

    fn report_kept(&self) {
        self.telemetry
            .ipfix()
            .queued_records
            .get_or_create(&self.labels)
            .set(gauge_value(self.kept_records as u64));
    }
}

impl Sink for IpfixSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn take(&mut self, w: &WindowRecords) -> Taken {
        let k = Kept {
            seq: w.seq,
            replay: w.replay,
            data: w.data.clone(),
        };
        if self.tcp() {
            // Windows go out in order: behind any already waiting.
            let mut dropped = self.keep(k);
            let mut t = self.retry();
            t.resolved.append(&mut dropped);
            return t;
        }
        let records = k.data.len() as u64;
        let result = self.send_marked(k.seq, k.replay, &k.data);
        self.count(records, &result);
        if result.is_err() {
            self.telemetry
                .sinks()
                .dropped_by_sink
                .get_or_create(&self.labels)
                .inc_by(records);
        }
        Taken {
            resolved: k.seq.into_iter().collect(),
            failed: result.is_err(),
        }
    }

    fn kept(&self) -> usize {
        self.kept.len()
    }

    fn retry(&mut self) -> Taken {
        let mut resolved = Vec::new();
        while let Some(k) = self.kept.pop_front() {
            let records = k.data.len() as u64;
            let result = self.send_marked(k.seq, k.replay, &k.data);
            self.count(records, &result);
            if result.is_err() {
                self.kept.push_front(k);
                break;
            }
            self.kept_records -= k.data.len();
            resolved.extend(k.seq);
        }
        self.report_kept();
        Taken {
            resolved,
            failed: false,
        }
    }
}

#[cfg(test)]
mod tests;
