//! Records as space-separated text lines in the layout cloud VPC flow-log
//! tooling parses (the version 2 default format):
//!
//! ```text
//! version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status
//! ```
//!
//! `version` is the layout's, 2; `interface-id` is the attachment id, else
//! the interface name; `action` carries the direction (`in`/`out`: the
//! collector never drops traffic, so there is no ACCEPT/REJECT to report);
//! `start`/`end` are Unix seconds. Absent values are `-`, and whitespace
//! inside a value becomes `_` so every line has exactly 14 fields.

use std::fmt::Write as _;

use super::FlowLogRecord;

/// The layout's fields, in order.
pub const FIELDS: [&str; 14] = [
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
];

/// The `version` every line carries.
pub const LAYOUT_VERSION: u32 = 2;

/// Appends `v` as one field: `-` when absent or empty, whitespace as `_`.
fn field(out: &mut String, v: Option<&str>) {
    match v.filter(|s| !s.is_empty()) {
        None => out.push('-'),
        Some(s) if s.contains(char::is_whitespace) => {
            out.extend(s.chars().map(|c| if c.is_whitespace() { '_' } else { c }));
        }
        Some(s) => out.push_str(s),
    }
}

fn number(out: &mut String, v: Option<impl std::fmt::Display>) {
    match v {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push('-'),
    }
}

/// Appends one record's line (without the newline).
pub fn push_line(out: &mut String, r: &FlowLogRecord) {
    let _ = write!(out, "{LAYOUT_VERSION} ");
    field(out, r.account_id.as_deref());
    out.push(' ');
    field(out, r.attachment_id.as_deref().or(r.interface.as_deref()));
    out.push(' ');
    field(out, r.srcaddr.as_deref());
    out.push(' ');
    field(out, r.dstaddr.as_deref());
    out.push(' ');
    number(out, r.srcport);
    out.push(' ');
    number(out, r.dstport);
    out.push(' ');
    number(out, r.protocol);
    out.push(' ');
    number(out, r.packets);
    let _ = write!(out, " {} {} {} ", r.bytes, r.start, r.end);
    field(out, r.direction.as_deref());
    out.push(' ');
    field(out, Some(&r.log_status));
}

/// One query result row (JSON object, record columns in snake_case or
/// with their hyphenated names) as a line: rows of `SELECT *` render like
/// the sink's; columns the row lacks are `-`.
pub fn line_from_row(row: &serde_json::Value) -> String {
    let get = |name: &str| -> Option<String> {
        let v = row.get(name).or_else(|| row.get(name.replace('-', "_")))?;
        match v {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    let mut out = String::new();
    let _ = write!(out, "{LAYOUT_VERSION}");
    for name in &FIELDS[1..] {
        out.push(' ');
        let v = match *name {
            "interface-id" => get("attachment-id").or_else(|| get("interface")),
            "action" => get("direction"),
            other => get(other),
        };
        field(&mut out, v.as_deref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_fourteen_fields_with_dashes_for_absent_values() {
        let mut r = FlowLogRecord {
            account_id: Some("acct 1".into()),
            interface: Some("eth0".into()),
            srcaddr: Some("10.0.0.1".into()),
            dstaddr: Some("10.0.0.2".into()),
            srcport: Some(1000),
            dstport: Some(53),
            protocol: Some(17),
            packets: Some(2),
            bytes: 200,
            start: 600,
            end: 660,
            direction: Some("in".into()),
            log_status: "OK".into(),
            ..Default::default()
        };
        let mut line = String::new();
        push_line(&mut line, &r);
        assert_eq!(
            line,
            "2 acct_1 eth0 10.0.0.1 10.0.0.2 1000 53 17 2 200 600 660 in OK"
        );
        let row = serde_json::json!({
            "account_id": "acct 1", "interface": "eth0", "srcaddr": "10.0.0.1", "dstaddr": "10.0.0.2",
            "srcport": 1000, "dstport": 53, "protocol": 17, "packets": 2, "bytes": 200,
            "start": 600, "end": 660, "direction": "in", "log-status": "OK", "rtt": null,
        });
        assert_eq!(line_from_row(&row), line);

        r.attachment_id = Some("tr-att-1".into());
        r.srcaddr = None;
        r.dstaddr = None;
        r.srcport = None;
        r.dstport = None;
        r.protocol = None;
        r.direction = None;
        r.packets = Some(0);
        r.bytes = 0;
        r.log_status = "NODATA".into();
        line.clear();
        push_line(&mut line, &r);
        assert_eq!(line, "2 acct_1 tr-att-1 - - - - - 0 0 600 660 - NODATA");
        assert_eq!(line.split(' ').count(), FIELDS.len());
    }
}
