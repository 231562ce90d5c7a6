//! One cut as a file: what every namespace's drain read at one instant,
//! and which flow logs it belonged to.
//!
//! ```text
//! "FLCUT\0\0\x01"  magic and layout version
//! u32 n, n bytes   header (JSON): seq, time, per namespace its identity,
//!                  the generation programs count into after the cut, and
//!                  ifindex → [(flow log, slot)]
//! per namespace    u64 n, n × (FlowKey 44 + FlowStats 40)   flows
//!                  u64 n, n × (ifindex 4, direction 1, Counters 16)   skipped
//!                  u64 n, n × (FlowKey 44, Rtt 12)   handshake RTTs
//! u32              CRC-32 of everything before it
//! ```
//!
//! Integers are little-endian and written field by field, so the file does
//! not depend on struct layout or padding.

use std::io::{self, Write};

use flowlog_common::{Counters, Direction, FlowKey, FlowStats};
use serde::{Deserialize, Serialize};

use crate::{rtt::Rtt, window::WindowAggregate};

const MAGIC: &[u8; 8] = b"FLCUT\0\0\x01";
/// The magic and the header's length, before the header.
pub const HEAD_BYTES: usize = MAGIC.len() + 4;
const KEY_BYTES: usize = 44;
const STATS_BYTES: usize = 40;
const SKIP_BYTES: usize = 21;
const RTT_BYTES: usize = KEY_BYTES + 12;

/// A flow log's share of an interface: its id and the attachment slot the
/// interface has in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub flow_log: String,
    pub slot: u32,
}

/// Who an interface's counts belong to at this cut.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub ifindex: u32,
    pub interface: String,
    pub users: Vec<User>,
}

/// One namespace's drain.
#[derive(Debug, Default)]
pub struct NsCut {
    pub netns: Option<String>,
    /// Kernel cookie of the namespace the maps serve.
    pub cookie: u64,
    /// The generation programs count into once this cut is done: a restart
    /// that finds the maps still on it knows the idle generation's entries
    /// are in this file.
    pub generation: u32,
    pub targets: Vec<Target>,
    pub data: WindowAggregate,
}

/// Everything one cut drained.
#[derive(Debug, Default)]
pub struct CutRecord {
    pub seq: u64,
    /// Unix ns of the cut.
    pub at_ns: i64,
    pub namespaces: Vec<NsCut>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    seq: u64,
    at_ns: i64,
    namespaces: Vec<NsHeader>,
}

#[derive(Serialize, Deserialize)]
struct NsHeader {
    netns: Option<String>,
    cookie: u64,
    generation: u32,
    targets: Vec<Target>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not a cut file (bad magic or layout version)")]
    Magic,
    #[error("checksum mismatch: the file is damaged")]
    Checksum,
    #[error("cut short at byte {0}")]
    Short(usize),
    #[error("bad header: {0}")]
    Header(String),
    #[error("bad direction {0} in the skip counters")]
    Direction(u8),
}

fn put_key(b: &mut Vec<u8>, k: &FlowKey) {
    b.extend_from_slice(&k.src_addr);
    b.extend_from_slice(&k.dst_addr);
    b.extend_from_slice(&k.ifindex.to_le_bytes());
    b.extend_from_slice(&k.src_port.to_le_bytes());
    b.extend_from_slice(&k.dst_port.to_le_bytes());
    b.extend_from_slice(&[k.protocol, k.direction, k.ip_version, k.generation]);
}

fn put_stats(b: &mut Vec<u8>, s: &FlowStats) {
    for v in [s.packets, s.bytes, s.first_seen_jiffies, s.last_seen_jiffies] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&s.tcp_flags.to_le_bytes());
    b.extend_from_slice(&[0; 6]);
}

/// Writes `cut` to `out` (buffered by the caller or not: records are
/// gathered in chunks here).
pub fn encode(cut: &CutRecord, out: impl Write) -> io::Result<()> {
    let mut w = crate::durable::Summed::new(out);
    let header = Header {
        seq: cut.seq,
        at_ns: cut.at_ns,
        namespaces: cut
            .namespaces
            .iter()
            .map(|n| NsHeader {
                netns: n.netns.clone(),
                cookie: n.cookie,
                generation: n.generation,
                targets: n.targets.clone(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&header).map_err(io::Error::other)?;
    w.write_all(MAGIC)?;
    w.write_all(&u32::try_from(json.len()).map_err(io::Error::other)?.to_le_bytes())?;
    w.write_all(&json)?;
    let mut buf = Vec::with_capacity(1 << 16);
    for ns in &cut.namespaces {
        let d = &ns.data;
        w.write_all(&(d.flows.len() as u64).to_le_bytes())?;
        for (k, s) in d.flows.iter() {
            put_key(&mut buf, k);
            put_stats(&mut buf, s);
            if buf.len() >= 1 << 16 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        buf.clear();
        let mut skipped: Vec<_> = d.skipped.iter().collect();
        skipped.sort_by_key(|(k, _)| **k);
        w.write_all(&(skipped.len() as u64).to_le_bytes())?;
        for ((ifindex, dir), c) in skipped {
            buf.extend_from_slice(&ifindex.to_le_bytes());
            buf.push(*dir as u8);
            buf.extend_from_slice(&c.packets.to_le_bytes());
            buf.extend_from_slice(&c.bytes.to_le_bytes());
        }
        w.write_all(&buf)?;
        buf.clear();
        w.write_all(&(d.rtt.len() as u64).to_le_bytes())?;
        for (k, r) in &d.rtt {
            put_key(&mut buf, k);
            for v in [r.rtt_us, r.server_side_us, r.client_side_us] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        w.write_all(&buf)?;
        buf.clear();
    }
    let (_, crc) = w.sum();
    let mut out = w.into_inner();
    out.write_all(&crc.to_le_bytes())?;
    out.flush()
}

/// Reads fixed-size fields off a byte slice.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Short(self.at))?;
        let s = self.b.get(self.at..end).ok_or(DecodeError::Short(self.at))?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of items of `size` bytes each that must fit in what is left.
    fn count(&mut self, size: usize) -> Result<usize, DecodeError> {
        let at = self.at;
        let n = usize::try_from(self.u64()?).map_err(|_| DecodeError::Short(at))?;
        if n.checked_mul(size)
            .is_none_or(|bytes| bytes > self.b.len() - self.at)
        {
            return Err(DecodeError::Short(at));
        }
        Ok(n)
    }

    fn key(&mut self) -> Result<FlowKey, DecodeError> {
        Ok(FlowKey {
            src_addr: self.array()?,
            dst_addr: self.array()?,
            ifindex: self.u32()?,
            src_port: self.u16()?,
            dst_port: self.u16()?,
            protocol: self.u8()?,
            direction: self.u8()?,
            ip_version: self.u8()?,
            generation: self.u8()?,
        })
    }

    fn stats(&mut self) -> Result<FlowStats, DecodeError> {
        let s = FlowStats {
            packets: self.u64()?,
            bytes: self.u64()?,
            first_seen_jiffies: self.u64()?,
            last_seen_jiffies: self.u64()?,
            tcp_flags: self.u16()?,
            _pad: [0; 6],
        };
        self.take(6)?;
        Ok(s)
    }
}

/// What a cut file's header says of one namespace: its name and cookie,
/// the generation it was left on, and who used its interfaces.
pub type NsMark = (Option<String>, u64, u32, Vec<Target>);

/// The namespaces a cut file names, from the header alone (the generation
/// check at a restart needs no flows).
pub fn decode_header(bytes: &[u8]) -> Result<Vec<NsMark>, DecodeError> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let mut c = Cursor {
        b: bytes,
        at: MAGIC.len(),
    };
    let len = c.u32()? as usize;
    let header: Header =
        serde_json::from_slice(c.take(len)?).map_err(|e| DecodeError::Header(e.to_string()))?;
    Ok(header
        .namespaces
        .into_iter()
        .map(|n| (n.netns, n.cookie, n.generation, n.targets))
        .collect())
}

/// Reads a cut file's bytes back, checking the checksum first.
pub fn decode(bytes: &[u8]) -> Result<CutRecord, DecodeError> {
    if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let mut crc = [0; 4];
    crc.copy_from_slice(tail);
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(DecodeError::Checksum);
    }
    let mut c = Cursor {
        b: body,
        at: MAGIC.len(),
    };
    let len = c.u32()? as usize;
    let header: Header =
        serde_json::from_slice(c.take(len)?).map_err(|e| DecodeError::Header(e.to_string()))?;
    let mut namespaces = Vec::with_capacity(header.namespaces.len());
    for h in header.namespaces {
        let mut data = WindowAggregate::default();
        let n = c.count(KEY_BYTES + STATS_BYTES)?;
        data.flows = crate::window::FlowTable::with_capacity(n);
        for _ in 0..n {
            let k = c.key()?;
            let s = c.stats()?;
            data.flows.push(k, s);
        }
        for _ in 0..c.count(SKIP_BYTES)? {
            let ifindex = c.u32()?;
            let d = c.u8()?;
            let dir = Direction::from_u8(d).ok_or(DecodeError::Direction(d))?;
            let counters = Counters {
                packets: c.u64()?,
                bytes: c.u64()?,
            };
            data.add_skipped(ifindex, dir, &counters);
        }
        for _ in 0..c.count(RTT_BYTES)? {
            let k = c.key()?;
            let r = Rtt {
                rtt_us: c.u32()?,
                server_side_us: c.u32()?,
                client_side_us: c.u32()?,
            };
            data.rtt.insert(k, r);
        }
        namespaces.push(NsCut {
            netns: h.netns,
            cookie: h.cookie,
            generation: h.generation,
            targets: h.targets,
            data,
        });
    }
    if c.at != body.len() {
        return Err(DecodeError::Short(c.at));
    }
    Ok(CutRecord {
        seq: header.seq,
        at_ns: header.at_ns,
        namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FlowKey {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&i.to_be_bytes());
        FlowKey {
            src_addr: src,
            dst_addr: [7; 16],
            ifindex: 3 + i % 2,
            src_port: i as u16,
            dst_port: 53,
            protocol: 17,
            direction: (i % 2) as u8,
            ip_version: 6,
            generation: 0,
        }
    }

    fn sample() -> CutRecord {
        let mut data = WindowAggregate::default();
        for i in 0..1000 {
            data.flows.push(
                key(i),
                FlowStats {
                    packets: u64::from(i) + 1,
                    bytes: u64::from(i) * 100 + 28,
                    first_seen_jiffies: 10,
                    last_seen_jiffies: 20 + u64::from(i),
                    tcp_flags: 0x12,
                    _pad: [0; 6],
                },
            );
        }
        data.add_skipped(
            3,
            Direction::Egress,
            &Counters {
                packets: 5,
                bytes: 700,
            },
        );
        data.rtt.insert(
            key(4),
            Rtt {
                rtt_us: 40_000,
                server_side_us: 39_000,
                client_side_us: 1_000,
            },
        );
        CutRecord {
            seq: 42,
            at_ns: 1_796_000_000_123_456_789,
            namespaces: vec![NsCut {
                netns: Some("router".into()),
                cookie: 9,
                generation: 1,
                targets: vec![Target {
                    ifindex: 3,
                    interface: "r-a".into(),
                    users: vec![User {
                        flow_log: "fl-1".into(),
                        slot: 0,
                    }],
                }],
                data,
            }],
        }
    }

    #[test]
    fn a_cut_reads_back_as_written() {
        let cut = sample();
        let mut bytes = Vec::new();
        encode(&cut, &mut bytes).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!((back.seq, back.at_ns), (cut.seq, cut.at_ns));
        let (a, b) = (&cut.namespaces[0], &back.namespaces[0]);
        assert_eq!(
            (&a.netns, a.cookie, a.generation, &a.targets),
            (&b.netns, b.cookie, b.generation, &b.targets)
        );
        assert!(a.data.flows.iter().eq(b.data.flows.iter()));
        assert_eq!(a.data.skipped, b.data.skipped);
        assert_eq!(a.data.rtt, b.data.rtt);
    }

    #[test]
    fn every_damaged_or_short_file_is_refused() {
        let mut bytes = Vec::new();
        encode(&sample(), &mut bytes).unwrap();
        for cut in [0, 5, 12, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "a file cut at {cut} was accepted");
        }
        for at in [9, 40, bytes.len() / 3, bytes.len() - 2] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(decode(&flipped).is_err(), "a bit flipped at {at} went unnoticed");
        }
    }
}
