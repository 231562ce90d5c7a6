//! Every truncation of a set of well-formed frames, run one at a time
//! through the loaded XDP program with BPF_PROG_TEST_RUN: each frame's
//! outcome (a flow with its exact key and IP bytes, or one malformed count
//! with the documented reason) is checked directly, and every frame is
//! passed on untouched. ARP and triple-tagged frames cover the link-layer
//! reasons, so every reason the parser has occurs.
//!
//! Expectations come from the frames' layout alone: where the Ethernet,
//! VLAN, IP, extension and transport headers end. Two cuts per length: raw
//! (the IP length still claims the whole packet) and consistent (the IP
//! length rewritten to end where the frame ends).

use flowlog_agent::capture::{CaptureSettings, NetnsCapture};
use flowlog_common::{Direction, Malformed};
use flowlog_tests::{packet::frames, privileged};

const XDP_PASS: u32 = 2;
const A4: [u8; 4] = [10, 1, 0, 2];
const B4: [u8; 4] = [10, 2, 0, 2];
const A6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2];
const B6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2];

/// A base frame and where its headers end.
struct Base {
    name: &'static str,
    /// What the link layer alone decides (ARP, too many VLAN tags) once
    /// `l3` bytes are present; `None` for IP frames.
    l2_error: Option<Malformed>,
    frame: Vec<u8>,
    /// Offset of the IP header (after Ethernet and VLAN tags).
    l3: usize,
    v6: bool,
    /// IPv4 header length (IHL × 4); 40 for IPv6.
    ip_header: usize,
    /// IPv6 extension headers: (offset, length, bytes the parser reads).
    ext: Vec<(usize, usize)>,
    /// Offset of the transport header; `None` for a non-first fragment.
    l4: Option<usize>,
    /// Transport bytes that must be present: TCP data offset, UDP/ICMP 8.
    l4_len: usize,
    protocol: u8,
    ports: (u16, u16),
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Flow { bytes: u64 },
    Malformed(Malformed),
}

fn tcp(sport: u16, dport: u16, options: usize, data: usize) -> Vec<u8> {
    let doff = (20 + options) / 4;
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    t.extend_from_slice(&[(doff as u8) << 4, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(std::iter::repeat_n(1u8, options));
    t.extend(std::iter::repeat_n(0x44u8, data));
    t
}

fn with_vlans(tags: &[u16], ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = frames::eth(tags.first().copied().unwrap_or(ethertype));
    for (i, _) in tags.iter().enumerate() {
        let next = tags.get(i + 1).copied().unwrap_or(ethertype);
        f.extend_from_slice(&[0, 10 + i as u8]);
        f.extend_from_slice(&next.to_be_bytes());
    }
    f.extend_from_slice(l3);
    f
}

/// IPv4 with `options` bytes of options (IHL > 5).
fn ipv4_opts(proto: u8, options: usize, payload: &[u8]) -> Vec<u8> {
    let mut h = frames::ipv4(A4, B4, proto, 0, payload);
    let ihl = (20 + options) / 4;
    h[0] = 0x40 | ihl as u8;
    let total = (20 + options + payload.len()) as u16;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    let body = h.split_off(20);
    h.extend(std::iter::repeat_n(1u8, options));
    h.extend(body);
    h
}

/// IPv6 extension header of `len` bytes (a multiple of 8) pointing at `next`.
fn ext(next: u8, len: usize) -> Vec<u8> {
    let mut e = vec![next, (len / 8 - 1) as u8];
    e.extend(std::iter::repeat_n(0u8, len - 2));
    // Options area: PadN so it reads as valid padding.
    if len > 2 {
        e[2] = 1;
        e[3] = (len - 4) as u8;
    }
    e
}

fn bases() -> Vec<Base> {
    const ETH_IP: u16 = 0x0800;
    const ETH_IP6: u16 = 0x86dd;
    let v4 = |name, tags: &[u16], proto, payload: Vec<u8>, l4_len, ports| {
        let l3 = 14 + 4 * tags.len();
        Base {
            name,
            l2_error: None,
            frame: with_vlans(tags, ETH_IP, &frames::ipv4(A4, B4, proto, 0, &payload)),
            l3,
            v6: false,
            ip_header: 20,
            ext: Vec::new(),
            l4: Some(l3 + 20),
            l4_len,
            protocol: proto,
            ports,
        }
    };
    let mut out = vec![
        v4("ipv4/tcp", &[], 6, tcp(40000, 443, 0, 10), 20, (40000, 443)),
        v4(
            "ipv4/tcp+options",
            &[],
            6,
            tcp(40001, 443, 12, 5),
            32,
            (40001, 443),
        ),
        v4("ipv4/udp", &[], 17, frames::udp(5353, 53, 20), 8, (5353, 53)),
        v4("ipv4/icmp", &[], 1, vec![8, 0, 0, 0, 0, 1, 0, 1, 9, 9], 8, (0, 0)),
        v4(
            "vlan/ipv4/udp",
            &[0x8100],
            17,
            frames::udp(1000, 2000, 4),
            8,
            (1000, 2000),
        ),
        v4(
            "qinq/ipv4/tcp",
            &[0x88a8, 0x8100],
            6,
            tcp(3000, 22, 0, 0),
            20,
            (3000, 22),
        ),
    ];
    out.push(Base {
        name: "ipv4+options/udp",
        l2_error: None,
        frame: with_vlans(&[], ETH_IP, &ipv4_opts(17, 8, &frames::udp(7, 9, 6))),
        l3: 14,
        v6: false,
        ip_header: 28,
        ext: Vec::new(),
        l4: Some(14 + 28),
        l4_len: 8,
        protocol: 17,
        ports: (7, 9),
    });
    out.push(Base {
        name: "ipv4 non-first fragment",
        l2_error: None,
        frame: with_vlans(&[], ETH_IP, &frames::ipv4(A4, B4, 17, 185, &[0x55; 24])),
        l3: 14,
        v6: false,
        ip_header: 20,
        ext: Vec::new(),
        l4: None,
        l4_len: 0,
        protocol: 17,
        ports: (0, 0),
    });
    out.push(Base {
        name: "ipv6/udp",
        l2_error: None,
        frame: with_vlans(
            &[],
            ETH_IP6,
            &frames::ipv6(A6, B6, 17, &frames::udp(5000, 6000, 12)),
        ),
        l3: 14,
        v6: true,
        ip_header: 40,
        ext: Vec::new(),
        l4: Some(54),
        l4_len: 8,
        protocol: 17,
        ports: (5000, 6000),
    });
    // Hop-by-hop (8) then destination options (16), then TCP.
    let mut chain = ext(60, 8);
    chain.extend(ext(6, 16));
    chain.extend(tcp(8080, 80, 0, 3));
    out.push(Base {
        name: "vlan/ipv6+hbh+dstopts/tcp",
        l2_error: None,
        frame: with_vlans(&[0x8100], ETH_IP6, &frames::ipv6(A6, B6, 0, &chain)),
        l3: 18,
        v6: true,
        ip_header: 40,
        ext: vec![(58, 8), (66, 16)],
        l4: Some(82),
        l4_len: 20,
        protocol: 6,
        ports: (8080, 80),
    });
    // Non-first fragment: fragment header with offset 100 (× 8 bytes).
    let mut frag = vec![17, 0];
    frag.extend_from_slice(&(100u16 << 3).to_be_bytes());
    frag.extend_from_slice(&[0, 0, 0, 7]);
    frag.extend_from_slice(&[0x66; 16]);
    out.push(Base {
        name: "ipv6 non-first fragment",
        l2_error: None,
        frame: with_vlans(&[], ETH_IP6, &frames::ipv6(A6, B6, 44, &frag)),
        l3: 14,
        v6: true,
        ip_header: 40,
        ext: vec![(54, 8)],
        l4: None,
        l4_len: 0,
        protocol: 17,
        ports: (0, 0),
    });
    // ARP: the EtherType alone says it is no IP traffic.
    let mut arp = frames::eth(0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0x22; 20]);
    out.push(link_only("arp", arp, 14, Malformed::NonIp));
    // Three tags: the parser follows two, then refuses once the second
    // tag's inner EtherType (bytes 18..22) names a third.
    let triple = with_vlans(
        &[0x88a8, 0x8100, 0x8100],
        ETH_IP,
        &frames::ipv4(A4, B4, 17, 0, &frames::udp(1, 2, 4)),
    );
    out.push(link_only("three vlan tags", triple, 22, Malformed::VlanDepth));
    out
}

/// A frame the link layer rejects once `decided` bytes are present.
fn link_only(name: &'static str, frame: Vec<u8>, decided: usize, error: Malformed) -> Base {
    Base {
        name,
        l2_error: Some(error),
        frame,
        l3: decided,
        v6: false,
        ip_header: 0,
        ext: Vec::new(),
        l4: None,
        l4_len: 0,
        protocol: 0,
        ports: (0, 0),
    }
}

/// What a frame cut to `n` bytes must yield; `consistent`: the IP length
/// was rewritten to end with the frame.
fn expected(b: &Base, n: usize, consistent: bool) -> Outcome {
    use Malformed::*;
    let m = Outcome::Malformed;
    let full = b.frame.len();
    let fixed = if b.v6 { 40 } else { 20 };
    if n < b.l3 {
        return m(TruncatedL2);
    }
    if let Some(e) = b.l2_error {
        return m(e);
    }
    if n < b.l3 + fixed {
        return m(TruncatedL3);
    }
    if !consistent {
        return if n < full {
            m(BadL3)
        } else {
            Outcome::Flow {
                bytes: (full - b.l3) as u64,
            }
        };
    }
    let ip_len = n - b.l3;
    if ip_len < b.ip_header || (b.v6 && ip_len == 40) {
        // IHL beyond the total length; IPv6 payload length 0 (jumbogram).
        return m(BadL3);
    }
    if b.ext.iter().any(|&(off, len)| n < off + len) {
        return m(Ipv6ExtChain);
    }
    if let Some(l4) = b.l4
        && n < l4 + b.l4_len
    {
        return m(TruncatedL4);
    }
    Outcome::Flow { bytes: ip_len as u64 }
}

/// The frame cut to `n` bytes, with its IP length rewritten if `consistent`.
fn cut(b: &Base, n: usize, consistent: bool) -> Vec<u8> {
    let mut f = b.frame[..n].to_vec();
    if consistent && n >= b.l3 + if b.v6 { 40 } else { 20 } {
        let ip_len = n - b.l3;
        let (at, value) = if b.v6 {
            (b.l3 + 4, ip_len - 40)
        } else {
            (b.l3 + 2, ip_len)
        };
        f[at..at + 2].copy_from_slice(&(value as u16).to_be_bytes());
    }
    f
}

fn mapped(a: [u8; 4]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(&a);
    m
}

/// What the kernel program did with one frame, from one drain.
fn outcome(cap: &mut NetnsCapture, b: &Base, frame: &[u8]) -> anyhow::Result<Outcome> {
    let (verdict, after) = cap.run_xdp(frame)?;
    anyhow::ensure!(verdict == XDP_PASS, "{}: verdict {verdict}, not XDP_PASS", b.name);
    anyhow::ensure!(after == frame, "{}: the program changed the frame", b.name);
    let (d, deletion) = cap.drain()?;
    cap.delete(deletion)?;
    let flows: Vec<_> = d.window.flows.iter().collect();
    match (flows.as_slice(), d.malformed.as_slice()) {
        ([(key, stats)], []) => {
            let (src, dst) = if b.v6 { (A6, B6) } else { (mapped(A4), mapped(B4)) };
            anyhow::ensure!(
                key.src_addr == src
                    && key.dst_addr == dst
                    && key.protocol == b.protocol
                    && (key.src_port, key.dst_port) == b.ports
                    && key.direction == Direction::Ingress as u8
                    && key.ip_version == if b.v6 { 6 } else { 4 }
                    && stats.packets == 1,
                "{}: wrong flow {key:?} {stats:?}",
                b.name
            );
            Ok(Outcome::Flow { bytes: stats.bytes })
        }
        ([], [m]) if m.counters.packets == 1 => Ok(Outcome::Malformed(m.reason)),
        _ => anyhow::bail!(
            "{}: a frame of {} bytes gave flows {flows:?} and malformed {:?}",
            b.name,
            frame.len(),
            d.malformed
        ),
    }
}

#[test]
fn every_truncation_of_known_frames_is_counted_as_documented() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let settings = CaptureSettings {
        flow_map_entries: 1024,
        flow_map_entries_v6: 1024,
        overflow_ring_bytes: 1 << 16,
        rtt: true,
    };
    // The capture registers its rings with the async reactor.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _reactor = rt.enter();
    let mut cap = NetnsCapture::load(None, "test-run", &settings, None)?;
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for b in bases() {
        // The kernel refuses test frames shorter than an Ethernet header.
        for n in 14..=b.frame.len() {
            for consistent in [false, true] {
                if consistent && (n == b.frame.len() || b.l2_error.is_some()) {
                    continue;
                }
                let frame = cut(&b, n, consistent);
                let want = expected(&b, n, consistent);
                let got = outcome(&mut cap, &b, &frame)?;
                let class = match &got {
                    Outcome::Flow { .. } => "flow".to_owned(),
                    Outcome::Malformed(m) => format!("{m:?}"),
                };
                *tally.entry(class).or_default() += 1;
                if got != want {
                    wrong.push(format!(
                        "{} cut to {n} ({}): want {want:?}, got {got:?}",
                        b.name,
                        if consistent { "consistent" } else { "raw" }
                    ));
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} frames: {tally:?}");
    // Every outcome class occurs, so no expectation is vacuous.
    assert_eq!(tally.len(), Malformed::ALL.len() + 1, "{tally:?}");
    assert!(
        wrong.is_empty(),
        "{} of {checked} frames wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 1000, "only {checked} frames");
    Ok(())
}
