//! One capture window, aggregated: pure code, no kernel and no clock reads.
//!
//! The capture stage fills a [`WindowAggregate`] with what it drained (flows
//! merged across CPUs, overflow events, skipped counters); at the window's
//! end [`WindowAggregate::finish`] turns it into a [`WindowData`], which
//! renders its records — OK, SKIPDATA and NODATA — one at a time. No window
//! ever holds all its records at once: a million flows cost their 84-byte
//! entries, not a million heap-allocated records.

use std::{collections::HashMap, sync::Arc};

use flowlog_common::{Counters, Direction, FlowKey, FlowStats, OverflowEvent};

use crate::{
    enrich::RegionTable,
    model::{AttachmentInfo, ClockOffset, Identity, Window},
    record::{self, FlowLogRecord, format::LogFormat},
    rtt::Rtt,
};

/// Flows of one window. Entries are appended as drains and overflow events
/// arrive; [`FlowTable::compact`] sorts them and merges repeated keys.
#[derive(Clone, Debug, Default)]
pub struct FlowTable {
    entries: Vec<(FlowKey, FlowStats)>,
}

impl FlowTable {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Entries, counting a flow once per source until compacted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, key: FlowKey, stats: FlowStats) {
        self.entries.push((key, stats));
    }

    /// Moves `other`'s entries here (without copying when this is empty).
    pub fn append(&mut self, other: &mut FlowTable) {
        if self.entries.is_empty() {
            std::mem::swap(&mut self.entries, &mut other.entries);
        } else {
            self.entries.append(&mut other.entries);
        }
    }

    /// Sorts by key (so a source's flows sit together in every output) and
    /// merges entries of the same flow.
    pub fn compact(&mut self) {
        self.entries.sort_unstable_by_key(|e| e.0);
        self.entries.dedup_by(|later, kept| {
            if later.0 == kept.0 {
                merge(&mut kept.1, &later.1);
                true
            } else {
                false
            }
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &(FlowKey, FlowStats)> {
        self.entries.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut (FlowKey, FlowStats)> {
        self.entries.iter_mut()
    }
}

/// Overflow events not yet drained: a bounded table keyed by flow, since one
/// flow can overflow many times.
#[derive(Clone, Debug, Default)]
pub struct OverflowTable {
    flows: HashMap<FlowKey, FlowStats>,
}

impl OverflowTable {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Adds the event if its flow is known or `limit` allows a new one.
    pub fn try_add(&mut self, e: &OverflowEvent, limit: usize) -> bool {
        if self.flows.len() >= limit && !self.flows.contains_key(&e.key) {
            return false;
        }
        let stats = FlowStats {
            packets: u64::from(e.packets),
            bytes: u64::from(e.bytes),
            first_seen_jiffies: e.jiffies,
            last_seen_jiffies: e.jiffies,
            tcp_flags: e.tcp_flags,
            _pad: [0; 6],
        };
        merge(self.flows.entry(e.key).or_default(), &stats);
        true
    }

    /// Moves everything into `table`.
    pub fn drain_into(&mut self, table: &mut FlowTable) {
        table.entries.extend(self.flows.drain());
    }

    /// Adds another table's events back (a drain that could not be
    /// journaled returns what it took).
    pub fn merge_from(&mut self, other: OverflowTable) {
        for (k, s) in other.flows {
            merge(self.flows.entry(k).or_default(), &s);
        }
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
    if add.first_seen_jiffies != 0
        && (total.first_seen_jiffies == 0 || add.first_seen_jiffies < total.first_seen_jiffies)
    {
        total.first_seen_jiffies = add.first_seen_jiffies;
    }
    total.last_seen_jiffies = total.last_seen_jiffies.max(add.last_seen_jiffies);
    total.tcp_flags |= add.tcp_flags;
}

/// Everything collected for one window.
#[derive(Clone, Debug, Default)]
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

    /// Ends the window: merges repeated flows and fixes what the records
    /// will say.
    pub fn finish(
        mut self,
        window: Window,
        attachments: Vec<AttachmentInfo>,
        identity: Identity,
        clock: ClockOffset,
        regions: Arc<RegionTable>,
    ) -> WindowData {
        self.flows.compact();
        // Flows of interfaces that are not ours (an index reused by a
        // re-created interface) have nothing sensible to be attributed to.
        self.flows
            .entries
            .retain(|(k, _)| attachments.iter().any(|a| a.ifindex == k.ifindex));
        let mut skipped: Vec<((u32, Direction), Counters)> = self
            .skipped
            .into_iter()
            .filter(|((i, _), _)| attachments.iter().any(|a| a.ifindex == *i))
            .collect();
        skipped.sort_by_key(|((i, d), _)| (*i, *d));
        let idle = attachments
            .iter()
            .filter(|a| {
                !self.flows.entries.iter().any(|(k, _)| k.ifindex == a.ifindex)
                    && !skipped.iter().any(|((i, _), _)| *i == a.ifindex)
            })
            .map(|a| a.ifindex)
            .collect();
        WindowData {
            window,
            identity,
            attachments,
            flows: self.flows,
            skipped,
            idle,
            rtt: self.rtt,
            clock,
            regions,
            format: None,
        }
    }
}

/// A finished window: renders its records on demand.
#[derive(Debug)]
pub struct WindowData {
    pub window: Window,
    pub identity: Identity,
    pub attachments: Vec<AttachmentInfo>,
    flows: FlowTable,
    skipped: Vec<((u32, Direction), Counters)>,
    /// Attachments with neither flows nor skipped packets: NODATA.
    idle: Vec<u32>,
    rtt: HashMap<FlowKey, Rtt>,
    clock: ClockOffset,
    /// The region table in force when the window was cut.
    regions: Arc<RegionTable>,
    /// The fields the flow log keeps (`None`: all).
    format: Option<Arc<LogFormat>>,
}

impl WindowData {
    /// Records cut to `format`'s fields.
    pub fn with_format(mut self, format: Option<Arc<LogFormat>>) -> Self {
        self.format = format;
        self
    }

    fn cut(&self, r: &mut FlowLogRecord) {
        if let Some(f) = &self.format {
            f.apply(r);
        }
    }

    /// Number of records the window renders.
    pub fn len(&self) -> usize {
        self.flows.len() + self.skipped.len() + self.idle.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flows in the window.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    fn attachment(&self, ifindex: u32) -> Option<&AttachmentInfo> {
        self.attachments.iter().find(|a| a.ifindex == ifindex)
    }

    /// Calls `f` with every record in turn — one OK record per flow (sorted
    /// by flow), one SKIPDATA record per attachment and direction that lost
    /// packets, one NODATA record per attachment that saw neither — reusing
    /// one record's buffers throughout. Stops at the first error.
    pub fn try_for_each_record<E>(
        &self,
        mut f: impl FnMut(&FlowLogRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        self.try_for_each_record_at(|r, _| f(r))
    }

    /// [`Self::try_for_each_record`], with the attachment each record is of.
    pub fn try_for_each_record_at<E>(
        &self,
        mut f: impl FnMut(&FlowLogRecord, &AttachmentInfo) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut r = FlowLogRecord::default();
        let id = &self.identity;
        for (key, stats) in self.flows.iter() {
            if let Some(att) = self.attachment(key.ifindex) {
                record::fill_flow(
                    &mut r,
                    id,
                    att,
                    self.window,
                    record::Flow {
                        key,
                        stats,
                        rtt: self.rtt.get(key),
                    },
                    self.clock,
                    &self.regions,
                );
                self.cut(&mut r);
                f(&r, att)?;
            }
        }
        for ((ifindex, dir), c) in &self.skipped {
            if let Some(att) = self.attachment(*ifindex) {
                record::fill_skipped(&mut r, id, att, self.window, *dir, c);
                self.cut(&mut r);
                f(&r, att)?;
            }
        }
        for i in &self.idle {
            if let Some(att) = self.attachment(*i) {
                record::fill_no_data(&mut r, id, att, self.window);
                self.cut(&mut r);
                f(&r, att)?;
            }
        }
        Ok(())
    }

    /// The fields the flow log keeps (`None`: all).
    pub fn format(&self) -> Option<&LogFormat> {
        self.format.as_deref()
    }

    /// The records as owned values (see [`Self::try_for_each_record`]).
    pub fn records(&self) -> impl Iterator<Item = FlowLogRecord> + '_ {
        let id = &self.identity;
        let flows = self.flows.iter().filter_map(move |(key, stats)| {
            let att = self.attachment(key.ifindex)?;
            Some(record::flow(
                id,
                att,
                self.window,
                record::Flow {
                    key,
                    stats,
                    rtt: self.rtt.get(key),
                },
                self.clock,
                &self.regions,
            ))
        });
        let skipped = self.skipped.iter().filter_map(move |((ifindex, dir), c)| {
            Some(record::skipped(
                id,
                self.attachment(*ifindex)?,
                self.window,
                *dir,
                c,
            ))
        });
        let idle = self
            .idle
            .iter()
            .filter_map(move |i| Some(record::no_data(id, self.attachment(*i)?, self.window)));
        flows.chain(skipped).chain(idle).map(move |mut r| {
            self.cut(&mut r);
            r
        })
    }
}

#[cfg(test)]
mod tests;
