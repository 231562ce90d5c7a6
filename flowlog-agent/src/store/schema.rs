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
];

/// The file schema, in column order.
pub fn schema() -> SchemaRef {
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Arc::new(Schema::new(vec![
        f("version", DataType::UInt32, false),
        f("account_id", DataType::Utf8, false),
        f("cen_id", DataType::Utf8, false),
        f("flow_log_id", DataType::Utf8, false),
        f("interface", DataType::Utf8, false),
        f("netns", DataType::Utf8, true),
        f("srcaddr", DataType::Utf8, true),
        f("srcport", DataType::UInt16, true),
        f("dstaddr", DataType::Utf8, true),
        f("dstport", DataType::UInt16, true),
        f("protocol", DataType::UInt8, true),
        f("direction", DataType::Utf8, true),
        f("packets", DataType::UInt64, false),
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
    ]))
}

fn narrow<T: TryFrom<u32>>(v: Option<u32>) -> Option<T> {
    v.and_then(|x| T::try_from(x).ok())
}

/// Converts records to one Arrow batch, in the given order.
pub fn to_batch<'a>(
    records: impl ExactSizeIterator<Item = &'a FlowLogRecord>,
) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    let strings = || StringBuilder::with_capacity(n, n * 8);
    let (mut version, mut packets, mut bytes) = (
        UInt32Builder::with_capacity(n),
        UInt64Builder::with_capacity(n),
        UInt64Builder::with_capacity(n),
    );
    let (mut account, mut cen, mut flow_log, mut interface, mut netns) =
        (strings(), strings(), strings(), strings(), strings());
    let (mut src, mut dst, mut direction, mut status) = (strings(), strings(), strings(), strings());
    let (mut sport, mut dport, mut flags) = (
        UInt16Builder::with_capacity(n),
        UInt16Builder::with_capacity(n),
        UInt16Builder::with_capacity(n),
    );
    let mut protocol = UInt8Builder::with_capacity(n);
    let (mut rtt, mut rtt_s, mut rtt_c) = (
        UInt32Builder::with_capacity(n),
        UInt32Builder::with_capacity(n),
        UInt32Builder::with_capacity(n),
    );
    let (mut start, mut end, mut first, mut last) = (
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
        Int64Builder::with_capacity(n),
    );
    for r in records {
        version.append_value(r.version);
        account.append_value(&r.account_id);
        cen.append_value(&r.cen_id);
        flow_log.append_value(&r.flow_log_id);
        interface.append_value(&r.interface);
        netns.append_option(r.netns.as_deref());
        src.append_option(r.srcaddr.as_deref());
        sport.append_option(narrow::<u16>(r.srcport));
        dst.append_option(r.dstaddr.as_deref());
        dport.append_option(narrow::<u16>(r.dstport));
        protocol.append_option(narrow::<u8>(r.protocol));
        direction.append_option(r.direction.as_deref());
        packets.append_value(r.packets);
        bytes.append_value(r.bytes);
        rtt.append_option(r.rtt);
        start.append_value(r.start);
        end.append_value(r.end);
        status.append_value(&r.log_status);
        flags.append_option(narrow::<u16>(r.tcp_flags));
        first.append_option(r.first_seen);
        last.append_option(r.last_seen);
        rtt_s.append_option(r.rtt_server_side);
        rtt_c.append_option(r.rtt_client_side);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(version.finish()),
        Arc::new(account.finish()),
        Arc::new(cen.finish()),
        Arc::new(flow_log.finish()),
        Arc::new(interface.finish()),
        Arc::new(netns.finish()),
        Arc::new(src.finish()),
        Arc::new(sport.finish()),
        Arc::new(dst.finish()),
        Arc::new(dport.finish()),
        Arc::new(protocol.finish()),
        Arc::new(direction.finish()),
        Arc::new(packets.finish()),
        Arc::new(bytes.finish()),
        Arc::new(rtt.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(status.finish()),
        Arc::new(flags.finish()),
        Arc::new(first.finish()),
        Arc::new(last.finish()),
        Arc::new(rtt_s.finish()),
        Arc::new(rtt_c.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}
