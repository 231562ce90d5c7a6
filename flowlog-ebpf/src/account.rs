//! Per-packet accounting: active generation, flow-map update, overflow path.
//!
//! The agent flips `CONTROL.generation` at each window boundary, waits for
//! every program still running on the old generation to finish (an RCU
//! grace period), then drains the old map. A program reads the generation
//! once and uses it for everything it touches, so each packet lands wholly in
//! one window.
//!
//! When the flow map is full, the packet goes to the `OVERFLOW` ring with its
//! key; when the ring is full too, it is added to `SKIPPED` for its
//! attachment, direction and generation, which the window marks SKIPDATA.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns, maps::PerCpuHashMap};
use flowlog_common::{
    Counters, Direction, FlowKey, FlowStats, Malformed, MalformedKey, OverflowEvent, SkipKey,
    parse::{FrameMeta, Packet, parse},
};

use crate::maps::{CONTROL, FLOWS_0, FLOWS_1, MALFORMED, OVERFLOW, SKIPPED};

const EEXIST: i32 = 17;

/// Parses one frame and counts it. `gso_segs` is the skb's wire-segment count
/// (0 or 1 for a plain packet); `stripped_vlan_tags` the tags the kernel
/// already moved out of the frame data.
#[inline(always)]
pub fn observe<P: Packet>(
    pkt: &P,
    ifindex: u32,
    direction: Direction,
    gso_segs: u32,
    stripped_vlan_tags: u8,
) {
    let gso = gso_segs > 1;
    match parse(
        pkt,
        FrameMeta {
            gso,
            stripped_vlan_tags,
        },
    ) {
        Ok(p) => {
            let segs = if gso { gso_segs } else { 1 };
            // Every wire segment repeats the headers; the skb holds them once.
            let bytes = p.ip_len as u64 + (segs as u64 - 1) * p.header_len as u64;
            let mut key = p.key;
            key.ifindex = ifindex;
            key.direction = direction as u8;
            account(&key, segs, bytes, p.tcp_flags);
        }
        Err(reason) => count_malformed(ifindex, direction, reason, pkt.frame_len() as u64),
    }
}

#[inline(always)]
fn account(key: &FlowKey, packets: u32, bytes: u64, tcp_flags: u16) {
    let generation = match CONTROL.get(0) {
        Some(c) => c.generation & 1,
        None => 0,
    };
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // Two explicit call paths (rather than a pointer chosen at run time) let
    // the verifier inline each map's lookup.
    let saved = if generation == 0 {
        add_to_map(&FLOWS_0, key, packets, bytes, tcp_flags, now)
    } else {
        add_to_map(&FLOWS_1, key, packets, bytes, tcp_flags, now)
    };
    if !saved {
        overflow(&OverflowEvent {
            key: *key,
            tcp_flags,
            generation: generation as u8,
            _pad: 0,
            packets,
            bytes: bytes as u32,
            ts_ns: now,
        });
    }
}

/// Adds the packet to `map`; false when the map has no room for a new flow.
#[inline(always)]
fn add_to_map(
    map: &PerCpuHashMap<FlowKey, FlowStats>,
    key: &FlowKey,
    packets: u32,
    bytes: u64,
    tcp_flags: u16,
    now: u64,
) -> bool {
    if let Some(v) = map.get_ptr_mut(key) {
        add(v, packets, bytes, tcp_flags, now);
        return true;
    }
    let fresh = FlowStats {
        packets: packets as u64,
        bytes,
        first_seen_ns: now,
        last_seen_ns: now,
        tcp_flags,
        _pad: [0; 6],
    };
    match map.insert(key, &fresh, BPF_NOEXIST as u64) {
        Ok(()) => true,
        // Another CPU created the flow between our lookup and insert; our
        // CPU's slot of it is zeroed and ready.
        Err(e) if e == -EEXIST => match map.get_ptr_mut(key) {
            Some(v) => {
                add(v, packets, bytes, tcp_flags, now);
                true
            }
            None => false,
        },
        Err(_) => false,
    }
}

#[inline(always)]
fn add(v: *mut FlowStats, packets: u32, bytes: u64, tcp_flags: u16, now: u64) {
    // SAFETY: per-CPU value of this CPU; programs do not nest on one CPU
    // for these hooks, so nothing else writes it concurrently.
    unsafe {
        (*v).packets += packets as u64;
        (*v).bytes += bytes;
        if (*v).first_seen_ns == 0 {
            (*v).first_seen_ns = now;
        }
        (*v).last_seen_ns = now;
        (*v).tcp_flags |= tcp_flags;
    }
}

#[inline(never)]
fn overflow(event: &OverflowEvent) {
    if let Some(mut e) = OVERFLOW.reserve::<OverflowEvent>(0) {
        e.write(*event);
        e.submit(0);
        return;
    }
    let skip = SkipKey {
        ifindex: event.key.ifindex,
        direction: event.key.direction,
        generation: event.generation,
        _pad: [0; 2],
    };
    bump(&SKIPPED, &skip, event.packets as u64, event.bytes as u64);
}

#[inline(never)]
fn count_malformed(ifindex: u32, direction: Direction, reason: Malformed, frame_len: u64) {
    let key = MalformedKey {
        ifindex,
        direction: direction as u8,
        reason: reason as u8,
        _pad: [0; 2],
    };
    bump(&MALFORMED, &key, 1, frame_len);
}

/// Adds to a counter pair, creating the entry on first use.
#[inline(always)]
fn bump<K>(map: &PerCpuHashMap<K, Counters>, key: &K, packets: u64, bytes: u64) {
    if let Some(c) = map.get_ptr_mut(key) {
        // SAFETY: this CPU's value, see `add`.
        unsafe {
            (*c).packets += packets;
            (*c).bytes += bytes;
        }
        return;
    }
    let fresh = Counters { packets, bytes };
    if map.insert(key, &fresh, BPF_NOEXIST as u64).is_err() {
        if let Some(c) = map.get_ptr_mut(key) {
            // SAFETY: as above.
            unsafe {
                (*c).packets += packets;
                (*c).bytes += bytes;
            }
        }
    }
}
