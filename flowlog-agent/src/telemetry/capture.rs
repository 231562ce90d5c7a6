//! Capture's figures: traffic per attachment, map fill, what did not make
//! it into a flow (overflow, SKIPDATA, malformed), drains, handshakes, and
//! the journal that keeps every cut's counts.

use std::{
    collections::BTreeSet,
    sync::{Mutex, PoisonError, atomic::AtomicU64},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::advance;

/// Upper bounds (seconds) of the drain-duration histogram buckets.
const DRAIN_BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub netns: String,
    pub interface: String,
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct MapLabels {
    pub netns: String,
    /// `ipv4` or `ipv6`: each family has its own map.
    pub family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct MalformedLabels {
    pub interface: String,
    pub direction: String,
    pub reason: String,
}

/// Packets and bytes not attributed to a flow, by reason, with the label
/// sets seen (a family cannot be listed, and status.json lists them).
#[derive(Debug, Default)]
pub struct Malformed {
    packets: Family<MalformedLabels, Counter>,
    bytes: Family<MalformedLabels, Counter>,
    seen: Mutex<BTreeSet<MalformedLabels>>,
}

impl Malformed {
    pub fn add(&self, labels: MalformedLabels, packets: u64, bytes: u64) {
        self.packets.get_or_create(&labels).inc_by(packets);
        self.bytes.get_or_create(&labels).inc_by(bytes);
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(labels);
    }

    /// (labels, packets, bytes) of every reason seen.
    pub fn totals(&self) -> Vec<(MalformedLabels, u64, u64)> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        seen.into_iter()
            .map(|l| {
                let p = self.packets.get_or_create(&l).get();
                let b = self.bytes.get_or_create(&l).get();
                (l, p, b)
            })
            .collect()
    }
}

#[derive(Debug)]
pub struct Capture {
    pub packets: Family<InterfaceLabels, Counter>,
    pub bytes: Family<InterfaceLabels, Counter>,
    pub map_fill: Family<MapLabels, Gauge<f64, AtomicU64>>,
    pub flows_last_window: Gauge,
    pub overflow_events: Counter,
    pub skipped_packets: Counter,
    pub skipped_bytes: Counter,
    pub malformed: Malformed,
    pub drain_duration: Histogram,
    pub drain_errors: Counter,
    pub rtt_measured: Counter,
    pub rtt_ambiguous: Counter,
    pub rtt_expired: Counter,
    pub pinned: Gauge,
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            packets: Family::default(),
            bytes: Family::default(),
            map_fill: Family::default(),
            flows_last_window: Gauge::default(),
            overflow_events: Counter::default(),
            skipped_packets: Counter::default(),
            skipped_bytes: Counter::default(),
            malformed: Malformed::default(),
            drain_duration: Histogram::new(DRAIN_BUCKETS),
            drain_errors: Counter::default(),
            rtt_measured: Counter::default(),
            rtt_ambiguous: Counter::default(),
            rtt_expired: Counter::default(),
            pinned: Gauge::default(),
        }
    }
}

impl Capture {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "packets",
            "Packets counted into flows, per attachment and direction",
            self.packets.clone(),
        );
        r.register(
            "bytes",
            "IP bytes counted into flows, per attachment and direction",
            self.bytes.clone(),
        );
        r.register(
            "flow_map_fill_ratio",
            "Flows read at the last drain over the entries of their family's flow map (ipv4, ipv6)",
            self.map_fill.clone(),
        );
        r.register(
            "flows_last_window",
            "Flows in the last window drained",
            self.flows_last_window.clone(),
        );
        r.register(
            "overflow_events",
            "Packets that found the flow map full and went through the overflow ring",
            self.overflow_events.clone(),
        );
        r.register(
            "skipped_packets",
            "Packets counted into SKIPDATA records",
            self.skipped_packets.clone(),
        );
        r.register(
            "skipped_bytes",
            "Bytes counted into SKIPDATA records",
            self.skipped_bytes.clone(),
        );
        r.register(
            "malformed_packets",
            "Packets not attributed to a flow, by reason",
            self.malformed.packets.clone(),
        );
        r.register(
            "malformed_bytes",
            "Bytes of packets not attributed to a flow, by reason",
            self.malformed.bytes.clone(),
        );
        r.register_with_unit(
            "drain_duration",
            "Time to drain one namespace's maps at a window cut",
            Unit::Seconds,
            self.drain_duration.clone(),
        );
        r.register("drain_errors", "Drains that failed", self.drain_errors.clone());
        r.register(
            "rtt_measured",
            "TCP handshakes measured",
            self.rtt_measured.clone(),
        );
        r.register(
            "rtt_ambiguous",
            "TCP handshakes skipped as ambiguous (a retransmitted SYN or SYN-ACK)",
            self.rtt_ambiguous.clone(),
        );
        r.register(
            "rtt_expired",
            "TCP handshakes that never completed",
            self.rtt_expired.clone(),
        );
        r.register(
            "pinned",
            "1 when kernel state is pinned (counting goes on while the agent is down), else 0",
            self.pinned.clone(),
        );
    }
}

/// The journal: every cut's counts on disk before they leave the kernel.
#[derive(Debug, Default)]
pub struct Journal {
    pub cuts_written: Counter,
    pub bytes_written: Counter,
    pub write_errors: Counter,
    pub cuts_lost: Counter,
    pub sealed_windows: Gauge,
    pub windows_lost: Counter,
}

/// The journal's own running totals, as it keeps them.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournalTotals {
    pub cuts_written: u64,
    pub bytes_written: u64,
    pub write_errors: u64,
    pub cuts_lost: u64,
    pub sealed_windows: u64,
    pub windows_lost: u64,
}

impl Journal {
    /// Brings the figures up to the journal's running totals.
    pub fn update(&self, t: JournalTotals) {
        advance(&self.cuts_written, t.cuts_written);
        advance(&self.bytes_written, t.bytes_written);
        advance(&self.write_errors, t.write_errors);
        advance(&self.cuts_lost, t.cuts_lost);
        advance(&self.windows_lost, t.windows_lost);
        self.sealed_windows
            .set(i64::try_from(t.sealed_windows).unwrap_or(i64::MAX));
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "journal_cuts_written",
            "Cuts journaled before their counts left the kernel",
            self.cuts_written.clone(),
        );
        r.register(
            "journal_bytes_written",
            "Bytes of cut files written",
            self.bytes_written.clone(),
        );
        r.register(
            "journal_write_errors",
            "Journal writes that failed (those counts stayed in the kernel for the next cut)",
            self.write_errors.clone(),
        );
        r.register(
            "journal_cuts_lost",
            "Cuts a restart needed but could not read back",
            self.cuts_lost.clone(),
        );
        r.register(
            "journal_sealed_windows",
            "Windows ended but not yet confirmed by every sink",
            self.sealed_windows.clone(),
        );
        r.register(
            "journal_windows_lost",
            "Windows that could not be rendered, let go of and counted",
            self.windows_lost.clone(),
        );
    }
}
