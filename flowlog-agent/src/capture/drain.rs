//! Draining one window out of the kernel without losing or double-counting
//! increments that race with it.
//!
//! Order matters: (1) point programs at the other generation, (2) wait until
//! no program can still be on the old one, (3) read the overflow ring to the
//! end (events of the old generation were all submitted before step 2
//! returned), (4) empty the old generation's flow map and skip counters.

use std::os::fd::AsFd;

use flowlog_common::{
    Control, Counters, Direction, FlowKey, FlowKey4, FlowStats, HandshakeEvent, Malformed, OverflowEvent,
    SkipKey, parse::IPPROTO_TCP,
};
use tracing::warn;

use super::{CaptureError, NetnsCapture, sys};
use crate::window::{FlowTable, JiffiesRef, WindowAggregate, merge};

/// Entries per batch syscall.
const BATCH: usize = 8192;

/// Malformed packets seen since the previous drain on one attachment,
/// direction and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MalformedCount {
    pub ifindex: u32,
    pub direction: Direction,
    pub reason: Malformed,
    pub counters: Counters,
}

/// What one drain produced.
#[derive(Debug, Default)]
pub struct Drained {
    pub window: WindowAggregate,
    pub malformed: Vec<MalformedCount>,
    /// Flows read from the kernel map (before overflow events joined).
    pub map_flows: usize,
    pub overflow_events: u64,
    /// Where kernel jiffies stood at the drain, to date the flows; `None`
    /// if the clock probe failed (records then lack first/last-seen).
    pub jiffies: Option<JiffiesRef>,
}

impl Drained {
    /// Adds another drain's counts to this one.
    fn absorb(&mut self, other: Drained) {
        for (key, stats) in other.window.flows.iter() {
            self.window.flows.push(*key, *stats);
        }
        for ((ifindex, dir), c) in &other.window.skipped {
            self.window.add_skipped(*ifindex, *dir, c);
        }
        self.window.rtt.extend(other.window.rtt);
        self.malformed.extend(other.malformed);
        self.map_flows += other.map_flows;
        self.overflow_events += other.overflow_events;
    }
}

fn drain_err(what: &'static str) -> impl Fn(String) -> CaptureError {
    move |detail| CaptureError::Drain { what, detail }
}

/// An overflow-ring item as the kernel wrote it; `None` when too short
/// (never from this build's programs, but ring bytes are outside input).
pub fn overflow_event(item: &[u8]) -> Option<OverflowEvent> {
    (item.len() >= size_of::<OverflowEvent>()).then(|| {
        // SAFETY: length checked; every bit pattern is a valid OverflowEvent.
        unsafe { item.as_ptr().cast::<OverflowEvent>().read_unaligned() }
    })
}

/// A handshake-ring item; `None` when too short.
pub fn handshake_event(item: &[u8]) -> Option<HandshakeEvent> {
    (item.len() >= size_of::<HandshakeEvent>()).then(|| {
        // SAFETY: length checked; every bit pattern is a valid HandshakeEvent.
        unsafe { item.as_ptr().cast::<HandshakeEvent>().read_unaligned() }
    })
}

impl NetnsCapture {
    /// Reads every overflow event currently in the ring into the pending
    /// table of its generation. Never blocks.
    pub fn poll_overflow(&mut self) -> u64 {
        let mut n = 0;
        let limit = self.pending_limit;
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            n += 1;
            let Some(mut e) = overflow_event(&item) else {
                continue;
            };
            // Keys merge across windows without their generation.
            e.key.generation = 0;
            let table = &mut self.pending[usize::from(e.generation & 1)];
            if !table.try_add(&e, limit) {
                // The agent's own bound: count it like the kernel would.
                let key = SkipKey {
                    ifindex: e.key.ifindex,
                    direction: e.key.direction,
                    generation: e.generation & 1,
                    _pad: [0; 2],
                };
                add_skip(
                    &mut self.pending_skipped,
                    key,
                    u64::from(e.packets),
                    u64::from(e.bytes),
                );
            }
        }
        n
    }

    /// Feeds every handshake sample currently in the ring to the RTT
    /// tracker. Never blocks.
    pub fn poll_handshakes(&mut self) -> u64 {
        let mut n = 0;
        let ring = self.handshakes.get_mut();
        while let Some(item) = ring.next() {
            n += 1;
            if let Some(e) = handshake_event(&item) {
                self.rtt.observe(&e);
            }
        }
        n
    }

    /// Ends the current window: returns everything counted since the
    /// previous drain.
    pub fn drain(&mut self) -> Result<Drained, CaptureError> {
        let old = self.generation;
        let new = old ^ 1;
        self.control
            .set(
                0,
                Control {
                    generation: new,
                    flags: self.control_flags,
                    netns_cookie: self.netns_cookie,
                },
                0,
            )
            .map_err(|e| drain_err("the control map")(super::chain(&e)))?;
        self.barrier
            .wait()
            .map_err(|e| drain_err("(waiting for running programs)")(super::chain(&e)))?;
        self.generation = new;
        let mut out = self.collect(old)?;
        if let Some(carry) = self.carry.take() {
            out.absorb(carry);
        }
        out.jiffies = self
            .clock
            .reference()
            .inspect_err(|e| warn!(error = %e, "cannot date this window's flows"))
            .ok();
        Ok(out)
    }

    /// After adopting pinned maps: what an earlier run left in the
    /// generation programs no longer write (it was killed mid-drain) goes
    /// into the next window rather than lingering until the generation
    /// comes round again.
    pub(super) fn recover(&mut self) -> Result<(), CaptureError> {
        let idle = self.generation ^ 1;
        let d = self.collect(idle)?;
        if d.map_flows > 0 || !d.window.skipped.is_empty() {
            tracing::info!(
                flows = d.map_flows,
                netns = self.netns.as_deref().unwrap_or("-"),
                "recovered counts an earlier run had not drained"
            );
        }
        self.carry = Some(d);
        Ok(())
    }

    /// Reads and deletes everything counted under generation `old`, which
    /// no program writes any more.
    fn collect(&mut self, old: u32) -> Result<Drained, CaptureError> {
        let overflow_events = self.poll_overflow();
        self.poll_handshakes();

        let mut out = Drained {
            overflow_events,
            ..Default::default()
        };
        let old_idx = old as usize;
        let mut flows = FlowTable::with_capacity(self.last_map_flows as usize + 1024);
        let cpus = self.cpus;
        let old_gen = old as u8;
        // Entries of the new generation are left alone: programs are
        // writing them. No program writes the old one's any more, so each
        // chunk's old entries are deleted as soon as they are read.
        let err = |e: sys::SysError| drain_err("the flow map")(super::chain(&e));
        let drained4 = drain_map(self.flows4.fd().as_fd(), cpus, &mut flows, |k: FlowKey4| {
            (k.generation == old_gen).then(|| k.widen())
        })
        .map_err(err)?;
        let drained6 = drain_map(self.flows6.fd().as_fd(), cpus, &mut flows, |k: FlowKey| {
            (k.generation == old_gen).then_some(k)
        })
        .map_err(err)?;
        let drained = drained4 + drained6;
        out.map_flows = drained;
        self.last_map_flows = drained as u64;
        self.pending[old_idx].drain_into(&mut flows);
        for (key, _) in flows.iter() {
            if key.protocol == IPPROTO_TCP
                && let Some(rtt) = self.rtt.lookup(key)
            {
                out.window.rtt.insert(*key, rtt);
            }
        }
        self.rtt
            .end_window(crate::window::clock::now_ns(libc::CLOCK_MONOTONIC) as u64);
        out.window.flows = flows;

        self.drain_skipped(old as u8, &mut out)?;
        out.malformed = self.malformed_delta()?;
        Ok(out)
    }

    fn drain_skipped(&mut self, generation: u8, out: &mut Drained) -> Result<(), CaptureError> {
        let mut keys = Vec::new();
        for item in self.skipped.iter() {
            let (key, values) = item.map_err(|e| drain_err("the skip counters")(super::chain(&e)))?;
            if key.generation != generation {
                continue;
            }
            let sum = values.iter().fold(Counters::default(), |a, c| Counters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            });
            if let Some(dir) = Direction::from_u8(key.direction) {
                out.window.add_skipped(key.ifindex, dir, &sum);
            }
            keys.push(key);
        }
        for key in keys {
            // No program writes this generation any more, so removing
            // cannot lose an increment.
            if let Err(e) = self.skipped.remove(&key) {
                warn!(error = %e, "could not clear a skip counter");
            }
        }
        let pending = std::mem::take(&mut self.pending_skipped);
        let (mine, later): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(k, _)| k.generation == generation);
        self.pending_skipped = later;
        for (key, c) in mine {
            if let Some(dir) = Direction::from_u8(key.direction) {
                out.window.add_skipped(key.ifindex, dir, &c);
            }
        }
        Ok(())
    }

    /// Malformed counters are cumulative in the kernel; report the change.
    fn malformed_delta(&mut self) -> Result<Vec<MalformedCount>, CaptureError> {
        let mut out = Vec::new();
        for item in self.malformed.iter() {
            let (key, values) = item.map_err(|e| drain_err("the malformed counters")(super::chain(&e)))?;
            let total = values.iter().fold(Counters::default(), |a, c| Counters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            });
            let seen = match self.malformed_seen.iter_mut().find(|(k, _)| *k == key) {
                Some((_, s)) => s,
                None => {
                    self.malformed_seen.push((key, Counters::default()));
                    let last = self.malformed_seen.len() - 1;
                    &mut self.malformed_seen[last].1
                }
            };
            let delta = Counters {
                packets: total.packets.saturating_sub(seen.packets),
                bytes: total.bytes.saturating_sub(seen.bytes),
            };
            *seen = total;
            if delta.packets == 0 {
                continue;
            }
            if let (Some(direction), Some(reason)) =
                (Direction::from_u8(key.direction), Malformed::from_u8(key.reason))
            {
                out.push(MalformedCount {
                    ifindex: key.ifindex,
                    direction,
                    reason,
                    counters: delta,
                });
            }
        }
        Ok(out)
    }
}

fn add_skip(list: &mut Vec<(SkipKey, Counters)>, key: SkipKey, packets: u64, bytes: u64) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some((_, c)) => {
            c.packets += packets;
            c.bytes += bytes;
        }
        None => list.push((key, Counters { packets, bytes })),
    }
}

/// Reads one flow map and deletes the entries `select` picks (returning
/// them as full keys), summing their per-CPU values into `flows` with the
/// generation cleared so windows merge. Returns how many it took.
fn drain_map<K: Copy>(
    fd: std::os::fd::BorrowedFd<'_>,
    cpus: usize,
    flows: &mut FlowTable,
    select: impl Fn(K) -> Option<FlowKey>,
) -> Result<usize, sys::SysError> {
    let key_size = size_of::<K>();
    let value_size = size_of::<FlowStats>().next_multiple_of(8);
    let mut taken = 0;
    sys::walk_percpu_hash(fd, key_size, size_of::<FlowStats>(), cpus, BATCH, |chunk| {
        let mut keys = Vec::with_capacity(chunk.keys.len());
        for i in 0..chunk.count {
            let raw = &chunk.keys[i * key_size..(i + 1) * key_size];
            // SAFETY: `raw` is key_size bytes; K is a plain key type that
            // accepts any bits.
            let k: K = unsafe { raw.as_ptr().cast::<K>().read_unaligned() };
            let Some(mut key) = select(k) else { continue };
            keys.extend_from_slice(raw);
            key.generation = 0;
            let mut total = FlowStats::default();
            for cpu in 0..cpus {
                let at = (i * cpus + cpu) * value_size;
                // SAFETY: the chunk holds count * cpus values of value_size
                // bytes; FlowStats accepts any bits.
                let v: FlowStats =
                    unsafe { chunk.values.as_ptr().add(at).cast::<FlowStats>().read_unaligned() };
                merge(&mut total, &v);
            }
            flows.push(key, total);
        }
        taken += keys.len() / key_size;
        sys::delete_keys(fd, &keys, key_size, BATCH)
    })?;
    Ok(taken)
}
