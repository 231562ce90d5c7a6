//! What each console page shows, as typed requests: one [`Panel`] per chart
//! or table, each turned into one SQL query over `logs` — the same engine,
//! table and limits GetLogs uses, so a number on the page is the number a
//! person gets from `flowlog query` with that SQL.
//!
//! Every value a request carries is checked here (names by the model's
//! validators, addresses as networks, enums by their words) and written
//! into the SQL only in its checked, canonical form.

use serde::Deserialize;

use crate::{
    api::BadParam,
    model::validate,
    store::{
        analyses::{Metric, NO_REGION, UNMATCHED_REGION, region},
        query::udf::Cidr,
        sketch::{
            SLOWEST_KEPT,
            answer::{self, SketchQuery},
            talkers::Kind as Talkers,
        },
    },
};

/// A chart or table of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Panel {
    /// Overview: bytes and packets per window, split by a key.
    Series,
    /// Overview: totals per direction.
    Totals,
    /// Overview: distinct five-tuples per direction (from the records
    /// only: distinct counts do not add up across windows).
    DistinctFlows,
    /// Overview: NODATA and SKIPDATA windows, with what was skipped.
    Gaps,
    /// Traffic matrix: source × destination.
    Matrix,
    /// Top talkers.
    Top,
    /// Latency: RTT percentiles per region pair.
    Latency,
    /// Latency: RTT percentiles per window.
    LatencySeries,
    /// Latency: the slowest TCP connections.
    Slowest,
    /// Flows: one page of matching records, every field.
    Flows,
    /// Flows: how many records match, and their sums.
    FlowsCount,
    /// The flow-log ids that wrote into the range (the picker's fallback
    /// when the agent's API does not answer).
    FlowLogIds,
}

impl Panel {
    pub const NAMES: &'static [&'static str] = &[
        "series",
        "totals",
        "distinct-flows",
        "gaps",
        "matrix",
        "top",
        "latency",
        "latency-series",
        "slowest",
        "flows",
        "flows-count",
        "flow-log-ids",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    In,
    Out,
}

impl Direction {
    const fn sql(self) -> &'static str {
        match self {
            Self::In => "'in'",
            Self::Out => "'out'",
        }
    }
}

/// What the overview's series are split by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    #[default]
    Direction,
    Protocol,
    RegionPair,
}

/// What the traffic matrix is between.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Between {
    #[default]
    Regions,
    Networks,
    Attachments,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogStatus {
    Ok,
    Nodata,
    Skipdata,
}

impl LogStatus {
    const fn sql(self) -> &'static str {
        match self {
            Self::Ok => "'OK'",
            Self::Nodata => "'NODATA'",
            Self::Skipdata => "'SKIPDATA'",
        }
    }
}

/// Columns the flows table sorts by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Start,
    Bytes,
    Packets,
    Rtt,
    Srcaddr,
    Dstaddr,
    Srcport,
    Dstport,
    Protocol,
    Interface,
}

impl SortBy {
    const fn column(self) -> &'static str {
        match self {
            Self::Start => "\"start\"",
            Self::Bytes => "bytes",
            Self::Packets => "packets",
            Self::Rtt => "rtt",
            Self::Srcaddr => "srcaddr",
            Self::Dstaddr => "dstaddr",
            Self::Srcport => "srcport",
            Self::Dstport => "dstport",
            Self::Protocol => "protocol",
            Self::Interface => "interface",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// The end of the range a page of flows sorted by start comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Newest,
    Oldest,
}

/// Where a panel's numbers come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The rollups in the files' footers when every file in range has
    /// one and the panel can be answered from them; else the records.
    #[default]
    Rollups,
    /// Always the records (to compare, or to measure).
    Records,
}

/// The table a panel's SQL reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Table {
    Logs,
    Rollup,
}

/// Ranges up to this long count distinct five-tuples and RTT percentiles
/// exactly, from the records; longer ones from the sketches, within their
/// error (1.6 % and 1 %).
pub const EXACT_SECS: i64 = 3600;

/// Rows a ranked table (top talkers, matrix cells, slowest) shows at most.
pub const MAX_LIMIT: u32 = 1000;
/// Rows of one page of flows at most.
pub const MAX_PAGE: u32 = 500;

/// One panel's parameters, from the query string (PascalCase, as the API
/// names things). Panels read the ones they take; unknown names are
/// refused so a typo never passes as "no filter".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PanelParams {
    pub project: String,
    pub logstore: String,
    /// Window starts at or after (Unix seconds).
    pub from: i64,
    /// Window starts before.
    pub to: i64,
    pub flow_log_id: Option<String>,
    pub split: Option<Split>,
    pub direction: Option<Direction>,
    pub by: Option<Metric>,
    pub between: Option<Between>,
    pub talkers: Option<Talkers>,
    pub limit: Option<u32>,
    // The flows search.
    pub addr: Option<String>,
    pub src_addr: Option<String>,
    pub dst_addr: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<u8>,
    pub attachment: Option<String>,
    pub region: Option<String>,
    pub src_region: Option<String>,
    pub dst_region: Option<String>,
    pub src_network: Option<String>,
    pub dst_network: Option<String>,
    pub status: Option<LogStatus>,
    pub sort: Option<SortBy>,
    pub order: Option<Order>,
    pub offset: Option<u64>,
    pub page_size: Option<u32>,
    pub source: Option<Source>,
}

fn bad(name: &'static str, message: impl Into<String>) -> BadParam {
    BadParam::new(name, message)
}

/// A string as an SQL literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The network an address is counted in: the region table's name for it,
/// else its /24 (IPv4) or /64 (IPv6).
fn network(name_col: &str, addr_col: &str) -> String {
    format!(
        "CASE WHEN {name_col} IS NULL OR {name_col} = '' THEN cidr_network({addr_col}, 24, 64) ELSE {name_col} END"
    )
}

impl PanelParams {
    /// The time range `[from, to)`, checked.
    pub fn range(&self) -> Result<crate::store::query::TimeRange, BadParam> {
        if self.from >= self.to {
            return Err(bad(
                "From",
                format!("From ({}) must be before To ({})", self.from, self.to),
            ));
        }
        Ok(crate::store::query::TimeRange {
            from: Some(self.from),
            to: Some(self.to),
        })
    }

    /// Project and Logstore, checked.
    pub fn logstore(&self) -> Result<crate::model::LogstoreRef, BadParam> {
        validate::project_name(&self.project).map_err(|m| bad("Project", m))?;
        validate::logstore_name(&self.logstore).map_err(|m| bad("Logstore", m))?;
        Ok(crate::model::LogstoreRef {
            project: self.project.clone(),
            logstore: self.logstore.clone(),
        })
    }

    fn limit(&self, default: u32) -> Result<u32, BadParam> {
        match self.limit {
            None => Ok(default),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(bad("Limit", format!("Limit must be 1 to {MAX_LIMIT}, got {n}"))),
        }
    }

    /// ` AND "flow-log-id" = '…'` when one flow log is picked.
    fn flow_log(&self) -> Result<String, BadParam> {
        match &self.flow_log_id {
            None => Ok(String::new()),
            Some(id) => {
                validate::flow_log_id(id).map_err(|m| bad("FlowLogId", m))?;
                Ok(format!(" AND \"flow-log-id\" = {}", lit(id)))
            }
        }
    }

    /// The flows search's conditions, each checked.
    fn search(&self) -> Result<String, BadParam> {
        let mut c = vec!["TRUE".to_owned()];
        let net = |name: &'static str, v: &str| v.trim().parse::<Cidr>().map_err(|m| bad(name, m));
        if let Some(a) = &self.addr {
            let n = lit(&net("Addr", a)?.to_string());
            c.push(format!("(in_cidr(srcaddr, {n}) OR in_cidr(dstaddr, {n}))"));
        }
        if let Some(a) = &self.src_addr {
            c.push(format!(
                "in_cidr(srcaddr, {})",
                lit(&net("SrcAddr", a)?.to_string())
            ));
        }
        if let Some(a) = &self.dst_addr {
            c.push(format!(
                "in_cidr(dstaddr, {})",
                lit(&net("DstAddr", a)?.to_string())
            ));
        }
        if let Some(p) = self.port {
            c.push(format!("(srcport = {p} OR dstport = {p})"));
        }
        if let Some(p) = self.protocol {
            c.push(format!("protocol = {p}"));
        }
        if let Some(d) = self.direction {
            c.push(format!("direction = {}", d.sql()));
        }
        if let Some(a) = &self.attachment {
            // An interface name or an attachment id: both are labels.
            validate::label("Attachment", a).map_err(|m| bad("Attachment", m))?;
            let a = lit(a);
            c.push(format!("(interface = {a} OR \"attachment-id\" = {a})"));
        }
        let region_value = |name: &'static str, v: &str| -> Result<String, BadParam> {
            // The matrix's words for records outside the table stand for
            // what they mean.
            match v {
                UNMATCHED_REGION => Ok("''".into()),
                v => {
                    validate::label(name, v).map_err(|m| bad(name, m))?;
                    Ok(lit(v))
                }
            }
        };
        let region_is = |col: &str, name: &'static str, v: &str| -> Result<String, BadParam> {
            Ok(if v == NO_REGION {
                format!("{col} IS NULL")
            } else {
                format!("{col} = {}", region_value(name, v)?)
            })
        };
        if let Some(r) = &self.region {
            c.push(format!(
                "({} OR {})",
                region_is("\"src-region-id\"", "Region", r)?,
                region_is("\"dst-region-id\"", "Region", r)?
            ));
        }
        if let Some(r) = &self.src_region {
            c.push(region_is("\"src-region-id\"", "SrcRegion", r)?);
        }
        if let Some(r) = &self.dst_region {
            c.push(region_is("\"dst-region-id\"", "DstRegion", r)?);
        }
        for (value, name, col) in [
            (&self.src_network, "SrcNetwork", "\"src-network\""),
            (&self.dst_network, "DstNetwork", "\"dst-network\""),
        ] {
            if let Some(v) = value {
                validate::label(name, v).map_err(|m| bad(name, m))?;
                c.push(format!("{col} = {}", lit(v)));
            }
        }
        if let Some(s) = self.status {
            c.push(format!("\"log-status\" = {}", s.sql()));
        }
        Ok(format!("{}{}", c.join(" AND "), self.flow_log()?))
    }

    fn page_size(&self) -> Result<u32, BadParam> {
        match self.page_size {
            None => Ok(50),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(bad(
                "PageSize",
                format!("PageSize must be 1 to {MAX_PAGE}, got {n}"),
            )),
        }
    }

    /// For a page of flows sorted by window start: the end of the range
    /// its rows come from, and the page's size.
    pub fn newest_first(&self) -> Result<Option<(Edge, u32)>, BadParam> {
        if self.sort.unwrap_or_default() != SortBy::Start {
            return Ok(None);
        }
        let edge = match self.order.unwrap_or_default() {
            Order::Desc => Edge::Newest,
            Order::Asc => Edge::Oldest,
        };
        Ok(Some((edge, self.page_size()?)))
    }

    /// A range long enough to read approximate figures from the sketches.
    fn long(&self) -> bool {
        self.to.saturating_sub(self.from) > EXACT_SECS
    }

    /// Whether the flows search filters only on what rollups are keyed by
    /// (no address, port or network).
    fn search_rolls_up(&self) -> bool {
        self.addr.is_none()
            && self.src_addr.is_none()
            && self.dst_addr.is_none()
            && self.port.is_none()
            && self.src_network.is_none()
            && self.dst_network.is_none()
    }

    /// The sketch query that answers `panel`, if the sketches can: top
    /// talkers and the slowest connections (exact) at any range; distinct
    /// five-tuples and RTT percentiles (approximate) beyond [`EXACT_SECS`].
    pub fn sketch_query(&self, panel: Panel) -> Result<Option<SketchQuery>, BadParam> {
        let panel = match panel {
            Panel::Top => answer::Panel::Top {
                kind: self.talkers.unwrap_or_default(),
                inbound: self.direction.unwrap_or_default() == Direction::In,
                metric: self.by.unwrap_or_default(),
                limit: self.limit(10)? as usize,
            },
            Panel::Slowest => {
                let limit = self.limit(20)? as usize;
                if limit > SLOWEST_KEPT {
                    return Ok(None);
                }
                answer::Panel::Slowest { limit }
            }
            Panel::DistinctFlows if self.long() => answer::Panel::DistinctFlows,
            Panel::Latency if self.long() => answer::Panel::Latency,
            Panel::LatencySeries if self.long() => answer::Panel::LatencySeries,
            _ => return Ok(None),
        };
        if let Some(id) = &self.flow_log_id {
            validate::flow_log_id(id).map_err(|m| bad("FlowLogId", m))?;
        }
        Ok(Some(SketchQuery {
            panel,
            flow_log_id: self.flow_log_id.clone(),
        }))
    }

    /// The SQL of `panel` over the records (`logs`).
    pub fn sql(&self, panel: Panel) -> Result<String, BadParam> {
        self.sql_over(panel, Table::Logs)?
            .ok_or_else(|| bad("Panel", "no SQL over the records"))
    }

    /// The SQL of `panel` over the files' rollups, if they can answer it.
    pub fn rollup_sql(&self, panel: Panel) -> Result<Option<String>, BadParam> {
        self.sql_over(panel, Table::Rollup)
    }

    fn sql_over(&self, panel: Panel, table: Table) -> Result<Option<String>, BadParam> {
        let rolled = table == Table::Rollup;
        let (from, count) = match table {
            Table::Logs => ("logs", "count(*)"),
            Table::Rollup => ("rollup", "sum(records)"),
        };
        let ok = format!("\"log-status\" = 'OK'{}", self.flow_log()?);
        let metric = self.by.unwrap_or_default().column();
        let dir = self.direction.unwrap_or_default().sql();
        let records_only = matches!(
            (panel, self.between.unwrap_or_default()),
            (
                Panel::DistinctFlows
                    | Panel::Top
                    | Panel::Latency
                    | Panel::LatencySeries
                    | Panel::Slowest
                    | Panel::Flows
                    | Panel::FlowLogIds,
                _
            ) | (Panel::Matrix, Between::Networks | Between::Attachments)
        ) || (panel == Panel::FlowsCount && !self.search_rolls_up());
        if rolled && records_only {
            return Ok(None);
        }
        Ok(Some(match panel {
            Panel::Series => {
                let (key, only) = match self.split.unwrap_or_default() {
                    Split::Direction => ("direction".to_owned(), String::new()),
                    Split::Protocol => (
                        "CAST(protocol AS VARCHAR)".to_owned(),
                        format!(" AND direction = {dir}"),
                    ),
                    Split::RegionPair => (
                        format!(
                            "{} || ' → ' || {}",
                            region("\"src-region-id\""),
                            region("\"dst-region-id\"")
                        ),
                        format!(" AND direction = {dir}"),
                    ),
                };
                format!(
                    "SELECT \"start\", max(\"end\") AS \"end\", {key} AS key, sum(bytes) AS bytes, sum(packets) AS packets \
                     FROM {from} WHERE {ok}{only} GROUP BY \"start\", key ORDER BY \"start\", key"
                )
            }
            Panel::Totals => format!(
                "SELECT direction, sum(bytes) AS bytes, sum(packets) AS packets, {count} AS records \
                 FROM {from} WHERE {ok} GROUP BY direction ORDER BY direction"
            ),
            // Exact over short ranges; beyond, an exact count would hold
            // every five-tuple in memory, so HyperLogLog estimates it.
            Panel::DistinctFlows => {
                let tuple = "concat_ws('|', srcaddr, srcport, dstaddr, dstport, protocol)";
                let count = if self.long() {
                    format!("approx_distinct({tuple})")
                } else {
                    format!("count(DISTINCT {tuple})")
                };
                format!(
                    "SELECT direction, {count} AS flows FROM logs WHERE {ok} GROUP BY direction ORDER BY direction"
                )
            }
            Panel::Gaps => format!(
                "SELECT \"start\", \"end\", \"log-status\" AS status, interface, \
                 sum(packets) AS packets, sum(bytes) AS bytes, {count} AS records \
                 FROM {from} WHERE \"log-status\" IN ('NODATA', 'SKIPDATA'){} \
                 GROUP BY 1, 2, 3, 4 ORDER BY \"start\", interface, status",
                self.flow_log()?
            ),
            Panel::Matrix => {
                let limit = self.limit(400)?;
                match self.between.unwrap_or_default() {
                    // A flow counted once, where it entered.
                    Between::Regions => format!(
                        "SELECT {} AS src, {} AS dst, sum(bytes) AS bytes, sum(packets) AS packets, {count} AS records \
                         FROM {from} WHERE {ok} AND direction = 'in' \
                         GROUP BY 1, 2 ORDER BY {metric} DESC, 1, 2 LIMIT {limit}",
                        region("\"src-region-id\""),
                        region("\"dst-region-id\"")
                    ),
                    Between::Networks => format!(
                        "SELECT {} AS src, {} AS dst, sum(bytes) AS bytes, sum(packets) AS packets, count(*) AS records \
                         FROM logs WHERE {ok} AND direction = 'in' \
                         GROUP BY 1, 2 ORDER BY {metric} DESC, 1, 2 LIMIT {limit}",
                        network("\"src-network\"", "srcaddr"),
                        network("\"dst-network\"", "dstaddr")
                    ),
                    // The same flow in on one attachment and out on another
                    // in the same window.
                    Between::Attachments => {
                        let fl = self.flow_log()?;
                        format!(
                            "SELECT coalesce(i.\"attachment-id\", i.interface) AS src, \
                                    coalesce(o.\"attachment-id\", o.interface) AS dst, \
                                    sum(i.bytes) AS bytes, sum(i.packets) AS packets, count(*) AS records \
                             FROM (SELECT * FROM logs WHERE {ok} AND direction = 'in') i \
                             JOIN (SELECT * FROM logs WHERE \"log-status\" = 'OK'{fl} AND direction = 'out') o \
                               ON i.\"flow-log-id\" = o.\"flow-log-id\" AND i.\"start\" = o.\"start\" \
                              AND i.srcaddr = o.srcaddr AND i.dstaddr = o.dstaddr AND i.protocol = o.protocol \
                              AND i.srcport = o.srcport AND i.dstport = o.dstport \
                             WHERE i.interface <> o.interface OR i.netns IS DISTINCT FROM o.netns \
                             GROUP BY 1, 2 ORDER BY {metric} DESC, 1, 2 LIMIT {limit}"
                        )
                    }
                }
            }
            Panel::Top => {
                let limit = self.limit(10)?;
                let keys = match self.talkers.unwrap_or_default() {
                    Talkers::Sources => "srcaddr",
                    Talkers::Destinations => "dstaddr",
                    Talkers::Pairs => "srcaddr, dstaddr",
                    Talkers::Ports => "protocol, dstport",
                };
                format!(
                    "SELECT {keys}, sum(bytes) AS bytes, sum(packets) AS packets, count(*) AS records \
                     FROM logs WHERE {ok} AND direction = {dir} \
                     GROUP BY {keys} ORDER BY {metric} DESC, {keys} LIMIT {limit}"
                )
            }
            Panel::Latency => format!(
                "SELECT {} AS src, {} AS dst, count(rtt) AS samples, \
                        percentile_cont(rtt, 0.5) AS p50, percentile_cont(rtt, 0.9) AS p90, \
                        percentile_cont(rtt, 0.99) AS p99, max(rtt) AS max, \
                        percentile_cont(\"rtt-client-side\", 0.5) AS client_p50, \
                        percentile_cont(\"rtt-server-side\", 0.5) AS server_p50 \
                 FROM logs WHERE {ok} AND direction = 'in' AND rtt IS NOT NULL \
                 GROUP BY 1, 2 ORDER BY p90 DESC, 1, 2",
                region("\"src-region-id\""),
                region("\"dst-region-id\"")
            ),
            Panel::LatencySeries => format!(
                "SELECT \"start\", count(rtt) AS samples, percentile_cont(rtt, 0.5) AS p50, \
                        percentile_cont(rtt, 0.95) AS p95, max(rtt) AS max \
                 FROM logs WHERE {ok} AND direction = 'in' AND rtt IS NOT NULL \
                 GROUP BY \"start\" ORDER BY \"start\""
            ),
            Panel::Slowest => {
                let limit = self.limit(20)?;
                format!(
                    "SELECT srcaddr, srcport, dstaddr, dstport, interface, \"start\", rtt, \
                            \"rtt-client-side\" AS client_side, \"rtt-server-side\" AS server_side, bytes \
                     FROM logs WHERE {ok} AND direction = 'in' AND rtt IS NOT NULL \
                     ORDER BY rtt DESC, \"start\", srcaddr, srcport LIMIT {limit}"
                )
            }
            Panel::Flows => {
                let size = self.page_size()?;
                let offset = self.offset.unwrap_or(0);
                let order = match self.order.unwrap_or_default() {
                    Order::Asc => "ASC",
                    Order::Desc => "DESC",
                };
                format!(
                    "SELECT * FROM logs WHERE {} \
                     ORDER BY {} {order} NULLS LAST, \"start\", interface, direction, srcaddr, srcport, dstaddr, dstport, protocol \
                     LIMIT {size} OFFSET {offset}",
                    self.search()?,
                    self.sort.unwrap_or_default().column()
                )
            }
            Panel::FlowsCount => format!(
                "SELECT coalesce({count}, 0) AS records, sum(bytes) AS bytes, sum(packets) AS packets FROM {from} WHERE {}",
                self.search()?
            ),
            Panel::FlowLogIds => {
                "SELECT DISTINCT \"flow-log-id\" FROM logs ORDER BY \"flow-log-id\"".to_owned()
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PanelParams {
        PanelParams {
            project: "proj-a".into(),
            logstore: "flows".into(),
            from: 100,
            to: 200,
            ..PanelParams::default()
        }
    }

    #[test]
    fn every_panel_name_parses() {
        for n in Panel::NAMES {
            assert!(Panel::parse(n).is_some(), "{n}");
        }
        assert_eq!(Panel::parse("nope"), None);
    }

    #[test]
    fn values_reach_the_sql_only_checked() {
        let mut p = params();
        p.addr = Some("10.0.0.0/8' OR 1=1 --".into());
        assert_eq!(p.sql(Panel::Flows).unwrap_err().name, "Addr");
        p.addr = Some(" 10.1.0.0/16 ".into());
        p.attachment = Some("veth-a'".into());
        assert_eq!(p.sql(Panel::Flows).unwrap_err().name, "Attachment");
        p.attachment = Some("veth-a".into());
        p.flow_log_id = Some("../x".into());
        assert_eq!(p.sql(Panel::Totals).unwrap_err().name, "FlowLogId");
        p.flow_log_id = None;
        let sql = p.sql(Panel::Flows).unwrap();
        assert!(sql.contains("in_cidr(srcaddr, '10.1.0.0/16')"), "{sql}");
        p.page_size = Some(MAX_PAGE + 1);
        assert_eq!(p.sql(Panel::Flows).unwrap_err().name, "PageSize");
        let mut p = params();
        p.limit = Some(0);
        assert_eq!(p.sql(Panel::Top).unwrap_err().name, "Limit");
        p.limit = None;
        p.project = "UPPER".into();
        assert_eq!(p.logstore().unwrap_err().name, "Project");
        let mut p = params();
        p.to = p.from;
        assert_eq!(p.range().unwrap_err().name, "From");
    }

    #[test]
    fn sketches_answer_exact_panels_always_and_estimates_only_over_long_ranges() {
        let mut p = params();
        assert!(p.sketch_query(Panel::Top).unwrap().is_some());
        assert!(p.sketch_query(Panel::Slowest).unwrap().is_some());
        for short in [Panel::DistinctFlows, Panel::Latency, Panel::LatencySeries] {
            assert_eq!(p.sketch_query(short).unwrap(), None, "{short:?}");
        }
        p.limit = Some(SLOWEST_KEPT as u32 + 1);
        assert_eq!(p.sketch_query(Panel::Slowest).unwrap(), None);
        p.limit = None;
        p.to = p.from + EXACT_SECS + 1;
        assert!(p.sketch_query(Panel::Latency).unwrap().is_some());
        p.flow_log_id = Some("../x".into());
        assert_eq!(p.sketch_query(Panel::Top).unwrap_err().name, "FlowLogId");
        // A count filtered by address reads the records; by protocol, the
        // rollups.
        let mut p = params();
        p.protocol = Some(6);
        assert!(p.rollup_sql(Panel::FlowsCount).unwrap().is_some());
        p.addr = Some("10.0.0.1".into());
        assert_eq!(p.rollup_sql(Panel::FlowsCount).unwrap(), None);
        assert_eq!(p.newest_first().unwrap(), Some((Edge::Newest, 50)));
        p.sort = Some(SortBy::Bytes);
        assert_eq!(p.newest_first().unwrap(), None);
    }

    #[test]
    fn unknown_parameters_are_refused() {
        let q = "Project=proj-a&Logstore=flows&From=1&To=2&Adr=10.0.0.1";
        let e = serde_urlencoded_like(q).unwrap_err();
        assert!(e.contains("Adr"), "{e}");
        assert!(serde_urlencoded_like("Project=proj-a&Logstore=flows&From=1&To=2&Split=protocol").is_ok());
    }

    fn serde_urlencoded_like(q: &str) -> Result<PanelParams, String> {
        axum::extract::Query::<PanelParams>::try_from_uri(&format!("/x?{q}").parse().unwrap())
            .map(|q| q.0)
            .map_err(|e| e.body_text())
    }
}
