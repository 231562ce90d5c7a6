//! One capture window, aggregated: pure code, no kernel and no clock reads.
//!
//! The capture stage feeds a [`WindowAggregate`] with what it drained (flows
//! merged across CPUs, overflow events, skipped counters); [`flush_into`]
//! turns it into records, including NODATA and SKIPDATA ones.
//!
//! [`flush_into`]: WindowAggregate::flush_into

pub mod clock;

use std::collections::HashMap;

use flowlog_common::{Counters, Direction, FlowKey, FlowStats, OverflowEvent};

use crate::{
    record::{self, FlowLogRecord, Identity},
    rtt::Rtt,
};
pub use clock::{ClockOffset, Window};

/// Flows of one window, keyed by attachment, direction and five-tuple.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: HashMap<FlowKey, FlowStats>,
}

impl FlowTable {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            flows: HashMap::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn contains(&self, key: &FlowKey) -> bool {
        self.flows.contains_key(key)
    }

    /// Adds `stats` to the flow's totals.
    pub fn add(&mut self, key: FlowKey, stats: &FlowStats) {
        merge(self.flows.entry(key).or_default(), stats);
    }

    pub fn add_overflow(&mut self, e: &OverflowEvent) {
        self.add(
            e.key,
            &FlowStats {
                packets: u64::from(e.packets),
                bytes: u64::from(e.bytes),
                first_seen_ns: e.ts_ns,
                last_seen_ns: e.ts_ns,
                tcp_flags: e.tcp_flags,
                _pad: [0; 6],
            },
        );
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowStats)> {
        self.flows.iter()
    }
}

/// Folds one CPU's (or one event's) counts into a total. Zeroed slots (a
/// CPU that never saw the flow) leave the timestamps alone.
pub fn merge(total: &mut FlowStats, add: &FlowStats) {
    if add.packets == 0 && add.bytes == 0 {
        return;
    }
    total.packets += add.packets;
    total.bytes += add.bytes;
    if add.first_seen_ns != 0 && (total.first_seen_ns == 0 || add.first_seen_ns < total.first_seen_ns) {
        total.first_seen_ns = add.first_seen_ns;
    }
    total.last_seen_ns = total.last_seen_ns.max(add.last_seen_ns);
    total.tcp_flags |= add.tcp_flags;
}

/// An interface the window reports on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub ifindex: u32,
    pub interface: String,
    pub netns: Option<String>,
}

/// Everything one namespace's capture collected for one window.
#[derive(Debug, Default)]
pub struct WindowAggregate {
    pub flows: FlowTable,
    /// Packets not accounted to a flow, per (ifindex, direction).
    pub skipped: HashMap<(u32, Direction), Counters>,
    /// Handshake RTTs of the window's TCP flows.
    pub rtt: HashMap<FlowKey, Rtt>,
}

impl WindowAggregate {
    pub fn add_skipped(&mut self, ifindex: u32, direction: Direction, c: &Counters) {
        if c.packets == 0 && c.bytes == 0 {
            return;
        }
        let t = self.skipped.entry((ifindex, direction)).or_default();
        t.packets += c.packets;
        t.bytes += c.bytes;
    }

    /// Builds the window's records: one OK record per flow, one SKIPDATA
    /// record per attachment and direction that lost packets, and one
    /// NODATA record per attachment that saw neither.
    pub fn flush_into(
        self,
        window: Window,
        attachments: &[AttachmentInfo],
        id: &Identity,
        clock: ClockOffset,
        out: &mut Vec<FlowLogRecord>,
    ) {
        out.reserve(self.flows.len() + attachments.len());
        let mut busy: Vec<u32> = Vec::with_capacity(attachments.len());
        for (key, stats) in self.flows.iter() {
            let Some(att) = attachments.iter().find(|a| a.ifindex == key.ifindex) else {
                // Not one of ours (an interface re-created with our index
                // reused); nothing sensible to attribute it to.
                continue;
            };
            if !busy.contains(&key.ifindex) {
                busy.push(key.ifindex);
            }
            out.push(record::flow(
                id,
                att,
                window,
                key,
                stats,
                self.rtt.get(key),
                clock,
            ));
        }
        let mut skipped: Vec<_> = self.skipped.into_iter().collect();
        skipped.sort_by_key(|((ifindex, dir), _)| (*ifindex, *dir));
        for ((ifindex, dir), c) in skipped {
            if let Some(att) = attachments.iter().find(|a| a.ifindex == ifindex) {
                if !busy.contains(&ifindex) {
                    busy.push(ifindex);
                }
                out.push(record::skipped(id, att, window, dir, &c));
            }
        }
        for att in attachments {
            if !busy.contains(&att.ifindex) {
                out.push(record::no_data(id, att, window));
            }
        }
    }
}

#[cfg(test)]
mod tests;
