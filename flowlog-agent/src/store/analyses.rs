//! Built-in analyses for the product's three uses — cross-region traffic,
//! cost, troubleshooting — as SQL over the `logs` table.

/// Which counter orders the results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    #[default]
    Bytes,
    Packets,
}

impl Metric {
    pub const fn column(self) -> &'static str {
        match self {
            Self::Bytes => "bytes",
            Self::Packets => "packets",
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bytes" => Ok(Self::Bytes),
            "packets" => Ok(Self::Packets),
            other => Err(format!("unknown metric {other:?} (bytes or packets)")),
        }
    }
}

fn direction_filter(direction: Option<&str>) -> Result<String, String> {
    match direction {
        None => Ok(String::new()),
        Some(d @ ("in" | "out")) => Ok(format!(" AND direction = '{d}'")),
        Some(other) => Err(format!("unknown direction {other:?} (in or out)")),
    }
}

/// A region column, with unmatched addresses ("") and records from
/// before enrichment (null) shown as such.
pub fn region(col: &str) -> String {
    format!(
        "CASE WHEN {col} IS NULL THEN '{NO_REGION}' WHEN {col} = '' THEN '{UNMATCHED_REGION}' ELSE {col} END"
    )
}

/// A region column's label where no region table applied.
pub const NO_REGION: &str = "(none)";
/// A region column's label where the table had no match.
pub const UNMATCHED_REGION: &str = "(unmatched)";

/// [`region`]'s label of one value.
pub fn region_label(v: Option<&str>) -> &str {
    match v {
        None => NO_REGION,
        Some("") => UNMATCHED_REGION,
        Some(v) => v,
    }
}

/// Largest sources by bytes or packets, per direction; with `by_region`,
/// largest source regions.
pub fn top_talkers(
    metric: Metric,
    direction: Option<&str>,
    by_region: bool,
    limit: u32,
) -> Result<String, String> {
    let order = metric.column();
    let dir = direction_filter(direction)?;
    if by_region {
        return Ok(format!(
            "SELECT {} AS src_region, direction, sum(bytes) AS bytes, sum(packets) AS packets,                     count(DISTINCT \"dst-region-id\") AS peer_regions              FROM logs WHERE \"log-status\" = 'OK'{dir}              GROUP BY 1, direction ORDER BY {order} DESC, 1 LIMIT {limit}",
            region("\"src-region-id\"")
        ));
    }
    Ok(format!(
        "SELECT srcaddr, direction, sum(bytes) AS bytes, sum(packets) AS packets, count(DISTINCT dstaddr) AS peers \
         FROM logs WHERE \"log-status\" = 'OK'{dir} \
         GROUP BY srcaddr, direction ORDER BY {order} DESC, srcaddr LIMIT {limit}"
    ))
}

/// What the traffic matrix is between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Between {
    /// Each flow that entered on one interface and left on another in the
    /// same window, summed per pair.
    Attachments,
    /// IPv4 /24 source and destination networks.
    Subnets,
    /// Source and destination regions from the region table: "which region
    /// pairs cost the most".
    Regions,
}

/// Traffic between attachments, networks or regions. Networks and regions
/// count each flow where it entered an attachment (direction in), so a
/// flow crossing a router is counted once.
pub fn traffic_matrix(metric: Metric, between: Between, limit: u32) -> String {
    let order = metric.column();
    if between == Between::Regions {
        return format!(
            "SELECT {} AS src_region, {} AS dst_region, sum(bytes) AS bytes, sum(packets) AS packets,                     count(*) AS records              FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in'              GROUP BY 1, 2 ORDER BY {order} DESC, 1, 2 LIMIT {limit}",
            region("\"src-region-id\""),
            region("\"dst-region-id\"")
        );
    }
    if between == Between::Subnets {
        let net = |col: &str| format!("regexp_replace({col}, '^(\\d+\\.\\d+\\.\\d+)\\.\\d+$', '\\1.0/24')");
        return format!(
            "SELECT {} AS src_net, {} AS dst_net, sum(bytes) AS bytes, sum(packets) AS packets \
             FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' \
             GROUP BY 1, 2 ORDER BY {order} DESC LIMIT {limit}",
            net("srcaddr"),
            net("dstaddr")
        );
    }
    format!(
        "SELECT i.interface AS ingress, o.interface AS egress, sum(i.bytes) AS bytes, sum(i.packets) AS packets \
         FROM logs i JOIN logs o \
           ON i.\"flow-log-id\" = o.\"flow-log-id\" AND i.start = o.start \
          AND i.srcaddr = o.srcaddr AND i.dstaddr = o.dstaddr AND i.protocol = o.protocol \
          AND i.srcport = o.srcport AND i.dstport = o.dstport \
         WHERE i.direction = 'in' AND o.direction = 'out' AND i.interface <> o.interface \
           AND i.\"log-status\" = 'OK' AND o.\"log-status\" = 'OK' \
         GROUP BY 1, 2 ORDER BY {order} DESC LIMIT {limit}"
    )
}

/// Windows where an attachment saw nothing (NODATA) or lost packets
/// (SKIPDATA).
pub fn gaps(limit: u32) -> String {
    format!(
        "SELECT \"flow-log-id\", interface, direction, start, \"end\", \"log-status\", packets, bytes \
         FROM logs WHERE \"log-status\" IN ('NODATA', 'SKIPDATA') \
         ORDER BY start DESC, interface LIMIT {limit}"
    )
}

/// TCP connections with the longest handshake round trips.
pub fn slowest(limit: u32) -> String {
    format!(
        "SELECT srcaddr, srcport, dstaddr, dstport, interface, max(rtt) AS rtt_us, \
                max(\"rtt-server-side\") AS server_side_us, max(\"rtt-client-side\") AS client_side_us, sum(bytes) AS bytes \
         FROM logs WHERE rtt IS NOT NULL AND direction = 'in' \
         GROUP BY srcaddr, srcport, dstaddr, dstport, interface \
         ORDER BY rtt_us DESC LIMIT {limit}"
    )
}
