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

mod distribute;
mod restart;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

pub use distribute::{Aggregates, One, distribute};

use crate::{
    capture::{CaptureError, CaptureSettings, Deletion, Drained, MapFill, NetnsCapture, pins::PinRoot},
    config::Attachment,
    enrich::{RegionTable, SharedRegions},
    journal::{CutRecord, Journal, NsCut, SpecAttachment, Target, User, WindowSpec},
    model::clock,
    model::{AttachmentInfo, ClockOffset, Identity, JiffiesRef, LogstoreRef, Window},
    record::format::LogFormat,
    status::{AttachmentStatus, StatusBoard},
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

impl Aggregates for BTreeMap<String, Running> {
    fn aggregate(&mut self, flow_log: &str) -> Option<&mut WindowAggregate> {
        self.get_mut(flow_log).map(|r| &mut r.aggregate)
    }
}

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
    /// Drained counts and windows in flight, on disk.
    journal: Option<Journal>,
    /// The region table in force (a reload swaps it).
    regions: SharedRegions,
    /// Windows sealed while the ledger could not be saved: a sink may see
    /// a window only once the seal is on disk.
    held: Vec<WindowRecords>,
}

/// Loads a namespace's programs and maps on any thread.
#[derive(Clone)]
pub struct Loader {
    settings: CaptureSettings,
    pins: Option<PinRoot>,
}

impl Loader {
    pub fn load(&self, netns: Option<&str>, first: &str) -> Result<NetnsCapture, CaptureError> {
        NetnsCapture::load(netns, first, &self.settings, self.pins.as_ref())
    }
}

/// A drain of one namespace, not yet journaled.
struct NsDrain {
    netns: Option<String>,
    drained: Drained,
    deletion: Deletion,
    /// Who the counts belong to, when not the interfaces' users now (a
    /// restart's recovered counts belong to those of the last run).
    targets: Option<Vec<Target>>,
}

/// Sealed windows held back while the ledger cannot be saved, at most:
/// beyond, they go out with the risk said in the log.
const MAX_HELD: usize = 64;

/// What turning an aggregate into records needs besides the counts.
struct Rendering {
    window: Window,
    attachments: Vec<AttachmentInfo>,
    identity: Identity,
    format: Option<Arc<LogFormat>>,
    regions: Arc<RegionTable>,
}

impl Engine {
    pub fn new(
        settings: CaptureSettings,
        pins: Option<PinRoot>,
        journal: Option<Journal>,
        publish: mpsc::Sender<WindowRecords>,
        status: StatusBoard,
        regions: SharedRegions,
    ) -> Self {
        let engine = Self {
            regions,
            pins,
            journal,
            settings,
            captures: BTreeMap::new(),
            users: BTreeMap::new(),
            running: BTreeMap::new(),
            publish,
            status,
            jiffies: None,
            held: Vec::new(),
        };
        engine.journal_status();
        engine
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
        info!(flow_log = %spec.id, attachments = spec.attachments.len(), window_secs = spec.window.as_secs(), "flow log active");
        if let Some(j) = &mut self.journal {
            let first = j.next_cut();
            j.ledger_mut()
                .open(&spec.id, unix_i64(now), first, spec.window_spec());
        }
        self.running.insert(
            spec.id.clone(),
            Running {
                window_start: now,
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
    pub fn loader(&self) -> Loader {
        Loader {
            settings: self.settings,
            pins: self.pins.clone(),
        }
    }

    /// A namespace loaded off the control loop joins the engine. (Only one
    /// load of a namespace runs at a time; a capture for a namespace that
    /// is here already is dropped.)
    pub fn add_capture(&mut self, netns: Option<String>, cap: NetnsCapture) {
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
            self.flush(&mut r, now, false, Some(tx)).await;
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
        type Ready<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Option<Option<String>>> + Send + 'a>>;
        fn ready<'a, T: std::os::fd::AsRawFd + Sync>(
            ring: &'a tokio::io::unix::AsyncFd<T>,
            ns: &'a Option<String>,
        ) -> Ready<'a> {
            Box::pin(async move {
                ring.readable()
                    .await
                    .map(|mut g| g.clear_ready())
                    .ok()
                    .map(|()| ns.clone())
            })
        }
        let waits = self
            .captures
            .iter()
            .flat_map(|(ns, c)| [ready(c.ring(), ns), ready(c.handshake_ring(), ns)]);
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

    /// Publishes every partial window (and any held back), then lets go of
    /// the kernel state:
    /// pinned hooks go on counting for the next start, which resumes each
    /// flow log where its last window ended; unpinned ones are detached.
    pub async fn shutdown(&mut self) {
        self.cut(false).await;
        let now = clock::unix_now_ns();
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

    /// Saves the ledger; whether it is on disk.
    fn save_journal(&mut self) -> bool {
        let saved = match &mut self.journal {
            Some(j) => tokio::task::block_in_place(|| j.save_or_log()),
            None => true,
        };
        self.journal_status();
        saved
    }

    /// Hands a window to the publisher once its seal is on disk; before,
    /// it waits with the windows held before it.
    async fn send(&mut self, batch: WindowRecords, sealed: bool) {
        if !sealed && self.held.len() < MAX_HELD {
            warn!(flow_log = %batch.flow_log_id, held = self.held.len() + 1, "the ledger cannot be saved; the window waits");
            self.held.push(batch);
            return;
        }
        if !sealed {
            error!(flow_log = %batch.flow_log_id, "the ledger still cannot be saved; publishing the window anyway: a crash now may write it twice");
        }
        for held in std::mem::take(&mut self.held) {
            if self.publish.send(held).await.is_err() {
                warn!("publisher gone; a held window stays in the journal");
            }
        }
        let id = batch.flow_log_id.clone();
        if self.publish.send(batch).await.is_err() {
            warn!(flow_log = %id, "publisher gone; the window stays in the journal");
        }
    }

    fn journal_status(&self) {
        if let Some(j) = &self.journal {
            let mut s = self.status.lock();
            s.journal_cuts_written = j.stats.cuts_written;
            s.journal_bytes_written = j.stats.bytes_written;
            s.journal_write_errors = j.stats.write_errors;
            s.journal_cuts_lost = j.stats.cuts_lost;
            s.journal_sealed_windows = j.ledger().sealed.len() as u64;
            s.journal_windows_lost = j.stats.windows_lost;
        }
    }

    /// Drains every namespace once and hands the flows to the flow logs;
    /// with `publish_due`, then publishes the windows that have ended.
    async fn cut(&mut self, publish_due: bool) {
        let mut drained: Vec<NsDrain> = Vec::new();
        for (ns, cap) in &mut self.captures {
            // Entries a journaled drain left in the kernel go first: until
            // they are gone the generation must not flip back onto them.
            if let Err(e) = tokio::task::block_in_place(|| cap.retry_deletion()) {
                error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "drained entries still not deleted; not draining this namespace until they are");
                self.status.lock().drain_errors += 1;
                continue;
            }
            let started = std::time::Instant::now();
            let result = tokio::task::block_in_place(|| cap.drain());
            self.status.metrics().observe_drain(started.elapsed());
            match result {
                Ok((d, deletion)) => {
                    self.jiffies = d.jiffies.or(self.jiffies);
                    drained.push(NsDrain {
                        netns: ns.clone(),
                        drained: d,
                        deletion,
                        targets: None,
                    });
                }
                Err(e) => {
                    error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "drain failed");
                    self.status.lock().drain_errors += 1;
                }
            }
        }
        let record = self.commit_cut(drained);
        for ns in record.namespaces {
            distribute(ns, &mut self.running);
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
            self.flush(&mut r, end, true, None).await;
            self.running.insert(id, r);
        }
    }

    /// Journals drained namespaces as one cut, then deletes what was read
    /// from the kernel. Returns the cut, for its counts to be handed out.
    fn commit_cut(&mut self, drained: Vec<NsDrain>) -> CutRecord {
        let mut record = CutRecord {
            seq: 0,
            at_ns: unix_i64(clock::unix_now_ns()),
            namespaces: Vec::with_capacity(drained.len()),
        };
        let mut deletions = Vec::with_capacity(drained.len());
        let mut side = Vec::with_capacity(drained.len());
        for NsDrain {
            netns: ns,
            drained: d,
            deletion,
            targets,
        } in drained
        {
            let Some(cap) = self.captures.get(&ns) else {
                continue;
            };
            side.push((d.malformed, d.overflow_events));
            record.namespaces.push(NsCut {
                netns: ns.clone(),
                cookie: cap.netns_cookie(),
                generation: cap.generation(),
                targets: targets.unwrap_or_else(|| self.targets(cap)),
                data: d.window,
            });
            deletions.push((ns, deletion));
        }
        let committed = match &mut self.journal {
            _ if record.namespaces.is_empty() => true,
            Some(j) => match tokio::task::block_in_place(|| j.commit(&mut record)) {
                Ok(()) => true,
                Err(e) => {
                    error!(error = %crate::capture::chain(&e), "cannot journal the cut; its counts stay in the kernel and the next cut reads them again");
                    false
                }
            },
            None => true,
        };
        for (ns, deletion) in deletions {
            let Some(cap) = self.captures.get_mut(&ns) else {
                continue;
            };
            if !committed {
                cap.untake(deletion);
                continue;
            }
            if let Err(e) = tokio::task::block_in_place(|| cap.delete(deletion)) {
                error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "deleting drained entries failed; tried again before the next drain");
                self.status.lock().drain_errors += 1;
            }
        }
        self.journal_status();
        for (ns, (malformed, overflow_events)) in record.namespaces.iter().zip(side) {
            if let Some(cap) = self.captures.get(&ns.netns) {
                // Counts of a cut the journal refused are read again: only
                // the malformed deltas (already taken) are reported now.
                let (data, events) = if committed {
                    (&ns.data, overflow_events)
                } else {
                    (&WindowAggregate::default(), 0)
                };
                self.account(cap, data, &malformed, events);
            }
        }
        if !committed {
            // Nothing of it is handed out: the kernel still has it all.
            record.namespaces.clear();
        }
        record
    }

    /// ifindex → the flow logs (with their slot) using each interface of a
    /// namespace, as a cut records it.
    fn targets(&self, cap: &NetnsCapture) -> Vec<Target> {
        let ns = cap.netns().map(str::to_owned);
        cap.attached()
            .map(|a| Target {
                ifindex: a.info.ifindex,
                interface: a.info.interface.clone(),
                users: self
                    .users
                    .get(&(ns.clone(), a.info.interface.clone()))
                    .map(|u| {
                        u.iter()
                            .map(|(id, slot)| User {
                                flow_log: id.clone(),
                                slot: *slot,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Status and metrics of one namespace's drain.
    fn account(
        &self,
        cap: &NetnsCapture,
        data: &WindowAggregate,
        malformed: &[crate::capture::MalformedCount],
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

    /// Ends a flow log's window at `end`: seals it in the journal, turns
    /// its aggregate into records and hands them to the publisher. With
    /// `reopen`, the flow log's next window starts at `end` (with any
    /// pending length or format change).
    async fn flush(
        &mut self,
        r: &mut Running,
        end: i128,
        reopen: bool,
        published: Option<oneshot::Sender<()>>,
    ) {
        let window = Window {
            start_ns: r.window_start,
            end_ns: end,
        };
        let aggregate = std::mem::take(&mut r.aggregate);
        let regions = std::mem::replace(&mut r.regions, self.regions.current());
        let spec = r.spec.clone();
        let seq = self.journal.as_mut().and_then(|j| {
            let last = j.next_cut().saturating_sub(1);
            j.ledger_mut().seal(&spec.id, unix_i64(end), last)
        });
        r.last_window = Some(window);
        if reopen {
            if let Some(w) = r.next_window.take() {
                r.spec.window = w;
            }
            if let Some(f) = r.next_format.take() {
                r.spec.format = f;
            }
            r.window_start = end;
            r.window_end = clock::next_boundary(end.max(clock::unix_now_ns()), r.spec.window);
            if let Some(j) = &mut self.journal {
                let first = j.next_cut();
                j.ledger_mut()
                    .open(&r.spec.id, unix_i64(end), first, r.spec.window_spec());
            }
        }
        // Sealed before any sink sees a record of it.
        let sealed = self.save_journal();
        let rendering = Rendering {
            window,
            attachments: attachment_infos(&spec.window_spec().attachments),
            identity: spec.identity.clone(),
            format: spec.format.clone(),
            regions,
        };
        let Some(data) = self.render(&spec.id, rendering, aggregate).await else {
            // Finishing it failed (a bug, and it would fail again): the
            // window is lost, said loudly, and the journal lets go of it.
            if let (Some(j), Some(seq)) = (&mut self.journal, seq) {
                j.ledger_mut().resolve(seq);
                j.stats.windows_lost += 1;
            }
            self.save_journal();
            return;
        };
        let batch = WindowRecords {
            flow_log_id: spec.id.clone(),
            logstore: spec.logstore.clone(),
            data: Arc::new(data),
            seq,
            replay: false,
            published,
        };
        self.send(batch, sealed).await;
    }

    /// Turns an aggregate into a finished window, off the control loop
    /// (sorting a million flows takes a moment).
    async fn render(&self, id: &str, r: Rendering, aggregate: WindowAggregate) -> Option<WindowData> {
        let mut clock = ClockOffset::sample();
        if let Some(j) = self.jiffies {
            clock = clock.with_jiffies(j);
        }
        match tokio::task::spawn_blocking(move || {
            aggregate
                .finish(r.window, r.attachments, r.identity, clock, r.regions)
                .with_format(r.format)
        })
        .await
        {
            Ok(d) => Some(d),
            Err(e) => {
                error!(flow_log = %id, error = %e, "finishing the window failed; it stays in the journal");
                None
            }
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

    /// Flow-map fill per namespace, each family against its own map.
    pub fn map_fill(&self) -> Vec<(Option<String>, MapFill)> {
        self.captures
            .iter()
            .map(|(ns, c)| (ns.clone(), c.last_map_flows()))
            .collect()
    }
}

/// Unix ns as the journal stores them (good until 2262).
fn unix_i64(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}

/// A window's attachments as records name them: slot i is attachment i.
fn attachment_infos(attachments: &[SpecAttachment]) -> Vec<AttachmentInfo> {
    attachments
        .iter()
        .enumerate()
        .map(|(slot, a)| AttachmentInfo {
            ifindex: slot as u32,
            interface: a.interface.clone(),
            netns: a.netns.clone(),
            attachment_id: a.attachment_id.clone(),
            region_id: a.region_id.clone(),
        })
        .collect()
}
