//! The Logstore's columnar layout: one Arrow/Parquet column per record
//! field, named in snake_case (`log_status`, `account_id`, …) so every engine
//! reads them without quoting. The query layer adds the hyphenated names of
//! the record table (`"log-status"`, …) as aliases.

use std::sync::Arc;

use datafusion::arrow::{
    array::{
        ArrayRef, Int64Builder, RecordBatch, StringBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
        UInt64Builder,
    },
    datatypes::{DataType, Field, Schema, SchemaRef},
    error::ArrowError,
};

use crate::record::FlowLogRecord;

/// (column, record-table name) pairs where they differ.
pub const ALIASES: &[(&str, &str)] = &[
    ("account_id", "account-id"),
    ("cen_id", "cen-id"),
    ("flow_log_id", "flow-log-id"),
    ("log_status", "log-status"),
    ("tcp_flags", "tcp-flags"),
    ("first_seen", "first-seen"),
    ("last_seen", "last-seen"),
    ("rtt_server_side", "rtt-server-side"),
    ("rtt_client_side", "rtt-client-side"),
    ("attachment_id", "attachment-id"),
    ("region_id", "region-id"),
    ("src_region_id", "src-region-id"),
    ("dst_region_id", "dst-region-id"),
    ("src_network", "src-network"),
    ("dst_network", "dst-network"),
];

/// The file schema, in column order.
pub fn schema() -> SchemaRef {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Arc::new(Schema::new(vec![
        f("version", DataType::UInt32, false),
        // Nullable: a LogFormatString may leave them out (files written
        // before that have them non-null, which a nullable column reads).
        f("account_id", DataType::Utf8, true),
        f("cen_id", DataType::Utf8, true),
        f("flow_log_id", DataType::Utf8, false),
        f("interface", DataType::Utf8, true),
        f("netns", DataType::Utf8, true),
        f("srcaddr", DataType::Utf8, true),
        f("srcport", DataType::UInt16, true),
        f("dstaddr", DataType::Utf8, true),
        f("dstport", DataType::UInt16, true),
        f("protocol", DataType::UInt8, true),
        f("direction", DataType::Utf8, true),
        f("packets", DataType::UInt64, true),
        f("bytes", DataType::UInt64, false),
        f("rtt", DataType::UInt32, true),
        f("start", DataType::Int64, false),
        f("end", DataType::Int64, false),
        f("log_status", DataType::Utf8, false),
        f("tcp_flags", DataType::UInt16, true),
        f("first_seen", DataType::Int64, true),
        f("last_seen", DataType::Int64, true),
        f("rtt_server_side", DataType::UInt32, true),
        f("rtt_client_side", DataType::UInt32, true),
        // Enrichment; files from before it lack these columns (read as null).
        f("attachment_id", DataType::Utf8, true),
        f("region_id", DataType::Utf8, true),
        f("src_region_id", DataType::Utf8, true),
        f("dst_region_id", DataType::Utf8, true),
        f("src_network", DataType::Utf8, true),
        f("dst_network", DataType::Utf8, true),
    ]))
}

pub(crate) fn narrow<T: TryFrom<u32>>(v: Option<u32>) -> Option<T> {
    v.and_then(|x| T::try_from(x).ok())
}

/// Column builders for one Arrow batch, filled a record at a time.
pub struct BatchBuilder {
    version: UInt32Builder,
    account: StringBuilder,
    cen: StringBuilder,
    flow_log: StringBuilder,
    interface: StringBuilder,
    netns: StringBuilder,
    src: StringBuilder,
    sport: UInt16Builder,
    dst: StringBuilder,
    dport: UInt16Builder,
    protocol: UInt8Builder,
    direction: StringBuilder,
    packets: UInt64Builder,
    bytes: UInt64Builder,
    rtt: UInt32Builder,
    start: Int64Builder,
    end: Int64Builder,
    status: StringBuilder,
    flags: UInt16Builder,
    first: Int64Builder,
    last: Int64Builder,
    rtt_s: UInt32Builder,
    rtt_c: UInt32Builder,
    attachment: StringBuilder,
    region: StringBuilder,
    src_region: StringBuilder,
    dst_region: StringBuilder,
    src_network: StringBuilder,
    dst_network: StringBuilder,
    rows: usize,
}

impl BatchBuilder {
    pub fn with_capacity(n: usize) -> Self {
        let strings = || StringBuilder::with_capacity(n, n * 8);
        Self {
            version: UInt32Builder::with_capacity(n),
            account: strings(),
            cen: strings(),
            flow_log: strings(),
            interface: strings(),
            netns: strings(),
            src: strings(),
            sport: UInt16Builder::with_capacity(n),
            dst: strings(),
            dport: UInt16Builder::with_capacity(n),
            protocol: UInt8Builder::with_capacity(n),
            direction: strings(),
            packets: UInt64Builder::with_capacity(n),
            bytes: UInt64Builder::with_capacity(n),
            rtt: UInt32Builder::with_capacity(n),
            start: Int64Builder::with_capacity(n),
            end: Int64Builder::with_capacity(n),
            status: strings(),
            flags: UInt16Builder::with_capacity(n),
            first: Int64Builder::with_capacity(n),
            last: Int64Builder::with_capacity(n),
            rtt_s: UInt32Builder::with_capacity(n),
            rtt_c: UInt32Builder::with_capacity(n),
            attachment: strings(),
            region: strings(),
            src_region: strings(),
            dst_region: strings(),
            src_network: strings(),
            dst_network: strings(),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn append(&mut self, r: &FlowLogRecord) {
        self.version.append_value(r.version);
        self.account.append_option(r.account_id.as_deref());
        self.cen.append_option(r.cen_id.as_deref());
        self.flow_log.append_value(&r.flow_log_id);
        self.interface.append_option(r.interface.as_deref());
        self.netns.append_option(r.netns.as_deref());
        self.src.append_option(r.srcaddr.as_deref());
        self.sport.append_option(narrow::<u16>(r.srcport));
        self.dst.append_option(r.dstaddr.as_deref());
        self.dport.append_option(narrow::<u16>(r.dstport));
        self.protocol.append_option(narrow::<u8>(r.protocol));
        self.direction.append_option(r.direction.as_deref());
        self.packets.append_option(r.packets);
        self.bytes.append_value(r.bytes);
        self.rtt.append_option(r.rtt);
        self.start.append_value(r.start);
        self.end.append_value(r.end);
        self.status.append_value(&r.log_status);
        self.flags.append_option(narrow::<u16>(r.tcp_flags));
        self.first.append_option(r.first_seen);
        self.last.append_option(r.last_seen);
        self.rtt_s.append_option(r.rtt_server_side);
        self.rtt_c.append_option(r.rtt_client_side);
        self.attachment.append_option(r.attachment_id.as_deref());
        self.region.append_option(r.region_id.as_deref());
        self.src_region.append_option(r.src_region_id.as_deref());
        self.dst_region.append_option(r.dst_region_id.as_deref());
        self.src_network.append_option(r.src_network.as_deref());
        self.dst_network.append_option(r.dst_network.as_deref());
        self.rows += 1;
    }

    /// The rows appended so far, as a batch; the builder starts over.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.version.finish()),
            Arc::new(self.account.finish()),
            Arc::new(self.cen.finish()),
            Arc::new(self.flow_log.finish()),
            Arc::new(self.interface.finish()),
            Arc::new(self.netns.finish()),
            Arc::new(self.src.finish()),
            Arc::new(self.sport.finish()),
            Arc::new(self.dst.finish()),
            Arc::new(self.dport.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.direction.finish()),
            Arc::new(self.packets.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.rtt.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.end.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.first.finish()),
            Arc::new(self.last.finish()),
            Arc::new(self.rtt_s.finish()),
            Arc::new(self.rtt_c.finish()),
            Arc::new(self.attachment.finish()),
            Arc::new(self.region.finish()),
            Arc::new(self.src_region.finish()),
            Arc::new(self.dst_region.finish()),
            Arc::new(self.src_network.finish()),
            Arc::new(self.dst_network.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

/// Converts records to one Arrow batch, in the given order.
pub fn to_batch<'a>(
    records: impl ExactSizeIterator<Item = &'a FlowLogRecord>,
) -> Result<RecordBatch, ArrowError> {
    let mut b = BatchBuilder::with_capacity(records.len());
    for r in records {
        b.append(r);
    }
    b.finish()
}
