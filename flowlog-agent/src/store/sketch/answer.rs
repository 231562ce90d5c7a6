//! The console's sketch-answered panels: rows with the names and order the
//! records' SQL gives (see `console::panels`), from the windows' sketches.
//! `None` means the sketches cannot answer and the records must.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sketches_ddsketch::DDSketch;

use super::{
    INBOUND, Latency, SLOWEST_KEPT, WindowSketch, merge_into,
    talkers::{self, Kind, Sums, TopList},
};
use crate::store::analyses::Metric;

/// A panel the sketches can answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Panel {
    /// Distinct five-tuples per direction (HyperLogLog, ±1.6 %).
    DistinctFlows,
    /// RTT percentiles per region pair (±1 %).
    Latency,
    /// RTT percentiles per window (±1 %).
    LatencySeries,
    /// The slowest inbound connections, exact up to [`SLOWEST_KEPT`].
    Slowest { limit: usize },
    /// Top talkers, exact when proven.
    Top {
        kind: Kind,
        inbound: bool,
        metric: Metric,
        limit: usize,
    },
}

/// A sketch query: the panel, and the flow log if one is picked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SketchQuery {
    pub panel: Panel,
    pub flow_log_id: Option<String>,
}

impl SketchQuery {
    /// Whether the answer is exact (or within the sketches' error).
    pub fn is_exact(&self) -> bool {
        matches!(self.panel, Panel::Slowest { .. } | Panel::Top { .. })
    }
}

/// The rows of `q` over `parts` (windows already in range).
pub fn answer(parts: &[WindowSketch], q: &SketchQuery) -> Option<Vec<Value>> {
    let parts: Vec<&WindowSketch> = parts
        .iter()
        .filter(|w| q.flow_log_id.as_ref().is_none_or(|f| *f == w.flow_log_id))
        .collect();
    match &q.panel {
        Panel::DistinctFlows => Some(distinct(&parts)),
        Panel::Latency => Some(latency(&parts)),
        Panel::LatencySeries => Some(latency_series(&parts)),
        Panel::Slowest { limit } => slowest(&parts, *limit),
        Panel::Top {
            kind,
            inbound,
            metric,
            limit,
        } => {
            let dir = if *inbound { INBOUND } else { 1 };
            let lists = parts.iter().map(|w| &w.talkers[dir]);
            match kind {
                Kind::Sources => {
                    top(lists.map(|l| l.sources.as_ref()), *metric, *limit).map(|r| named(r, "srcaddr"))
                }
                Kind::Destinations => {
                    top(lists.map(|l| l.destinations.as_ref()), *metric, *limit).map(|r| named(r, "dstaddr"))
                }
                Kind::Pairs => top(lists.map(|l| l.pairs.as_ref()), *metric, *limit),
                Kind::Ports => top(lists.map(|l| l.ports.as_ref()), *metric, *limit),
            }
        }
    }
}

/// Rows of one address column, renamed to the column it ranks.
fn named(mut rows: Vec<Value>, column: &str) -> Vec<Value> {
    for r in &mut rows {
        if let Value::Object(m) = r
            && let Some(v) = m.remove("addr")
        {
            m.insert(column.to_owned(), v);
        }
    }
    rows
}

fn distinct(parts: &[&WindowSketch]) -> Vec<Value> {
    let mut rows = Vec::new();
    for (dir, name) in [(INBOUND, "in"), (1, "out")] {
        let mut all = super::hll::Hll::default();
        for w in parts {
            all.merge(&w.distinct[dir]);
        }
        let n = all.count();
        // As GROUP BY direction: a direction without records has no row.
        if n > 0 {
            rows.push(json!({"direction": name, "flows": n}));
        }
    }
    rows
}

fn merge(into: &mut Latency, s: &Latency) {
    merge_into(&mut into.rtt, &s.rtt);
    merge_into(&mut into.client, &s.client);
    merge_into(&mut into.server, &s.server);
}

/// The `p` quantile; null without samples, as SQL's is.
fn q(s: &Option<DDSketch>, p: f64) -> Value {
    match s.as_ref().map(|s| s.quantile(p)) {
        Some(Ok(Some(v))) => json!(v),
        _ => Value::Null,
    }
}

fn count(s: &Option<DDSketch>) -> usize {
    s.as_ref().map_or(0, DDSketch::count)
}

fn max(s: &Option<DDSketch>) -> Value {
    json!(s.as_ref().and_then(DDSketch::max))
}

fn latency(parts: &[&WindowSketch]) -> Vec<Value> {
    let mut pairs: BTreeMap<(&str, &str), Latency> = BTreeMap::new();
    for w in parts {
        for (src, by_dst) in &w.latency {
            for (dst, l) in by_dst {
                merge(pairs.entry((src, dst)).or_default(), l);
            }
        }
    }
    let mut rows: Vec<(f64, Value)> = pairs
        .into_iter()
        .filter(|(_, l)| count(&l.rtt) > 0)
        .map(|((src, dst), l)| {
            let p90 = q(&l.rtt, 0.9);
            let row = json!({
                "src": src, "dst": dst, "samples": count(&l.rtt),
                "p50": q(&l.rtt, 0.5), "p90": p90, "p99": q(&l.rtt, 0.99),
                "max": max(&l.rtt),
                "client_p50": q(&l.client, 0.5), "server_p50": q(&l.server, 0.5),
            });
            (p90.as_f64().unwrap_or(0.0), row)
        })
        .collect();
    // ORDER BY p90 DESC, src, dst (the map gave src, dst ascending).
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().map(|(_, r)| r).collect()
}

fn latency_series(parts: &[&WindowSketch]) -> Vec<Value> {
    let mut windows: BTreeMap<i64, Latency> = BTreeMap::new();
    for w in parts {
        let into = windows.entry(w.start).or_default();
        for l in w.latency.values().flat_map(BTreeMap::values) {
            merge(into, l);
        }
    }
    windows
        .into_iter()
        .filter(|(_, l)| count(&l.rtt) > 0)
        .map(|(start, l)| {
            json!({
                "start": start, "samples": count(&l.rtt),
                "p50": q(&l.rtt, 0.5), "p95": q(&l.rtt, 0.95), "max": max(&l.rtt),
            })
        })
        .collect()
}

fn slowest(parts: &[&WindowSketch], limit: usize) -> Option<Vec<Value>> {
    if limit > SLOWEST_KEPT {
        return None;
    }
    let mut all: Vec<&super::Slow> = parts.iter().flat_map(|w| &w.slowest).collect();
    all.sort();
    all.truncate(limit);
    Some(
        all.into_iter()
            .map(|s| {
                json!({
                    "srcaddr": s.srcaddr, "srcport": s.srcport, "dstaddr": s.dstaddr,
                    "dstport": s.dstport, "interface": s.interface, "start": s.start,
                    "rtt": s.rtt, "client_side": s.client_side, "server_side": s.server_side,
                    "bytes": s.bytes,
                })
            })
            .collect(),
    )
}

/// Column names and values of a row.
type Cells = Vec<(&'static str, Value)>;

/// A talker key's columns, as the records' SQL names them.
pub trait Columns {
    fn columns(&self) -> Cells;
}

impl Columns for std::net::IpAddr {
    fn columns(&self) -> Cells {
        // Sources and destinations share the type; `top` renames.
        vec![("addr", json!(self.to_string()))]
    }
}

impl Columns for (std::net::IpAddr, std::net::IpAddr) {
    fn columns(&self) -> Cells {
        vec![
            ("srcaddr", json!(self.0.to_string())),
            ("dstaddr", json!(self.1.to_string())),
        ]
    }
}

impl Columns for (u8, u32) {
    fn columns(&self) -> Cells {
        vec![("protocol", json!(self.0)), ("dstport", json!(self.1))]
    }
}

/// SQL's order of two key values: text as text, numbers as numbers.
fn value_cmp(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.cmp(b),
        _ => a.as_u64().cmp(&b.as_u64()),
    }
}

fn top<'a, K>(
    lists: impl Iterator<Item = Option<&'a TopList<K>>>,
    m: Metric,
    limit: usize,
) -> Option<Vec<Value>>
where
    K: Columns + std::hash::Hash + Eq + Clone + Ord + 'a,
{
    let ranked = talkers::rank(lists, m, limit)?;
    let mut rows: Vec<(u64, Cells, Sums)> = ranked
        .into_iter()
        .map(|(k, s)| (s.get(m), k.columns(), s))
        .collect();
    // ORDER BY the metric DESC, then the key columns as SQL orders them.
    rows.sort_by(|a, b| {
        b.0.cmp(&a.0).then_with(|| {
            a.1.iter()
                .zip(&b.1)
                .map(|((_, x), (_, y))| value_cmp(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    Some(
        rows.into_iter()
            .map(|(_, cols, s)| {
                let mut row: Map<String, Value> = cols.into_iter().map(|(c, v)| (c.to_owned(), v)).collect();
                row.insert("bytes".into(), json!(s.0));
                row.insert("packets".into(), json!(s.1));
                row.insert("records".into(), json!(s.2));
                Value::Object(row)
            })
            .collect(),
    )
}
