//! `LogFormatString`: which record fields a flow log keeps, in the
//! product's syntax — `${field}` tokens, beginning with
//! `${srcaddr}${dstaddr}${bytes}`.
//!
//! Fields left out are absent from the flow log's records (every sink and
//! the Logstore). `version`, `flow-log-id`, `start`, `end` and `log-status`
//! are always kept: the Logstore partitions by time, and a record without
//! its status or its flow log cannot be read correctly.

use std::fmt;

use super::FlowLogRecord;

/// Every field a format may name, in the record's order.
pub const FIELDS: &[&str] = &[
    "version",
    "account-id",
    "cen-id",
    "flow-log-id",
    "interface",
    "netns",
    "attachment-id",
    "region-id",
    "srcaddr",
    "srcport",
    "dstaddr",
    "dstport",
    "protocol",
    "direction",
    "packets",
    "bytes",
    "rtt",
    "start",
    "end",
    "log-status",
    "tcp-flags",
    "first-seen",
    "last-seen",
    "rtt-server-side",
    "rtt-client-side",
    "src-region-id",
    "dst-region-id",
    "src-network",
    "dst-network",
];

/// The tokens every format begins with.
const PREFIX: [&str; 3] = ["srcaddr", "dstaddr", "bytes"];
/// Kept whatever the format says.
const ALWAYS: [&str; 5] = ["version", "flow-log-id", "start", "end", "log-status"];
/// Longest format accepted.
pub const MAX_LEN: usize = 2048;

/// A bad format: the offending token and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{token}: {reason}")]
pub struct FormatError {
    pub token: String,
    pub reason: String,
}

/// A parsed format: the fields named, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    fields: Vec<&'static str>,
    /// Bit i set: FIELDS[i] is kept.
    keep: u64,
}

fn index(name: &str) -> Option<usize> {
    FIELDS.iter().position(|f| *f == name)
}

fn bit(name: &str) -> u64 {
    index(name).map_or(0, |i| 1 << i)
}

impl LogFormat {
    /// Parses `${a}${b}…`; whitespace between tokens is allowed.
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        let err = |token: &str, reason: String| FormatError {
            token: token.to_owned(),
            reason,
        };
        if s.len() > MAX_LEN {
            return Err(err(
                &s.chars().take(20).collect::<String>(),
                format!("the format is longer than {MAX_LEN} characters"),
            ));
        }
        let mut fields: Vec<&'static str> = Vec::new();
        let mut rest = s.trim_start();
        while !rest.is_empty() {
            let Some(body) = rest.strip_prefix("${") else {
                let junk: String = rest.chars().take_while(|c| *c != '$').collect();
                return Err(err(junk.trim(), "expected a ${field} token".into()));
            };
            let Some(end) = body.find('}') else {
                return Err(err(rest, "unterminated token (no closing '}')".into()));
            };
            let (name, token) = (&body[..end], &rest[..end + 3]);
            let Some(i) = index(name) else {
                return Err(err(
                    token,
                    format!("unknown field; fields are {}", FIELDS.join(", ")),
                ));
            };
            if fields.contains(&FIELDS[i]) {
                return Err(err(token, "the field appears twice".into()));
            }
            let position = fields.len();
            if position < PREFIX.len() && FIELDS[i] != PREFIX[position] {
                return Err(err(
                    token,
                    format!(
                        "a format must begin with ${{srcaddr}}${{dstaddr}}${{bytes}}; token {} should be ${{{}}}",
                        position + 1,
                        PREFIX[position]
                    ),
                ));
            }
            fields.push(FIELDS[i]);
            rest = body[end + 1..].trim_start();
        }
        if fields.len() < PREFIX.len() {
            return Err(err(
                s.trim(),
                "a format must begin with ${srcaddr}${dstaddr}${bytes}".into(),
            ));
        }
        let keep = fields.iter().chain(ALWAYS.iter()).fold(0, |k, f| k | bit(f));
        Ok(Self { fields, keep })
    }

    /// The default: every field.
    pub fn all() -> Self {
        let mut fields: Vec<&'static str> = PREFIX.to_vec();
        fields.extend(FIELDS.iter().filter(|f| !PREFIX.contains(f)));
        Self {
            fields,
            keep: u64::MAX,
        }
    }

    pub fn fields(&self) -> &[&'static str] {
        &self.fields
    }

    pub fn keeps(&self, field: &str) -> bool {
        self.keep & bit(field) != 0
    }

    /// Clears the fields the format leaves out.
    pub fn apply(&self, r: &mut FlowLogRecord) {
        if self.keep == u64::MAX {
            return;
        }
        macro_rules! drop_unkept {
            ($($name:literal => $field:ident),* $(,)?) => {
                $( if !self.keeps($name) { r.$field = None; } )*
            };
        }
        drop_unkept!(
            "account-id" => account_id,
            "cen-id" => cen_id,
            "interface" => interface,
            "netns" => netns,
            "attachment-id" => attachment_id,
            "region-id" => region_id,
            "srcport" => srcport,
            "dstport" => dstport,
            "protocol" => protocol,
            "direction" => direction,
            "packets" => packets,
            "rtt" => rtt,
            "tcp-flags" => tcp_flags,
            "first-seen" => first_seen,
            "last-seen" => last_seen,
            "rtt-server-side" => rtt_server_side,
            "rtt-client-side" => rtt_client_side,
            "src-region-id" => src_region_id,
            "dst-region-id" => dst_region_id,
            "src-network" => src_network,
            "dst-network" => dst_network,
        );
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for field in &self.fields {
            write!(f, "${{{field}}}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_formats_keep_what_they_name_and_the_bookkeeping() {
        let f = LogFormat::parse("${srcaddr}${dstaddr}${bytes} ${packets}${src-region-id}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            f.to_string(),
            "${srcaddr}${dstaddr}${bytes}${packets}${src-region-id}"
        );
        for kept in [
            "srcaddr",
            "packets",
            "src-region-id",
            "start",
            "log-status",
            "flow-log-id",
        ] {
            assert!(f.keeps(kept), "{kept}");
        }
        for gone in ["srcport", "account-id", "rtt", "dst-region-id", "interface"] {
            assert!(!f.keeps(gone), "{gone}");
        }
        let mut r = FlowLogRecord {
            srcport: Some(1),
            packets: Some(2),
            interface: Some("eth0".into()),
            src_region_id: Some("a".into()),
            start: 60,
            ..Default::default()
        };
        f.apply(&mut r);
        assert_eq!(
            (r.srcport, r.packets, r.interface.as_deref()),
            (None, Some(2), None)
        );
        assert_eq!((r.src_region_id.as_deref(), r.start), (Some("a"), 60));
        // The default keeps everything, prefix first.
        let all = LogFormat::all();
        assert!(
            all.to_string()
                .starts_with("${srcaddr}${dstaddr}${bytes}${version}")
        );
        assert_eq!(
            LogFormat::parse(&all.to_string()).map(|f| f.fields().len()),
            Ok(FIELDS.len())
        );
    }

    #[test]
    fn bad_formats_name_the_token() {
        for (format, token, reason) in [
            ("${srcaddr}${dstaddr}${bytes}${foo}", "${foo}", "unknown field"),
            ("${dstaddr}${srcaddr}${bytes}", "${dstaddr}", "must begin with"),
            (
                "${srcaddr}${dstaddr}${packets}",
                "${packets}",
                "token 3 should be ${bytes}",
            ),
            ("${srcaddr}${dstaddr}", "${srcaddr}${dstaddr}", "must begin with"),
            (
                "${srcaddr}${dstaddr}${bytes}${bytes}",
                "${bytes}",
                "appears twice",
            ),
            (
                "${srcaddr}${dstaddr}${bytes} srcport",
                "srcport",
                "expected a ${field} token",
            ),
            ("${srcaddr}${dstaddr}${bytes}${rtt", "${rtt", "unterminated"),
            ("${srcaddr}${dstaddr}${bytes}${}", "${}", "unknown field"),
            ("${src_addr}${dstaddr}${bytes}", "${src_addr}", "unknown field"),
            ("", "", "must begin with"),
        ] {
            let e = LogFormat::parse(format)
                .err()
                .unwrap_or_else(|| panic!("{format} accepted"));
            assert_eq!(e.token, token, "{format}");
            assert!(e.reason.contains(reason), "{format}: {}", e.reason);
        }
    }
}
