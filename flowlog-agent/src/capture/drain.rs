//! Draining one window out of the kernel without losing or double-counting
//! increments that race with it.
//!
//! Order matters: (1) point programs at the other generation, (2) wait until
//! no program can still be on the old one, (3) read the overflow ring to the
//! end (events of the old generation were all submitted before step 2
//! returned), (4) read the old generation's flow map and skip counters. The
//! entries read are deleted only by [`NetnsCapture::delete`], which the
//! caller runs once the counts are journaled: an agent killed in between
//! finds them still in the kernel, and the journal tells whether they are
//! already counted.

use std::os::fd::AsFd;

use flowlog_common::{
    Control, Counters, Direction, FlowKey, FlowKey4, FlowStats, HandshakeEvent, Malformed, OverflowEvent,
    SkipKey, parse::IPPROTO_TCP,
};
use tracing::warn;

use super::{CaptureError, NetnsCapture, sys};
use crate::{
    model::JiffiesRef,
    window::{FlowTable, OverflowTable, WindowAggregate, merge},
};

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

/// The agent's own skip counts, per key.
type SkipCounts = Vec<(SkipKey, Counters)>;

/// What one drain took: kernel entries, deleted once their counts are
/// journaled, and the overflow events it moved out of memory, given back
/// if the journal could not take them.
#[derive(Debug, Default)]
pub struct Deletion {
    keys4: Vec<u8>,
    keys6: Vec<u8>,
    skipped: Vec<SkipKey>,
    generation: usize,
    overflow: OverflowTable,
    overflow_skipped: SkipCounts,
}

impl Deletion {
    pub fn is_empty(&self) -> bool {
        self.keys4.is_empty() && self.keys6.is_empty() && self.skipped.is_empty()
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
        let ring = self.maps.ring.get_mut();
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
        let ring = self.maps.handshakes.get_mut();
        while let Some(item) = ring.next() {
            n += 1;
            if let Some(e) = handshake_event(&item) {
                self.rtt.observe(&e);
            }
        }
        n
    }

    /// Ends the current window: returns everything counted since the
    /// previous drain, and what to delete from the kernel once the counts
    /// are journaled (see [`Self::delete`]). When the last drain could not
    /// be journaled or read to the end, its generation is read again
    /// instead, without a flip: its entries are still in the kernel.
    pub fn drain(&mut self) -> Result<(Drained, Deletion), CaptureError> {
        if self.idle_unread {
            return self.read_idle();
        }
        let old = self.generation;
        let new = old ^ 1;
        self.maps
            .control
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
        // Until this read is journaled and deleted, the idle generation
        // holds counts nobody has.
        self.idle_unread = true;
        let mut out = self.collect(old)?;
        out.0.jiffies = self.jiffies();
        Ok(out)
    }

    /// After adopting pinned maps: what an earlier run left in the
    /// generation programs no longer write (it died between a flip and the
    /// end of its drain). The caller decides, from the journal, whether
    /// those counts are new or already journaled.
    pub fn read_idle(&mut self) -> Result<(Drained, Deletion), CaptureError> {
        let idle = self.generation ^ 1;
        let mut out = self.collect(idle)?;
        out.0.jiffies = self.jiffies();
        Ok(out)
    }

    fn jiffies(&self) -> Option<JiffiesRef> {
        self.clock
            .reference()
            .inspect_err(|e| warn!(error = %e, "cannot date this window's flows"))
            .ok()
    }

    /// Deletes what a journaled drain read. No program writes that
    /// generation any more, so no increment can be lost. It must be done
    /// before the next flip, when programs would add to the entries again:
    /// a deletion that fails is kept and tried again before the next drain,
    /// which does not flip until it succeeds.
    pub fn delete(&mut self, d: Deletion) -> Result<(), CaptureError> {
        let result = self.try_delete(&d);
        match result {
            Ok(()) => {
                self.idle_unread = false;
                self.undeleted = None;
            }
            Err(_) => self.undeleted = Some(d),
        }
        result
    }

    fn try_delete(&mut self, d: &Deletion) -> Result<(), CaptureError> {
        let err = |e: sys::SysError| drain_err("the flow map")(super::chain(&e));
        // Keys already gone (an earlier, partly done try) are skipped.
        sys::delete_keys(
            self.maps.flows4.fd().as_fd(),
            &d.keys4,
            size_of::<FlowKey4>(),
            BATCH,
        )
        .map_err(err)?;
        sys::delete_keys(
            self.maps.flows6.fd().as_fd(),
            &d.keys6,
            size_of::<FlowKey>(),
            BATCH,
        )
        .map_err(err)?;
        for key in &d.skipped {
            match self.maps.skipped.remove(key) {
                Ok(()) => {}
                Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(drain_err("the skip counters")(super::chain(&e))),
            }
        }
        Ok(())
    }

    /// A deletion that failed before, tried again; while it fails the
    /// namespace must not be drained (its generation must not flip).
    pub fn retry_deletion(&mut self) -> Result<(), CaptureError> {
        match self.undeleted.take() {
            Some(d) => self.delete(d),
            None => Ok(()),
        }
    }

    /// The journal could not take a drain: its kernel entries stay where
    /// they are, the overflow events it took go back, and the next drain
    /// reads that generation again (without a flip).
    pub fn untake(&mut self, d: Deletion) {
        self.pending[d.generation].merge_from(d.overflow);
        self.pending_skipped.extend(d.overflow_skipped);
        self.idle_unread = true;
    }

    /// Reads everything counted under generation `old`, which no program
    /// writes any more.
    fn collect(&mut self, old: u32) -> Result<(Drained, Deletion), CaptureError> {
        let overflow_events = self.poll_overflow();
        self.poll_handshakes();

        let mut out = Drained {
            overflow_events,
            ..Default::default()
        };
        let old_idx = old as usize & 1;
        let mut deletion = Deletion {
            generation: old_idx,
            ..Default::default()
        };
        let before = self.last_map_flows.ipv4 + self.last_map_flows.ipv6;
        let mut flows = FlowTable::with_capacity(before as usize + 1024);
        let cpus = self.cpus;
        let old_gen = old as u8;
        let err = |e: sys::SysError| drain_err("the flow map")(super::chain(&e));
        let drained4 = read_map(
            self.maps.flows4.fd().as_fd(),
            cpus,
            &mut flows,
            &mut deletion.keys4,
            |k: FlowKey4| (k.generation == old_gen).then(|| k.widen()),
        )
        .map_err(err)?;
        let drained6 = read_map(
            self.maps.flows6.fd().as_fd(),
            cpus,
            &mut flows,
            &mut deletion.keys6,
            |k: FlowKey| (k.generation == old_gen).then_some(k),
        )
        .map_err(err)?;
        let drained = drained4 + drained6;
        out.map_flows = drained;
        self.last_map_flows.ipv4 = drained4 as u64;
        self.last_map_flows.ipv6 = drained6 as u64;
        // A copy, to give back if the journal cannot take this drain.
        deletion.overflow = self.pending[old_idx].clone();
        self.pending[old_idx].drain_into(&mut flows);
        for (key, _) in flows.iter() {
            if key.protocol == IPPROTO_TCP
                && let Some(rtt) = self.rtt.lookup(key)
            {
                out.window.rtt.insert(*key, rtt);
            }
        }
        self.rtt
            .end_window(crate::model::clock::now_ns(crate::model::clock::ClockId::Monotonic) as u64);
        out.window.flows = flows;

        let (skipped, overflow_skipped) = self.read_skipped(old as u8, &mut out)?;
        deletion.skipped = skipped;
        deletion.overflow_skipped = overflow_skipped;
        out.malformed = self.malformed_delta()?;
        Ok((out, deletion))
    }

    /// The skip counters of `generation`: the kernel's keys (to delete) and
    /// the agent's own counts it took (to give back if not journaled).
    fn read_skipped(
        &mut self,
        generation: u8,
        out: &mut Drained,
    ) -> Result<(Vec<SkipKey>, SkipCounts), CaptureError> {
        let mut keys = Vec::new();
        for item in self.maps.skipped.iter() {
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
        let pending = std::mem::take(&mut self.pending_skipped);
        let (mine, later): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(k, _)| k.generation == generation);
        self.pending_skipped = later;
        for (key, c) in &mine {
            if let Some(dir) = Direction::from_u8(key.direction) {
                out.window.add_skipped(key.ifindex, dir, c);
            }
        }
        Ok((keys, mine))
    }

    /// Malformed counters are cumulative in the kernel; report the change.
    fn malformed_delta(&mut self) -> Result<Vec<MalformedCount>, CaptureError> {
        let mut out = Vec::new();
        for item in self.maps.malformed.iter() {
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

/// Reads one flow map's entries that `select` picks (returning them as
/// full keys), summing their per-CPU values into `flows` with the
/// generation cleared so windows merge, and their raw keys into `taken`
/// for the deletion. Returns how many it took.
fn read_map<K: Copy>(
    fd: std::os::fd::BorrowedFd<'_>,
    cpus: usize,
    flows: &mut FlowTable,
    taken: &mut Vec<u8>,
    select: impl Fn(K) -> Option<FlowKey>,
) -> Result<usize, sys::SysError> {
    let key_size = size_of::<K>();
    let value_size = size_of::<FlowStats>().next_multiple_of(8);
    let before = taken.len();
    sys::walk_percpu_hash(fd, key_size, size_of::<FlowStats>(), cpus, BATCH, |chunk| {
        for i in 0..chunk.count {
            let raw = &chunk.keys[i * key_size..(i + 1) * key_size];
            // SAFETY: `raw` is key_size bytes; K is a plain key type that
            // accepts any bits.
            let k: K = unsafe { raw.as_ptr().cast::<K>().read_unaligned() };
            let Some(mut key) = select(k) else { continue };
            taken.extend_from_slice(raw);
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
        Ok(())
    })?;
    Ok((taken.len() - before) / key_size)
}
