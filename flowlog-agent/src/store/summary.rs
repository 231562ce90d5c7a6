//! What a file's footer summarises (its [rollup](super::rollup) and
//! [sketches](super::sketch)), read from the Arrow batches the writer
//! encodes, on a thread of its own beside Parquet's encoding: on a router
//! with two cores the summaries then cost the write little wall time.

use std::sync::mpsc;

use datafusion::{
    arrow::{
        array::{Array, AsArray, RecordBatch},
        datatypes::{Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type},
    },
    parquet::file::metadata::KeyValue,
};

use super::{rollup::Rollup, schema, sketch};
use crate::record::FlowLogRecord;

/// The fields of one record the summaries read, borrowed, as stored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Row<'a> {
    pub start: i64,
    pub end: i64,
    pub flow_log_id: &'a str,
    pub interface: Option<&'a str>,
    pub attachment_id: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub protocol: Option<u8>,
    pub src_region: Option<&'a str>,
    pub dst_region: Option<&'a str>,
    pub log_status: &'a str,
    pub bytes: u64,
    pub packets: Option<u64>,
    pub srcaddr: Option<&'a str>,
    pub srcport: Option<u16>,
    pub dstaddr: Option<&'a str>,
    pub dstport: Option<u16>,
    pub rtt: Option<u32>,
    pub rtt_client: Option<u32>,
    pub rtt_server: Option<u32>,
}

impl<'a> Row<'a> {
    /// A record's row, narrowed as the Logstore stores it.
    pub fn of(r: &'a FlowLogRecord) -> Self {
        Self {
            start: r.start,
            end: r.end,
            flow_log_id: &r.flow_log_id,
            interface: r.interface.as_deref(),
            attachment_id: r.attachment_id.as_deref(),
            direction: r.direction.as_deref(),
            protocol: schema::narrow(r.protocol),
            src_region: r.src_region_id.as_deref(),
            dst_region: r.dst_region_id.as_deref(),
            log_status: &r.log_status,
            bytes: r.bytes,
            packets: r.packets,
            srcaddr: r.srcaddr.as_deref(),
            srcport: schema::narrow(r.srcport),
            dstaddr: r.dstaddr.as_deref(),
            dstport: schema::narrow(r.dstport),
            rtt: r.rtt,
            rtt_client: r.rtt_client_side,
            rtt_server: r.rtt_server_side,
        }
    }
}

/// A file's summaries, built row by row.
#[derive(Default)]
pub struct Summaries {
    pub rollup: Rollup,
    pub sketches: sketch::Builder,
}

impl Summaries {
    pub fn add(&mut self, r: &Row<'_>) {
        self.rollup.add(r);
        self.sketches.add(r);
    }

    /// Adds every row of a batch of the Logstore's schema; `false` (and
    /// nothing added) for a batch of another.
    pub fn add_batch(&mut self, b: &RecordBatch) -> bool {
        macro_rules! col {
            ($name:literal, $as:ident $(, $t:ty)?) => {
                match b.column_by_name($name).and_then(|c| c.$as$(::<$t>)?()) {
                    Some(c) => c,
                    None => return false,
                }
            };
        }
        let (start, end) = (
            col!("start", as_primitive_opt, Int64Type),
            col!("end", as_primitive_opt, Int64Type),
        );
        let flow_log = col!("flow_log_id", as_string_opt, i32);
        let interface = col!("interface", as_string_opt, i32);
        let attachment = col!("attachment_id", as_string_opt, i32);
        let direction = col!("direction", as_string_opt, i32);
        let protocol = col!("protocol", as_primitive_opt, UInt8Type);
        let (src_region, dst_region) = (
            col!("src_region_id", as_string_opt, i32),
            col!("dst_region_id", as_string_opt, i32),
        );
        let status = col!("log_status", as_string_opt, i32);
        let (bytes, packets) = (
            col!("bytes", as_primitive_opt, UInt64Type),
            col!("packets", as_primitive_opt, UInt64Type),
        );
        let (src, dst) = (
            col!("srcaddr", as_string_opt, i32),
            col!("dstaddr", as_string_opt, i32),
        );
        let (sport, dport) = (
            col!("srcport", as_primitive_opt, UInt16Type),
            col!("dstport", as_primitive_opt, UInt16Type),
        );
        let rtt = col!("rtt", as_primitive_opt, UInt32Type);
        let (client, server) = (
            col!("rtt_client_side", as_primitive_opt, UInt32Type),
            col!("rtt_server_side", as_primitive_opt, UInt32Type),
        );
        fn s(a: &datafusion::arrow::array::StringArray, i: usize) -> Option<&str> {
            (!a.is_null(i)).then(|| a.value(i))
        }
        for i in 0..b.num_rows() {
            let row = Row {
                start: start.value(i),
                end: end.value(i),
                flow_log_id: flow_log.value(i),
                interface: s(interface, i),
                attachment_id: s(attachment, i),
                direction: s(direction, i),
                protocol: (!protocol.is_null(i)).then(|| protocol.value(i)),
                src_region: s(src_region, i),
                dst_region: s(dst_region, i),
                log_status: status.value(i),
                bytes: bytes.value(i),
                packets: (!packets.is_null(i)).then(|| packets.value(i)),
                srcaddr: s(src, i),
                srcport: (!sport.is_null(i)).then(|| sport.value(i)),
                dstaddr: s(dst, i),
                dstport: (!dport.is_null(i)).then(|| dport.value(i)),
                rtt: (!rtt.is_null(i)).then(|| rtt.value(i)),
                rtt_client: (!client.is_null(i)).then(|| client.value(i)),
                rtt_server: (!server.is_null(i)).then(|| server.value(i)),
            };
            self.add(&row);
        }
        true
    }

    /// The footer entries: each summary that is not too large to keep.
    pub fn key_values(self) -> Vec<KeyValue> {
        [
            self.rollup.key_value(),
            sketch::key_value(&self.sketches.finish()),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Batches in flight to the summarising thread at most.
const IN_FLIGHT: usize = 2;

/// Runs `write`, which hands each batch it encodes to its argument, while
/// a second thread summarises those batches. The summaries are `None` if
/// a batch was not of the Logstore's schema or the thread was lost: the
/// file is then written without them, and queries over it read the
/// records.
pub fn beside<T>(write: impl FnOnce(&mut dyn FnMut(&RecordBatch)) -> T) -> (T, Option<Summaries>) {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<RecordBatch>(IN_FLIGHT);
        let worker = scope.spawn(move || {
            let mut s = Summaries::default();
            let mut ok = true;
            for b in rx {
                ok = ok && s.add_batch(&b);
            }
            ok.then_some(s)
        });
        let mut lost = false;
        let out = write(&mut |b: &RecordBatch| {
            // A clone of a batch shares its buffers.
            lost = lost || tx.send(b.clone()).is_err();
        });
        drop(tx);
        let summaries = worker.join().ok().flatten().filter(|_| !lost);
        (out, summaries)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<FlowLogRecord> {
        (0..300u32)
            .map(|i| FlowLogRecord {
                flow_log_id: "fl-1".into(),
                interface: Some(["eth0", "eth1"][i as usize % 2].into()),
                srcaddr: Some(format!("10.0.{}.{}", i % 7, i % 11)),
                srcport: Some(1000 + i),
                dstaddr: Some("10.9.0.1".into()),
                dstport: Some(443),
                protocol: Some([6, 17][i as usize % 2]),
                direction: Some(["in", "out", "in"][i as usize % 3].into()),
                packets: Some(u64::from(i % 5 + 1)),
                bytes: u64::from(i * 40),
                rtt: (i % 4 == 0).then_some(1000 + i * 3),
                rtt_client_side: (i % 8 == 0).then_some(100 + i),
                src_region_id: Some("r-1".into()),
                dst_region_id: (i % 3 == 0).then(|| "".into()),
                start: 600,
                end: 1200,
                log_status: if i == 7 { "SKIPDATA" } else { "OK" }.into(),
                ..Default::default()
            })
            .collect()
    }

    /// The writer's thread reads batches; tests and tools read records:
    /// both must give the same footer, byte for byte.
    #[test]
    fn batches_on_a_second_thread_summarise_as_records_do() {
        let rs = records();
        let mut by_record = Summaries::default();
        for r in &rs {
            by_record.add(&Row::of(r));
        }
        let ((), by_batch) = beside(|summarize| {
            for chunk in rs.chunks(64) {
                let mut b = schema::BatchBuilder::with_capacity(chunk.len());
                chunk.iter().for_each(|r| b.append(r));
                if let Ok(batch) = b.finish() {
                    summarize(&batch);
                }
            }
        });
        let by_batch = by_batch.map(Summaries::key_values).unwrap_or_default();
        let by_record = by_record.key_values();
        assert_eq!(by_batch.len(), 2, "a rollup and sketches");
        assert_eq!(by_batch, by_record);
        // A batch of another schema: no summaries, not wrong ones.
        let ((), none) = beside(|summarize| {
            let other =
                RecordBatch::new_empty(std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()));
            summarize(&other);
        });
        assert!(none.is_none());
    }
}
