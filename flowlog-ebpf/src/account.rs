//! Per-packet accounting: active generation, flow-map update, overflow path.
//!
//! The agent flips `CONTROL.generation` at each window boundary, waits for
//! every program still running on the old generation to finish (an RCU
//! grace period), then drains the old generation's entries. A program reads
//! the generation once and stamps it into the key and everything else it
//! touches, so each packet lands wholly in one window; both generations
//! share one map.
//!
//! When the flow map is full, the packet goes to the `OVERFLOW` ring with its
//! key; when the ring is full too, it is added to `SKIPPED` for its
//! attachment, direction and generation, which the window marks SKIPDATA.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
    maps::PerCpuHashMap,
};
use flowlog_common::{
    CONTROL_RTT, Counters, Direction, FlowKey, FlowKey4, FlowStats, HandshakeEvent, Malformed, MalformedKey,
    OverflowEvent, SkipKey, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    parse::{FrameMeta, IPPROTO_TCP, Packet, Parsed, parse},
};

use crate::maps::{CONTROL, FLOWS4, FLOWS6, HANDSHAKES, MALFORMED, OVERFLOW, SKIPPED};

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
        Ok(mut p) => {
            let segs = if gso { gso_segs } else { 1 };
            // Every wire segment repeats the headers; the skb holds them once.
            let bytes = p.ip_len as u64 + (segs as u64 - 1) * p.header_len as u64;
            p.key.ifindex = ifindex;
            p.key.direction = direction as u8;
            account(&mut p, segs, bytes);
        }
        Err(reason) => count_malformed(ifindex, direction, reason, pkt.frame_len() as u64),
    }
}

#[inline(always)]
fn account(p: &mut Parsed, packets: u32, bytes: u64) {
    let (generation, rtt) = match CONTROL.get(0) {
        Some(c) => (c.generation & 1, c.flags & CONTROL_RTT != 0),
        None => (0, false),
    };
    p.key.generation = generation as u8;
    let p = &*p;
    let key = &p.key;
    let tcp_flags = p.tcp_flags;
    // SAFETY: helper without preconditions. Jiffies, not a clock: see
    // FlowStats.
    let now = unsafe { bpf_jiffies64() };
    let added = if key.ip_version == 4 {
        add_to_map(&FLOWS4, &FlowKey4::narrow(key), packets, bytes, tcp_flags, now)
    } else {
        add_to_map(&FLOWS6, key, packets, bytes, tcp_flags, now)
    };
    let before = match added {
        Some(b) => b,
        None => {
            let meta = (u64::from(generation) << 48) | (u64::from(tcp_flags) << 32) | u64::from(packets);
            overflow(key, meta, bytes, now);
            Before::default()
        }
    };
    if rtt && key.protocol == IPPROTO_TCP && is_handshake(tcp_flags, before) {
        sample_handshake(key, p);
    }
}

/// This CPU's view of the flow before the packet was added.
#[derive(Clone, Copy, Default)]
struct Before {
    packets: u64,
    tcp_flags: u16,
}

/// SYN and SYN-ACK always; a pure ACK when it may complete a handshake:
/// the flow's first packet on this CPU in this generation (the completing
/// ACK is the first ACK of its flow, but may run on another CPU than the
/// SYN), or the first ACK after a SYN here.
#[inline(always)]
fn is_handshake(flags: u16, before: Before) -> bool {
    if flags & TCP_SYN != 0 {
        return flags & TCP_RST == 0;
    }
    let pure_ack = flags & (TCP_ACK | TCP_SYN | TCP_FIN | TCP_RST) == TCP_ACK;
    pure_ack && (before.packets == 0 || before.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
}

#[inline(never)]
fn sample_handshake(key: &FlowKey, p: &Parsed) {
    if let Some(mut e) = HANDSHAKES.reserve::<HandshakeEvent>(0) {
        e.write(HandshakeEvent {
            key: *key,
            tcp_flags: p.tcp_flags,
            _pad: [0; 2],
            seq: p.tcp_seq,
            ack: p.tcp_ack,
            // SAFETY: helper without preconditions. Precise clock: RTTs
            // need better than the coarse clock's jiffy resolution.
            ts_ns: unsafe { bpf_ktime_get_ns() },
        });
        e.submit(0);
    }
}

/// Adds the packet to `map`, returning this CPU's previous state of the
/// flow; `None` when the map has no room for a new flow.
#[inline(always)]
fn add_to_map<K>(
    map: &PerCpuHashMap<K, FlowStats>,
    key: &K,
    packets: u32,
    bytes: u64,
    tcp_flags: u16,
    now: u64,
) -> Option<Before> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Some(add(v, packets, bytes, tcp_flags, now));
    }
    let fresh = FlowStats {
        packets: packets as u64,
        bytes,
        first_seen_jiffies: now,
        last_seen_jiffies: now,
        tcp_flags,
        _pad: [0; 6],
    };
    match map.insert(key, &fresh, BPF_NOEXIST as u64) {
        Ok(()) => Some(Before::default()),
        // Another CPU created the flow between our lookup and insert; our
        // CPU's slot of it is zeroed and ready.
        Err(e) if e == -EEXIST => map
            .get_ptr_mut(key)
            .map(|v| add(v, packets, bytes, tcp_flags, now)),
        Err(_) => None,
    }
}

#[inline(always)]
fn add(v: *mut FlowStats, packets: u32, bytes: u64, tcp_flags: u16, now: u64) -> Before {
    // SAFETY: per-CPU value of this CPU; programs do not nest on one CPU
    // for these hooks, so nothing else writes it concurrently.
    unsafe {
        let before = Before {
            packets: (*v).packets,
            tcp_flags: (*v).tcp_flags,
        };
        (*v).packets += packets as u64;
        (*v).bytes += bytes;
        if (*v).first_seen_jiffies == 0 {
            (*v).first_seen_jiffies = now;
        }
        (*v).last_seen_jiffies = now;
        (*v).tcp_flags |= tcp_flags;
        before
    }
}

/// `meta` packs generation (bits 48..), TCP flags (32..48) and packets
/// (0..32): BPF calls take at most five arguments.
#[inline(never)]
fn overflow(key: &FlowKey, meta: u64, bytes: u64, now: u64) {
    let generation = (meta >> 48) as u8;
    let packets = meta as u32;
    if let Some(mut e) = OVERFLOW.reserve::<OverflowEvent>(0) {
        e.write(OverflowEvent {
            key: *key,
            tcp_flags: (meta >> 32) as u16,
            generation,
            _pad: 0,
            packets,
            bytes: bytes as u32,
            jiffies: now,
        });
        e.submit(0);
        return;
    }
    let skip = SkipKey {
        ifindex: key.ifindex,
        direction: key.direction,
        generation,
        _pad: [0; 2],
    };
    bump(&SKIPPED, &skip, packets as u64, bytes);
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
