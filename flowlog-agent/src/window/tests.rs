//! Window aggregation: merging, and which records a window yields.
use super::*;
use crate::{
    model::JiffiesRef,
    record::{LOG_STATUS_NODATA, LOG_STATUS_OK, LOG_STATUS_SKIPDATA},
};

fn key(ifindex: u32, sport: u16) -> FlowKey {
    FlowKey {
        src_addr: [0; 16],
        dst_addr: [0; 16],
        ifindex,
        src_port: sport,
        dst_port: 80,
        protocol: 6,
        direction: 0,
        ip_version: 4,
        generation: 0,
    }
}

fn stats(packets: u64, bytes: u64, first: u64, last: u64, flags: u16) -> FlowStats {
    FlowStats {
        packets,
        bytes,
        first_seen_jiffies: first,
        last_seen_jiffies: last,
        tcp_flags: flags,
        _pad: [0; 6],
    }
}

fn atts() -> Vec<AttachmentInfo> {
    (1..=3)
        .map(|i| AttachmentInfo {
            ifindex: i,
            interface: format!("eth{i}"),
            netns: None,
            ..Default::default()
        })
        .collect()
}

fn id() -> Identity {
    Identity {
        account_id: "a".into(),
        cen_id: "c".into(),
        flow_log_id: "f".into(),
    }
}

const WINDOW: Window = Window {
    start_ns: 0,
    end_ns: 60_000_000_000,
};
const CLOCK: ClockOffset = ClockOffset {
    realtime_minus_monotonic_ns: 0,
    jiffies: JiffiesRef {
        jiffies: 0,
        monotonic_ns: 0,
        ns_per_jiffy: 1_000_000,
    },
};

#[test]
fn merge_sums_counts_and_keeps_time_bounds() {
    let mut t = stats(0, 0, 0, 0, 0);
    merge(&mut t, &stats(2, 100, 50, 70, 0x02));
    merge(&mut t, &stats(0, 0, 0, 0, 0)); // an idle CPU's zeroed slot
    merge(&mut t, &stats(3, 300, 40, 60, 0x10));
    assert_eq!(t, stats(5, 400, 40, 70, 0x12));
}

#[test]
fn overflow_events_join_their_flow() {
    let mut t = FlowTable::default();
    t.push(key(1, 10), stats(1, 60, 5, 5, 0));
    let mut o = OverflowTable::default();
    let ev = OverflowEvent {
        key: key(1, 10),
        tcp_flags: 0x01,
        generation: 0,
        _pad: 0,
        packets: 3,
        bytes: 180,
        jiffies: 9,
    };
    assert!(o.try_add(&ev, 1));
    assert!(o.try_add(&ev, 1), "a known flow is always taken");
    let mut other = ev;
    other.key.src_port = 99;
    assert!(!o.try_add(&other, 1), "the bound refuses new flows");
    o.drain_into(&mut t);
    assert!(o.is_empty());
    t.compact();
    let all: Vec<_> = t.iter().collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, stats(7, 420, 5, 9, 0x01));
}

#[test]
fn finish_yields_ok_skipdata_and_nodata() {
    let mut w = WindowAggregate::default();
    w.flows.push(key(1, 10), stats(2, 100, 1, 2, 0));
    w.flows.push(key(1, 11), stats(1, 50, 1, 2, 0));
    // A second drain of the same window repeats a flow; it merges.
    w.flows.push(key(1, 10), stats(1, 10, 3, 4, 0));
    // A flow of an interface that is not ours is dropped.
    w.flows.push(key(9, 10), stats(1, 10, 3, 4, 0));
    w.add_skipped(
        2,
        Direction::Egress,
        &Counters {
            packets: 7,
            bytes: 700,
        },
    );
    w.add_skipped(2, Direction::Egress, &Counters { packets: 0, bytes: 0 });
    let data = w.finish(WINDOW, atts(), id(), CLOCK, Default::default());
    let out: Vec<_> = data.records().collect();
    assert_eq!(out.len(), data.len());
    let ok = out
        .iter()
        .find(|r| r.srcport == Some(10))
        .map(|r| (r.packets, r.bytes));
    assert_eq!(ok, Some((Some(3), 110)));
    let by_status = |s: &str| out.iter().filter(|r| r.log_status == s).collect::<Vec<_>>();
    assert_eq!(by_status(LOG_STATUS_OK).len(), 2);
    let skip = by_status(LOG_STATUS_SKIPDATA);
    assert_eq!(skip.len(), 1);
    assert_eq!(
        (skip[0].interface.as_deref(), skip[0].packets, skip[0].bytes),
        (Some("eth2"), Some(7), 700)
    );
    assert_eq!(skip[0].direction.as_deref(), Some("out"));
    let nodata = by_status(LOG_STATUS_NODATA);
    assert_eq!(nodata.len(), 1);
    assert_eq!(nodata[0].interface.as_deref(), Some("eth3"));
    assert!(nodata[0].srcaddr.is_none() && nodata[0].packets == Some(0));
    assert!(out.iter().all(|r| r.start == 0 && r.end == 60));
}

#[test]
fn idle_window_is_all_nodata() {
    let out: Vec<_> = WindowAggregate::default()
        .finish(WINDOW, atts(), id(), CLOCK, Default::default())
        .records()
        .collect();
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|r| r.log_status == LOG_STATUS_NODATA));
}
