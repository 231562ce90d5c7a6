//! Write → read round trips through real Parquet files and DataFusion.
use super::*;
use crate::{
    model::{LogstoreRef, Window},
    record::FlowLogRecord,
    store::Writer,
};

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "flowlog-query-{}",
        crate::state::random::string(crate::state::random::LOWER_ALNUM, 10).unwrap_or_default()
    ));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// A scratch data directory with one Logstore `p/l`: (data dir, the
/// Logstore, a writer, the Logstore's directory).
fn logstore() -> (PathBuf, LogstoreRef, Writer, PathBuf) {
    let data = scratch();
    let dest = LogstoreRef {
        project: "p".into(),
        logstore: "l".into(),
    };
    let w = Writer::new(&data);
    let dir = crate::store::logstore_dir(&data, &dest);
    (data, dest, w, dir)
}

/// Writes records of one window, failing the test on error.
fn put(w: &Writer, dest: &LogstoreRef, start: i64, records: &[FlowLogRecord]) -> PathBuf {
    w.write_records(dest, "fl-1", window(start), records)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn rec(src: &str, bytes: u64, start: i64, status: &str) -> FlowLogRecord {
    FlowLogRecord {
        version: 1,
        account_id: Some("acct".into()),
        cen_id: Some("cen-1".into()),
        flow_log_id: "fl-1".into(),
        interface: Some("eth0".into()),
        srcaddr: (status == "OK").then(|| src.to_owned()),
        srcport: Some(1000),
        dstaddr: Some("10.9.9.9".into()),
        dstport: Some(53),
        protocol: Some(17),
        direction: Some("in".into()),
        packets: Some(1),
        bytes,
        start,
        end: start + 60,
        log_status: status.into(),
        ..Default::default()
    }
}

fn window(start: i64) -> Window {
    Window {
        start_ns: i128::from(start) * 1_000_000_000,
        end_ns: i128::from(start + 60) * 1_000_000_000,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn round_trip_names_ranges_and_corrupt_files() {
    let (data, dest, w, _) = logstore();
    // Two windows an hour apart (two partitions).
    let t0 = 1_796_040_000;
    let paths = [
        w.write_records(
            &dest,
            "fl-1",
            window(t0),
            &[rec("10.0.0.1", 100, t0, "OK"), rec("10.0.0.2", 50, t0, "OK")],
        ),
        w.write_records(
            &dest,
            "fl-1",
            window(t0 + 3600),
            &[
                rec("10.0.0.1", 7, t0 + 3600, "OK"),
                rec("", 0, t0 + 3600, "NODATA"),
            ],
        ),
    ]
    .map(|p| p.unwrap_or_else(|e| panic!("{e}")));
    assert!(paths[0].to_string_lossy().contains("dt=2026-11-30/hour=12"));
    let dir = crate::store::logstore_dir(&data, &dest);
    let q = |range: TimeRange, sql: &str| rt().block_on(run(&dir, range, sql));
    let sum_sql = "SELECT srcaddr, sum(bytes) AS b FROM logs WHERE \"log-status\" = 'OK' GROUP BY srcaddr ORDER BY srcaddr";
    let all = q(TimeRange::default(), sum_sql).unwrap_or_else(|e| panic!("{e}"));
    let rows = to_json_rows(&all.batches).unwrap_or_default();
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"srcaddr": "10.0.0.1", "b": 107}),
            serde_json::json!({"srcaddr": "10.0.0.2", "b": 50})
        ]
    );
    assert_eq!((all.files, all.skipped.len()), (2, 0));
    // snake_case names in logs_raw, the same data.
    let raw = q(
        TimeRange::default(),
        "SELECT count(*) AS n FROM logs_raw WHERE log_status = 'NODATA'",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        to_json_rows(&raw.batches).unwrap_or_default(),
        vec![serde_json::json!({"n": 1})]
    );
    // Time range: only the second window; the first file is not even opened.
    let late = q(
        TimeRange {
            from: Some(t0 + 1800),
            to: None,
        },
        "SELECT sum(bytes) AS b FROM logs",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(late.files, 1);
    assert_eq!(
        to_json_rows(&late.batches).unwrap_or_default(),
        vec![serde_json::json!({"b": 7})]
    );
    // A truncated file and a foreign one are skipped and named.
    let bytes = std::fs::read(&paths[0]).unwrap_or_default();
    let part = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
    let _ = std::fs::write(
        part.join("1796040000-1796040060-fl-1-trunc.parquet"),
        &bytes[..bytes.len() / 2],
    );
    let _ = std::fs::write(
        part.join("1796040000-1796040060-fl-1-junk.parquet"),
        b"not parquet at all",
    );
    // A temporary file of a write in progress is invisible.
    let _ = std::fs::write(part.join(".1796040000-x.parquet.tmp"), b"partial");
    let partial = q(TimeRange::default(), sum_sql).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(partial.skipped.len(), 2, "{:?}", partial.skipped);
    assert!(
        partial
            .skipped
            .iter()
            .all(|(p, _)| p.to_string_lossy().contains("trunc") || p.to_string_lossy().contains("junk"))
    );
    assert_eq!(to_json_rows(&partial.batches).unwrap_or_default(), rows);
    // Bad SQL and missing stores are errors of their own kind.
    assert!(matches!(
        q(TimeRange::default(), "SELEC 1"),
        Err(QueryError::Sql(_))
    ));
    assert!(matches!(
        q(TimeRange::default(), "SELECT nope FROM logs"),
        Err(QueryError::Sql(_))
    ));
    assert!(matches!(
        rt().block_on(run(&data.join("none"), TimeRange::default(), "SELECT 1")),
        Err(QueryError::NoLogstore(_))
    ));
    assert!(matches!(
        q(
            TimeRange {
                from: Some(5),
                to: Some(5)
            },
            "SELECT 1"
        ),
        Err(QueryError::Range { .. })
    ));
    // Rendering.
    let csv = render(&all.batches, Format::Csv).unwrap_or_default();
    assert!(csv.starts_with("srcaddr,b\n10.0.0.1,107\n"), "{csv}");
    assert!(
        render(&all.batches, Format::Table)
            .unwrap_or_default()
            .contains("| 10.0.0.1 | 107 |")
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn empty_logstore_answers_with_no_rows() {
    let data = scratch();
    let dir = data.join("empty");
    let _ = std::fs::create_dir_all(&dir);
    let r = rt()
        .block_on(run(&dir, TimeRange::default(), "SELECT count(*) AS n FROM logs"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        to_json_rows(&r.batches).unwrap_or_default(),
        vec![serde_json::json!({"n": 0})]
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn statements_beyond_reading_are_refused() {
    let data = scratch();
    let dir = data.join("empty");
    let _ = std::fs::create_dir_all(&dir);
    let target = data.join("copied.csv");
    let statements = [
        format!("COPY (SELECT 1 AS x) TO '{}' STORED AS CSV", target.display()),
        "CREATE EXTERNAL TABLE secrets (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'".to_owned(),
        "CREATE VIEW mine AS SELECT 1".to_owned(),
        "DROP VIEW logs".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        // `stored` is an in-memory table here (no files): it would take it.
        "INSERT INTO stored SELECT * FROM logs_raw".to_owned(),
    ];
    for sql in &statements {
        match rt().block_on(run(&dir, TimeRange::default(), sql)) {
            Err(QueryError::Sql(m)) => assert!(!m.is_empty()),
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert!(!target.exists(), "COPY wrote a file");
    // Reading still works.
    assert!(
        rt().block_on(run(&dir, TimeRange::default(), "SELECT 1 AS one"))
            .is_ok()
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// Sum of `bytes` and the files read, over the whole Logstore.
fn total(dir: &Path) -> (u64, usize) {
    let r = rt()
        .block_on(run(dir, TimeRange::default(), "SELECT sum(bytes) AS b FROM logs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = to_json_rows(&r.batches).unwrap_or_default();
    let b = rows[0]["b"].as_u64().unwrap_or(0);
    (b, r.files)
}

#[test]
fn compaction_merges_past_hours_without_reading_anything_twice() {
    use crate::store::compact;
    let (data, dest, w, dir) = logstore();
    // 120 one-second windows in one past hour, 30 in the current one.
    let t0 = 1_796_040_000;
    let now = t0 + 3600 + 30 + compact::GRACE_SECS;
    for i in 0..150 {
        let start = if i < 120 { t0 + i } else { t0 + 3600 + i - 120 };
        w.write_records(
            &dest,
            "fl-1",
            window(start),
            &[rec("10.0.0.1", 10 + i as u64, start, "OK")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let want = (0..150u64).map(|i| 10 + i).sum::<u64>();
    assert_eq!(total(&dir), (want, 150));
    let done = compact::compact_logstore(&dir, now, compact::GRACE_SECS, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.partitions, done.files_merged, done.records), (1, 120, 120));
    // The current hour is left alone: 30 files and one merged file.
    assert_eq!(total(&dir), (want, 31));
    // A leftover source beside its merged file (a crash between the
    // rename and the removal) is never read twice, and the next pass
    // removes it.
    let past = dir.join(crate::store::partition(t0));
    let merged = compact::data_files(&past);
    assert_eq!(merged.len(), 1);
    let first_source = compact::sources_of(&merged[0].1)
        .into_iter()
        .next()
        .unwrap_or_default();
    let again = put(&w, &dest, t0, &[rec("10.0.0.1", 10, t0, "OK")]);
    std::fs::rename(&again, past.join(&first_source)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(total(&dir), (want, 31));
    // A late window of the past hour is merged with the merged file.
    w.write_records(
        &dest,
        "fl-1",
        window(t0 + 500),
        &[rec("10.0.0.1", 1000, t0 + 500, "OK")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(total(&dir), (want + 1000, 32));
    let done = compact::compact_logstore(&dir, now, compact::GRACE_SECS, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.files_merged, done.leftovers_removed), (2, 1));
    assert_eq!(total(&dir), (want + 1000, 31));
    assert_eq!(compact::data_files(&past).len(), 1);
    // A collector's message file already merged is not stored again.
    let message = || {
        w.write_once(
            &dest,
            "fl-1",
            window(t0 + 7),
            "msg-7",
            &[rec("10.0.0.1", 5, t0 + 7, "OK")],
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    assert!(message().is_some());
    compact::compact_logstore(&dir, now, compact::GRACE_SECS, 2).unwrap_or_else(|e| panic!("{e}"));
    assert!(message().is_none(), "a merged message was stored again");
    assert_eq!(total(&dir), (want + 1005, 31));
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn a_range_over_too_many_files_is_refused_and_a_narrower_one_answers() {
    let (data, dest, w, dir) = logstore();
    let t0 = 1_796_040_000;
    for i in 0..10 {
        put(&w, &dest, t0 + i, &[rec("10.0.0.1", 1, t0 + i, "OK")]);
    }
    let q = |range| rt().block_on(run_bounded(&dir, range, "SELECT count(*) AS n FROM logs", 10, 5));
    match q(TimeRange::default()) {
        Err(QueryError::TooManyFiles { files: 10, max: 5 }) => {}
        other => panic!("expected TooManyFiles, got {other:?}"),
    }
    let narrow = q(TimeRange {
        from: Some(t0),
        to: Some(t0 + 4),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(narrow.files, 4);
    let _ = std::fs::remove_dir_all(&data);
}

/// Sum of bytes, and the files skipped, over everything.
fn sum_and_skipped(dir: &Path) -> (u64, Vec<String>) {
    let r = rt()
        .block_on(run(dir, TimeRange::default(), "SELECT sum(bytes) AS b FROM logs"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = to_json_rows(&r.batches).unwrap_or_default();
    (
        rows[0]["b"].as_u64().unwrap_or(0),
        r.skipped.into_iter().map(|(_, why)| why).collect(),
    )
}

#[test]
fn a_foreign_file_with_other_column_types_is_skipped_with_its_reason() {
    use datafusion::arrow::{
        array::{ArrayRef, Int64Array, StringArray},
        datatypes::{DataType, Field, Schema},
    };
    let (data, dest, w, dir) = logstore();
    let t0 = 1_796_040_000;
    put(&w, &dest, t0, &[rec("10.0.0.1", 100, t0, "OK")]);
    // Another engine's file in the tree: `bytes` as text.
    let foreign = dir
        .join(crate::store::partition(t0))
        .join(format!("{t0}-{}-other-x.parquet", t0 + 60));
    let schema = Arc::new(Schema::new(vec![
        Field::new("bytes", DataType::Utf8, false),
        Field::new("start", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["a lot"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![t0])) as ArrayRef,
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let f = File::create(&foreign).unwrap_or_else(|e| panic!("{e}"));
    let mut pw =
        datafusion::parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap_or_else(|e| panic!("{e}"));
    pw.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    pw.close().unwrap_or_else(|e| panic!("{e}"));
    let (b, skipped) = sum_and_skipped(&dir);
    assert_eq!(b, 100);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("column bytes is Utf8"), "{skipped:?}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Single-bit flips anywhere before a file's footer: the file is skipped
/// with the reason every time, never read as a wrong sum.
#[test]
fn flipped_bits_never_read_back_as_wrong_sums() {
    let (data, dest, w, dir) = logstore();
    let t0 = 1_796_040_000;
    let records: Vec<FlowLogRecord> = (0..500)
        .map(|i| rec(&format!("10.0.{}.{}", i / 250, i % 250), 1000 + i, t0, "OK"))
        .collect();
    let path = put(&w, &dest, t0, &records);
    let want: u64 = records.iter().map(|r| r.bytes).sum();
    assert_eq!(sum_and_skipped(&dir), (want, vec![]));
    let clean = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let footer_len = u32::from_le_bytes(
        clean[clean.len() - 8..clean.len() - 4]
            .try_into()
            .unwrap_or_default(),
    ) as usize;
    let footer_at = clean.len() - 8 - footer_len;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    // 60 flips in the data before the footer: skipped every time, with the
    // reason; 20 in the footer: skipped, or read exactly — never wrong.
    for trial in 0..80 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let at = if trial < 60 {
            4 + (rng as usize) % (footer_at - 4)
        } else {
            footer_at + (rng as usize) % footer_len
        };
        let mut damaged = clean.clone();
        damaged[at] ^= 1 << (trial % 8);
        std::fs::write(&path, &damaged).unwrap_or_else(|e| panic!("{e}"));
        let outcome = rt()
            .block_on(run(
                &dir,
                TimeRange::default(),
                "SELECT sum(bytes) AS b FROM logs",
            ))
            .map(|r| {
                (
                    to_json_rows(&r.batches).unwrap_or_default()[0]["b"]
                        .as_u64()
                        .unwrap_or(0),
                    r.skipped.len(),
                )
            });
        match outcome {
            Ok((0, 1)) => {}
            Ok((b, 0)) if trial >= 60 && b == want => {}
            other => panic!("trial {trial}, byte {at} of {}: {other:?}", clean.len()),
        }
    }
    let _ = std::fs::remove_dir_all(&data);
}

/// The rollups in the files' footers answer totals and series exactly as
/// the records do, before and after compaction merges them; a file written
/// without one (an older layout) makes a rollup query refuse, so callers
/// read the records.
#[test]
fn rollups_answer_like_the_records_and_say_when_they_cannot() {
    use crate::store::compact;
    let (data, dest, w, dir) = logstore();
    let t0 = 1_796_040_000;
    for i in 0..6 {
        let start = t0 + i * 60;
        let mut rs = vec![
            rec("10.0.0.1", 100 + i as u64, start, "OK"),
            rec("10.0.0.2", 7, start, "OK"),
        ];
        rs[1].direction = Some("out".into());
        rs[1].protocol = Some(6);
        if i == 3 {
            rs.push(rec("", 0, start, "SKIPDATA"));
        }
        put(&w, &dest, start, &rs);
    }
    let range = TimeRange {
        from: Some(t0),
        to: Some(t0 + 3600),
    };
    let pairs = [
        (
            "SELECT start, direction, protocol, \"log-status\" AS s, sum(bytes) AS b, sum(packets) AS p, count(*) AS n \
             FROM logs GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
            "SELECT start, direction, protocol, \"log-status\" AS s, sum(bytes) AS b, sum(packets) AS p, sum(records) AS n \
             FROM rollup GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ),
        (
            "SELECT direction, sum(bytes) AS b FROM logs WHERE start >= 1796040120 GROUP BY 1 ORDER BY 1",
            "SELECT direction, sum(bytes) AS b FROM rollup WHERE start >= 1796040120 GROUP BY 1 ORDER BY 1",
        ),
    ];
    let check = |when: &str| {
        for (records, rolled) in pairs {
            let a = rt()
                .block_on(run(&dir, range, records))
                .unwrap_or_else(|e| panic!("{e}"));
            let b = rt()
                .block_on(run_rollups(&dir, range, rolled, MAX_ROWS))
                .unwrap_or_else(|e| panic!("{when}: {e}"));
            let (a, b) = (
                to_json_rows(&a.batches).unwrap_or_default(),
                to_json_rows(&b.batches).unwrap_or_default(),
            );
            assert!(!a.is_empty());
            assert_eq!(a, b, "{when}: {records}");
        }
    };
    check("one file per window");
    let now = t0 + 2 * 3600 + compact::GRACE_SECS;
    let done = compact::compact_logstore(&dir, now, compact::GRACE_SECS, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.files_merged, 6);
    check("merged");
    // A file without a rollup in the range: the rollup query says so.
    let bare = put(&w, &dest, t0 + 600, &[rec("10.0.0.3", 1, t0 + 600, "OK")]);
    let props = Writer::properties();
    let file = std::fs::File::create(&bare).unwrap_or_else(|e| panic!("{e}"));
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema::schema(), Some(props))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut b = schema::BatchBuilder::with_capacity(1);
    b.append(&rec("10.0.0.3", 1, t0 + 600, "OK"));
    writer
        .write(&b.finish().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|e| panic!("{e}"));
    writer.close().unwrap_or_else(|e| panic!("{e}"));
    let err = rt()
        .block_on(run_rollups(&dir, range, "SELECT sum(bytes) FROM rollup", 10))
        .unwrap_err();
    assert!(matches!(err, QueryError::NoRollup(_)), "{err}");
    let _ = std::fs::remove_dir_all(data);
}

/// The sketches answer top talkers and the slowest connections exactly as
/// the records' SQL does, distinct five-tuples and RTT percentiles within
/// their error, before and after compaction; an open ranking is refused.
#[test]
fn sketches_answer_like_the_records_or_refuse() {
    use crate::store::{
        analyses::Metric,
        compact,
        sketch::{
            answer::{Panel, SketchQuery},
            talkers::Kind,
        },
    };
    let (data, dest, w, dir) = logstore();
    let t0 = 1_796_040_000;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // 90 windows of 60 s: a few heavy sources over a long flat tail.
    for i in 0..90 {
        let start = t0 + i * 60;
        let rs: Vec<FlowLogRecord> = (0..400)
            .map(|j| {
                let heavy = j % 4 == 0;
                let src = if heavy {
                    format!("10.0.0.{}", j % 3 + 1)
                } else {
                    format!("10.1.{}.{}", next(8), next(250))
                };
                let mut r = rec(&src, if heavy { 10_000 } else { 1 + next(500) }, start, "OK");
                r.srcport = Some(1024 + next(2000) as u32);
                r.protocol = Some(6);
                r.packets = Some(1 + next(9));
                r.direction = Some(if j % 5 == 0 { "out" } else { "in" }.into());
                r.rtt = (j % 3 == 0).then(|| 500 + next(80_000) as u32);
                r.rtt_client_side = r.rtt.map(|v| v / 4);
                r.src_region_id = Some("r-1".into());
                r.dst_region_id = Some(["r-2", ""][next(2) as usize].into());
                r
            })
            .collect();
        put(&w, &dest, start, &rs);
    }
    let range = TimeRange {
        from: Some(t0 + 600),
        to: Some(t0 + 90 * 60),
    };
    let query = |panel: Panel| SketchQuery {
        panel,
        flow_log_id: Some("fl-1".into()),
    };
    let sql = |q: &str| {
        let r = rt()
            .block_on(run(&dir, range, q))
            .unwrap_or_else(|e| panic!("{e}"));
        to_json_rows(&r.batches).unwrap_or_default()
    };
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let check = |when: &str| {
        let top = query(Panel::Top {
            kind: Kind::Sources,
            inbound: true,
            metric: Metric::Bytes,
            limit: 3,
        });
        let (rows, files, _) = run_sketch(&dir, range, &top).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert!(files > 0);
        let want = sql(
            "SELECT srcaddr, sum(bytes) AS bytes, sum(packets) AS packets, count(*) AS records FROM logs \
             WHERE \"log-status\" = 'OK' AND direction = 'in' GROUP BY srcaddr ORDER BY bytes DESC, srcaddr LIMIT 3",
        );
        assert_eq!(rows, want, "{when}: top sources");
        let slow = query(Panel::Slowest { limit: 20 });
        let (rows, _, _) = run_sketch(&dir, range, &slow).unwrap_or_else(|e| panic!("{when}: {e}"));
        let want = sql(
            "SELECT srcaddr, srcport, dstaddr, dstport, interface, \"start\", rtt, \"rtt-client-side\" AS client_side, \
                    \"rtt-server-side\" AS server_side, bytes FROM logs \
             WHERE \"log-status\" = 'OK' AND direction = 'in' AND rtt IS NOT NULL \
             ORDER BY rtt DESC, \"start\", srcaddr, srcport LIMIT 20",
        );
        assert_eq!(rows.len(), 20);
        for (a, b) in rows.iter().zip(&want) {
            for k in ["srcaddr", "srcport", "start", "rtt", "client_side", "bytes"] {
                assert_eq!(a[k], b[k], "{when}: slowest {k}: {a} vs {b}");
            }
        }
        let (rows, _, _) =
            run_sketch(&dir, range, &query(Panel::DistinctFlows)).unwrap_or_else(|e| panic!("{e}"));
        let want = sql(
            "SELECT direction, count(DISTINCT concat_ws('|', srcaddr, srcport, dstaddr, dstport, protocol)) AS flows \
             FROM logs WHERE \"log-status\" = 'OK' GROUP BY direction ORDER BY direction",
        );
        assert_eq!(rows.len(), want.len());
        for (a, b) in rows.iter().zip(&want) {
            assert_eq!(a["direction"], b["direction"]);
            let err = (num(&a["flows"]) - num(&b["flows"])).abs() / num(&b["flows"]);
            assert!(err < 0.05, "{when}: distinct {a} vs {b}");
        }
        let (rows, _, _) = run_sketch(&dir, range, &query(Panel::Latency)).unwrap_or_else(|e| panic!("{e}"));
        let want = sql(
            "SELECT CASE WHEN \"dst-region-id\" = '' THEN '(unmatched)' ELSE \"dst-region-id\" END AS dst, \
                    count(rtt) AS samples, percentile_cont(rtt, 0.5) AS p50, percentile_cont(rtt, 0.9) AS p90, \
                    max(rtt) AS max, percentile_cont(\"rtt-client-side\", 0.5) AS client_p50 \
             FROM logs WHERE \"log-status\" = 'OK' AND direction = 'in' AND rtt IS NOT NULL GROUP BY 1",
        );
        assert_eq!(rows.len(), want.len(), "{when}: {rows:?}");
        for b in &want {
            let a = rows
                .iter()
                .find(|a| a["dst"] == b["dst"])
                .unwrap_or_else(|| panic!("{when}: no row {b}"));
            assert_eq!(a["samples"], b["samples"]);
            assert_eq!(num(&a["max"]), num(&b["max"]));
            for k in ["p50", "p90", "client_p50"] {
                let err = (num(&a[k]) - num(&b[k])).abs() / num(&b[k]);
                assert!(err < 0.03, "{when}: {k} {a} vs {b}");
            }
        }
        // The flat tail cannot be ranked from kept lists: refused.
        let open = query(Panel::Top {
            kind: Kind::Sources,
            inbound: true,
            metric: Metric::Bytes,
            limit: 200,
        });
        let err = run_sketch(&dir, range, &open).err();
        assert!(matches!(err, Some(QueryError::NoRollup(_))), "{when}: {err:?}");
    };
    check("one file per window");
    let now = t0 + 3 * 3600 + compact::GRACE_SECS;
    let done = compact::compact_logstore(&dir, now, compact::GRACE_SECS, 2).unwrap_or_else(|e| panic!("{e}"));
    assert!(done.files_merged >= 60, "{done:?}");
    check("merged");
    let _ = std::fs::remove_dir_all(data);
}
