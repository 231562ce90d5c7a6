//! IPFIX messages (RFC 7011) from a window's records: pure code, no I/O.
//!
//! A record goes out as one data record under the template for its shape
//! (IPv4 flow, IPv6 flow, SKIPDATA, NODATA) and its flow log's fields
//! (the LogFormatString); templates are made the first time a shape and
//! format meet, numbered from 256. Messages never pass the MTU; each
//! carries the count of data records sent before it on this session as
//! its sequence number (§3.1).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::elements::{ELEMENTS, Element, Shape, Value};
use crate::{
    model::AttachmentInfo,
    record::{FlowLogRecord, LOG_STATUS_NODATA, LOG_STATUS_SKIPDATA, format::LogFormat},
    window::WindowData,
};

/// IPFIX's version number, in every message header.
const VERSION: u16 = 10;
const HEADER_LEN: usize = 16;
const SET_HEADER_LEN: usize = 4;
const TEMPLATE_SET_ID: u16 = 2;
/// The first template id (lower ids name set kinds).
const FIRST_TEMPLATE_ID: u16 = 256;
/// The smallest MTU: the largest record (every string at its longest)
/// with a message and a set header.
pub const MIN_MTU: usize = 1024;

/// One template: its id, its shape and its elements, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub id: u16,
    pub shape: Shape,
    pub elements: Vec<&'static Element>,
}

impl Template {
    /// The template record (§3.4.1): id, field count, field specifiers.
    fn encode(&self, pen: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.elements.len() as u16).to_be_bytes());
        for e in &self.elements {
            let id = if e.enterprise { e.id | 0x8000 } else { e.id };
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.kind.template_len().to_be_bytes());
            if e.enterprise {
                out.extend_from_slice(&pen.to_be_bytes());
            }
        }
    }
}

/// Which elements of `shape` the flow log's format keeps, as a bit set
/// over [`ELEMENTS`].
fn element_mask(shape: Shape, format: Option<&LogFormat>) -> u64 {
    ELEMENTS
        .iter()
        .enumerate()
        .filter(|(_, e)| shape.has(e.value) && format.is_none_or(|f| f.keeps(e.field)))
        .fold(0, |m, (i, _)| m | 1 << i)
}

/// The templates made so far and the session's message state.
#[derive(Debug)]
pub struct Encoder {
    domain: u32,
    pen: u32,
    mtu: usize,
    templates: Vec<Template>,
    by_key: HashMap<(Shape, u64), u16>,
    /// Data records sent on this session before the next message.
    sequence: u32,
}

/// Messages ready to send, and what they hold.
#[derive(Debug, Default)]
pub struct Encoded {
    pub messages: Vec<Vec<u8>>,
    pub records: u64,
    /// The sequence number before these messages: templates that go
    /// ahead of them carry it.
    pub first_sequence: u32,
}

impl Encoder {
    pub fn new(domain: u32, pen: u32, mtu: usize) -> Self {
        Self {
            domain,
            pen,
            mtu: mtu.max(MIN_MTU),
            templates: Vec::new(),
            by_key: HashMap::new(),
            sequence: 0,
        }
    }

    /// A new transport session (a new TCP connection): sequence numbers
    /// start again. Templates stay known; the caller sends them anew.
    pub fn new_session(&mut self) {
        self.sequence = 0;
    }

    pub fn templates(&self) -> &[Template] {
        &self.templates
    }

    /// The id of the template for `shape` under `format`, made if new.
    fn template(&mut self, shape: Shape, format: Option<&LogFormat>) -> u16 {
        let key = (shape, element_mask(shape, format));
        if let Some(id) = self.by_key.get(&key) {
            return *id;
        }
        let id = FIRST_TEMPLATE_ID + self.templates.len() as u16;
        let elements = ELEMENTS
            .iter()
            .enumerate()
            .filter(|(i, _)| key.1 & (1 << i) != 0)
            .map(|(_, e)| e)
            .collect();
        self.templates.push(Template { id, shape, elements });
        self.by_key.insert(key, id);
        id
    }

    /// Template messages for the templates with these ids, to go ahead of
    /// data messages that begin at `sequence`.
    pub fn template_messages(&self, ids: &[u16], export_secs: u32, sequence: u32) -> Vec<Vec<u8>> {
        let mut w = Writer::new(self.mtu, self.domain, export_secs, sequence);
        for t in self.templates.iter().filter(|t| ids.contains(&t.id)) {
            let mut rec = Vec::new();
            t.encode(self.pen, &mut rec);
            w.push(TEMPLATE_SET_ID, &rec, false);
        }
        w.finish().0
    }

    /// A window's records as data messages; `used` gets the ids of the
    /// templates they refer to (the caller sends those not yet sent).
    pub fn window(&mut self, data: &WindowData, export_secs: u32, used: &mut Vec<u16>) -> Encoded {
        let format = data.format();
        let first_sequence = self.sequence;
        let mut ids: [Option<u16>; 4] = [None; 4];
        let mut w = Writer::new(self.mtu, self.domain, export_secs, self.sequence);
        let mut rec = Vec::with_capacity(256);
        let _ = data.try_for_each_record_at(|r, att| {
            let addrs = Addrs::of(r);
            let shape = shape_of(r, &addrs);
            let slot = shape as usize;
            let id = match ids[slot] {
                Some(id) => id,
                None => {
                    let id = self.template(shape, format);
                    ids[slot] = Some(id);
                    if !used.contains(&id) {
                        used.push(id);
                    }
                    id
                }
            };
            rec.clear();
            let template = &self.templates[usize::from(id - FIRST_TEMPLATE_ID)];
            for e in &template.elements {
                put(&mut rec, e, r, att, &addrs);
            }
            w.push(id, &rec, true);
            Ok::<(), ()>(())
        });
        let records = w.records;
        let (messages, sequence) = w.finish();
        self.sequence = sequence;
        Encoded {
            messages,
            records,
            first_sequence,
        }
    }
}

/// A record's addresses, parsed once.
struct Addrs {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
}

impl Addrs {
    fn of(r: &FlowLogRecord) -> Self {
        let parse = |a: &Option<String>| a.as_deref().and_then(|s| s.parse::<IpAddr>().ok());
        Self {
            src: parse(&r.srcaddr),
            dst: parse(&r.dstaddr),
        }
    }
}

fn shape_of(r: &FlowLogRecord, addrs: &Addrs) -> Shape {
    match r.log_status.as_str() {
        LOG_STATUS_SKIPDATA => Shape::Skipped,
        LOG_STATUS_NODATA => Shape::NoData,
        _ => match addrs.src.or(addrs.dst) {
            Some(IpAddr::V6(_)) => Shape::FlowV6,
            _ => Shape::FlowV4,
        },
    }
}

/// Appends one element's value; absent values go out as 0 or "" (IPFIX
/// has no null).
fn put(out: &mut Vec<u8>, e: &Element, r: &FlowLogRecord, att: &AttachmentInfo, addrs: &Addrs) {
    fn s(v: &Option<String>) -> &str {
        v.as_deref().unwrap_or_default()
    }
    let direction = r.direction.as_deref();
    let text: Option<&str> = match e.value {
        Value::InterfaceName => Some(s(&r.interface)),
        Value::LogStatus => Some(&r.log_status),
        Value::FlowLogId => Some(&r.flow_log_id),
        Value::AccountId => Some(s(&r.account_id)),
        Value::CenId => Some(s(&r.cen_id)),
        Value::Netns => Some(s(&r.netns)),
        Value::AttachmentId => Some(s(&r.attachment_id)),
        Value::RegionId => Some(s(&r.region_id)),
        Value::SrcRegionId => Some(s(&r.src_region_id)),
        Value::DstRegionId => Some(s(&r.dst_region_id)),
        Value::SrcNetwork => Some(s(&r.src_network)),
        Value::DstNetwork => Some(s(&r.dst_network)),
        _ => None,
    };
    if let Some(t) = text {
        put_str(out, t);
        return;
    }
    let v4 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V4(a)) => a,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    let v6 = |a: Option<IpAddr>| match a {
        Some(IpAddr::V6(a)) => a,
        _ => Ipv6Addr::UNSPECIFIED,
    };
    let number: u64 = match e.value {
        Value::SrcV4 => return out.extend_from_slice(&v4(addrs.src).octets()),
        Value::DstV4 => return out.extend_from_slice(&v4(addrs.dst).octets()),
        Value::SrcV6 => return out.extend_from_slice(&v6(addrs.src).octets()),
        Value::DstV6 => return out.extend_from_slice(&v6(addrs.dst).octets()),
        Value::SrcPort => u64::from(r.srcport.unwrap_or(0)),
        Value::DstPort => u64::from(r.dstport.unwrap_or(0)),
        Value::Protocol => u64::from(r.protocol.unwrap_or(0)),
        Value::Octets => r.bytes,
        Value::Packets => r.packets.unwrap_or(0),
        // flowDirection: 0 ingress, 1 egress (IANA).
        Value::Direction => u64::from(direction == Some("out")),
        Value::Ingress if direction != Some("out") => u64::from(att.kernel_ifindex),
        Value::Egress if direction != Some("in") => u64::from(att.kernel_ifindex),
        Value::Ingress | Value::Egress => 0,
        Value::TcpFlags => u64::from(r.tcp_flags.unwrap_or(0)),
        Value::FirstSeen => r.first_seen.map_or(0, |t| t.max(0) as u64),
        Value::LastSeen => r.last_seen.map_or(0, |t| t.max(0) as u64),
        Value::WindowStart => r.start.clamp(0, i64::from(u32::MAX)) as u64,
        Value::WindowEnd => r.end.clamp(0, i64::from(u32::MAX)) as u64,
        Value::Rtt => u64::from(r.rtt.unwrap_or(0)),
        Value::RttServerSide => u64::from(r.rtt_server_side.unwrap_or(0)),
        Value::RttClientSide => u64::from(r.rtt_client_side.unwrap_or(0)),
        _ => 0,
    };
    let bytes = number.to_be_bytes();
    let len = usize::from(e.kind.template_len());
    out.extend_from_slice(&bytes[8 - len..]);
}

/// A variable-length string (§7): one length byte, or 255 and two.
fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    if b.len() < 255 {
        out.push(b.len() as u8);
    } else {
        out.push(255);
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// Lays records into messages of at most `mtu` bytes.
struct Writer {
    mtu: usize,
    domain: u32,
    export_secs: u32,
    /// Data records before the message being built.
    sequence: u32,
    records: u64,
    buf: Vec<u8>,
    /// Where the open set begins, and its id.
    set: Option<(usize, u16)>,
    data_in_message: u32,
    done: Vec<Vec<u8>>,
}

impl Writer {
    fn new(mtu: usize, domain: u32, export_secs: u32, sequence: u32) -> Self {
        let mut w = Self {
            mtu,
            domain,
            export_secs,
            sequence,
            records: 0,
            buf: Vec::with_capacity(mtu),
            set: None,
            data_in_message: 0,
            done: Vec::new(),
        };
        w.begin();
        w
    }

    fn begin(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&VERSION.to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&self.export_secs.to_be_bytes());
        self.buf.extend_from_slice(&self.sequence.to_be_bytes());
        self.buf.extend_from_slice(&self.domain.to_be_bytes());
        self.set = None;
        self.data_in_message = 0;
    }

    fn close_set(&mut self) {
        if let Some((at, _)) = self.set.take() {
            let len = (self.buf.len() - at) as u16;
            self.buf[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Ends the message being built, if it holds anything.
    fn flush(&mut self) {
        self.close_set();
        if self.buf.len() > HEADER_LEN {
            let len = self.buf.len() as u16;
            self.buf[2..4].copy_from_slice(&len.to_be_bytes());
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.mtu));
            self.done.push(full);
            self.sequence = self.sequence.wrapping_add(self.data_in_message);
        }
        self.begin();
    }

    /// Adds one record to a set of id `set_id`, starting a new message when
    /// it would not fit.
    fn push(&mut self, set_id: u16, record: &[u8], data: bool) {
        let opens = self.set.is_none_or(|(_, id)| id != set_id);
        let need = record.len() + if opens { SET_HEADER_LEN } else { 0 };
        if self.buf.len() + need > self.mtu && self.buf.len() > HEADER_LEN {
            self.flush();
        }
        if self.set.is_none_or(|(_, id)| id != set_id) {
            self.close_set();
            self.set = Some((self.buf.len(), set_id));
            self.buf.extend_from_slice(&set_id.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
        }
        self.buf.extend_from_slice(record);
        if data {
            self.data_in_message += 1;
            self.records += 1;
        }
    }

    /// The messages, and the sequence number after them.
    fn finish(mut self) -> (Vec<Vec<u8>>, u32) {
        self.flush();
        (self.done, self.sequence)
    }
}

#[cfg(test)]
pub(super) mod tests;
