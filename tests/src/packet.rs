//! AF_PACKET on test interfaces: injecting hand-built frames, and a
//! userspace reference capture that counts what crossed an interface.

use std::{
    collections::HashMap,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use anyhow::{Context as _, ensure};

use crate::netns::Netns;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_OUTGOING: u8 = 4;
const VNET_HDR_LEN: usize = 10;

fn packet_socket(ns: &Netns, ifname: &str, protocol: u16) -> anyhow::Result<(OwnedFd, i32)> {
    let ifname = std::ffi::CString::new(ifname)?;
    let (fd, ifindex) = ns.run(move || {
        // SAFETY: plain socket(2) and if_nametoindex(3) calls.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(protocol.to_be()),
            )
        };
        // SAFETY: a NUL-terminated interface name.
        let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) } as i32;
        (fd, ifindex)
    })?;
    ensure!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: fresh fd, owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    ensure!(ifindex > 0, "interface not found in {}", ns.name());
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: bind with a valid sockaddr_ll.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&sll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    ensure!(rc == 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
    Ok((fd, ifindex))
}

/// Sends each frame (starting at the Ethernet header) out of `ifname`.
pub fn inject(ns: &Netns, ifname: &str, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let (fd, _) = packet_socket(ns, ifname, 0)?;
    for f in frames {
        // SAFETY: valid buffer.
        let n = unsafe { libc::send(fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        ensure!(
            n == f.len() as isize,
            "inject {} bytes: {}",
            f.len(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Five-tuple and direction as the reference capture sees them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// True for packets the interface sent.
    pub outgoing: bool,
    pub protocol: u8,
    pub src: std::net::IpAddr,
    pub sport: u16,
    pub dst: std::net::IpAddr,
    pub dport: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// A running capture; [`Reference::finish`] returns the counts.
pub struct Reference {
    stop: Arc<AtomicBool>,
    worker: JoinHandle<anyhow::Result<(HashMap<Tuple, Count>, u32)>>,
}

impl Reference {
    /// Starts counting every packet crossing `ifname` in `ns`: wire segments
    /// and IP bytes per five-tuple, expanding GSO aggregates from the
    /// virtio-net header the kernel attaches.
    pub fn start(ns: &Netns, ifname: &str) -> anyhow::Result<Self> {
        let (fd, _) = packet_socket(ns, ifname, ETH_P_ALL)?;
        let one: libc::c_int = 1;
        let big: libc::c_int = 64 << 20;
        // SAFETY: setsockopt with int options.
        unsafe {
            ensure!(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    PACKET_VNET_HDR,
                    std::ptr::from_ref(&one).cast(),
                    4
                ) == 0,
                "PACKET_VNET_HDR: {}",
                std::io::Error::last_os_error()
            );
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                std::ptr::from_ref(&big).cast(),
                4,
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let worker = std::thread::spawn(move || capture_loop(&fd, &flag));
        Ok(Self { stop, worker })
    }

    /// Stops and returns counts per tuple; fails if the kernel dropped any
    /// packet for this socket (the reference would be incomplete).
    pub fn finish(self) -> anyhow::Result<HashMap<Tuple, Count>> {
        self.stop.store(true, Ordering::Relaxed);
        let (counts, drops) = self
            .worker
            .join()
            .map_err(|_| anyhow::anyhow!("capture thread panicked"))??;
        ensure!(drops == 0, "reference capture dropped {drops} packets");
        Ok(counts)
    }
}

fn capture_loop(fd: &OwnedFd, stop: &AtomicBool) -> anyhow::Result<(HashMap<Tuple, Count>, u32)> {
    let mut counts: HashMap<Tuple, Count> = HashMap::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        // SAFETY: one live pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
        if ready <= 0 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            continue;
        }
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: valid buffer and address storage.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                std::ptr::from_mut(&mut sll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            continue;
        }
        let frame = &buf[..n as usize];
        if let Some((tuple, count)) = classify(frame, sll.sll_pkttype == PACKET_OUTGOING) {
            let c = counts.entry(tuple).or_default();
            c.packets += count.packets;
            c.bytes += count.bytes;
        }
    }
    let mut stats = [0u32; 2];
    let mut len = 8 as libc::socklen_t;
    // SAFETY: PACKET_STATISTICS fills struct tpacket_stats { packets, drops }.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            stats.as_mut_ptr().cast(),
            &mut len,
        );
    }
    Ok((counts, stats[1]))
}

/// Parses a captured (vnet header + Ethernet) frame of plain IPv4/IPv6
/// traffic into its tuple and wire count.
fn classify(frame: &[u8], outgoing: bool) -> Option<(Tuple, Count)> {
    let gso_type = *frame.get(1)?;
    let gso_size = u16::from_le_bytes([*frame.get(4)?, *frame.get(5)?]) as u64;
    let eth = frame.get(VNET_HDR_LEN..)?;
    let ethertype = u16::from_be_bytes([*eth.get(12)?, *eth.get(13)?]);
    let ip = eth.get(14..)?;
    let (protocol, src, dst, l3_len, ip_len): (u8, std::net::IpAddr, std::net::IpAddr, usize, usize) =
        match ethertype {
            0x0800 => {
                let ihl = ((ip.first()? & 0x0f) as usize) * 4;
                let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
                let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
                let total = u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]) as usize;
                (ip[9], s.into(), d.into(), ihl, total)
            }
            0x86dd => {
                let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                let payload = u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]) as usize;
                (ip[6], s.into(), d.into(), 40, 40 + payload)
            }
            _ => return None,
        };
    let l4 = ip.get(l3_len..)?;
    let (sport, dport, l4_len) = match protocol {
        6 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
            ((l4.get(12)? >> 4) as usize) * 4,
        ),
        17 => (
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
            8,
        ),
        _ => (0, 0, 0),
    };
    let count = if gso_type != 0 && gso_size > 0 {
        let skb_ip = ip.len() as u64;
        let headers = (l3_len + l4_len) as u64;
        let segs = (skb_ip - headers).div_ceil(gso_size);
        Count {
            packets: segs,
            bytes: skb_ip + (segs - 1) * headers,
        }
    } else {
        Count {
            packets: 1,
            bytes: ip_len as u64,
        }
    };
    Some((
        Tuple {
            outgoing,
            protocol,
            src,
            sport,
            dst,
            dport,
        },
        count,
    ))
}

/// Hand-built frames for malformed-input tests.
pub mod frames {
    pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
    pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];

    pub fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = MAC_DST.to_vec();
        f.extend_from_slice(&MAC_SRC);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    fn csum(h: &[u8]) -> u16 {
        let mut s: u32 = h
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// IPv4 header (+ payload) with the given protocol, fragment field and
    /// addresses; correct checksum and total length.
    pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = csum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    pub fn udp(sport: u16, dport: u16, data: usize) -> Vec<u8> {
        let mut u = sport.to_be_bytes().to_vec();
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + data) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend(std::iter::repeat_n(0x33u8, data));
        u
    }

    /// `count` UDP frames from 10.1.0.2 to 10.2.0.2, one per five-tuple:
    /// source ports `first_sport..`, destination port `dport`, frame `i`
    /// carrying `i % payload_mod` payload bytes. Returns the frames and their
    /// IP bytes in all (what the collector must account).
    pub fn distinct_udp(count: u16, first_sport: u16, dport: u16, payload_mod: u16) -> (Vec<Vec<u8>>, u64) {
        let mut bytes = 0;
        let batch = (0..count)
            .map(|i| {
                let data = usize::from(i % payload_mod);
                bytes += 28 + data as u64;
                let udp = udp(first_sport + i, dport, data);
                [eth(0x0800), ipv4([10, 1, 0, 2], [10, 2, 0, 2], 17, 0, &udp)].concat()
            })
            .collect();
        (batch, bytes)
    }

    pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 64]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(payload);
        h
    }
}

impl Tuple {
    /// Builds a tuple from textual addresses.
    pub fn new(
        outgoing: bool,
        protocol: u8,
        src: &str,
        sport: u16,
        dst: &str,
        dport: u16,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            outgoing,
            protocol,
            src: src.parse().context("src address")?,
            sport,
            dst: dst.parse().context("dst address")?,
            dport,
        })
    }
}
