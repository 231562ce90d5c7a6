//! Packet parser shared by the XDP and TC programs (and unit-tested on the
//! host against byte slices).
//!
//! It reads only what it needs through [`Packet::load`], so the same code
//! works on XDP's direct packet access and on TC's `bpf_skb_load_bytes`
//! (which also reaches data outside the skb's linear area). Every offset is
//! bounded, which keeps the verifier able to prove each access.
//!
//! Outcome for a frame: a [`Parsed`] flow, or a [`Malformed`] reason. Nothing
//! half-parsed is ever reported as a flow: a frame whose transport header is
//! cut short is malformed, not "the same flow with port 0".

use crate::{FlowKey, Malformed};

/// Read access to a frame, starting at the Ethernet header.
pub trait Packet {
    /// Bytes available from the Ethernet header on (the whole skb at TC,
    /// including non-linear data; the frame at XDP).
    fn frame_len(&self) -> usize;
    /// Copies `size_of::<T>()` bytes at `offset`, or `None` if they are not
    /// all in the frame.
    fn load<T: Copy>(&self, offset: usize) -> Option<T>;
}

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// Pre-standard QinQ outer tag, still emitted by some switches.
pub const ETH_P_QINQ1: u16 = 0x9100;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

/// VLAN tags followed (802.1Q inside 802.1ad is the common stack).
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers followed before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Furthest transport-header offset from the start of the frame; a chain
/// that reaches beyond it is reported as [`Malformed::Ipv6ExtChain`]. It also
/// gives the verifier a bound on every offset.
pub const MAX_L4_OFFSET: usize = 1024;

const ETH_HLEN: usize = 14;

/// A frame attributed to a five-tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// Five-tuple and IP version; `ifindex` and `direction` are left 0 for
    /// the caller.
    pub key: FlowKey,
    /// Offset of the IP header in the frame.
    pub l3_offset: u32,
    /// IP length of the packet: total length (IPv4) or 40 + payload length
    /// (IPv6). For a GSO/GRO super-packet, all IP bytes of the skb.
    pub ip_len: u32,
    /// IP + extension + transport header bytes, which every wire segment of
    /// a super-packet repeats.
    pub header_len: u32,
    /// TCP flags (NS in bit 8), 0 for other protocols.
    pub tcp_flags: u16,
    /// TCP sequence and acknowledgement numbers (0 for other protocols).
    pub tcp_seq: u32,
    pub tcp_ack: u32,
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// How the hook presents the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// A GSO/GRO super-packet: its IP length fields describe the aggregate
    /// and are not checked against the frame; `ip_len` is then taken from
    /// the frame length.
    pub gso: bool,
    /// VLAN tags the kernel already removed from the frame data (TC sees
    /// the outermost tag as skb metadata); they count toward the depth
    /// limit so every hook reaches the same verdict.
    pub stripped_vlan_tags: u8,
}

/// Parses a frame.
#[inline(always)]
pub fn parse<P: Packet>(pkt: &P, meta: FrameMeta) -> Result<Parsed, Malformed> {
    let gso = meta.gso;
    let eth: [u8; ETH_HLEN] = pkt.load(0).ok_or(Malformed::TruncatedL2)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut l3 = ETH_HLEN;
    let mut tags = meta.stripped_vlan_tags as usize;
    if tags > MAX_VLAN_TAGS {
        return Err(Malformed::VlanDepth);
    }
    while tags <= MAX_VLAN_TAGS
        && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD || ethertype == ETH_P_QINQ1)
    {
        if tags == MAX_VLAN_TAGS {
            return Err(Malformed::VlanDepth);
        }
        let tag: [u8; 4] = pkt.load(l3).ok_or(Malformed::TruncatedL2)?;
        ethertype = be16([tag[2], tag[3]]);
        l3 += 4;
        tags += 1;
    }
    let avail = pkt.frame_len().checked_sub(l3).ok_or(Malformed::TruncatedL3)?;
    match ethertype {
        ETH_P_IP => parse_ipv4(pkt, l3, avail, gso),
        ETH_P_IPV6 => parse_ipv6(pkt, l3, avail, gso),
        _ => Err(Malformed::NonIp),
    }
}

#[inline(always)]
fn mapped_v4(a: [u8; 4]) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]]
}

#[inline(always)]
fn parse_ipv4<P: Packet>(pkt: &P, l3: usize, avail: usize, gso: bool) -> Result<Parsed, Malformed> {
    let h: [u8; 20] = pkt.load(l3).ok_or(Malformed::TruncatedL3)?;
    if h[0] >> 4 != 4 {
        return Err(Malformed::BadL3);
    }
    let ihl = ((h[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Malformed::BadL3);
    }
    let ip_len = if gso {
        avail
    } else {
        let total = be16([h[2], h[3]]) as usize;
        if total < ihl || total > avail {
            return Err(Malformed::BadL3);
        }
        total
    };
    if ihl > ip_len {
        return Err(Malformed::BadL3);
    }
    let mut key = empty_key(4, h[9]);
    key.src_addr = mapped_v4([h[12], h[13], h[14], h[15]]);
    key.dst_addr = mapped_v4([h[16], h[17], h[18], h[19]]);
    let fragment_offset = be16([h[6], h[7]]) & 0x1fff;
    let mut parsed = Parsed {
        key,
        l3_offset: l3 as u32,
        ip_len: ip_len as u32,
        header_len: ihl as u32,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
    };
    if fragment_offset != 0 {
        // Non-first fragment: what follows the IP header is payload, not a
        // transport header.
        return Ok(parsed);
    }
    parse_l4(pkt, &mut parsed, l3 + ihl, l3 + ip_len)?;
    Ok(parsed)
}

#[inline(always)]
fn parse_ipv6<P: Packet>(pkt: &P, l3: usize, avail: usize, gso: bool) -> Result<Parsed, Malformed> {
    // Fixed header in pieces, addresses straight into the key: the BPF
    // stack is 512 bytes and every copy counts.
    let h: [u8; 8] = pkt.load(l3).ok_or(Malformed::TruncatedL3)?;
    let mut key = empty_key(6, 0);
    key.src_addr = pkt.load(l3 + 8).ok_or(Malformed::TruncatedL3)?;
    key.dst_addr = pkt.load(l3 + 24).ok_or(Malformed::TruncatedL3)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed::BadL3);
    }
    let ip_len = if gso {
        avail
    } else {
        let payload = be16([h[4], h[5]]) as usize;
        // Payload length 0 is a jumbogram (hop-by-hop jumbo option), which
        // never crosses an Ethernet link outside GSO.
        if payload == 0 || 40 + payload > avail {
            return Err(Malformed::BadL3);
        }
        40 + payload
    };
    let ip_end = l3 + ip_len;
    let mut next = h[6];
    let mut off = l3 + 40;
    let mut non_first_fragment = false;
    let mut i = 0;
    while i < MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let e: [u8; 2] = pkt.load(off).ok_or(Malformed::Ipv6ExtChain)?;
                next = e[0];
                (e[1] as usize + 1) * 8
            }
            IPPROTO_AH => {
                let e: [u8; 2] = pkt.load(off).ok_or(Malformed::Ipv6ExtChain)?;
                next = e[0];
                (e[1] as usize + 2) * 4
            }
            IPPROTO_FRAGMENT => {
                let e: [u8; 4] = pkt.load(off).ok_or(Malformed::Ipv6ExtChain)?;
                next = e[0];
                if be16([e[2], e[3]]) >> 3 != 0 {
                    non_first_fragment = true;
                }
                8
            }
            _ => break,
        };
        off += len;
        if off > ip_end || off > MAX_L4_OFFSET {
            return Err(Malformed::Ipv6ExtChain);
        }
        i += 1;
        if non_first_fragment {
            break;
        }
    }
    if !non_first_fragment && is_ipv6_ext(next) {
        return Err(Malformed::Ipv6ExtChain);
    }
    key.protocol = next;
    let mut parsed = Parsed {
        key,
        l3_offset: l3 as u32,
        ip_len: ip_len as u32,
        header_len: (off - l3) as u32,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
    };
    if non_first_fragment {
        return Ok(parsed);
    }
    parse_l4(pkt, &mut parsed, off, ip_end)?;
    Ok(parsed)
}

#[inline(always)]
const fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
    )
}

#[inline(always)]
const fn empty_key(ip_version: u8, protocol: u8) -> FlowKey {
    FlowKey {
        src_addr: [0; 16],
        dst_addr: [0; 16],
        ifindex: 0,
        src_port: 0,
        dst_port: 0,
        protocol,
        direction: 0,
        ip_version,
        generation: 0,
    }
}

/// Reads ports (and TCP flags) of the transport header at `l4`, which must
/// lie wholly inside the IP packet ending at `ip_end`.
#[inline(always)]
fn parse_l4<P: Packet>(pkt: &P, parsed: &mut Parsed, l4: usize, ip_end: usize) -> Result<(), Malformed> {
    if l4 > MAX_L4_OFFSET {
        return Err(Malformed::Ipv6ExtChain);
    }
    let min_len = match parsed.key.protocol {
        IPPROTO_TCP => 20,
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_ICMP | IPPROTO_ICMPV6 => 8,
        IPPROTO_SCTP => 12,
        _ => return Ok(()),
    };
    if l4 + min_len > ip_end {
        return Err(Malformed::TruncatedL4);
    }
    match parsed.key.protocol {
        IPPROTO_TCP => {
            let t: [u8; 20] = pkt.load(l4).ok_or(Malformed::TruncatedL4)?;
            let doff = ((t[12] >> 4) as usize) * 4;
            if doff < 20 || l4 + doff > ip_end {
                return Err(Malformed::TruncatedL4);
            }
            parsed.key.src_port = be16([t[0], t[1]]);
            parsed.key.dst_port = be16([t[2], t[3]]);
            parsed.tcp_flags = (((t[12] & 1) as u16) << 8) | t[13] as u16;
            parsed.tcp_seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
            parsed.tcp_ack = u32::from_be_bytes([t[8], t[9], t[10], t[11]]);
            parsed.header_len += doff as u32;
        }
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => {
            let p: [u8; 4] = pkt.load(l4).ok_or(Malformed::TruncatedL4)?;
            parsed.key.src_port = be16([p[0], p[1]]);
            parsed.key.dst_port = be16([p[2], p[3]]);
            parsed.header_len += min_len as u32;
        }
        _ => {
            // ICMP/ICMPv6: no ports; the length check above proved the
            // header is there (`ip_end` never exceeds the frame).
            parsed.header_len += min_len as u32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
