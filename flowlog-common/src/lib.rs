//! Types shared by the flowlog kernel programs and the agent.
//!
//! Every struct here crosses the kernel/user boundary as raw bytes (map keys,
//! map values, ring-buffer events), so each one is `#[repr(C)]` with explicit
//! padding fields: hash-map keys must never contain uninitialised padding, or
//! two identical flows would hash differently.
//!
//! Map and program names are constants so both sides agree on them.
#![no_std]

pub mod parse;

/// Per-CPU hash of IPv4 flows, keyed by the compact [`FlowKey4`]
/// (generation included): a 20-byte key hashes and compares in half the
/// time of the full key, and most traffic is IPv4.
pub const MAP_FLOWS4: &str = "FLOWS4";
/// Per-CPU hash of IPv6 flows, keyed by [`FlowKey`] (generation included).
pub const MAP_FLOWS6: &str = "FLOWS6";
/// Array with one [`Control`] entry: which generation is active.
pub const MAP_CONTROL: &str = "CONTROL";
/// Ring buffer of [`OverflowEvent`]s: packets that found their flow map full.
pub const MAP_OVERFLOW: &str = "OVERFLOW";
/// Array with one [`ClockSample`]: the clock probe writes it.
pub const MAP_CLOCK: &str = "CLOCK";
/// Program the agent runs (BPF_PROG_TEST_RUN) to read jiffies and the
/// monotonic clock together; never attached.
pub const PROG_CLOCK: &str = "flowlog_clock";
/// Ring buffer of [`HandshakeEvent`]s: TCP SYN, SYN-ACK and completing ACK.
pub const MAP_HANDSHAKES: &str = "HANDSHAKES";
/// Size of [`MAP_HANDSHAKES`] in bytes.
pub const HANDSHAKE_RING_BYTES: u32 = 256 * 1024;
/// Per-CPU hash [`SkipKey`] → [`Counters`]: packets neither the flow map nor
/// the overflow ring could take.
pub const MAP_SKIPPED: &str = "SKIPPED";
/// Per-CPU hash [`MalformedKey`] → [`Counters`]: packets not attributed to
/// any flow, by reason (cumulative, never cleared by the agent).
pub const MAP_MALFORMED: &str = "MALFORMED";

/// XDP program (ingress).
pub const PROG_XDP: &str = "flowlog_xdp";
/// TC program attached on ingress.
pub const PROG_TC_INGRESS: &str = "flowlog_tc_ingress";
/// TC program attached on egress.
pub const PROG_TC_EGRESS: &str = "flowlog_tc_egress";

/// Entries of [`MAP_SKIPPED`] and [`MAP_MALFORMED`]; small because their keys
/// only combine attachments, directions, generations and reasons.
pub const COUNTER_MAP_ENTRIES: u32 = 4096;

/// Packet direction relative to the attachment.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Received on the attachment.
    Ingress = 0,
    /// Sent by the attachment.
    Egress = 1,
}

impl Direction {
    /// Decodes the byte stored in keys; unknown values are `None`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Ingress),
            1 => Some(Self::Egress),
            _ => None,
        }
    }

    /// The record's spelling (`in` / `out`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "in",
            Self::Egress => "out",
        }
    }
}

/// One flow: attachment, direction and five-tuple.
///
/// Addresses are 16 bytes; IPv4 addresses are stored IPv4-mapped
/// (`::ffff:a.b.c.d`) and `ip_version` tells the families apart, so an IPv6
/// packet that carries a mapped address is never merged with IPv4 traffic.
/// Ports are in host byte order and 0 where the protocol has none or the
/// packet is a non-first fragment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Interface index of the attachment (within its network namespace).
    pub ifindex: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// IANA protocol number of the upper-layer protocol.
    pub protocol: u8,
    /// A [`Direction`] as `u8`.
    pub direction: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// Window generation the entry counts for (0 or 1): both generations
    /// share one map, so a window needs no second copy of it.
    pub generation: u8,
}

/// [`FlowKey`] of an IPv4 flow, without the 24 bytes IPv4 does not use.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey4 {
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub ifindex: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub direction: u8,
    pub generation: u8,
    pub _pad: u8,
}

impl FlowKey4 {
    /// The compact form of an IPv4 key (addresses IPv4-mapped in `k`).
    #[inline(always)]
    pub fn narrow(k: &FlowKey) -> Self {
        let (s, d) = (&k.src_addr, &k.dst_addr);
        Self {
            src_addr: [s[12], s[13], s[14], s[15]],
            dst_addr: [d[12], d[13], d[14], d[15]],
            ifindex: k.ifindex,
            src_port: k.src_port,
            dst_port: k.dst_port,
            protocol: k.protocol,
            direction: k.direction,
            generation: k.generation,
            _pad: 0,
        }
    }

    /// Back to the full key.
    pub fn widen(&self) -> FlowKey {
        let map = |a: [u8; 4]| [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]];
        FlowKey {
            src_addr: map(self.src_addr),
            dst_addr: map(self.dst_addr),
            ifindex: self.ifindex,
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: self.protocol,
            direction: self.direction,
            ip_version: 4,
            generation: self.generation,
        }
    }
}

/// What a flow accumulated on one CPU.
///
/// `bytes` is the IP length (IPv4 total length, IPv6 40 + payload length) of
/// every packet, summed over wire segments for GSO/GRO super-packets, so the
/// figure is the same whichever hook saw the traffic.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
    /// Kernel jiffies of the first and last packet. A jiffies read costs a
    /// few nanoseconds where a clock read costs 30 to 60 in a VM, for the
    /// same resolution as the coarse clock (one tick); the agent converts.
    pub first_seen_jiffies: u64,
    pub last_seen_jiffies: u64,
    /// OR of the TCP flags seen (bit 8 is NS, bits 0–7 the flags byte).
    pub tcp_flags: u16,
    pub _pad: [u8; 6],
}

/// Jiffies and CLOCK_MONOTONIC read together in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSample {
    pub jiffies: u64,
    pub monotonic_ns: u64,
}

/// Shared control block, index 0 of [`MAP_CONTROL`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Active generation: programs stamp it into every key they touch.
    pub generation: u32,
    /// [`CONTROL_RTT`] and future switches.
    pub flags: u32,
    /// Cookie of the network namespace the maps serve; programs ignore it.
    /// Pinned maps outlive the agent, and a namespace name can be reused by
    /// a new namespace whose interface indexes mean something else.
    pub netns_cookie: u64,
}

/// Version of the pinned-state layout: every map's key, value and meaning.
/// Bump it with any change to them; a restarted agent adopts pinned state
/// only from its own version and replaces any other.
pub const PIN_LAYOUT: u32 = 1;

/// [`Control::flags`] bit: sample TCP handshakes for RTT.
pub const CONTROL_RTT: u32 = 1;

/// TCP flag bits as in the header's flags byte.
pub const TCP_FIN: u16 = 0x01;
pub const TCP_SYN: u16 = 0x02;
pub const TCP_RST: u16 = 0x04;
pub const TCP_ACK: u16 = 0x10;

/// One TCP handshake packet, with a precise CLOCK_MONOTONIC stamp: a SYN,
/// a SYN-ACK, or the first ACK of a flow that had only seen a SYN (the ACK
/// that completes the handshake).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeEvent {
    pub key: FlowKey,
    pub tcp_flags: u16,
    pub _pad: [u8; 2],
    pub seq: u32,
    pub ack: u32,
    pub ts_ns: u64,
}

/// A packet whose flow could not be inserted because the active flow map was
/// full; the agent folds these into the window of `generation`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverflowEvent {
    pub key: FlowKey,
    pub tcp_flags: u16,
    pub generation: u8,
    pub _pad: u8,
    /// Wire segments this packet stands for (1 unless GSO/GRO).
    pub packets: u32,
    pub bytes: u32,
    /// Kernel jiffies when the packet was seen.
    pub jiffies: u64,
}

/// Key of [`MAP_SKIPPED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SkipKey {
    pub ifindex: u32,
    pub direction: u8,
    pub generation: u8,
    pub _pad: [u8; 2],
}

/// Why a packet was not attributed to a five-tuple.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// Not IPv4/IPv6 (ARP, LLDP, …): not traffic a flow log describes.
    NonIp = 0,
    /// Shorter than an Ethernet header or a VLAN tag.
    TruncatedL2 = 1,
    /// More than two VLAN tags.
    VlanDepth = 2,
    /// IP header cut short.
    TruncatedL3 = 3,
    /// IP header inconsistent: IHL < 5, version mismatch, lengths that
    /// contradict the frame.
    BadL3 = 4,
    /// IPv6 extension-header chain longer than the parser follows, or cut short.
    Ipv6ExtChain = 5,
    /// Transport header cut short (or beyond the IP length).
    TruncatedL4 = 6,
}

impl Malformed {
    pub const ALL: [Self; 7] = [
        Self::NonIp,
        Self::TruncatedL2,
        Self::VlanDepth,
        Self::TruncatedL3,
        Self::BadL3,
        Self::Ipv6ExtChain,
        Self::TruncatedL4,
    ];

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::NonIp),
            1 => Some(Self::TruncatedL2),
            2 => Some(Self::VlanDepth),
            3 => Some(Self::TruncatedL3),
            4 => Some(Self::BadL3),
            5 => Some(Self::Ipv6ExtChain),
            6 => Some(Self::TruncatedL4),
            _ => None,
        }
    }

    /// Name used in status output and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NonIp => "non_ip",
            Self::TruncatedL2 => "truncated_l2",
            Self::VlanDepth => "vlan_depth",
            Self::TruncatedL3 => "truncated_l3",
            Self::BadL3 => "bad_l3",
            Self::Ipv6ExtChain => "ipv6_ext_chain",
            Self::TruncatedL4 => "truncated_l4",
        }
    }
}

/// Key of [`MAP_MALFORMED`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MalformedKey {
    pub ifindex: u32,
    pub direction: u8,
    /// A [`Malformed`] as `u8`.
    pub reason: u8,
    pub _pad: [u8; 2],
}

/// Packet and byte counter pair. For malformed packets `bytes` is the frame
/// length from the Ethernet header, since no IP length can be trusted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[cfg(feature = "user")]
mod pod {
    use super::{
        Control, Counters, FlowKey, FlowStats, HandshakeEvent, MalformedKey, OverflowEvent, SkipKey,
    };

    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: each of these is repr(C), holds only integers and byte
            // arrays, and has explicit padding fields, so every bit pattern
            // is a valid value.
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        FlowKey,
        super::FlowKey4,
        FlowStats,
        Control,
        OverflowEvent,
        HandshakeEvent,
        SkipKey,
        MalformedKey,
        Counters,
        super::ClockSample
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    // The kernel side hashes raw key bytes: any implicit padding would make
    // equal flows unequal, so pin the layouts.
    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 4 + 2 + 2 + 4);
        assert_eq!(align_of::<FlowKey>(), 4);
        assert_eq!(size_of::<FlowKey4>(), 20);
        assert_eq!(size_of::<FlowStats>(), 8 * 4 + 8);
        assert_eq!(size_of::<OverflowEvent>(), size_of::<FlowKey>() + 4 + 8 + 8);
        assert_eq!(size_of::<SkipKey>(), 8);
        assert_eq!(size_of::<MalformedKey>(), 8);
        assert_eq!(size_of::<Control>(), 4 + 4 + 8);
        assert_eq!(size_of::<HandshakeEvent>(), size_of::<FlowKey>() + 4 + 8 + 8);
    }

    #[test]
    fn ipv4_keys_narrow_and_widen() {
        let mut k = FlowKey {
            src_addr: [0; 16],
            dst_addr: [0; 16],
            ifindex: 7,
            src_port: 1,
            dst_port: 2,
            protocol: 17,
            direction: 1,
            ip_version: 4,
            generation: 1,
        };
        k.src_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        k.dst_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 2]);
        assert_eq!(FlowKey4::narrow(&k).widen(), k);
    }

    #[test]
    fn enums_round_trip() {
        for m in Malformed::ALL {
            assert_eq!(Malformed::from_u8(m as u8), Some(m));
        }
        assert_eq!(Malformed::from_u8(200), None);
        assert_eq!(Direction::from_u8(1), Some(Direction::Egress));
        assert_eq!(Direction::from_u8(2), None);
    }
}
