//! Per-window rollups: every data file carries, in its Parquet footer, its
//! records summed per window, flow log, interface, attachment, direction,
//! protocol, region pair and log-status — a few dozen rows where the file
//! holds up to millions. Charts over long ranges (traffic over time, totals,
//! gaps, the region matrix) read these instead of the records.
//!
//! In the footer, not in a file beside it, so records and rollup are one
//! atomic write: no crash, retention pass or compaction can leave one
//! without the other. Compaction merges the sources' rollups into the
//! merged file's. A file without one (written before rollups existed, or a
//! merged file whose rollup would be too large, as a day of 1-s windows
//! is) makes a query over its range read the records instead.
//!
//! The footer is outside the file's data checksum, so the rollup carries
//! its own CRC-32; one that does not match is treated as absent.

use std::{path::Path, sync::Arc};

use datafusion::{
    arrow::{
        array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder, UInt8Builder, UInt64Builder},
        datatypes::{DataType, Field, Schema, SchemaRef},
        error::ArrowError,
    },
    parquet::file::metadata::KeyValue,
};
use serde::{Deserialize, Serialize};

use super::summary::Row;

/// Footer key of the rollup.
pub const KEY: &str = "flowlog.rollup";
/// Rows a rollup holds at most; a larger one is not written.
pub const MAX_ROWS: usize = 100_000;

/// What records are summed by.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Key(
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<u8>,
    Option<String>,
    Option<String>,
    String,
);

/// [`Key`] borrowed from a record: looked up without allocating, hashed
/// as the key is (the same fields, in order, of types that hash alike).
#[derive(Hash)]
struct KeyRef<'a>(
    i64,
    i64,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<u8>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
);

impl hashbrown::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, k: &Key) -> bool {
        self.0 == k.0
            && self.1 == k.1
            && self.2 == k.2
            && self.3 == k.3.as_deref()
            && self.4 == k.4.as_deref()
            && self.5 == k.5.as_deref()
            && self.6 == k.6
            && self.7 == k.7.as_deref()
            && self.8 == k.8.as_deref()
            && self.9 == k.9
    }
}

impl KeyRef<'_> {
    fn to_owned(&self) -> Key {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Key(
            self.0,
            self.1,
            self.2.to_owned(),
            s(self.3),
            s(self.4),
            s(self.5),
            self.6,
            s(self.7),
            s(self.8),
            self.9.to_owned(),
        )
    }
}

/// Bytes, packets, records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sums(u64, u64, u64);

/// Records summed per key. Past [`MAX_ROWS`] keys it stops growing and
/// writes nothing (a window of traffic across thousands of region pairs
/// and protocols must not cost the agent memory for a chart's sake).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollup {
    rows: hashbrown::HashMap<Key, Sums>,
    overflowed: bool,
}

impl Rollup {
    pub fn add(&mut self, r: &Row<'_>) {
        if self.overflowed {
            return;
        }
        let key = KeyRef(
            r.start,
            r.end,
            r.flow_log_id,
            r.interface,
            r.attachment_id,
            r.direction,
            r.protocol,
            r.src_region,
            r.dst_region,
            r.log_status,
        );
        // A window has a few dozen keys: allocate only for a new one.
        let s = match self.rows.get_mut(&key) {
            Some(s) => s,
            None => self.rows.entry(key.to_owned()).or_default(),
        };
        s.0 += r.bytes;
        s.1 += r.packets.unwrap_or(0);
        s.2 += 1;
        self.check();
    }

    /// The rows in key order (the footer's, and the table's).
    fn sorted(&self) -> Vec<(&Key, &Sums)> {
        let mut rows: Vec<(&Key, &Sums)> = self.rows.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        rows
    }

    pub fn merge(&mut self, other: Self) {
        if self.overflowed || other.overflowed {
            self.overflow();
            return;
        }
        for (k, v) in other.rows {
            let s = self.rows.entry(k).or_default();
            s.0 += v.0;
            s.1 += v.1;
            s.2 += v.2;
        }
        self.check();
    }

    fn check(&mut self) {
        if self.rows.len() > MAX_ROWS {
            self.overflow();
        }
    }

    fn overflow(&mut self) {
        self.overflowed = true;
        self.rows = hashbrown::HashMap::new();
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The footer entry: CRC-32 (8 hex digits), then the rows as JSON.
    /// `None` when there were more than [`MAX_ROWS`].
    pub fn key_value(&self) -> Option<KeyValue> {
        if self.overflowed {
            return None;
        }
        let json = serde_json::to_string(&self.sorted()).ok()?;
        Some(KeyValue::new(
            KEY.to_owned(),
            format!("{:08x}{json}", crc32fast::hash(json.as_bytes())),
        ))
    }

    fn decode(value: &str) -> Option<Self> {
        let (crc, json) = (value.get(..8)?, value.get(8..)?);
        if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(json.as_bytes()) {
            return None;
        }
        let rows: Vec<(Key, Sums)> = serde_json::from_str(json).ok()?;
        Some(Self {
            rows: rows.into_iter().collect(),
            overflowed: false,
        })
    }

    /// The rollup in `path`'s footer; `None` when it has none (or one that
    /// fails its CRC).
    pub fn read(path: &Path) -> Option<Self> {
        Self::decode(&super::footer_value(path, KEY)?)
    }

    /// The `rollup` table's schema: the record table's names.
    pub fn schema() -> SchemaRef {
        let f = |name: &str, t: DataType| Field::new(name, t, true);
        Arc::new(Schema::new(vec![
            Field::new("start", DataType::Int64, false),
            Field::new("end", DataType::Int64, false),
            Field::new("flow-log-id", DataType::Utf8, false),
            f("interface", DataType::Utf8),
            f("attachment-id", DataType::Utf8),
            f("direction", DataType::Utf8),
            f("protocol", DataType::UInt8),
            f("src-region-id", DataType::Utf8),
            f("dst-region-id", DataType::Utf8),
            Field::new("log-status", DataType::Utf8, false),
            Field::new("bytes", DataType::UInt64, false),
            Field::new("packets", DataType::UInt64, false),
            Field::new("records", DataType::UInt64, false),
        ]))
    }

    /// The rows whose window starts in `[from, to)` as one batch.
    pub fn batch(&self, from: Option<i64>, to: Option<i64>) -> Result<RecordBatch, ArrowError> {
        let n = self.rows.len();
        let strings = || StringBuilder::with_capacity(n, n * 8);
        let (mut start, mut end) = (Int64Builder::with_capacity(n), Int64Builder::with_capacity(n));
        let (mut fl, mut iface, mut att, mut dir) = (strings(), strings(), strings(), strings());
        let mut proto = UInt8Builder::with_capacity(n);
        let (mut src, mut dst, mut status) = (strings(), strings(), strings());
        let (mut bytes, mut packets, mut records) = (
            UInt64Builder::with_capacity(n),
            UInt64Builder::with_capacity(n),
            UInt64Builder::with_capacity(n),
        );
        for (k, s) in self.sorted() {
            if from.is_some_and(|f| k.0 < f) || to.is_some_and(|t| k.0 >= t) {
                continue;
            }
            start.append_value(k.0);
            end.append_value(k.1);
            fl.append_value(&k.2);
            iface.append_option(k.3.as_deref());
            att.append_option(k.4.as_deref());
            dir.append_option(k.5.as_deref());
            proto.append_option(k.6);
            src.append_option(k.7.as_deref());
            dst.append_option(k.8.as_deref());
            status.append_value(&k.9);
            bytes.append_value(s.0);
            packets.append_value(s.1);
            records.append_value(s.2);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(fl.finish()),
            Arc::new(iface.finish()),
            Arc::new(att.finish()),
            Arc::new(dir.finish()),
            Arc::new(proto.finish()),
            Arc::new(src.finish()),
            Arc::new(dst.finish()),
            Arc::new(status.finish()),
            Arc::new(bytes.finish()),
            Arc::new(packets.finish()),
            Arc::new(records.finish()),
        ];
        RecordBatch::try_new(Self::schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::record::FlowLogRecord;

    fn record(start: i64, bytes: u64, dir: &str) -> FlowLogRecord {
        FlowLogRecord {
            flow_log_id: "fl-1".into(),
            interface: Some("eth0".into()),
            direction: Some(dir.into()),
            protocol: Some(6),
            packets: Some(2),
            bytes,
            start,
            end: start + 60,
            log_status: "OK".into(),
            ..Default::default()
        }
    }

    #[test]
    fn sums_per_key_survive_the_footer_and_merge() {
        let mut a = Rollup::default();
        a.add(&Row::of(&record(0, 100, "in")));
        a.add(&Row::of(&record(0, 50, "in")));
        a.add(&Row::of(&record(0, 7, "out")));
        assert_eq!(a.len(), 2);
        let kv = a.key_value().unwrap();
        let back = Rollup::decode(kv.value.as_deref().unwrap()).unwrap();
        assert_eq!(back, a);
        let mut b = Rollup::default();
        b.add(&Row::of(&record(0, 1, "in")));
        b.add(&Row::of(&record(60, 1, "in")));
        let mut m = a.clone();
        m.merge(b);
        assert_eq!(m.len(), 3);
        let batch = m.batch(Some(0), Some(60)).unwrap();
        assert_eq!(batch.num_rows(), 2, "only windows starting in range");
        // Too many keys: nothing is kept, nothing written, and a merge
        // with it has none either.
        let mut big = Rollup::default();
        for i in 0..=MAX_ROWS as i64 {
            big.add(&Row::of(&record(i * 60, 1, "in")));
        }
        assert!(big.is_empty() && big.key_value().is_none());
        let mut m2 = a.clone();
        m2.merge(big);
        assert!(m2.key_value().is_none());
        // A flipped character fails the CRC: treated as absent.
        let mut text = kv.value.unwrap();
        text = text.replacen("150", "151", 1);
        assert!(Rollup::decode(&text).is_none());
    }
}
