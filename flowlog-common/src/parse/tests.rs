//! Parser cases on hand-built frames; the kernel side runs the same code.
extern crate std;

use std::vec::Vec;

use super::*;

struct Frame<'a>(&'a [u8]);

const GSO: FrameMeta = FrameMeta {
    gso: true,
    stripped_vlan_tags: 0,
};

impl Packet for Frame<'_> {
    fn frame_len(&self) -> usize {
        self.0.len()
    }
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let end = offset.checked_add(size_of::<T>())?;
        let bytes = self.0.get(offset..end)?;
        // SAFETY: `bytes` holds exactly size_of::<T>() bytes and T is only
        // instantiated with byte arrays here.
        Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
    }
}

fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = std::vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn ipv4(proto: u8, options: usize, payload: &[u8], frag: u16) -> Vec<u8> {
    let ihl = 20 + options;
    let total = (ihl + payload.len()) as u16;
    let mut h = std::vec![0x40 | (ihl / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 10, 0, 1, 2, 10, 0, 2, 3]);
    h.extend(std::iter::repeat_n(1u8, options));
    h.extend_from_slice(payload);
    h
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = std::vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    let mut src = [0u8; 16];
    src[0] = 0xfd;
    src[15] = 1;
    let mut dst = src;
    dst[15] = 2;
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, data: usize) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend(std::iter::repeat_n(0xabu8, data));
    u
}

fn tcp(sport: u16, dport: u16, flags: u8, options: usize) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    t.push((((20 + options) / 4) as u8) << 4);
    t.push(flags);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t.extend(std::iter::repeat_n(1u8, options));
    t
}

/// An extension header of `len` bytes (a multiple of 8) followed by `next`.
fn ext(next: u8, len: usize) -> Vec<u8> {
    let mut e = std::vec![next, (len / 8 - 1) as u8];
    e.extend(std::iter::repeat_n(0u8, len - 2));
    e
}

fn frame(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn ok(f: &[u8]) -> Parsed {
    match parse(&Frame(f), FrameMeta::default()) {
        Ok(p) => p,
        Err(e) => panic!("expected a flow, got {e:?}"),
    }
}

fn err(f: &[u8]) -> Malformed {
    match parse(&Frame(f), FrameMeta::default()) {
        Ok(p) => panic!("expected malformed, got {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn ipv4_udp() {
    let f = frame(&[&eth(ETH_P_IP), &ipv4(IPPROTO_UDP, 0, &udp(5000, 53, 100), 0)]);
    let p = ok(&f);
    assert_eq!(p.key.ip_version, 4);
    assert_eq!(p.key.protocol, IPPROTO_UDP);
    assert_eq!((p.key.src_port, p.key.dst_port), (5000, 53));
    assert_eq!(&p.key.src_addr[10..], &[0xff, 0xff, 10, 0, 1, 2]);
    assert_eq!(&p.key.dst_addr[12..], &[10, 0, 2, 3]);
    assert_eq!(p.ip_len, 20 + 8 + 100);
    assert_eq!(p.header_len, 28);
    assert_eq!(p.l3_offset, 14);
}

#[test]
fn ipv4_options_and_tcp_flags() {
    let f = frame(&[
        &eth(ETH_P_IP),
        &ipv4(IPPROTO_TCP, 8, &tcp(40000, 443, 0x12, 12), 0),
    ]);
    let p = ok(&f);
    assert_eq!((p.key.src_port, p.key.dst_port), (40000, 443));
    assert_eq!(p.tcp_flags, 0x12);
    assert_eq!(p.ip_len, 28 + 32);
    assert_eq!(p.header_len, 28 + 32);
}

#[test]
fn ethernet_padding_is_not_counted() {
    let mut f = frame(&[
        &eth(ETH_P_IP),
        &ipv4(IPPROTO_ICMP, 0, &[8, 0, 0, 0, 0, 1, 0, 1], 0),
    ]);
    f.resize(60, 0);
    let p = ok(&f);
    assert_eq!(p.ip_len, 28);
    assert_eq!((p.key.src_port, p.key.dst_port), (0, 0));
}

#[test]
fn ipv4_bad_headers() {
    let mut f = frame(&[&eth(ETH_P_IP), &ipv4(IPPROTO_UDP, 0, &udp(1, 2, 4), 0)]);
    f[14] = 0x44; // IHL 4
    assert_eq!(err(&f), Malformed::BadL3);
    f[14] = 0x55; // version 5
    assert_eq!(err(&f), Malformed::BadL3);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&200u16.to_be_bytes()); // longer than the frame
    assert_eq!(err(&f), Malformed::BadL3);
    f[16..18].copy_from_slice(&19u16.to_be_bytes()); // shorter than its header
    assert_eq!(err(&f), Malformed::BadL3);
    f[16..18].copy_from_slice(&24u16.to_be_bytes()); // UDP header cut by the IP length
    assert_eq!(err(&f), Malformed::TruncatedL4);
}

#[test]
fn ipv4_fragments() {
    // First fragment (MF, offset 0) carries the ports.
    let first = frame(&[&eth(ETH_P_IP), &ipv4(IPPROTO_UDP, 0, &udp(7, 9, 40), 0x2000)]);
    assert_eq!(ok(&first).key.dst_port, 9);
    // A non-first fragment's payload must never be read as ports.
    let later = frame(&[&eth(ETH_P_IP), &ipv4(IPPROTO_UDP, 0, &udp(7, 9, 40), 0x0006)]);
    let p = ok(&later);
    assert_eq!(
        (p.key.protocol, p.key.src_port, p.key.dst_port),
        (IPPROTO_UDP, 0, 0)
    );
    assert_eq!(p.ip_len, 20 + 48);
    // Even a 1-byte non-first fragment is counted.
    let tiny = frame(&[&eth(ETH_P_IP), &ipv4(IPPROTO_TCP, 0, &[0], 0x00b9)]);
    assert_eq!(ok(&tiny).ip_len, 21);
}

#[test]
fn vlan_tags() {
    let inner = ipv4(IPPROTO_UDP, 0, &udp(1, 2, 0), 0);
    let one = frame(&[&eth(ETH_P_8021Q), &[0, 5, 0x08, 0x00], &inner]);
    assert_eq!(ok(&one).l3_offset, 18);
    let two = frame(&[
        &eth(ETH_P_8021AD),
        &[0, 5, 0x81, 0x00],
        &[0, 6, 0x08, 0x00],
        &inner,
    ]);
    let p = ok(&two);
    assert_eq!(p.l3_offset, 22);
    assert_eq!(p.key.dst_port, 2);
    let three = frame(&[
        &eth(ETH_P_8021AD),
        &[0, 5, 0x81, 0x00],
        &[0, 6, 0x81, 0x00],
        &[0, 7, 0x08, 0x00],
        &inner,
    ]);
    assert_eq!(err(&three), Malformed::VlanDepth);
    // TC: the outer tag was stripped into skb metadata; the limit still holds.
    let stripped = |n| FrameMeta {
        gso: false,
        stripped_vlan_tags: n,
    };
    assert_eq!(parse(&Frame(&two), stripped(0)).map(|p| p.l3_offset), Ok(22));
    assert_eq!(parse(&Frame(&one), stripped(1)).map(|p| p.l3_offset), Ok(18));
    assert_eq!(parse(&Frame(&two), stripped(1)), Err(Malformed::VlanDepth));
    let cut = frame(&[&eth(ETH_P_8021Q), &[0, 5]]);
    assert_eq!(err(&cut), Malformed::TruncatedL2);
}

#[test]
fn non_ip_and_short_frames() {
    assert_eq!(err(&frame(&[&eth(0x0806), &[0; 28]])), Malformed::NonIp);
    assert_eq!(err(&[0u8; 13]), Malformed::TruncatedL2);
}

#[test]
fn ipv6_with_extension_chain() {
    let mut payload = ext(IPPROTO_DSTOPTS, 8);
    payload.extend(ext(IPPROTO_ROUTING, 16));
    payload.extend(ext(IPPROTO_TCP, 8));
    payload.extend(tcp(1234, 80, 0x02, 20));
    let f = frame(&[&eth(ETH_P_IPV6), &ipv6(IPPROTO_HOPOPTS, &payload)]);
    let p = ok(&f);
    assert_eq!(p.key.ip_version, 6);
    assert_eq!(p.key.protocol, IPPROTO_TCP);
    assert_eq!((p.key.src_port, p.key.dst_port), (1234, 80));
    assert_eq!(p.tcp_flags, 0x02);
    assert_eq!(p.ip_len as usize, 40 + payload.len());
    assert_eq!(p.header_len as usize, 40 + 32 + 40);
    assert_eq!(p.key.src_addr[0], 0xfd);
}

#[test]
fn ipv6_chain_too_long_is_malformed() {
    let chain = |n: usize| {
        let mut payload = Vec::new();
        for i in 0..n {
            let next = if i + 1 == n { IPPROTO_UDP } else { IPPROTO_DSTOPTS };
            payload.extend(ext(next, 8));
        }
        payload.extend(udp(1, 2, 0));
        frame(&[&eth(ETH_P_IPV6), &ipv6(IPPROTO_DSTOPTS, &payload)])
    };
    assert_eq!(ok(&chain(MAX_IPV6_EXT_HEADERS)).key.dst_port, 2);
    assert_eq!(err(&chain(MAX_IPV6_EXT_HEADERS + 1)), Malformed::Ipv6ExtChain);
}

#[test]
fn ipv6_extension_beyond_payload_is_malformed() {
    let mut payload = ext(IPPROTO_UDP, 64);
    payload.truncate(16);
    let f = frame(&[&eth(ETH_P_IPV6), &ipv6(IPPROTO_HOPOPTS, &payload)]);
    assert_eq!(err(&f), Malformed::Ipv6ExtChain);
}

#[test]
fn ipv6_fragments() {
    let mut first = std::vec![IPPROTO_UDP, 0, 0, 1, 0, 0, 0, 1];
    first.extend(udp(53, 5353, 10));
    let p = ok(&frame(&[&eth(ETH_P_IPV6), &ipv6(IPPROTO_FRAGMENT, &first)]));
    assert_eq!((p.key.protocol, p.key.src_port), (IPPROTO_UDP, 53));
    let mut later = std::vec![IPPROTO_UDP, 0, 0x05, 0x00, 0, 0, 0, 1];
    later.extend(udp(53, 5353, 10));
    let p = ok(&frame(&[&eth(ETH_P_IPV6), &ipv6(IPPROTO_FRAGMENT, &later)]));
    assert_eq!(
        (p.key.protocol, p.key.src_port, p.key.dst_port),
        (IPPROTO_UDP, 0, 0)
    );
}

#[test]
fn ipv6_zero_payload_length_is_malformed_unless_gso() {
    let mut f = frame(&[&eth(ETH_P_IPV6), &ipv6(IPPROTO_UDP, &udp(1, 2, 10))]);
    f[18] = 0;
    f[19] = 0;
    assert_eq!(err(&f), Malformed::BadL3);
    let p = parse(&Frame(&f), GSO).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.ip_len as usize, f.len() - 14);
}

#[test]
fn gso_takes_length_from_the_frame() {
    let mut f = frame(&[&eth(ETH_P_IP), &ipv4(IPPROTO_TCP, 0, &tcp(1, 2, 0x10, 12), 0)]);
    f.extend(std::iter::repeat_n(0u8, 3000));
    f[16] = 0;
    f[17] = 0; // BIG TCP leaves the IPv4 total length at 0
    let p = parse(&Frame(&f), GSO).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(p.ip_len as usize, f.len() - 14);
    assert_eq!(p.header_len, 20 + 32);
}

/// Cutting a frame anywhere must give either the whole, correct flow (only
/// when nothing that matters was cut) or a malformed verdict — never a
/// different flow.
#[test]
fn truncation_at_every_offset() {
    let frames = [
        frame(&[
            &eth(ETH_P_8021Q),
            &[0, 1, 0x08, 0x00],
            &ipv4(IPPROTO_TCP, 4, &tcp(9, 10, 0x18, 12), 0),
        ]),
        frame(&[
            &eth(ETH_P_IPV6),
            &ipv6(
                IPPROTO_HOPOPTS,
                &[&ext(IPPROTO_UDP, 8)[..], &udp(3, 4, 6)].concat(),
            ),
        ]),
        frame(&[
            &eth(ETH_P_IP),
            &ipv4(IPPROTO_SCTP, 0, &[0, 5, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0], 0),
        ]),
    ];
    for full in &frames {
        let want = ok(full);
        for cut in 0..full.len() {
            if let Ok(p) = parse(&Frame(&full[..cut]), FrameMeta::default()) {
                panic!("frame cut at {cut} of {} parsed as {p:?}", full.len());
            }
        }
        assert_eq!(ok(full), want);
    }
}
