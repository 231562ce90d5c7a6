//! The exposition and status.json read the same figures.

use super::*;

#[test]
fn status_json_and_the_exposition_show_the_same_figures() {
    let dir = flowlog_tests::agent::TempDir::new().expect("a scratch directory");
    let t = Telemetry::new(dir.path(), AgentInfo::default());
    t.capture().skipped_packets.inc_by(7);
    t.capture().malformed.add(
        MalformedLabels {
            interface: "eth0".into(),
            direction: "in".into(),
            reason: "ipv4-header".into(),
        },
        3,
        180,
    );
    t.journal().update(JournalTotals {
        cuts_written: 5,
        sealed_windows: 2,
        ..Default::default()
    });
    t.sinks()
        .records_by_sink
        .get_or_create(&SinkLabels::of("logstore"))
        .inc_by(11);
    t.jetstream().connected.set(1);
    let text = t.encode();
    for line in [
        "flowlog_skipped_packets_total 7",
        "flowlog_malformed_packets_total{interface=\"eth0\",direction=\"in\",reason=\"ipv4-header\"} 3",
        "flowlog_malformed_bytes_total{interface=\"eth0\",direction=\"in\",reason=\"ipv4-header\"} 180",
        "flowlog_journal_cuts_written_total 5",
        "flowlog_journal_sealed_windows 2",
        "flowlog_records_published_total{sink=\"logstore\"} 11",
        "flowlog_jetstream_connected 1",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    let s = t.snapshot();
    assert_eq!(s.figures.skipped.packets, 7);
    assert_eq!(
        s.figures.malformed["eth0/in/ipv4-header"],
        Totals {
            packets: 3,
            bytes: 180
        }
    );
    assert_eq!(
        (s.figures.journal_cuts_written, s.figures.journal_sealed_windows),
        (5, 2)
    );
    assert!(s.figures.jetstream_connected);
    // The file is one flat object, as before the split.
    t.persist().expect("status.json written");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(STATUS_FILE)).expect("reads")).expect("JSON");
    assert_eq!(v["skipped"]["packets"], 7);
    assert_eq!(v["journal-cuts-written"], 5);
    assert_eq!(v["state"], "");
}

#[test]
fn a_running_total_only_moves_a_counter_forward() {
    let c = Counter::default();
    advance(&c, 10);
    advance(&c, 4);
    advance(&c, 12);
    assert_eq!(c.get(), 12);
}
