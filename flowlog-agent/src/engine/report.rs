//! What the engine tells the status file, the metrics endpoint and the
//! status view: drain accounting, attachments and their users, window
//! state per flow log, map fill.

use std::collections::HashMap;

use super::Engine;
use crate::{
    capture::{FlowSource, MalformedCount, MapFill},
    telemetry::{AttachmentStatus, InterfaceLabels, MalformedLabels, MapLabels, gauge_value},
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
        let c = self.status.capture();
        c.flows_last_window.set(gauge_value(data.flows.len() as u64));
        c.overflow_events.inc_by(overflow_events);
        for s in data.skipped.values() {
            c.skipped_packets.inc_by(s.packets);
            c.skipped_bytes.inc_by(s.bytes);
        }
        let interface = |ifindex: u32| {
            cap.attached()
                .find(|a| a.info.ifindex == ifindex)
                .map(|a| a.info.interface.clone())
        };
        for m in malformed {
            let labels = MalformedLabels {
                interface: interface(m.ifindex).unwrap_or_else(|| m.ifindex.to_string()),
                direction: m.direction.as_str().into(),
                reason: m.reason.as_str().into(),
            };
            c.malformed.add(labels, m.counters.packets, m.counters.bytes);
        }
        self.account_rtt(cap);
        let netns = cap.netns().unwrap_or_default().to_owned();
        for (family, flows, entries) in cap.last_map_flows().families() {
            let labels = MapLabels {
                netns: netns.clone(),
                family: family.into(),
            };
            c.map_fill
                .get_or_create(&labels)
                .set(MapFill::ratio(flows, entries));
        }
        let mut sums: HashMap<(u32, u8), (u64, u64)> = HashMap::new();
        for (key, stats) in data.flows.iter() {
            let e = sums.entry((key.ifindex, key.direction)).or_default();
            e.0 += stats.packets;
            e.1 += stats.bytes;
        }
        for ((ifindex, dir), (p, b)) in sums {
            let Some(name) = interface(ifindex) else { continue };
            let labels = InterfaceLabels {
                netns: netns.clone(),
                interface: name,
                direction: flowlog_common::Direction::from_u8(dir)
                    .map_or("?", |d| d.as_str())
                    .into(),
            };
            c.packets.get_or_create(&labels).inc_by(p);
            c.bytes.get_or_create(&labels).inc_by(b);
        }
    }

    /// Handshake figures: each namespace's tracker keeps running totals,
    /// the metrics count what is new since its last drain.
    fn account_rtt(&self, cap: &dyn FlowSource) {
        let now = cap.rtt_stats();
        let mut seen = self
            .rtt_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = seen
            .insert(cap.netns().map(str::to_owned), now)
            .unwrap_or_default();
        let c = self.status.capture();
        c.rtt_measured.inc_by(now.measured.saturating_sub(last.measured));
        c.rtt_ambiguous
            .inc_by(now.ambiguous.saturating_sub(last.ambiguous));
        c.rtt_expired.inc_by(now.expired.saturating_sub(last.expired));
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
        self.status.info().attachments = attachments;
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
