//! The data plane at run time: which flow logs are active, which
//! interfaces they share, and when their windows end.
//!
//! Kernel counting is per interface, not per flow log: flow logs that share
//! an interface share its hooks and map entries, so a packet costs the same
//! however many flow logs watch it. At every *cut* (a window boundary of any
//! flow log, an activation, a deactivation) the engine drains every
//! namespace's maps once, journals what it read, deletes it from the kernel
//! and hands each flow to every flow log using its interface
//! ([`distribute`]); a flow log whose window has ended then seals it in the
//! journal's ledger and turns it into records.
//!
//! With pinning on, the kernel state outlives the agent: a shutdown leaves
//! the hooks counting, and the next start adopts them (see
//! [`crate::capture::pins`]) and redoes whatever the journal says was in
//! flight ([`restart`]).

mod cut;
mod distribute;
#[cfg(test)]
pub(crate) mod fake;
mod flush;
mod report;
mod restart;
mod routing;
mod schedule;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};
use tracing::info;

use cut::NsDrain;
pub use distribute::{Aggregates, One, distribute};
use flush::Rendering;
pub use report::FlowLogRuntime;
use routing::{AttachmentKey, Routing, attachment_key};
use schedule::Schedule;

use crate::{
    capture::{CaptureError, FlowSource, SourceLoader, pins::PinRoot},
    config::Attachment,
    enrich::{RegionTable, SharedRegions},
    journal::{Journal, SpecAttachment, WindowSpec},
    model::{Clock, Identity, JiffiesRef, LogstoreRef, SystemClock},
    record::format::LogFormat,
    telemetry::Telemetry,
    window::{WindowAggregate, WindowData},
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

impl FlowLogSpec {
    /// What the journal keeps of it with each window.
    fn window_spec(&self) -> WindowSpec {
        WindowSpec {
            account_id: self.identity.account_id.clone(),
            cen_id: self.identity.cen_id.clone(),
            attachments: self
                .attachments
                .iter()
                .map(|a| SpecAttachment {
                    interface: a.interface.clone(),
                    netns: a.netns.clone(),
                    attachment_id: a.attachment_id.clone(),
                    region_id: a.region_id.clone(),
                })
                .collect(),
            project: self.logstore.as_ref().map(|l| l.project.clone()),
            logstore: self.logstore.as_ref().map(|l| l.logstore.clone()),
            log_format: self.format.as_ref().map(|f| f.to_string()),
        }
    }
}

/// One window of one flow log, ready to publish. Shared (not copied)
/// between the sinks and the Logstore's retry queue.
#[derive(Debug)]
pub struct WindowRecords {
    pub flow_log_id: String,
    /// The Logstore the flow log writes to, if any.
    pub logstore: Option<LogstoreRef>,
    pub data: Arc<WindowData>,
    /// The window's number in the journal (`None` without a journal): the
    /// publisher reports it back once every sink has the window.
    pub seq: Option<u64>,
    /// Written again after a restart: sinks may have it already.
    pub replay: bool,
    /// Told once every sink has had the window (DeactiveFlowLog's answer
    /// waits for it, so the last records are readable when it returns).
    pub published: Option<oneshot::Sender<()>>,
}

struct Running {
    spec: FlowLogSpec,
    schedule: Schedule,
    /// A new LogFormatString, applied at the next boundary.
    next_format: Option<Option<Arc<LogFormat>>>,
    aggregate: WindowAggregate,
    /// The region table in force when this window started: a reload
    /// labels windows from the next one on, never half a window.
    regions: Arc<RegionTable>,
}

impl Aggregates for BTreeMap<String, Running> {
    fn aggregate(&mut self, flow_log: &str) -> Option<&mut WindowAggregate> {
        self.get_mut(flow_log).map(|r| &mut r.aggregate)
    }
}

pub struct Engine {
    /// Loads a namespace's programs and maps (the kernel's, or a test's).
    loader: Arc<dyn SourceLoader>,
    captures: BTreeMap<Option<String>, Box<dyn FlowSource>>,
    clock: Arc<dyn Clock>,
    /// Flow logs using each attached interface, with their slot.
    users: Routing,
    running: BTreeMap<String, Running>,
    publish: mpsc::Sender<WindowRecords>,
    status: Telemetry,
    /// Latest jiffies reference from a drain, to date flows at flush.
    jiffies: Option<JiffiesRef>,
    /// Where kernel state is pinned; `None` when pinning is off.
    pins: Option<PinRoot>,
    /// Drained counts and windows in flight, on disk.
    journal: Option<Journal>,
    /// The region table in force (a reload swaps it).
    regions: SharedRegions,
    /// Windows sealed while the ledger could not be saved: a sink may see
    /// a window only once the seal is on disk.
    held: Vec<WindowRecords>,
    /// Each namespace's handshake totals at its last drain.
    rtt_seen: std::sync::Mutex<BTreeMap<Option<String>, crate::rtt::RttStats>>,
}

impl Engine {
    pub fn new(
        loader: Arc<dyn SourceLoader>,
        pins: Option<PinRoot>,
        journal: Option<Journal>,
        publish: mpsc::Sender<WindowRecords>,
        status: Telemetry,
        regions: SharedRegions,
    ) -> Self {
        let engine = Self {
            regions,
            pins,
            journal,
            loader,
            clock: Arc::new(SystemClock),
            captures: BTreeMap::new(),
            users: Routing::default(),
            running: BTreeMap::new(),
            publish,
            status,
            jiffies: None,
            held: Vec::new(),
            rtt_seen: Default::default(),
        };
        engine.journal_status();
        engine
    }

    /// Reads the time from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn status_board(&self) -> &Telemetry {
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
        self.start(spec)?;
        self.save_journal();
        Ok(())
    }

    /// Attaches a flow log's interfaces and opens its first window, from
    /// now and from the next cut on.
    fn start(&mut self, spec: FlowLogSpec) -> Result<(), CaptureError> {
        if self.running.contains_key(&spec.id) {
            return Ok(());
        }
        let mut fresh: Vec<AttachmentKey> = Vec::new();
        let mut result = Ok(());
        for a in &spec.attachments {
            let key = attachment_key(a);
            if self.users.is_attached(&key) {
                continue;
            }
            match self.attach(a) {
                Ok(()) => {
                    self.users.attached(key.clone());
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
                self.users.forget(&key);
                self.release(&key);
            }
            return Err(e);
        }
        self.users.join(&spec.id, &spec.attachments);
        let now = self.clock.unix_now_ns();
        info!(flow_log = %spec.id, attachments = spec.attachments.len(), window_secs = spec.window.as_secs(), "flow log active");
        if let Some(j) = &mut self.journal {
            let first = j.next_cut();
            j.ledger_mut()
                .open(&spec.id, unix_i64(now), first, spec.window_spec());
        }
        self.running.insert(
            spec.id.clone(),
            Running {
                schedule: Schedule::open(now, spec.window),
                next_format: None,
                aggregate: WindowAggregate::default(),
                regions: self.regions.current(),
                spec,
            },
        );
        self.refresh_status();
        Ok(())
    }

    /// Namespaces `spec` needs whose programs are not loaded, each with the
    /// first interface that needs it: loading them preallocates the flow
    /// maps, which can take seconds, so the caller does it off the control
    /// loop ([`Loader`]) and hands them over ([`Self::add_capture`]).
    pub fn missing_namespaces(&self, spec: &FlowLogSpec) -> Vec<(Option<String>, String)> {
        let mut out: Vec<(Option<String>, String)> = Vec::new();
        for a in &spec.attachments {
            if !self.captures.contains_key(&a.netns) && !out.iter().any(|(n, _)| *n == a.netns) {
                out.push((a.netns.clone(), a.interface.clone()));
            }
        }
        out
    }

    /// What loading a namespace needs, to take to another thread.
    pub fn loader(&self) -> Arc<dyn SourceLoader> {
        self.loader.clone()
    }

    /// A namespace loaded off the control loop joins the engine. (Only one
    /// load of a namespace runs at a time; a capture for a namespace that
    /// is here already is dropped.)
    pub fn add_capture(&mut self, netns: Option<String>, cap: Box<dyn FlowSource>) {
        self.captures.entry(netns).or_insert(cap);
    }

    /// Unloads namespaces nothing is attached in (a load whose activation
    /// failed or was given up), unpinning what they created.
    pub fn drop_idle_captures(&mut self) {
        let idle: Vec<Option<String>> = self
            .captures
            .iter()
            .filter(|(_, c)| c.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        for n in idle {
            if let Some(c) = self.captures.remove(&n)
                && !c.adopted()
            {
                c.unpin();
            }
        }
    }

    fn attach(&mut self, a: &Attachment) -> Result<(), CaptureError> {
        if !self.captures.contains_key(&a.netns) {
            let cap = self.loader.load(a.netns.as_deref(), &a.interface)?;
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
            let now = self.clock.unix_now_ns();
            let (tx, rx) = oneshot::channel();
            self.flush(&mut r, now, false, Some(tx)).await;
            published = Some(rx);
            for key in self.users.leave(id, &r.spec.attachments) {
                self.release(&key);
            }
            info!(flow_log = %id, "flow log inactive");
        }
        self.refresh_status();
        published
    }

    /// A new window length for a running flow log, from its next boundary.
    pub fn set_window(&mut self, id: &str, window: Duration) {
        if let Some(r) = self.running.get_mut(id) {
            r.schedule.change_length(window);
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
        self.running.values().map(|r| r.schedule.current().end_ns).min()
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
        let waits = self.captures.iter().map(|(ns, c)| {
            let ready = c.rings_ready();
            Box::pin(async move {
                ready.await;
                ns.clone()
            })
        });
        let (ready, _, _) = futures_util::future::select_all(waits).await;
        Some(ready)
    }

    /// Reads the rings of one namespace.
    pub fn poll_rings(&mut self, netns: &Option<String>) {
        if let Some(c) = self.captures.get_mut(netns) {
            c.poll_rings();
        }
    }

    /// Publishes every partial window (and any held back), then lets go of
    /// the kernel state:
    /// pinned hooks go on counting for the next start, which resumes each
    /// flow log where its last window ended; unpinned ones are detached.
    pub async fn shutdown(&mut self) {
        self.cut(false).await;
        let now = self.clock.unix_now_ns();
        let keep_counting = self.pins.is_some();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            if let Some(mut r) = self.running.remove(&id) {
                self.flush(&mut r, now, keep_counting, None).await;
            }
        }
        for held in std::mem::take(&mut self.held) {
            let _ = self.publish.send(held).await;
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

    /// The window `seq` reached every sink (or each gave up on it and
    /// counted it): the journal lets go of it.
    pub fn resolved(&mut self, seqs: &[u64]) {
        if let Some(j) = &mut self.journal {
            for s in seqs {
                j.ledger_mut().resolve(*s);
            }
        }
        self.save_journal();
    }

    /// Closes the channel to the publisher, which then finishes what it
    /// has and ends.
    pub fn close_publisher(&mut self) {
        let (closed, _) = mpsc::channel(1);
        self.publish = closed;
    }

    /// Sealed windows not yet in every sink.
    pub fn unresolved_windows(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| j.ledger().sealed.len())
    }

    /// Whether kernel state is pinned (hooks outlive the agent).
    pub fn pinned(&self) -> bool {
        self.pins.is_some()
    }
}

/// Unix ns as the journal stores them (good until 2262).
fn unix_i64(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}
