//! The data plane at run time: which flow logs are active, which
//! interfaces they share, and when their windows end.
//!
//! Kernel counting is per interface, not per flow log: flow logs that share
//! an interface share its hooks and map entries, so a packet costs the same
//! however many flow logs watch it. At every *cut* (a window boundary of any
//! flow log, an activation, a deactivation) the engine drains every
//! namespace's maps once and hands each flow to every flow log using its
//! interface; a flow log whose window has ended then turns its aggregate
//! into records. In each flow log's aggregate a key's `ifindex` is replaced
//! by the flow log's own attachment slot, so interfaces of different
//! namespaces never collide.
//!
//! With pinning on, the kernel state outlives the agent: a shutdown leaves
//! the hooks counting, and the next start adopts them (see
//! [`crate::capture::pins`]) and begins each restored flow log's first
//! window where the last published one ended.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::{
    capture::{CaptureError, CaptureSettings, Drained, NetnsCapture, pins::PinRoot},
    config::Attachment,
    enrich::{RegionTable, SharedRegions},
    record::{Identity, format::LogFormat},
    status::{AttachmentStatus, StatusBoard},
    store::LogstoreRef,
    window::{
        AttachmentInfo, ClockOffset, JiffiesRef, Window, WindowAggregate, WindowData, clock,
        progress::Progress,
    },
};

/// A flow log as the engine runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogSpec {
    pub id: String,
    pub identity: Identity,
    pub attachments: Vec<Attachment>,
    pub window: Duration,
    pub logstore: Option<LogstoreRef>,
    /// The fields its records keep (`None`: all).
    pub format: Option<Arc<LogFormat>>,
}

/// One window of one flow log, ready to publish. Shared (not copied)
/// between the sinks and the Logstore's retry queue.
#[derive(Debug)]
pub struct WindowRecords {
    pub flow_log_id: String,
    /// The Logstore the flow log writes to, if any.
    pub logstore: Option<LogstoreRef>,
    pub data: Arc<WindowData>,
    /// Told once every sink has had the window (DeactiveFlowLog's answer
    /// waits for it, so the last records are readable when it returns).
    pub published: Option<oneshot::Sender<()>>,
}

type AttachmentKey = (Option<String>, String);

fn attachment_key(a: &Attachment) -> AttachmentKey {
    (a.netns.clone(), a.interface.clone())
}

struct Running {
    spec: FlowLogSpec,
    window_start: i128,
    window_end: i128,
    /// A new window length, applied at the next boundary.
    next_window: Option<Duration>,
    /// A new LogFormatString, applied at the next boundary.
    next_format: Option<Option<Arc<LogFormat>>>,
    aggregate: WindowAggregate,
    last_window: Option<Window>,
    /// The region table in force when this window started: a reload
    /// labels windows from the next one on, never half a window.
    regions: Arc<RegionTable>,
}

/// What the status view shows of one flow log.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlowLogRuntime {
    pub flow_log_id: String,
    pub window_start: i64,
    pub window_end: i64,
    pub interval: u64,
    pub last_window_start: Option<i64>,
    pub last_window_end: Option<i64>,
}

pub struct Engine {
    settings: CaptureSettings,
    captures: BTreeMap<Option<String>, NetnsCapture>,
    /// Flow logs using each attached interface, with their slot.
    users: BTreeMap<AttachmentKey, Vec<(String, u32)>>,
    running: BTreeMap<String, Running>,
    publish: mpsc::Sender<WindowRecords>,
    status: StatusBoard,
    /// Latest jiffies reference from a drain, to date flows at flush.
    jiffies: Option<JiffiesRef>,
    /// Where kernel state is pinned; `None` when pinning is off.
    pins: Option<PinRoot>,
    /// Last published window end per running flow log, on disk.
    progress: Option<Progress>,
    /// The region table in force (a reload swaps it).
    regions: SharedRegions,
}

impl Engine {
    pub fn new(
        settings: CaptureSettings,
        pins: Option<PinRoot>,
        progress: Option<Progress>,
        publish: mpsc::Sender<WindowRecords>,
        status: StatusBoard,
        regions: SharedRegions,
    ) -> Self {
        Self {
            regions,
            pins,
            progress,
            settings,
            captures: BTreeMap::new(),
            users: BTreeMap::new(),
            running: BTreeMap::new(),
            publish,
            status,
            jiffies: None,
        }
    }

    pub fn status_board(&self) -> &StatusBoard {
        &self.status
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.running.contains_key(id)
    }

    /// Starts capture for a flow log. Interfaces already in use by other
    /// flow logs are shared; the others are attached, and if any of them
    /// fails, everything this call attached is detached again.
    pub async fn activate(&mut self, spec: FlowLogSpec) -> Result<(), CaptureError> {
        if self.running.contains_key(&spec.id) {
            return Ok(());
        }
        // Counts so far belong to the flow logs already running.
        self.cut(false).await;
        self.start(spec, false)
    }

    /// Restarts the flow logs that were active when the agent stopped, all
    /// before the first drain: whatever pinned maps counted meanwhile
    /// belongs to all of them. Returns each one's outcome.
    pub fn restore(&mut self, specs: Vec<FlowLogSpec>) -> Vec<(String, Result<(), CaptureError>)> {
        let out = specs
            .into_iter()
            .map(|spec| (spec.id.clone(), self.start(spec, true)))
            .collect();
        if let Some(pins) = &self.pins {
            let in_use = self.captures.keys().cloned().collect();
            pins.sweep(&in_use);
        }
        out
    }

    fn start(&mut self, spec: FlowLogSpec, resume: bool) -> Result<(), CaptureError> {
        if self.running.contains_key(&spec.id) {
            return Ok(());
        }
        let mut fresh: Vec<AttachmentKey> = Vec::new();
        let mut result = Ok(());
        for a in &spec.attachments {
            let key = attachment_key(a);
            if self.users.contains_key(&key) {
                continue;
            }
            match self.attach(a) {
                Ok(()) => {
                    self.users.insert(key.clone(), Vec::new());
                    fresh.push(key);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            for key in fresh {
                self.users.remove(&key);
                self.release(&key);
            }
            return Err(e);
        }
        for (slot, a) in spec.attachments.iter().enumerate() {
            if let Some(u) = self.users.get_mut(&attachment_key(a)) {
                u.push((spec.id.clone(), slot as u32));
            }
        }
        let now = clock::unix_now_ns();
        // Counting went on while the agent was down only if every namespace
        // of the flow log had pinned maps to adopt.
        let adopted = spec
            .attachments
            .iter()
            .all(|a| self.captures.get(&a.netns).is_some_and(NetnsCapture::adopted));
        let window_start = match self.progress.as_ref().and_then(|p| p.last_end(&spec.id)) {
            Some(end) if resume && adopted && end <= now => end,
            _ => now,
        };
        info!(flow_log = %spec.id, attachments = spec.attachments.len(), window_secs = spec.window.as_secs(), resumed = window_start < now, "flow log active");
        self.running.insert(
            spec.id.clone(),
            Running {
                window_start,
                window_end: clock::next_boundary(now, spec.window),
                next_window: None,
                next_format: None,
                aggregate: WindowAggregate::default(),
                last_window: None,
                regions: self.regions.current(),
                spec,
            },
        );
        self.refresh_status();
        Ok(())
    }

    fn attach(&mut self, a: &Attachment) -> Result<(), CaptureError> {
        if !self.captures.contains_key(&a.netns) {
            let cap = NetnsCapture::load(
                a.netns.as_deref(),
                &a.interface,
                &self.settings,
                self.pins.as_ref(),
            )?;
            self.captures.insert(a.netns.clone(), cap);
        }
        let cap = self.captures.get_mut(&a.netns).ok_or_else(|| CaptureError::Map {
            name: "capture",
            detail: "namespace capture vanished".into(),
        })?;
        match cap.attach(a) {
            Ok(_) => Ok(()),
            Err(e) => {
                if cap.is_empty() {
                    // State this call pinned is of no use; adopted state
                    // is left for the sweep after a restart.
                    if !cap.adopted() {
                        cap.unpin();
                    }
                    self.captures.remove(&a.netns);
                }
                Err(e)
            }
        }
    }

    /// Detaches an interface nobody uses; unloads its namespace's programs
    /// when that was the last one.
    fn release(&mut self, key: &AttachmentKey) {
        let (netns, interface) = key;
        if let Some(cap) = self.captures.get_mut(netns) {
            cap.detach(interface);
            if cap.is_empty() {
                cap.unpin();
                self.captures.remove(netns);
            }
        }
    }

    /// Stops a flow log: publishes its partial window, then releases the
    /// interfaces no other flow log uses. Returns what tells when the
    /// window has reached the sinks (the caller may wait for it; the
    /// control loop does not).
    pub async fn deactivate(&mut self, id: &str) -> Option<oneshot::Receiver<()>> {
        if !self.running.contains_key(id) {
            return None;
        }
        self.cut(false).await;
        let mut published = None;
        if let Some(mut r) = self.running.remove(id) {
            let now = clock::unix_now_ns();
            let (tx, rx) = oneshot::channel();
            self.flush(&mut r, now, Some(tx)).await;
            published = Some(rx);
            for a in &r.spec.attachments {
                let key = attachment_key(a);
                let empty = self.users.get_mut(&key).is_some_and(|u| {
                    u.retain(|(uid, _)| uid != id);
                    u.is_empty()
                });
                if empty {
                    self.users.remove(&key);
                    self.release(&key);
                }
            }
            if let Some(p) = &mut self.progress {
                p.remove(id);
            }
            info!(flow_log = %id, "flow log inactive");
        }
        self.refresh_status();
        published
    }

    /// A new window length for a running flow log, from its next boundary.
    pub fn set_window(&mut self, id: &str, window: Duration) {
        if let Some(r) = self.running.get_mut(id) {
            r.next_window = Some(window);
        }
    }

    /// A new field selection for a running flow log, from its next
    /// boundary.
    pub fn set_format(&mut self, id: &str, format: Option<Arc<LogFormat>>) {
        if let Some(r) = self.running.get_mut(id) {
            r.next_format = Some(format);
        }
    }

    /// The next window boundary of any flow log (Unix ns).
    pub fn next_deadline(&self) -> Option<i128> {
        self.running.values().map(|r| r.window_end).min()
    }

    /// Called at (or after) `next_deadline`: cuts and publishes every window
    /// that has ended.
    pub async fn tick(&mut self) {
        self.cut(true).await;
    }

    /// Waits until some namespace's overflow or handshake ring has events.
    pub async fn rings_ready(&self) -> Option<Option<String>> {
        if self.captures.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.captures.iter().flat_map(|(ns, c)| {
            let a = Box::pin(async move {
                c.ring()
                    .readable()
                    .await
                    .map(|mut g| g.clear_ready())
                    .ok()
                    .map(|()| ns.clone())
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Option<Option<String>>> + Send + '_>>;
            let b = Box::pin(async move {
                c.handshake_ring()
                    .readable()
                    .await
                    .map(|mut g| g.clear_ready())
                    .ok()
                    .map(|()| ns.clone())
            })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Option<Option<String>>> + Send + '_>>;
            [a, b]
        });
        let (ready, _, _) = futures_util::future::select_all(waits).await;
        ready
    }

    /// Reads the rings of one namespace.
    pub fn poll_rings(&mut self, netns: &Option<String>) {
        if let Some(c) = self.captures.get_mut(netns) {
            c.poll_overflow();
            c.poll_handshakes();
        }
    }

    /// Publishes every partial window, then lets go of the kernel state:
    /// pinned hooks go on counting for the next start; unpinned ones are
    /// detached.
    pub async fn shutdown(&mut self) {
        self.cut(false).await;
        let now = clock::unix_now_ns();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            if let Some(mut r) = self.running.remove(&id) {
                self.flush(&mut r, now, None).await;
            }
        }
        if let Some(p) = &self.pins
            && !self.users.is_empty()
        {
            info!(
                interfaces = self.users.len(),
                pins = %p.path().display(),
                "hooks stay attached and counting in pinned maps; the next start collects them \
                 (`flowlog unpin` detaches them)"
            );
        }
        self.users.clear();
        self.captures.clear();
        self.refresh_status();
    }

    /// Drains every namespace once and hands the flows to the flow logs;
    /// with `publish_due`, then publishes the windows that have ended.
    async fn cut(&mut self, publish_due: bool) {
        let mut drained: Vec<(Option<String>, Drained)> = Vec::new();
        for (ns, cap) in &mut self.captures {
            let started = std::time::Instant::now();
            let result = tokio::task::block_in_place(|| cap.drain());
            self.status.metrics().observe_drain(started.elapsed());
            match result {
                Ok(d) => {
                    self.jiffies = d.jiffies.or(self.jiffies);
                    drained.push((ns.clone(), d));
                }
                Err(e) => {
                    error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "drain failed");
                    self.status.lock().drain_errors += 1;
                }
            }
        }
        for (ns, d) in drained {
            self.distribute(&ns, d);
        }
        if !publish_due {
            return;
        }
        let now = clock::unix_now_ns();
        let due: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.window_end <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(mut r) = self.running.remove(&id) else {
                continue;
            };
            let end = r.window_end;
            self.flush(&mut r, end, None).await;
            if let Some(w) = r.next_window.take() {
                r.spec.window = w;
            }
            if let Some(f) = r.next_format.take() {
                r.spec.format = f;
            }
            r.window_start = end;
            r.window_end = clock::next_boundary(end.max(now), r.spec.window);
            self.running.insert(id, r);
        }
    }

    /// Gives each flow log its share of one namespace's drained window.
    fn distribute(&mut self, ns: &Option<String>, d: Drained) {
        let Some(cap) = self.captures.get(ns) else { return };
        // ifindex → (flow log, slot) for this namespace.
        let mut targets: HashMap<u32, Vec<(String, u32)>> = HashMap::new();
        for a in cap.attached() {
            if let Some(u) = self.users.get(&(ns.clone(), a.info.interface.clone())) {
                targets.insert(a.info.ifindex, u.clone());
            }
        }
        {
            let mut s = self.status.lock();
            s.flows_last_window = d.window.flows.len() as u64;
            s.overflow_events += d.overflow_events;
            for c in d.window.skipped.values() {
                s.skipped.packets += c.packets;
                s.skipped.bytes += c.bytes;
            }
            for m in &d.malformed {
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
        {
            // Per-interface traffic for the metrics endpoint.
            let mut m = self.status.metrics();
            let ns_label = ns.clone().unwrap_or_default();
            m.map_fill.insert(
                ns_label.clone(),
                (cap.last_map_flows(), u64::from(cap.flow_map_entries())),
            );
            let mut sums: HashMap<(u32, u8), (u64, u64)> = HashMap::new();
            for (key, stats) in d.window.flows.iter() {
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
        let Drained { window: mut w, .. } = d;
        // The common case — every interface here feeds the same single flow
        // log — moves the drained table instead of copying a million flows.
        let mut owners = targets.values().filter(|u| !u.is_empty());
        let sole = match owners.next() {
            Some(u) if u.len() == 1 && owners.all(|o| o.len() == 1 && o[0].0 == u[0].0) => {
                Some(u[0].0.clone())
            }
            _ => None,
        };
        if let Some(id) = sole.filter(|id| self.running.contains_key(id)) {
            let slot_of: HashMap<u32, u32> = targets.iter().map(|(i, u)| (*i, u[0].1)).collect();
            let mut rtt = HashMap::with_capacity(w.rtt.len());
            for (key, _) in w.flows.iter_mut() {
                let r = w.rtt.remove(key);
                // Flows of an interface nobody uses are dropped at finish.
                key.ifindex = slot_of.get(&key.ifindex).copied().unwrap_or(u32::MAX);
                if let Some(r) = r {
                    rtt.insert(*key, r);
                }
            }
            if let Some(r) = self.running.get_mut(&id) {
                r.aggregate.flows.append(&mut w.flows);
                r.aggregate.rtt.extend(rtt);
            }
        } else {
            for (key, stats) in w.flows.iter() {
                let Some(users) = targets.get(&key.ifindex) else {
                    continue;
                };
                let rtt = w.rtt.get(key);
                for (id, slot) in users {
                    if let Some(r) = self.running.get_mut(id) {
                        let mut k = *key;
                        k.ifindex = *slot;
                        r.aggregate.flows.push(k, *stats);
                        if let Some(rtt) = rtt {
                            r.aggregate.rtt.insert(k, *rtt);
                        }
                    }
                }
            }
        }
        for ((ifindex, dir), c) in &w.skipped {
            for (id, slot) in targets.get(ifindex).into_iter().flatten() {
                if let Some(r) = self.running.get_mut(id) {
                    r.aggregate.add_skipped(*slot, *dir, c);
                }
            }
        }
    }

    /// Turns a flow log's aggregate into records for `[window_start, end)`
    /// and hands them to the publisher.
    async fn flush(&mut self, r: &mut Running, end: i128, published: Option<oneshot::Sender<()>>) {
        let window = Window {
            start_ns: r.window_start,
            end_ns: end,
        };
        let attachments: Vec<AttachmentInfo> = r
            .spec
            .attachments
            .iter()
            .enumerate()
            .map(|(slot, a)| AttachmentInfo {
                ifindex: slot as u32,
                interface: a.interface.clone(),
                netns: a.netns.clone(),
                attachment_id: a.attachment_id.clone(),
                region_id: a.region_id.clone(),
            })
            .collect();
        let aggregate = std::mem::take(&mut r.aggregate);
        let regions = std::mem::replace(&mut r.regions, self.regions.current());
        let identity = r.spec.identity.clone();
        let format = r.spec.format.clone();
        let mut clock = ClockOffset::sample();
        if let Some(j) = self.jiffies {
            clock = clock.with_jiffies(j);
        }
        // Sorting a million flows takes a moment: off the control loop.
        let data = match tokio::task::spawn_blocking(move || {
            aggregate
                .finish(window, attachments, identity, clock, regions)
                .with_format(format)
        })
        .await
        {
            Ok(d) => d,
            Err(e) => {
                error!(flow_log = %r.spec.id, error = %e, "finishing the window failed; window lost");
                return;
            }
        };
        r.last_window = Some(window);
        if let Some(p) = &mut self.progress {
            p.set(&r.spec.id, end);
        }
        let batch = WindowRecords {
            flow_log_id: r.spec.id.clone(),
            logstore: r.spec.logstore.clone(),
            data: Arc::new(data),
            published,
        };
        if self.publish.send(batch).await.is_err() {
            warn!(flow_log = %r.spec.id, "publisher gone; window dropped");
        }
    }

    /// What is attached where, for status.json and the status view.
    fn refresh_status(&self) {
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
                    .get(&(a.info.netns.clone(), a.info.interface.clone()))
                    .map(|u| u.iter().map(|(id, _)| id.clone()).collect())
                    .unwrap_or_default(),
            })
            .collect();
        self.status.lock().attachments = attachments;
    }

    /// Per-flow-log window state for the status view.
    pub fn runtime(&self) -> Vec<FlowLogRuntime> {
        self.running
            .values()
            .map(|r| FlowLogRuntime {
                flow_log_id: r.spec.id.clone(),
                window_start: Window {
                    start_ns: r.window_start,
                    end_ns: r.window_end,
                }
                .start_secs(),
                window_end: Window {
                    start_ns: r.window_start,
                    end_ns: r.window_end,
                }
                .end_secs(),
                interval: r.spec.window.as_secs(),
                last_window_start: r.last_window.map(|w| w.start_secs()),
                last_window_end: r.last_window.map(|w| w.end_secs()),
            })
            .collect()
    }

    /// Flow-map fill per namespace: (netns, flows in the last window, capacity).
    pub fn map_fill(&self) -> Vec<(Option<String>, u64, u32)> {
        self.captures
            .iter()
            .map(|(ns, c)| (ns.clone(), c.last_map_flows(), c.flow_map_entries()))
            .collect()
    }
}
