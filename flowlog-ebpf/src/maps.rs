//! Map definitions. Sizes here are placeholders: the agent sets the flow
//! maps' entries and the ring's size at load time from its configuration.
//! Names must match the constants in `flowlog_common`.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, PerCpuHashMap, RingBuf},
};
use flowlog_common::{
    COUNTER_MAP_ENTRIES, ClockSample, Control, Counters, FlowKey, FlowKey4, FlowStats, HANDSHAKE_RING_BYTES,
    MalformedKey, SkipKey,
};

#[map]
pub static FLOWS4: PerCpuHashMap<FlowKey4, FlowStats> = PerCpuHashMap::with_max_entries(1024, 0);

#[map]
pub static FLOWS6: PerCpuHashMap<FlowKey, FlowStats> = PerCpuHashMap::with_max_entries(1024, 0);

#[map]
pub static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

#[map]
pub static CLOCK: Array<ClockSample> = Array::with_max_entries(1, 0);

#[map]
pub static OVERFLOW: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

#[map]
pub static HANDSHAKES: RingBuf = RingBuf::with_byte_size(HANDSHAKE_RING_BYTES, 0);

#[map]
pub static SKIPPED: PerCpuHashMap<SkipKey, Counters> =
    PerCpuHashMap::with_max_entries(COUNTER_MAP_ENTRIES, 0);

#[map]
pub static MALFORMED: PerCpuHashMap<MalformedKey, Counters> =
    PerCpuHashMap::with_max_entries(COUNTER_MAP_ENTRIES, 0);

/// Size of the per-CPU header scratch buffer.
pub const SCRATCH_BYTES: usize = 168;

/// TC copies a packet's headers here in one helper call.
#[map]
pub static SCRATCH: PerCpuArray<[u8; SCRATCH_BYTES]> = PerCpuArray::with_max_entries(1, 0);
