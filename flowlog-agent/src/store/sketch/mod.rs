//! Per-window sketches: what a chart needs that sums cannot give, kept in
//! each data file's footer beside its [rollup](super::rollup) — distinct
//! five-tuples ([`hll`]), RTT distributions per region pair (DDSketch,
//! 1 % relative error), the slowest connections, and top-talker lists that
//! merge exactly or say they cannot ([`talkers`]). With them the console
//! answers a day of traffic from a few kilobytes a window, not from every
//! record; [`answer`] turns them into the rows the records' SQL gives.
//!
//! Only `OK` records count, as on every console chart. The footer entry is
//! a CRC-32 (8 hex digits) and the windows as deflated JSON in base64.
//! A file whose sketches would pass [`MAX_ENCODED`] keeps none, and a
//! query over its range reads the records.

pub mod answer;
pub mod hll;
pub mod talkers;

use std::{
    collections::{BTreeMap, BinaryHeap},
    io::{Read as _, Write as _},
    net::IpAddr,
    path::Path,
};

use base64::Engine as _;
use datafusion::parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use crate::store::{analyses::region_label, summary::Row};
use talkers::{Counter, Lists, Sums};

/// Footer key of the sketches.
pub const KEY: &str = "flowlog.sketch";
/// Encoded sketches a file keeps at most.
pub const MAX_ENCODED: usize = 32 << 20;
/// Slowest connections a window keeps.
pub const SLOWEST_KEPT: usize = 100;

/// The RTT sketches' settings: 1 % relative error from 1 µs up.
fn rtt_config() -> Config {
    Config::new(0.01, 2048, 1.0)
}

/// RTTs of one region pair in one window. A leg that was not measured
/// has no sketch (an empty one's infinite bounds have no JSON).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub rtt: Option<DDSketch>,
    pub client: Option<DDSketch>,
    pub server: Option<DDSketch>,
}

/// Adds `v` to the sketch, made on first use.
pub fn sample(s: &mut Option<DDSketch>, v: u32) {
    s.get_or_insert_with(|| DDSketch::new(rtt_config()))
        .add(f64::from(v));
}

/// Merges `from` into `into` (sketches of one configuration always merge).
pub fn merge_into(into: &mut Option<DDSketch>, from: &Option<DDSketch>) {
    if let Some(f) = from {
        match into {
            Some(i) => {
                let _ = i.merge(f);
            }
            None => *into = Some(f.clone()),
        }
    }
}

/// One of a window's slowest inbound connections, with what the slowest
/// table shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slow {
    pub rtt: u32,
    pub start: i64,
    pub srcaddr: Option<String>,
    pub srcport: Option<u32>,
    pub dstaddr: Option<String>,
    pub dstport: Option<u32>,
    pub interface: Option<String>,
    pub client_side: Option<u32>,
    pub server_side: Option<u32>,
    pub bytes: u64,
}

/// The slowest table's order: RTT descending, then start, source address
/// and port ascending (the SQL's), then the other fields so that the order
/// agrees with equality. Smaller is slower.
impl Ord for Slow {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.rtt
            .cmp(&self.rtt)
            .then_with(|| self.start.cmp(&o.start))
            .then_with(|| self.srcaddr.cmp(&o.srcaddr))
            .then_with(|| self.srcport.cmp(&o.srcport))
            .then_with(|| self.dstaddr.cmp(&o.dstaddr))
            .then_with(|| self.dstport.cmp(&o.dstport))
            .then_with(|| self.interface.cmp(&o.interface))
            .then_with(|| self.client_side.cmp(&o.client_side))
            .then_with(|| self.server_side.cmp(&o.server_side))
            .then_with(|| self.bytes.cmp(&o.bytes))
    }
}

impl PartialOrd for Slow {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// One window of one flow log (a file can hold several, and a window can
/// appear in several files: each is its own part).
#[derive(Clone, Serialize, Deserialize)]
pub struct WindowSketch {
    pub start: i64,
    pub end: i64,
    pub flow_log_id: String,
    /// Distinct five-tuples, in and out ([`direction`]).
    pub distinct: [hll::Hll; 2],
    /// Inbound RTTs per (source, destination) region label.
    pub latency: BTreeMap<String, BTreeMap<String, Latency>>,
    /// The window's slowest inbound connections, slowest first.
    pub slowest: Vec<Slow>,
    /// Top talkers, in and out.
    pub talkers: [Lists; 2],
}

/// Builds one window's sketch record by record.
#[derive(Default)]
struct WindowBuilder {
    distinct: [hll::Hll; 2],
    latency: BTreeMap<String, BTreeMap<String, Latency>>,
    /// A max-heap under [`Slow`]'s order: its top is the fastest kept.
    slowest: BinaryHeap<Slow>,
    talkers: [Counters; 2],
}

#[derive(Default)]
struct Counters {
    sources: Counter<IpAddr>,
    destinations: Counter<IpAddr>,
    pairs: Counter<(IpAddr, IpAddr)>,
    ports: Counter<(u8, u32)>,
}

/// Builds a file's sketches from its records.
#[derive(Default)]
pub struct Builder {
    windows: BTreeMap<(i64, i64, String), WindowBuilder>,
    tuple: Vec<u8>,
}

impl Builder {
    pub fn add(&mut self, r: &Row<'_>) {
        if r.log_status != "OK" {
            return;
        }
        let Some(dir) = direction(r.direction) else {
            return;
        };
        // One window a file, as the agent writes: found by borrowed key,
        // without allocating.
        let key = (r.start, r.end, r.flow_log_id);
        let is = |(s, e, f): &(i64, i64, String)| (*s, *e, f.as_str()) == key;
        if !self.windows.keys().any(is) {
            self.windows.insert(
                (r.start, r.end, r.flow_log_id.to_owned()),
                WindowBuilder::default(),
            );
        }
        let Some((_, w)) = self.windows.iter_mut().find(|(k, _)| is(k)) else {
            return;
        };
        let (src, dst) = (r.srcaddr.unwrap_or(""), r.dstaddr.unwrap_or(""));
        let (sport, dport) = (
            u32::from(r.srcport.unwrap_or(0)),
            u32::from(r.dstport.unwrap_or(0)),
        );
        hll::tuple_bytes(
            &mut self.tuple,
            src,
            sport,
            dst,
            dport,
            u32::from(r.protocol.unwrap_or(0)),
        );
        w.distinct[dir].add(&self.tuple);
        let sums = Sums(r.bytes, r.packets.unwrap_or(0), 1);
        let c = &mut w.talkers[dir];
        match (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) {
            (Ok(s), Ok(d)) => {
                c.sources.add(s, sums);
                c.destinations.add(d, sums);
                c.pairs.add((s, d), sums);
            }
            // A record the lists cannot key: they would not be exact.
            _ => {
                c.sources.give_up();
                c.destinations.give_up();
                c.pairs.give_up();
            }
        }
        match r.protocol {
            Some(p) => c.ports.add((p, dport), sums),
            None => c.ports.give_up(),
        }
        if dir != INBOUND {
            return;
        }
        let Some(rtt) = r.rtt else { return };
        let by_src = entry(&mut w.latency, region_label(r.src_region));
        let Some(l) = by_src.and_then(|m| entry(m, region_label(r.dst_region))) else {
            return;
        };
        sample(&mut l.rtt, rtt);
        if let Some(v) = r.rtt_client {
            sample(&mut l.client, v);
        }
        if let Some(v) = r.rtt_server {
            sample(&mut l.server, v);
        }
        let full = w.slowest.len() >= SLOWEST_KEPT;
        if full && w.slowest.peek().is_some_and(|fastest| fastest.rtt > rtt) {
            return;
        }
        let owned = |v: Option<&str>| v.map(str::to_owned);
        w.slowest.push(Slow {
            rtt,
            start: r.start,
            srcaddr: owned(r.srcaddr),
            srcport: r.srcport.map(u32::from),
            dstaddr: owned(r.dstaddr),
            dstport: r.dstport.map(u32::from),
            interface: owned(r.interface),
            client_side: r.rtt_client,
            server_side: r.rtt_server,
            bytes: r.bytes,
        });
        if w.slowest.len() > SLOWEST_KEPT {
            w.slowest.pop();
        }
    }

    pub fn finish(self) -> Vec<WindowSketch> {
        self.windows
            .into_iter()
            .map(|((start, end, flow_log_id), w)| WindowSketch {
                start,
                end,
                flow_log_id,
                distinct: w.distinct,
                latency: w.latency,
                slowest: w.slowest.into_sorted_vec(),
                talkers: w.talkers.map(|c| Lists {
                    sources: c.sources.finish(),
                    destinations: c.destinations.finish(),
                    pairs: c.pairs.finish(),
                    ports: c.ports.finish(),
                }),
            })
            .collect()
    }
}

/// Index of inbound records in the per-direction arrays.
pub const INBOUND: usize = 0;

/// A record's direction as an index: [`INBOUND`] for `in`, 1 for `out`,
/// `None` for neither (no traffic to sketch).
pub fn direction(d: Option<&str>) -> Option<usize> {
    use flowlog_common::Direction::{Egress, Ingress};
    match d {
        Some(d) if d == Ingress.as_str() => Some(INBOUND),
        Some(d) if d == Egress.as_str() => Some(1),
        _ => None,
    }
}

/// The map's value at a borrowed key, made if absent (allocating only
/// then).
fn entry<'a, V: Default>(m: &'a mut BTreeMap<String, V>, k: &str) -> Option<&'a mut V> {
    if !m.contains_key(k) {
        m.insert(k.to_owned(), V::default());
    }
    m.get_mut(k)
}

/// The footer entry for `windows`; `None` when it would pass
/// [`MAX_ENCODED`] or cannot be encoded.
pub fn key_value(windows: &[WindowSketch]) -> Option<KeyValue> {
    let json = serde_json::to_vec(windows).ok()?;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&json).ok()?;
    let text = base64::engine::general_purpose::STANDARD.encode(z.finish().ok()?);
    if text.len() > MAX_ENCODED {
        return None;
    }
    Some(KeyValue::new(
        KEY.to_owned(),
        format!("{:08x}{text}", crc32fast::hash(text.as_bytes())),
    ))
}

fn decode(value: &str) -> Option<Vec<WindowSketch>> {
    let (crc, text) = (value.get(..8)?, value.get(8..)?);
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(text.as_bytes()) {
        return None;
    }
    let z = base64::engine::general_purpose::STANDARD.decode(text).ok()?;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(z.as_slice())
        .take(MAX_ENCODED as u64 * 16)
        .read_to_end(&mut json)
        .ok()?;
    let windows: Vec<WindowSketch> = serde_json::from_slice(&json).ok()?;
    windows
        .iter()
        .all(|w| w.distinct.iter().all(hll::Hll::is_valid))
        .then_some(windows)
}

/// The sketches in `path`'s footer; `None` when it has none (or they fail
/// their CRC).
pub fn read(path: &Path) -> Option<Vec<WindowSketch>> {
    decode(&super::footer_value(path, KEY)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_round_trips_and_a_flipped_byte_is_absent() {
        let mut b = Builder::default();
        for i in 0..50u32 {
            b.add(&Row::of(&crate::record::FlowLogRecord {
                flow_log_id: "fl-1".into(),
                srcaddr: Some(format!("10.0.0.{i}")),
                dstaddr: Some("10.0.1.1".into()),
                protocol: Some(6),
                direction: Some("in".into()),
                rtt: Some(1000 + i),
                bytes: u64::from(i),
                start: 60,
                end: 120,
                log_status: "OK".into(),
                ..Default::default()
            }));
        }
        let windows = b.finish();
        let kv = key_value(&windows).and_then(|kv| kv.value).unwrap_or_default();
        let back = decode(&kv).unwrap_or_default();
        assert_eq!(
            serde_json::to_value(&back).ok(),
            serde_json::to_value(&windows).ok()
        );
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].slowest.first().map(|s| s.rtt), Some(1049));
        let mut bad = kv.into_bytes();
        bad[20] ^= 1;
        assert!(decode(&String::from_utf8_lossy(&bad)).is_none());
    }
}
