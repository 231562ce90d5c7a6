//! A kernel for tests that need no root: a source that attaches the
//! interfaces the test says exist and drains the packets the test counted,
//! and an engine built on it with a clock the test moves. What it stands
//! in for is checked against real packets by the netns tests; what it lets
//! a unit test check is the engine's and the control plane's own logic.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use flowlog_common::{Direction, FlowKey, FlowStats};
use tokio::sync::mpsc;

use super::{Engine, WindowRecords};
use crate::{
    capture::{
        AttachedInterface, CaptureError, Deletion, Drained, FlowSource, Hook, MapFill, SourceLoader,
        source::Ready,
    },
    config::Attachment,
    enrich::SharedRegions,
    model::{AttachmentInfo, clock::ManualClock},
    record::FlowLogRecord,
    rtt::RttStats,
    telemetry::{AgentInfo, Telemetry},
    window::WindowAggregate,
};

pub const S: i128 = 1_000_000_000;

/// What the fake kernel holds, shared by the loader, its sources and the
/// test.
#[derive(Default)]
pub struct Kernel {
    /// Interfaces that exist, with their index.
    pub interfaces: BTreeMap<String, u32>,
    /// Packets counted since the last drain, per interface index.
    pub counted: BTreeMap<u32, u64>,
    pub attached: BTreeSet<String>,
    pub attach_calls: Vec<String>,
    pub loads: usize,
}

#[derive(Clone, Default)]
pub struct FakeKernel(Arc<Mutex<Kernel>>);

impl FakeKernel {
    pub fn with_interfaces(names: &[(&str, u32)]) -> Self {
        let k = Self::default();
        k.lock().interfaces = names.iter().map(|(n, i)| ((*n).to_owned(), *i)).collect();
        k
    }

    pub fn lock(&self) -> MutexGuard<'_, Kernel> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `packets` packets of one flow on an interface.
    pub fn count(&self, interface: &str, packets: u64) {
        let mut k = self.lock();
        let Some(&ifindex) = k.interfaces.get(interface) else {
            panic!("no interface {interface}");
        };
        *k.counted.entry(ifindex).or_default() += packets;
    }
}

struct FakeSource {
    pub kernel: FakeKernel,
    netns: Option<String>,
    attached: Vec<AttachedInterface>,
}

impl SourceLoader for FakeKernel {
    fn load(&self, netns: Option<&str>, _first: &str) -> Result<Box<dyn FlowSource>, CaptureError> {
        self.lock().loads += 1;
        Ok(Box::new(FakeSource {
            kernel: self.clone(),
            netns: netns.map(str::to_owned),
            attached: Vec::new(),
        }))
    }
}

impl FlowSource for FakeSource {
    fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    fn attach(&mut self, a: &Attachment) -> Result<AttachedInterface, CaptureError> {
        let mut k = self.kernel.lock();
        k.attach_calls.push(a.interface.clone());
        let Some(&ifindex) = k.interfaces.get(&a.interface) else {
            return Err(CaptureError::NoInterface {
                attachment: a.interface.clone(),
            });
        };
        k.attached.insert(a.interface.clone());
        let att = AttachedInterface {
            info: AttachmentInfo {
                ifindex,
                interface: a.interface.clone(),
                netns: a.netns.clone(),
                ..Default::default()
            },
            ingress: Hook::Tc,
            egress: Hook::Tc,
            driver: "fake".into(),
        };
        self.attached.push(att.clone());
        Ok(att)
    }

    fn detach(&mut self, interface: &str) {
        self.kernel.lock().attached.remove(interface);
        self.attached.retain(|a| a.info.interface != interface);
    }

    fn attached(&self) -> Box<dyn Iterator<Item = &AttachedInterface> + '_> {
        Box::new(self.attached.iter())
    }

    fn is_empty(&self) -> bool {
        self.attached.is_empty()
    }

    fn adopted(&self) -> bool {
        false
    }

    fn unpin(&self) {}

    fn generation(&self) -> u32 {
        0
    }

    fn netns_cookie(&self) -> u64 {
        1
    }

    fn drain(&mut self) -> Result<(Drained, Deletion), CaptureError> {
        let counted = std::mem::take(&mut self.kernel.lock().counted);
        let mut window = WindowAggregate::default();
        for (ifindex, packets) in counted {
            if !self.attached.iter().any(|a| a.info.ifindex == ifindex) {
                continue;
            }
            let key = FlowKey {
                src_addr: [0; 16],
                dst_addr: [0; 16],
                ifindex,
                src_port: 40_000,
                dst_port: 443,
                protocol: 6,
                direction: Direction::Ingress as u8,
                ip_version: 4,
                generation: 0,
            };
            let stats = FlowStats {
                packets,
                bytes: packets * 100,
                ..Default::default()
            };
            window.flows.push(key, stats);
        }
        let drained = Drained {
            window,
            ..Default::default()
        };
        Ok((drained, Deletion::default()))
    }

    fn read_idle(&mut self) -> Result<(Drained, Deletion), CaptureError> {
        Ok(Default::default())
    }

    fn delete(&mut self, _: Deletion) -> Result<(), CaptureError> {
        Ok(())
    }

    fn retry_deletion(&mut self) -> Result<(), CaptureError> {
        Ok(())
    }

    fn untake(&mut self, _: Deletion) {}

    fn rings_ready(&self) -> Ready<'_> {
        Box::pin(std::future::pending())
    }

    fn poll_rings(&mut self) {}

    fn rtt_stats(&self) -> RttStats {
        RttStats::default()
    }

    fn last_map_flows(&self) -> MapFill {
        MapFill::default()
    }
}

pub struct Harness {
    pub engine: Engine,
    pub kernel: FakeKernel,
    pub clock: Arc<ManualClock>,
    pub published: mpsc::Receiver<WindowRecords>,
    pub dir: flowlog_tests::agent::TempDir,
}

pub fn harness(interfaces: &[(&str, u32)], now: i128) -> Harness {
    let dir = flowlog_tests::agent::TempDir::new().expect("a scratch directory");
    let kernel = FakeKernel::with_interfaces(interfaces);
    let clock = Arc::new(ManualClock::at(now));
    let (tx, rx) = mpsc::channel(64);
    let engine = Engine::new(
        Arc::new(kernel.clone()),
        None,
        None,
        tx,
        Telemetry::new(dir.path(), AgentInfo::default()),
        SharedRegions::default(),
    )
    .with_clock(clock.clone());
    Harness {
        engine,
        kernel,
        clock,
        published: rx,
        dir,
    }
}

impl Harness {
    /// The next window published, with its records.
    pub fn next_window(&mut self) -> (WindowRecords, Vec<FlowLogRecord>) {
        let w = self.published.try_recv().expect("a window was published");
        let records = w.data.records().collect();
        (w, records)
    }

    pub fn nothing_published(&mut self) -> bool {
        self.published.try_recv().is_err()
    }
}

/// Packets per interface name in a window's OK records.
pub fn packets(records: &[FlowLogRecord]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.log_status == crate::record::LOG_STATUS_OK)
    {
        *out.entry(r.interface.clone().unwrap_or_default()).or_default() += r.packets.unwrap_or(0);
    }
    out
}
