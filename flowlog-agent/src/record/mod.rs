//! Flow-log records: the protobuf type generated from `proto/flowlog.proto`,
//! the builders for OK, SKIPDATA and NODATA records, the [`format`] that
//! selects a flow log's fields, and the [`text`] line layout.

pub mod format;
pub mod text;

use std::net::{Ipv4Addr, Ipv6Addr};

use flowlog_common::{Counters, Direction, FlowKey, FlowStats};

use crate::{
    enrich::RegionTable,
    model::{AttachmentInfo, ClockOffset, Identity, Window},
    rtt::Rtt,
};

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/flowlog.v1.rs"));
}

pub use pb::{FlowLogBatch, FlowLogRecord};

/// Layout version carried in every record.
pub const RECORD_VERSION: u32 = 1;

pub const LOG_STATUS_OK: &str = "OK";
pub const LOG_STATUS_NODATA: &str = "NODATA";
pub const LOG_STATUS_SKIPDATA: &str = "SKIPDATA";

/// Replaces a string's contents, keeping its buffer.
fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

/// Replaces an optional string, keeping the buffer when there is one.
fn set_opt(o: &mut Option<String>, v: Option<&str>) {
    match (o.as_mut(), v) {
        (Some(s), Some(v)) => set(s, v),
        (None, Some(v)) => *o = Some(v.to_owned()),
        (_, None) => *o = None,
    }
}

/// Writes a key's address into an optional string, keeping its buffer.
fn set_addr(o: &mut Option<String>, addr: &[u8; 16], ip_version: u8) {
    use std::fmt::Write as _;
    let s = o.get_or_insert_with(String::new);
    s.clear();
    let _ = if ip_version == 4 {
        write!(s, "{}", Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    } else {
        write!(s, "{}", Ipv6Addr::from(*addr))
    };
}

/// Fields every record of a window shares.
fn fill_base(r: &mut FlowLogRecord, id: &Identity, att: &AttachmentInfo, window: Window, status: &str) {
    r.version = RECORD_VERSION;
    set_opt(&mut r.account_id, Some(&id.account_id));
    set_opt(&mut r.cen_id, Some(&id.cen_id));
    set(&mut r.flow_log_id, &id.flow_log_id);
    set_opt(&mut r.interface, Some(&att.interface));
    set_opt(&mut r.netns, att.netns.as_deref());
    set_opt(&mut r.attachment_id, att.attachment_id.as_deref());
    set_opt(&mut r.region_id, att.region_id.as_deref());
    r.src_region_id = None;
    r.dst_region_id = None;
    r.src_network = None;
    r.dst_network = None;
    r.start = window.start_secs();
    r.end = window.end_secs();
    set(&mut r.log_status, status);
    r.srcport = None;
    r.dstport = None;
    r.protocol = None;
    r.packets = Some(0);
    r.bytes = 0;
    r.rtt = None;
    r.rtt_server_side = None;
    r.rtt_client_side = None;
    r.tcp_flags = None;
    r.first_seen = None;
    r.last_seen = None;
}

/// Textual address of a key's source or destination.
pub fn addr_string(addr: &[u8; 16], ip_version: u8) -> String {
    let mut s = None;
    set_addr(&mut s, addr, ip_version);
    s.unwrap_or_default()
}

/// Labels an address with the table's region ("" when no prefix matches)
/// and network.
fn set_region(
    region: &mut Option<String>,
    network: &mut Option<String>,
    regions: &RegionTable,
    addr: &[u8; 16],
    ip_version: u8,
) {
    let found = regions.lookup_key_addr(addr, ip_version);
    set_opt(region, Some(found.map_or("", |r| r.region_id.as_str())));
    set_opt(network, found.and_then(|r| r.network.as_deref()));
}

/// One flow of a window: what the kernel counted and its handshake RTT.
#[derive(Clone, Copy, Debug)]
pub struct Flow<'a> {
    pub key: &'a FlowKey,
    pub stats: &'a FlowStats,
    pub rtt: Option<&'a Rtt>,
}

/// Overwrites `r` with the OK record of one flow, reusing its buffers: a
/// window of a million flows renders without a million allocations.
pub fn fill_flow(
    r: &mut FlowLogRecord,
    id: &Identity,
    att: &AttachmentInfo,
    window: Window,
    flow: Flow<'_>,
    clock: ClockOffset,
    regions: &RegionTable,
) {
    let Flow { key, stats, rtt } = flow;
    fill_base(r, id, att, window, LOG_STATUS_OK);
    set_addr(&mut r.srcaddr, &key.src_addr, key.ip_version);
    set_addr(&mut r.dstaddr, &key.dst_addr, key.ip_version);
    set_region(
        &mut r.src_region_id,
        &mut r.src_network,
        regions,
        &key.src_addr,
        key.ip_version,
    );
    set_region(
        &mut r.dst_region_id,
        &mut r.dst_network,
        regions,
        &key.dst_addr,
        key.ip_version,
    );
    r.srcport = Some(u32::from(key.src_port));
    r.dstport = Some(u32::from(key.dst_port));
    r.protocol = Some(u32::from(key.protocol));
    set_opt(
        &mut r.direction,
        Direction::from_u8(key.direction).map(Direction::as_str),
    );
    r.packets = Some(stats.packets);
    r.bytes = stats.bytes;
    if key.protocol == flowlog_common::parse::IPPROTO_TCP {
        r.tcp_flags = Some(u32::from(stats.tcp_flags));
    }
    if let Some(rtt) = rtt {
        r.rtt = Some(rtt.rtt_us);
        r.rtt_server_side = Some(rtt.server_side_us);
        r.rtt_client_side = Some(rtt.client_side_us);
    }
    if stats.first_seen_jiffies != 0 {
        r.first_seen = clock.jiffies_to_unix_ms(stats.first_seen_jiffies);
        r.last_seen = clock.jiffies_to_unix_ms(stats.last_seen_jiffies);
    }
}

/// Overwrites `r` with a SKIPDATA record: `c` counts what could not be
/// attributed to a flow.
pub fn fill_skipped(
    r: &mut FlowLogRecord,
    id: &Identity,
    att: &AttachmentInfo,
    window: Window,
    direction: Direction,
    c: &Counters,
) {
    fill_base(r, id, att, window, LOG_STATUS_SKIPDATA);
    r.srcaddr = None;
    r.dstaddr = None;
    set_opt(&mut r.direction, Some(direction.as_str()));
    r.packets = Some(c.packets);
    r.bytes = c.bytes;
}

/// Overwrites `r` with a NODATA record: the attachment saw no traffic in
/// or out.
pub fn fill_no_data(r: &mut FlowLogRecord, id: &Identity, att: &AttachmentInfo, window: Window) {
    fill_base(r, id, att, window, LOG_STATUS_NODATA);
    r.srcaddr = None;
    r.dstaddr = None;
    r.direction = None;
}

/// An OK record for one flow.
pub fn flow(
    id: &Identity,
    att: &AttachmentInfo,
    window: Window,
    f: Flow<'_>,
    clock: ClockOffset,
    regions: &RegionTable,
) -> FlowLogRecord {
    let mut r = FlowLogRecord::default();
    fill_flow(&mut r, id, att, window, f, clock, regions);
    r
}

/// A SKIPDATA record.
pub fn skipped(
    id: &Identity,
    att: &AttachmentInfo,
    window: Window,
    direction: Direction,
    c: &Counters,
) -> FlowLogRecord {
    let mut r = FlowLogRecord::default();
    fill_skipped(&mut r, id, att, window, direction, c);
    r
}

/// A NODATA record.
pub fn no_data(id: &Identity, att: &AttachmentInfo, window: Window) -> FlowLogRecord {
    let mut r = FlowLogRecord::default();
    fill_no_data(&mut r, id, att, window);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_documented_field_names() {
        let id = Identity {
            account_id: "123".into(),
            cen_id: "cen-1".into(),
            flow_log_id: "fl-1".into(),
        };
        let att = AttachmentInfo {
            ifindex: 3,
            interface: "eth0".into(),
            attachment_id: Some("tr-att-1".into()),
            region_id: Some("cn-hangzhou".into()),
            ..Default::default()
        };
        let regions = RegionTable::new(&[crate::enrich::RegionEntry {
            cidr: "10.0.0.0/31".into(),
            region_id: "cn-shanghai".into(),
            network: Some("vpc-sh".into()),
            line: 1,
        }])
        .unwrap_or_default();
        let window = Window {
            start_ns: 600_000_000_000,
            end_ns: 1_200_000_000_000,
        };
        let mut key = FlowKey {
            src_addr: [0; 16],
            dst_addr: [0; 16],
            ifindex: 3,
            src_port: 1000,
            dst_port: 53,
            protocol: 17,
            direction: 1,
            ip_version: 4,
            generation: 0,
        };
        key.src_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        key.dst_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 2]);
        let stats = FlowStats {
            packets: 2,
            bytes: 200,
            ..Default::default()
        };
        let clock = ClockOffset {
            realtime_minus_monotonic_ns: 0,
            jiffies: crate::model::JiffiesRef::default(),
        };
        let rtt = Rtt {
            rtt_us: 40_123,
            server_side_us: 40_000,
            client_side_us: 123,
        };
        let v = serde_json::to_value(flow(
            &id,
            &att,
            window,
            Flow {
                key: &key,
                stats: &stats,
                rtt: Some(&rtt),
            },
            clock,
            &regions,
        ))
        .unwrap_or_default();
        for (field, want) in [
            ("account-id", serde_json::json!("123")),
            ("cen-id", serde_json::json!("cen-1")),
            ("srcaddr", serde_json::json!("10.0.0.1")),
            ("dstaddr", serde_json::json!("10.0.0.2")),
            ("srcport", serde_json::json!(1000)),
            ("dstport", serde_json::json!(53)),
            ("protocol", serde_json::json!(17)),
            ("direction", serde_json::json!("out")),
            ("packets", serde_json::json!(2)),
            ("bytes", serde_json::json!(200)),
            ("rtt", serde_json::json!(40_123)),
            ("rtt-server-side", serde_json::json!(40_000)),
            ("rtt-client-side", serde_json::json!(123)),
            ("start", serde_json::json!(600)),
            ("end", serde_json::json!(1200)),
            ("log-status", serde_json::json!("OK")),
            ("attachment-id", serde_json::json!("tr-att-1")),
            ("region-id", serde_json::json!("cn-hangzhou")),
            ("src-region-id", serde_json::json!("cn-shanghai")),
            ("src-network", serde_json::json!("vpc-sh")),
            // Unmatched: explicitly empty.
            ("dst-region-id", serde_json::json!("")),
            ("dst-network", serde_json::Value::Null),
        ] {
            assert_eq!(v.get(field), Some(&want), "{field} in {v}");
        }
        let nodata = serde_json::to_value(no_data(&id, &att, window)).unwrap_or_default();
        assert_eq!(nodata.get("log-status"), Some(&serde_json::json!("NODATA")));
        assert_eq!(nodata.get("srcaddr"), Some(&serde_json::Value::Null));
        assert_eq!(nodata.get("direction"), Some(&serde_json::Value::Null));
        assert_eq!(nodata.get("src-region-id"), Some(&serde_json::Value::Null));
        assert_eq!(nodata.get("region-id"), Some(&serde_json::json!("cn-hangzhou")));
    }

    #[test]
    fn ipv6_addresses_are_printed_as_ipv6() {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = 1;
        assert_eq!(addr_string(&a, 6), "fd00::1");
        // A mapped address in an IPv6 packet stays IPv6.
        let mut m = [0u8; 16];
        m[10..].copy_from_slice(&[0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(addr_string(&m, 6), "::ffff:1.2.3.4");
        assert_eq!(addr_string(&m, 4), "1.2.3.4");
    }
}
