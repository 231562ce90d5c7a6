//! The Information Elements a flow-log record is exported as: IANA's
//! standard elements wherever one means the same thing (RFC 7012 and the
//! IANA registry), and elements of our own, under the configured Private
//! Enterprise Number, for what has none. docs/ipfix.md lists them as a
//! table a collector's configuration can be written from; a test checks
//! that the table and this list agree.

/// How a value is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    U8,
    U16,
    U32,
    U64,
    Ipv4,
    Ipv6,
    /// dateTimeMilliseconds: u64 milliseconds since the Unix epoch.
    Millis,
    /// dateTimeSeconds: u32 seconds since the Unix epoch.
    Seconds,
    /// string, variable length (RFC 7011 §7).
    Str,
}

impl Kind {
    /// Field length in a template: the fixed size, or 65535 (variable).
    pub fn template_len(self) -> u16 {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
            Self::U32 | Self::Ipv4 | Self::Seconds => 4,
            Self::U64 | Self::Millis => 8,
            Self::Ipv6 => 16,
            Self::Str => 65535,
        }
    }

    /// The IPFIX abstract data type, as the IANA registry names it.
    pub fn data_type(self) -> &'static str {
        match self {
            Self::U8 => "unsigned8",
            Self::U16 => "unsigned16",
            Self::U32 => "unsigned32",
            Self::U64 => "unsigned64",
            Self::Ipv4 => "ipv4Address",
            Self::Ipv6 => "ipv6Address",
            Self::Millis => "dateTimeMilliseconds",
            Self::Seconds => "dateTimeSeconds",
            Self::Str => "string",
        }
    }
}

/// Which value of a record an element carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    SrcV4,
    DstV4,
    SrcV6,
    DstV6,
    SrcPort,
    DstPort,
    Protocol,
    Octets,
    Packets,
    Direction,
    /// The attachment's ifindex for `in` records, else 0.
    Ingress,
    /// The attachment's ifindex for `out` records, else 0.
    Egress,
    InterfaceName,
    TcpFlags,
    FirstSeen,
    LastSeen,
    WindowStart,
    WindowEnd,
    LogStatus,
    FlowLogId,
    AccountId,
    CenId,
    Netns,
    AttachmentId,
    RegionId,
    Rtt,
    RttServerSide,
    RttClientSide,
    SrcRegionId,
    DstRegionId,
    SrcNetwork,
    DstNetwork,
}

/// One Information Element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element {
    /// The element's name (IANA's, or ours in the same style).
    pub name: &'static str,
    pub id: u16,
    /// Ours, under the Private Enterprise Number; else IANA's.
    pub enterprise: bool,
    pub kind: Kind,
    pub value: Value,
    /// The record field it comes from (a LogFormatString name).
    pub field: &'static str,
}

const fn iana(name: &'static str, id: u16, kind: Kind, value: Value, field: &'static str) -> Element {
    Element {
        name,
        id,
        enterprise: false,
        kind,
        value,
        field,
    }
}

const fn ours(name: &'static str, id: u16, kind: Kind, value: Value, field: &'static str) -> Element {
    Element {
        name,
        id,
        enterprise: true,
        kind,
        value,
        field,
    }
}

/// Our element ids start here: clear of every id IANA has assigned (under
/// 600 today), so a collector that ignores the enterprise bit still never
/// reads one of ours as a standard element.
pub const ENTERPRISE_BASE: u16 = 1000;

/// Every element, in the order a template lists them.
pub const ELEMENTS: &[Element] = &[
    iana("sourceIPv4Address", 8, Kind::Ipv4, Value::SrcV4, "srcaddr"),
    iana("sourceIPv6Address", 27, Kind::Ipv6, Value::SrcV6, "srcaddr"),
    iana("destinationIPv4Address", 12, Kind::Ipv4, Value::DstV4, "dstaddr"),
    iana("destinationIPv6Address", 28, Kind::Ipv6, Value::DstV6, "dstaddr"),
    iana("sourceTransportPort", 7, Kind::U16, Value::SrcPort, "srcport"),
    iana(
        "destinationTransportPort",
        11,
        Kind::U16,
        Value::DstPort,
        "dstport",
    ),
    iana("protocolIdentifier", 4, Kind::U8, Value::Protocol, "protocol"),
    iana("octetDeltaCount", 1, Kind::U64, Value::Octets, "bytes"),
    iana("packetDeltaCount", 2, Kind::U64, Value::Packets, "packets"),
    iana("flowDirection", 61, Kind::U8, Value::Direction, "direction"),
    iana("ingressInterface", 10, Kind::U32, Value::Ingress, "interface"),
    iana("egressInterface", 14, Kind::U32, Value::Egress, "interface"),
    iana("interfaceName", 82, Kind::Str, Value::InterfaceName, "interface"),
    iana("tcpControlBits", 6, Kind::U16, Value::TcpFlags, "tcp-flags"),
    iana(
        "flowStartMilliseconds",
        152,
        Kind::Millis,
        Value::FirstSeen,
        "first-seen",
    ),
    iana(
        "flowEndMilliseconds",
        153,
        Kind::Millis,
        Value::LastSeen,
        "last-seen",
    ),
    ours(
        "flowlogWindowStart",
        ENTERPRISE_BASE + 1,
        Kind::Seconds,
        Value::WindowStart,
        "start",
    ),
    ours(
        "flowlogWindowEnd",
        ENTERPRISE_BASE + 2,
        Kind::Seconds,
        Value::WindowEnd,
        "end",
    ),
    ours(
        "flowlogLogStatus",
        ENTERPRISE_BASE + 3,
        Kind::Str,
        Value::LogStatus,
        "log-status",
    ),
    ours(
        "flowlogFlowLogId",
        ENTERPRISE_BASE + 4,
        Kind::Str,
        Value::FlowLogId,
        "flow-log-id",
    ),
    ours(
        "flowlogAccountId",
        ENTERPRISE_BASE + 5,
        Kind::Str,
        Value::AccountId,
        "account-id",
    ),
    ours(
        "flowlogCenId",
        ENTERPRISE_BASE + 6,
        Kind::Str,
        Value::CenId,
        "cen-id",
    ),
    ours(
        "flowlogNetns",
        ENTERPRISE_BASE + 7,
        Kind::Str,
        Value::Netns,
        "netns",
    ),
    ours(
        "flowlogAttachmentId",
        ENTERPRISE_BASE + 8,
        Kind::Str,
        Value::AttachmentId,
        "attachment-id",
    ),
    ours(
        "flowlogRegionId",
        ENTERPRISE_BASE + 9,
        Kind::Str,
        Value::RegionId,
        "region-id",
    ),
    ours("flowlogRtt", ENTERPRISE_BASE + 10, Kind::U32, Value::Rtt, "rtt"),
    ours(
        "flowlogRttServerSide",
        ENTERPRISE_BASE + 11,
        Kind::U32,
        Value::RttServerSide,
        "rtt-server-side",
    ),
    ours(
        "flowlogRttClientSide",
        ENTERPRISE_BASE + 12,
        Kind::U32,
        Value::RttClientSide,
        "rtt-client-side",
    ),
    ours(
        "flowlogSrcRegionId",
        ENTERPRISE_BASE + 13,
        Kind::Str,
        Value::SrcRegionId,
        "src-region-id",
    ),
    ours(
        "flowlogDstRegionId",
        ENTERPRISE_BASE + 14,
        Kind::Str,
        Value::DstRegionId,
        "dst-region-id",
    ),
    ours(
        "flowlogSrcNetwork",
        ENTERPRISE_BASE + 15,
        Kind::Str,
        Value::SrcNetwork,
        "src-network",
    ),
    ours(
        "flowlogDstNetwork",
        ENTERPRISE_BASE + 16,
        Kind::Str,
        Value::DstNetwork,
        "dst-network",
    ),
];

/// The kind of record a template describes: which values it can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    FlowV4,
    FlowV6,
    /// SKIPDATA: per attachment and direction, no five-tuple.
    Skipped,
    /// NODATA: per attachment, no five-tuple and no direction.
    NoData,
}

impl Shape {
    /// Whether records of this shape have `value` at all.
    pub fn has(self, value: Value) -> bool {
        use Value as V;
        let v4 = matches!(value, V::SrcV4 | V::DstV4);
        let v6 = matches!(value, V::SrcV6 | V::DstV6);
        let flow_only = matches!(
            value,
            V::SrcPort
                | V::DstPort
                | V::Protocol
                | V::TcpFlags
                | V::FirstSeen
                | V::LastSeen
                | V::Rtt
                | V::RttServerSide
                | V::RttClientSide
                | V::SrcRegionId
                | V::DstRegionId
                | V::SrcNetwork
                | V::DstNetwork
        );
        match self {
            Self::FlowV4 => !v6,
            Self::FlowV6 => !v4,
            Self::Skipped => !v4 && !v6 && !flow_only,
            // Its packets and bytes are 0, as its record says.
            Self::NoData => !v4 && !v6 && !flow_only && value != V::Direction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ours_never_meet_a_standard_id() {
        let mut seen = std::collections::BTreeSet::new();
        for e in ELEMENTS {
            assert!(seen.insert((e.enterprise, e.id)), "{} twice", e.name);
            assert!(e.id < 0x8000, "{}: the top bit is the enterprise bit", e.name);
            if e.enterprise {
                assert!(e.id > ENTERPRISE_BASE, "{}", e.name);
            } else {
                assert!(e.id < ENTERPRISE_BASE, "{}", e.name);
            }
        }
        // Every field a record has goes out, but the record's version, which
        // the message's own version stands for.
        for field in crate::record::format::FIELDS {
            assert!(
                *field == "version" || ELEMENTS.iter().any(|e| e.field == *field),
                "{field} has no element"
            );
        }
    }

    /// docs/ipfix.md's tables list exactly these elements, as they go out.
    #[test]
    fn the_documented_tables_are_the_elements() {
        let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ipfix.md"))
            .unwrap_or_else(|e| panic!("docs/ipfix.md: {e}"));
        let rows: Vec<Vec<String>> = page
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                l.split('|')
                    .map(|c| c.trim().trim_matches('`').to_owned())
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), ELEMENTS.len(), "one row per element");
        for e in ELEMENTS {
            let row = rows
                .iter()
                .find(|r| r[1] == e.name)
                .unwrap_or_else(|| panic!("{} is not documented", e.name));
            let id = if e.enterprise {
                format!("PEN:{}", e.id)
            } else {
                e.id.to_string()
            };
            let len = match e.kind {
                Kind::Str => "variable".to_owned(),
                k => k.template_len().to_string(),
            };
            assert_eq!(
                (row[2].as_str(), row[3].as_str(), row[4].as_str(), row[5].as_str()),
                (id.as_str(), e.kind.data_type(), len.as_str(), e.field),
                "{}",
                e.name
            );
        }
    }
}
