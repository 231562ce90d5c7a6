//! Loading one namespace's programs and maps: the object sized by the
//! configuration, maps pinned (or adopted from an earlier run when they
//! match), each map checked and unwrapped into its typed handle, and the
//! jiffies probe made ready.

use std::os::fd::AsFd;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuHashMap, RingBuf},
};
use flowlog_common::{
    CONTROL_RTT, ClockSample, Control, Counters, FlowKey, FlowKey4, FlowStats, MAP_CLOCK, MAP_CONTROL,
    MAP_FLOWS4, MAP_FLOWS6, MAP_HANDSHAKES, MAP_MALFORMED, MAP_OVERFLOW, MAP_SKIPPED, MalformedKey,
    PROG_CLOCK, SkipKey,
};
use tokio::io::{Interest, unix::AsyncFd};
use tracing::info;

use super::{
    CaptureError, CaptureSettings, MapFill, NetnsCapture, PROGRAMS, attach, budget, chain, clock, netns,
    pins, sys,
};
use crate::{
    rtt::{RttLimits, RttTracker},
    window::OverflowTable,
};

/// The maps of a loaded object, typed.
pub(super) struct Maps {
    /// The IPv4 and IPv6 flow maps, as raw maps: only batch syscalls touch them.
    pub flows4: MapData,
    pub flows6: MapData,
    pub control: Array<MapData, Control>,
    pub skipped: PerCpuHashMap<MapData, SkipKey, Counters>,
    pub malformed: PerCpuHashMap<MapData, MalformedKey, Counters>,
    pub ring: AsyncFd<RingBuf<MapData>>,
    pub handshakes: AsyncFd<RingBuf<MapData>>,
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> CaptureError {
    move |e| CaptureError::Map {
        name,
        detail: chain(&e),
    }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, CaptureError> {
    ebpf.take_map(name).ok_or_else(|| CaptureError::Map {
        name,
        detail: "not in the object".into(),
    })
}

impl Maps {
    fn take(ebpf: &mut Ebpf) -> Result<Self, CaptureError> {
        let mut take = |name| take(ebpf, name);
        Ok(Self {
            flows4: flow_map(take(MAP_FLOWS4)?, MAP_FLOWS4, size_of::<FlowKey4>())?,
            flows6: flow_map(take(MAP_FLOWS6)?, MAP_FLOWS6, size_of::<FlowKey>())?,
            control: Array::try_from(take(MAP_CONTROL)?).map_err(map_err(MAP_CONTROL))?,
            skipped: PerCpuHashMap::try_from(take(MAP_SKIPPED)?).map_err(map_err(MAP_SKIPPED))?,
            malformed: PerCpuHashMap::try_from(take(MAP_MALFORMED)?).map_err(map_err(MAP_MALFORMED))?,
            ring: pollable_ring(take(MAP_OVERFLOW)?, MAP_OVERFLOW)?,
            handshakes: pollable_ring(take(MAP_HANDSHAKES)?, MAP_HANDSHAKES)?,
        })
    }
}

/// A ring buffer registered with the async reactor.
fn pollable_ring(map: Map, name: &'static str) -> Result<AsyncFd<RingBuf<MapData>>, CaptureError> {
    let ring = RingBuf::try_from(map).map_err(map_err(name))?;
    // SAFETY: the RingBuf owns its map fd, which stays open and the same
    // for as long as the RingBuf lives inside the AsyncFd.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| CaptureError::Map {
        name,
        detail: format!("cannot poll the ring buffer: {e}"),
    })
}

/// Checks a flow map's type and layout and unwraps its handle.
fn flow_map(map: Map, name: &'static str, key_size: usize) -> Result<MapData, CaptureError> {
    let Map::PerCpuHashMap(data) = map else {
        return Err(CaptureError::Map {
            name,
            detail: "not a per-CPU hash map".into(),
        });
    };
    let info = data.info().map_err(|e| CaptureError::Map {
        name,
        detail: chain(&e),
    })?;
    if info.key_size() as usize != key_size || info.value_size() as usize != size_of::<FlowStats>() {
        return Err(CaptureError::Map {
            name,
            detail: format!(
                "key/value sizes {}/{} (agent expects {}/{})",
                info.key_size(),
                info.value_size(),
                key_size,
                size_of::<FlowStats>()
            ),
        });
    }
    Ok(data)
}

/// The object with its maps sized as configured and, with `pins`, pinned
/// there (or taken from there).
fn load_object(
    config: &CaptureSettings,
    pins: Option<&pins::NetnsPins>,
    scope: &str,
) -> Result<Ebpf, CaptureError> {
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(MAP_FLOWS4, config.flow_map_entries)
        .map_max_entries(MAP_FLOWS6, config.flow_map_entries_v6)
        .map_max_entries(MAP_OVERFLOW, config.overflow_ring_bytes);
    let pin_paths: Vec<(&str, std::path::PathBuf)> = match pins {
        Some(p) => {
            p.create().map_err(|source| CaptureError::Pin {
                scope: scope.to_owned(),
                source,
            })?;
            pins::pinned_maps()
                .into_iter()
                .map(|n| (n, p.map_path(n)))
                .collect()
        }
        None => Vec::new(),
    };
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    loader.load(PROGRAMS).map_err(|e| CaptureError::Load {
        scope: scope.to_owned(),
        source: Box::new(e),
    })
}

/// The jiffies probe, its tick length measured now rather than in the
/// first drain.
fn clock_probe(
    ebpf: &Ebpf,
    map: Array<MapData, ClockSample>,
    scope: &str,
) -> Result<clock::ClockProbe, CaptureError> {
    let program_err = |detail: String| CaptureError::Program {
        program: PROG_CLOCK,
        scope: scope.to_owned(),
        detail,
    };
    let prog = ebpf
        .program(PROG_CLOCK)
        .ok_or_else(|| program_err("not in the object".into()))?;
    let fd = prog.fd().map_err(|e| program_err(chain(&e)))?;
    let probe =
        clock::ClockProbe::new(fd.as_fd(), map).map_err(|e| CaptureError::Clock { detail: chain(&e) })?;
    if let Err(e) = probe.reference() {
        tracing::warn!(error = %e, "cannot read kernel jiffies; records will lack first/last-seen");
    }
    Ok(probe)
}

impl NetnsCapture {
    /// Loads the programs and maps for `netns`, attached nowhere yet.
    /// `first` names the interface that needs them, so that a verifier
    /// rejection reads as an error of that attachment. With `pins`, maps
    /// pinned by an earlier run are adopted (when they match) and new ones
    /// are pinned.
    pub fn load(
        netns: Option<&str>,
        first: &str,
        config: &CaptureSettings,
        pins: Option<&pins::PinRoot>,
    ) -> Result<Self, CaptureError> {
        let scope = match netns {
            Some(n) => format!(" for {first} in netns {n}"),
            None => format!(" for {first}"),
        };
        budget::check_here(config)?;
        let netns_cookie = netns::run_in(netns, netns::cookie)?.map_err(|e| CaptureError::Map {
            name: MAP_CONTROL,
            detail: format!("cannot identify the network namespace: {e}"),
        })?;
        let pins = pins.map(|p| p.netns(netns));
        let adopted = pins.as_ref().is_some_and(|p| p.check(config, netns_cookie));
        let mut ebpf = load_object(config, pins.as_ref(), &scope)?;
        attach::load_programs(&mut ebpf, &scope)?;
        let mut maps = Maps::take(&mut ebpf)?;
        let control_flags = if config.rtt { CONTROL_RTT } else { 0 };
        // Adopted maps keep counting into the generation they were on.
        let generation = if adopted {
            maps.control.get(&0, 0).map_err(map_err(MAP_CONTROL))?.generation & 1
        } else {
            0
        };
        let state = Control {
            generation,
            flags: control_flags,
            netns_cookie,
        };
        maps.control.set(0, state, 0).map_err(map_err(MAP_CONTROL))?;
        let clock_map = Array::try_from(take(&mut ebpf, MAP_CLOCK)?).map_err(map_err(MAP_CLOCK))?;
        let clock = clock_probe(&ebpf, clock_map, &scope)?;
        let barrier = sys::ProgramBarrier::new().map_err(|e| CaptureError::Map {
            name: "program barrier",
            detail: chain(&e),
        })?;
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| CaptureError::Map {
            name: "per-CPU maps",
            detail: format!("{what}: {e}"),
        })?;
        if adopted {
            info!(
                netns = netns.unwrap_or("-"),
                generation, "adopted pinned maps; counting never stopped"
            );
        }
        Ok(Self {
            netns: netns.map(str::to_owned),
            ebpf,
            maps,
            clock,
            rtt: RttTracker::new(RttLimits::default()),
            control_flags,
            netns_cookie,
            pins,
            adopted,
            barrier,
            generation,
            attached: Vec::new(),
            pending: [OverflowTable::default(), OverflowTable::default()],
            pending_skipped: Vec::new(),
            pending_limit: config.flow_map_entries as usize,
            malformed_seen: Vec::new(),
            cpus,
            flow_map_entries: config.flow_map_entries,
            last_map_flows: MapFill {
                ipv4_entries: config.flow_map_entries,
                ipv6_entries: config.flow_map_entries_v6,
                ..Default::default()
            },
            undeleted: None,
            idle_unread: false,
        })
    }
}
