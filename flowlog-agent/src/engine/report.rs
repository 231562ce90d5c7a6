//! What the engine tells the status file, the metrics endpoint and the
//! status view: drain accounting, attachments and their users, window
//! state per flow log, map fill.

use std::collections::HashMap;

use super::Engine;
use crate::{
    capture::{FlowSource, MalformedCount, MapFill},
    status::AttachmentStatus,
    window::WindowAggregate,
};

/// What the status view shows of one flow log.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowLogRuntime {
    pub flow_log_id: String,
    pub window_start: i64,
    pub window_end: i64,
    pub interval: u64,
    pub last_window_start: Option<i64>,
    pub last_window_end: Option<i64>,
}

impl Engine {
    /// Status and metrics of one namespace's drain.
    pub(super) fn account(
        &self,
        cap: &dyn FlowSource,
        data: &WindowAggregate,
        malformed: &[MalformedCount],
        overflow_events: u64,
    ) {
        {
            let mut s = self.status.lock();
            s.flows_last_window = data.flows.len() as u64;
            s.overflow_events += overflow_events;
            for c in data.skipped.values() {
                s.skipped.packets += c.packets;
                s.skipped.bytes += c.bytes;
            }
            for m in malformed {
                let name = cap
                    .attached()
                    .find(|a| a.info.ifindex == m.ifindex)
                    .map_or_else(|| m.ifindex.to_string(), |a| a.info.interface.clone());
                let key = format!("{name}/{}/{}", m.direction.as_str(), m.reason.as_str());
                let t = s.malformed.entry(key).or_default();
                t.packets += m.counters.packets;
                t.bytes += m.counters.bytes;
            }
            let r = cap.rtt_stats();
            s.rtt_measured = r.measured;
            s.rtt_ambiguous = r.ambiguous;
            s.rtt_expired = r.expired;
        }
        // Per-interface traffic for the metrics endpoint.
        let mut m = self.status.metrics();
        let ns_label = cap.netns().unwrap_or_default().to_owned();
        for (family, flows, entries) in cap.last_map_flows().families() {
            m.map_fill
                .insert((ns_label.clone(), family), (flows, u64::from(entries)));
        }
        let mut sums: HashMap<(u32, u8), (u64, u64)> = HashMap::new();
        for (key, stats) in data.flows.iter() {
            let e = sums.entry((key.ifindex, key.direction)).or_default();
            e.0 += stats.packets;
            e.1 += stats.bytes;
        }
        for ((ifindex, dir), (p, b)) in sums {
            let Some(a) = cap.attached().find(|a| a.info.ifindex == ifindex) else {
                continue;
            };
            let dir = flowlog_common::Direction::from_u8(dir).map_or("?", |d| d.as_str());
            let t = m
                .seen
                .entry((ns_label.clone(), a.info.interface.clone(), dir))
                .or_default();
            t.packets += p;
            t.bytes += b;
        }
    }

    /// What is attached where, for status.json and the status view.
    pub(super) fn refresh_status(&self) {
        let attachments = self
            .captures
            .values()
            .flat_map(|c| c.attached())
            .map(|a| AttachmentStatus {
                interface: a.info.interface.clone(),
                netns: a.info.netns.clone(),
                ifindex: a.info.ifindex,
                driver: a.driver.clone(),
                ingress_hook: a.ingress.to_string(),
                egress_hook: a.egress.to_string(),
                flow_logs: self
                    .users
                    .flow_logs(&(a.info.netns.clone(), a.info.interface.clone())),
            })
            .collect();
        self.status.lock().attachments = attachments;
    }

    /// Per-flow-log window state for the status view.
    pub fn runtime(&self) -> Vec<FlowLogRuntime> {
        self.running
            .values()
            .map(|r| {
                let (current, last) = (r.schedule.current(), r.schedule.last());
                FlowLogRuntime {
                    flow_log_id: r.spec.id.clone(),
                    window_start: current.start_secs(),
                    window_end: current.end_secs(),
                    interval: r.schedule.length().as_secs(),
                    last_window_start: last.map(|w| w.start_secs()),
                    last_window_end: last.map(|w| w.end_secs()),
                }
            })
            .collect()
    }

    /// Flow-map fill per namespace, each family against its own map.
    pub fn map_fill(&self) -> Vec<(Option<String>, MapFill)> {
        self.captures
            .iter()
            .map(|(ns, c)| (ns.clone(), c.last_map_flows()))
            .collect()
    }
}
