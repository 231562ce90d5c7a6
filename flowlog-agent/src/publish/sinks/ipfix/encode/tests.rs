//! The encoder against a decoder written from RFC 7011 here: message and
//! set lengths, the MTU, sequence numbers, templates and every value of
//! every record. Real collectors check the same in the netns tests.

use std::{collections::HashMap, sync::Arc};

use flowlog_common::{Counters, Direction, FlowKey, FlowStats};

use super::*;
use crate::{
    enrich::RegionTable,
    model::{ClockOffset, Identity, JiffiesRef, Window},
    window::WindowAggregate,
};

fn key(v6: bool, i: u16, direction: u8) -> FlowKey {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if v6 {
        src[0] = 0xfd;
        src[15] = 1;
        dst[0] = 0xfd;
        dst[15] = 2;
    } else {
        src[12..].copy_from_slice(&[10, 1, (i >> 8) as u8, i as u8]);
        dst[12..].copy_from_slice(&[10, 2, 0, 2]);
    }
    FlowKey {
        src_addr: src,
        dst_addr: dst,
        ifindex: u32::from(direction) % 2,
        src_port: 10_000 + i,
        dst_port: 53,
        protocol: 17,
        direction,
        ip_version: if v6 { 6 } else { 4 },
        generation: 0,
    }
}

/// A window of `flows` IPv4 flows, one IPv6 flow, a SKIPDATA and (on the
/// idle third attachment) a NODATA record.
pub fn window(flows: u16, format: Option<&str>) -> WindowData {
    let mut agg = WindowAggregate::default();
    for i in 0..flows {
        agg.flows.push(
            key(false, i, (i % 2) as u8),
            FlowStats {
                packets: u64::from(i) + 1,
                bytes: 100 * (u64::from(i) + 1),
                first_seen_jiffies: 1_000,
                last_seen_jiffies: 2_000,
                tcp_flags: 0,
                _pad: [0; 6],
            },
        );
    }
    agg.flows.push(
        key(true, 0, 0),
        FlowStats {
            packets: 7,
            bytes: 7_000,
            first_seen_jiffies: 1_500,
            last_seen_jiffies: 1_600,
            tcp_flags: 0,
            _pad: [0; 6],
        },
    );
    agg.add_skipped(
        1,
        Direction::Egress,
        &Counters {
            packets: 3,
            bytes: 180,
        },
    );
    let attachments = (0..3)
        .map(|i| AttachmentInfo {
            ifindex: i,
            kernel_ifindex: 40 + i,
            interface: format!("r-{i}"),
            attachment_id: Some(format!("att-{i}")),
            region_id: Some("cn-hangzhou".into()),
            ..Default::default()
        })
        .collect();
    let clock = ClockOffset {
        realtime_minus_monotonic_ns: 1_796_000_000_000_000_000,
        jiffies: JiffiesRef {
            jiffies: 0,
            monotonic_ns: 0,
            ns_per_jiffy: 1_000_000,
        },
    };
    let data = agg.finish(
        Window {
            start_ns: 1_796_000_000_000_000_000,
            end_ns: 1_796_000_060_000_000_000,
        },
        attachments,
        Identity {
            account_id: "acct-1".into(),
            cen_id: "cen-x".into(),
            flow_log_id: "fl-1".into(),
        },
        clock,
        Arc::new(RegionTable::default()),
    );
    data.with_format(format.map(|f| Arc::new(LogFormat::parse(f).unwrap_or_else(|e| panic!("{e}")))))
}

/// One decoded data record: element name → raw bytes.
pub type Decoded = HashMap<&'static str, Vec<u8>>;

/// Decodes messages as a collector would, checking the framing.
pub struct Collector {
    pen: u32,
    templates: HashMap<u16, Vec<(u16, bool, u16)>>,
    pub records: Vec<(u16, Decoded)>,
    pub next_sequence: u32,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Collector {
    pub fn new(pen: u32) -> Self {
        Self {
            pen,
            templates: HashMap::new(),
            records: Vec::new(),
            next_sequence: 0,
        }
    }

    pub fn message(&mut self, m: &[u8], mtu: usize) {
        assert!(m.len() <= mtu, "message of {} bytes over {mtu}", m.len());
        assert_eq!(be16(m), 10, "version");
        assert_eq!(usize::from(be16(&m[2..])), m.len(), "message length");
        assert_eq!(be32(&m[8..]), self.next_sequence, "sequence number");
        assert_eq!(be32(&m[12..]), 7, "observation domain");
        let mut at = 16;
        while at < m.len() {
            let (id, len) = (be16(&m[at..]), usize::from(be16(&m[at + 2..])));
            assert!(len >= 4 && at + len <= m.len(), "set length {len}");
            let body = &m[at + 4..at + len];
            if id == 2 {
                self.template_set(body);
            } else {
                self.data_set(id, body);
            }
            at += len;
        }
    }

    fn template_set(&mut self, mut b: &[u8]) {
        while b.len() >= 4 {
            let (id, count) = (be16(b), be16(&b[2..]));
            b = &b[4..];
            let mut fields = Vec::new();
            for _ in 0..count {
                let (raw, len) = (be16(b), be16(&b[2..]));
                let enterprise = raw & 0x8000 != 0;
                b = &b[4..];
                if enterprise {
                    assert_eq!(be32(b), self.pen, "enterprise number");
                    b = &b[4..];
                }
                fields.push((raw & 0x7fff, enterprise, len));
            }
            self.templates.insert(id, fields);
        }
    }

    fn data_set(&mut self, id: u16, mut b: &[u8]) {
        let fields = self
            .templates
            .get(&id)
            .unwrap_or_else(|| panic!("data before template {id}"))
            .clone();
        while !b.is_empty() {
            let mut rec = Decoded::new();
            for (fid, enterprise, len) in &fields {
                let n = if *len == 65535 {
                    let (n, skip) = if b[0] < 255 {
                        (usize::from(b[0]), 1)
                    } else {
                        (usize::from(be16(&b[1..])), 3)
                    };
                    b = &b[skip..];
                    n
                } else {
                    usize::from(*len)
                };
                let e = ELEMENTS
                    .iter()
                    .find(|e| e.id == *fid && e.enterprise == *enterprise)
                    .unwrap_or_else(|| panic!("unknown element {fid}"));
                rec.insert(e.name, b[..n].to_vec());
                b = &b[n..];
            }
            self.records.push((id, rec));
            self.next_sequence += 1;
        }
    }
}

pub fn number(r: &Decoded, name: &str) -> u64 {
    r.get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .iter()
        .fold(0, |n, b| n << 8 | u64::from(*b))
}

fn text<'a>(r: &'a Decoded, name: &str) -> &'a str {
    std::str::from_utf8(r.get(name).unwrap_or_else(|| panic!("no {name}"))).unwrap_or("?")
}

#[test]
fn every_record_arrives_with_its_values_within_the_mtu() {
    let data = window(500, None);
    let mut enc = Encoder::new(7, 32473, MIN_MTU);
    let mut used = Vec::new();
    let encoded = enc.window(&data, 1_796_000_060, &mut used);
    assert_eq!(encoded.records, data.len() as u64);
    assert!(encoded.messages.len() > 10, "500 flows need many 1 KiB messages");
    assert_eq!(used.len(), 4, "IPv4, IPv6, SKIPDATA, NODATA");
    let mut c = Collector::new(32473);
    for m in enc.template_messages(&used, 1_796_000_060, encoded.first_sequence) {
        c.message(&m, MIN_MTU);
    }
    for m in &encoded.messages {
        c.message(m, MIN_MTU);
    }
    let mut expected = Vec::new();
    let _ = data.try_for_each_record(|r| {
        expected.push(r.clone());
        Ok::<(), ()>(())
    });
    assert_eq!(c.records.len(), expected.len());
    for ((_, got), want) in c.records.iter().zip(&expected) {
        assert_eq!(text(got, "flowlogLogStatus"), want.log_status);
        assert_eq!(number(got, "octetDeltaCount"), want.bytes);
        assert_eq!(number(got, "packetDeltaCount"), want.packets.unwrap_or(0));
        assert_eq!(number(got, "flowlogWindowStart"), want.start as u64);
        assert_eq!(text(got, "flowlogAccountId"), "acct-1");
        assert_eq!(
            text(got, "flowlogAttachmentId"),
            want.attachment_id.as_deref().unwrap_or("")
        );
        assert_eq!(
            text(got, "interfaceName"),
            want.interface.as_deref().unwrap_or("")
        );
        match want.log_status.as_str() {
            "OK" => {
                let src = want.srcaddr.as_deref().unwrap_or_default();
                let got_src = match got.get("sourceIPv4Address") {
                    Some(a) => std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
                    None => {
                        let a: [u8; 16] = got["sourceIPv6Address"].clone().try_into().unwrap_or([0; 16]);
                        std::net::Ipv6Addr::from(a).to_string()
                    }
                };
                assert_eq!(got_src, src);
                assert_eq!(
                    number(got, "sourceTransportPort"),
                    u64::from(want.srcport.unwrap_or(0))
                );
                assert_eq!(number(got, "protocolIdentifier"), 17);
                assert_eq!(
                    number(got, "flowStartMilliseconds"),
                    want.first_seen.unwrap_or(0) as u64
                );
                let out = want.direction.as_deref() == Some("out");
                assert_eq!(number(got, "flowDirection"), u64::from(out));
                let (ingress, egress) = (number(got, "ingressInterface"), number(got, "egressInterface"));
                assert!(if out {
                    ingress == 0 && egress >= 40
                } else {
                    egress == 0 && ingress >= 40
                });
            }
            "SKIPDATA" => {
                assert!(!got.contains_key("sourceIPv4Address") && !got.contains_key("sourceTransportPort"));
                assert_eq!(
                    (number(got, "packetDeltaCount"), number(got, "octetDeltaCount")),
                    (3, 180)
                );
                assert_eq!(number(got, "flowDirection"), 1);
            }
            _ => assert!(!got.contains_key("flowDirection") && !got.contains_key("sourceIPv4Address")),
        }
    }
    // A second window goes on counting from where the first stopped.
    let more = enc.window(&data, 1_796_000_120, &mut used);
    for m in &more.messages {
        c.message(m, MIN_MTU);
    }
    assert_eq!(c.next_sequence as usize, 2 * expected.len());
    enc.new_session();
    let again = enc.window(&data, 1_796_000_180, &mut used);
    assert_eq!(be32(&again.messages[0][8..]), 0, "a new session starts at 0");
}

#[test]
fn the_log_format_chooses_the_template_fields() {
    let data = window(3, Some("${srcaddr}${dstaddr}${bytes}${rtt}${src-region-id}"));
    let mut enc = Encoder::new(7, 9, 1400);
    let mut used = Vec::new();
    let _ = enc.window(&data, 0, &mut used);
    let v4 = enc
        .templates()
        .iter()
        .find(|t| t.shape == Shape::FlowV4)
        .unwrap_or_else(|| panic!("an IPv4 template"));
    let names: Vec<&str> = v4.elements.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "sourceIPv4Address",
            "destinationIPv4Address",
            "octetDeltaCount",
            "flowlogWindowStart",
            "flowlogWindowEnd",
            "flowlogLogStatus",
            "flowlogFlowLogId",
            "flowlogRtt",
            "flowlogSrcRegionId",
        ]
    );
    // The same format again reuses its templates; another makes new ones.
    let before = enc.templates().len();
    let _ = enc.window(&data, 0, &mut used);
    assert_eq!(enc.templates().len(), before);
    let _ = enc.window(&window(3, None), 0, &mut used);
    assert!(enc.templates().len() > before);
}

#[test]
fn long_strings_use_the_three_byte_length() {
    let mut out = Vec::new();
    put_str(&mut out, &"n".repeat(300));
    assert_eq!(&out[..3], &[255, 1, 44]);
    assert_eq!(out.len(), 303);
    out.clear();
    put_str(&mut out, "abc");
    assert_eq!(out, [3, b'a', b'b', b'c']);
}
