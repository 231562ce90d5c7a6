//! Capture: load the kernel programs, attach them, and drain their maps.
//!
//! One [`NetnsCapture`] per network namespace: interface indexes are only
//! unique within a namespace, so each namespace gets its own programs and
//! maps. Draining a window is [`NetnsCapture::drain`]: flip the active
//! generation, wait for programs still on the old one ([`sys::ProgramBarrier`]),
//! then read and delete the old generation's entries with batch syscalls.

mod attach;
pub mod budget;
mod clock;
mod drain;
mod load;
pub use drain::{handshake_event, overflow_event};
pub mod iface;
pub mod netns;
pub mod pins;
pub mod source;
pub mod sys;
pub mod unpin;

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use flowlog_common::{
    CONTROL_RTT, Control, Counters, MAP_CONTROL, MalformedKey, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP,
    SkipKey,
};
use std::os::fd::AsFd;

use tokio::io::unix::AsyncFd;
use tracing::info;

pub use attach::Hook;
pub use drain::{Deletion, Drained, MalformedCount};
pub use source::{FlowSource, KernelLoader, SourceLoader};

use crate::{
    config::{Attachment, Config},
    model::AttachmentInfo,
    rtt::{RttStats, RttTracker},
    window::OverflowTable,
};

/// The compiled kernel programs, embedded at build time.
static PROGRAMS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flowlog-programs"));

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The eBPF object could not be loaded (maps, BTF, relocations).
    #[error("loading the kernel programs{scope} failed")]
    Load {
        scope: String,
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// A program was rejected by the verifier or could not be loaded.
    #[error("loading program {program}{scope} failed: {detail}")]
    Program {
        program: &'static str,
        scope: String,
        detail: String,
    },
    /// A map the programs define is missing or has another layout.
    #[error("map {name} is missing or has an unexpected layout: {detail}")]
    Map { name: &'static str, detail: String },
    /// The interface does not exist in its namespace.
    #[error("interface {attachment} does not exist")]
    NoInterface { attachment: String },
    /// The kernel refused to attach a program to an interface.
    #[error("attaching {hook} to interface {attachment} failed: {detail}")]
    Attach {
        hook: &'static str,
        attachment: String,
        detail: String,
    },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    /// A syscall used while draining failed.
    #[error("draining {what} failed: {detail}")]
    Drain { what: &'static str, detail: String },
    /// The namespace's pinned-state directory could not be made.
    #[error("pinning state{scope} failed")]
    Pin {
        scope: String,
        #[source]
        source: pins::PinError,
    },
    /// Jiffies could not be placed on the clock (probe program or map).
    #[error("reading the kernel clock failed: {detail}")]
    Clock { detail: String },
    /// The maps would take more of the machine's memory than allowed.
    #[error(transparent)]
    TooLarge(#[from] budget::TooLarge),
}

/// An error and its causes on one line, for errors carried as text.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// An attached interface and the hooks serving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedInterface {
    pub info: AttachmentInfo,
    pub ingress: Hook,
    pub egress: Hook,
    pub driver: String,
}

/// What capture needs from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Entries of the IPv4 flow map.
    pub flow_map_entries: u32,
    /// Entries of the IPv6 flow map.
    pub flow_map_entries_v6: u32,
    pub overflow_ring_bytes: u32,
    pub rtt: bool,
}

impl From<&Config> for CaptureSettings {
    fn from(c: &Config) -> Self {
        Self {
            flow_map_entries: c.flow_map_entries,
            flow_map_entries_v6: c.flow_map_entries_v6,
            overflow_ring_bytes: c.overflow_ring_bytes,
            rtt: c.rtt,
        }
    }
}

/// Programs, maps and attachments of one network namespace.
pub struct NetnsCapture {
    netns: Option<String>,
    // Dropping it detaches every link (all are fd-based bpf_links).
    ebpf: Ebpf,
    maps: load::Maps,
    clock: clock::ClockProbe,
    rtt: RttTracker,
    control_flags: u32,
    netns_cookie: u64,
    /// Where this namespace's state is pinned (None: pinning off).
    pins: Option<pins::NetnsPins>,
    /// Whether the maps were pinned by an earlier run and adopted.
    adopted: bool,
    barrier: sys::ProgramBarrier,
    generation: u32,
    attached: Vec<(AttachedInterface, Vec<attach::Link>)>,
    /// Overflow events not yet drained, per generation.
    pending: [OverflowTable; 2],
    /// Overflow events dropped by the agent (pending table full), per
    /// (ifindex, direction, generation).
    pending_skipped: Vec<(SkipKey, Counters)>,
    pending_limit: usize,
    malformed_seen: Vec<(MalformedKey, Counters)>,
    cpus: usize,
    flow_map_entries: u32,
    /// Flows read at the last drain, IPv4 and IPv6.
    last_map_flows: MapFill,
    /// A journaled drain whose kernel entries could not all be deleted yet.
    undeleted: Option<drain::Deletion>,
    /// The idle generation holds entries no journaled drain took (a flip
    /// whose read or journal write failed, or maps adopted from a run that
    /// died there): the next drain reads it again instead of flipping.
    idle_unread: bool,
}

/// Flows in each family's map at the last drain, against its capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapFill {
    pub ipv4: u64,
    pub ipv4_entries: u32,
    pub ipv6: u64,
    pub ipv6_entries: u32,
}

impl MapFill {
    /// (family, flows, entries) for each family.
    pub fn families(&self) -> [(&'static str, u64, u32); 2] {
        [
            ("ipv4", self.ipv4, self.ipv4_entries),
            ("ipv6", self.ipv6, self.ipv6_entries),
        ]
    }

    /// Flows over entries; 0 for a map of no entries.
    pub fn ratio(flows: u64, entries: u32) -> f64 {
        if entries == 0 {
            0.0
        } else {
            flows as f64 / f64::from(entries)
        }
    }
}

impl NetnsCapture {
    /// Runs the XDP program on one frame (BPF_PROG_TEST_RUN), as if it
    /// arrived on the loopback device of the calling thread's namespace:
    /// for checking what the kernel side makes of crafted frames. Returns
    /// the program's verdict and the frame as it left the program.
    pub fn run_xdp(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), CaptureError> {
        let prog = self
            .ebpf
            .program(PROG_XDP)
            .ok_or_else(|| CaptureError::Map {
                name: PROG_XDP,
                detail: "program missing".into(),
            })?
            .fd()
            .map_err(|e| CaptureError::Map {
                name: PROG_XDP,
                detail: chain(&e),
            })?;
        sys::test_run_xdp(prog.as_fd(), frame).map_err(|e| CaptureError::Drain {
            what: "a test run",
            detail: chain(&e),
        })
    }

    /// Whether this capture carries on from maps an earlier run pinned.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Forgets the namespace's pinned state: its links detach and its maps
    /// are freed once this capture is dropped. For when no flow log needs
    /// the namespace any more (not for a shutdown, which leaves it).
    pub fn unpin(&self) {
        if let Some(p) = &self.pins {
            p.remove();
        }
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    pub fn attached(&self) -> impl Iterator<Item = &AttachedInterface> {
        self.attached.iter().map(|(a, _)| a)
    }

    pub fn attachment_infos(&self) -> Vec<AttachmentInfo> {
        self.attached().map(|a| a.info.clone()).collect()
    }

    /// Hooks the programs to one more interface of this namespace. On
    /// failure nothing of it stays attached.
    pub fn attach(&mut self, att: &Attachment) -> Result<AttachedInterface, CaptureError> {
        if let Some(existing) = self.attached().find(|a| a.info.interface == att.interface) {
            return Ok(existing.clone());
        }
        let ns = self.netns.as_deref();
        let lookup_err = |e: std::io::Error| CaptureError::Attach {
            hook: "lookup",
            attachment: att.to_string(),
            detail: e.to_string(),
        };
        let info = netns::run_in(ns, || iface::lookup(&att.interface))?
            .map_err(lookup_err)?
            .ok_or_else(|| CaptureError::NoInterface {
                attachment: att.to_string(),
            })?;
        // bpffs work (adopting, pinning) happens here; attaching, which
        // resolves interface indexes, in the namespace.
        let adopted = match &self.pins {
            Some(p) => attach::adopt_links(&self.ebpf, att, p, &info),
            None => attach::Adopted::default(),
        };
        let ebpf = &mut self.ebpf;
        let (attached, named) = netns::run_in(ns, || attach::attach(ebpf, att, &info, adopted))??;
        let links = match &self.pins {
            Some(p) => {
                let (mut kept, lost) = attach::pin_links(&mut self.ebpf, p, &att.interface, named);
                for hook in lost {
                    let ebpf = &mut self.ebpf;
                    match netns::run_in(ns, || attach::reattach(ebpf, att, info.ifindex, hook))? {
                        Ok(link) => kept.push(link),
                        Err(e) => {
                            attach::detach(&mut self.ebpf, kept);
                            return Err(e);
                        }
                    }
                }
                kept
            }
            None => named.into_iter().map(|(_, l)| l).collect(),
        };
        self.attached.push((attached.clone(), links));
        Ok(attached)
    }

    /// Unhooks the programs from `interface`.
    pub fn detach(&mut self, interface: &str) {
        if let Some(i) = self
            .attached
            .iter()
            .position(|(a, _)| a.info.interface == interface)
        {
            let (a, links) = self.attached.remove(i);
            attach::detach(&mut self.ebpf, links);
            info!(interface = %a.info.interface, netns = self.netns.as_deref().unwrap_or("-"), "detached");
        }
    }

    pub fn is_empty(&self) -> bool {
        self.attached.is_empty()
    }

    /// Kernel run statistics of the loaded programs: (name, total run time,
    /// runs). The counters only move while `kernel.bpf_stats_enabled` is 1.
    pub fn program_stats(&self) -> Vec<(&'static str, std::time::Duration, u64)> {
        [PROG_XDP, PROG_TC_INGRESS, PROG_TC_EGRESS]
            .into_iter()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((name, info.run_time(), info.run_count()))
            })
            .collect()
    }

    /// The IPv4 flow map (keyed by `FlowKey4`), for tooling that inspects
    /// or fills it (benchmarks).
    pub fn flow_map4_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.maps.flows4.fd().as_fd()
    }

    /// The generation programs currently count into.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Kernel cookie of the namespace the maps serve.
    pub fn netns_cookie(&self) -> u64 {
        self.netns_cookie
    }

    /// Turns TCP handshake sampling on or off for the running programs.
    pub fn set_rtt(&mut self, on: bool) -> Result<(), CaptureError> {
        self.control_flags = if on { CONTROL_RTT } else { 0 };
        self.maps
            .control
            .set(
                0,
                Control {
                    generation: self.generation,
                    flags: self.control_flags,
                    netns_cookie: self.netns_cookie,
                },
                0,
            )
            .map_err(|e| CaptureError::Map {
                name: MAP_CONTROL,
                detail: chain(&e),
            })
    }

    /// Flows read from each kernel map at the last drain.
    pub fn last_map_flows(&self) -> MapFill {
        self.last_map_flows
    }

    pub fn flow_map_entries(&self) -> u32 {
        self.flow_map_entries
    }

    /// The overflow ring, for the pipeline to wait on.
    pub fn ring(&self) -> &AsyncFd<RingBuf<MapData>> {
        &self.maps.ring
    }

    /// The handshake ring, for the pipeline to wait on.
    pub fn handshake_ring(&self) -> &AsyncFd<RingBuf<MapData>> {
        &self.maps.handshakes
    }

    pub fn rtt_stats(&self) -> RttStats {
        self.rtt.stats
    }
}
