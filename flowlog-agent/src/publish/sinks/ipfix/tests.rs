//! The sink over real loopback sockets: UDP templates refreshed, a TCP
//! collector that goes away and comes back gets every window once, in
//! order, with the queue bound counted.

use std::{
    io::Read as _,
    net::{TcpListener, UdpSocket},
    time::Duration,
};

use super::{encode::tests::Collector, *};
use crate::journal::marks::Marks;

fn settings(collector: &str) -> Ipfix {
    IpfixOptions {
        collectors: vec![collector.to_owned()],
        observation_domain_id: Some(7),
        template_refresh_messages: Some(1_000_000),
        ..Default::default()
    }
    .validate()
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("settings for {collector}"))
}

fn batch(seq: u64, flows: u16) -> WindowRecords {
    WindowRecords {
        flow_log_id: "fl-1".into(),
        logstore: None,
        data: Arc::new(super::encode::tests::window(flows, None)),
        seq: Some(seq),
        replay: false,
        published: None,
    }
}

fn sink(collector: &str, dir: &std::path::Path) -> IpfixSink {
    let s = settings(collector);
    let t = Telemetry::new(dir, Default::default());
    IpfixSink::new(s.collectors[0].clone(), &s, &Marks::new(dir), &t)
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("flowlog-ipfix-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let _ = std::fs::create_dir_all(&d);
    d
}

#[test]
fn udp_windows_decode_and_a_replay_the_collector_has_is_skipped() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    rx.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let addr = rx.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let dir = temp("udp");
    let mut s = sink(&addr, &dir);
    let taken = s.take(&batch(1, 50));
    assert_eq!(taken.resolved, [1]);
    assert!(!taken.failed);
    let mut replay = batch(1, 50);
    replay.replay = true;
    assert_eq!(s.take(&replay).resolved, [1], "resolved, not sent again");
    let mut c = Collector::new(DEFAULT_ENTERPRISE_NUMBER);
    let mut buf = [0u8; 65535];
    while let Ok(n) = rx.recv(&mut buf) {
        c.message(&buf[..n], 1400);
        if c.records.len() >= 54 {
            break;
        }
    }
    assert_eq!(c.records.len(), 50 + 1 + 1 + 1, "every record once");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Accepts one connection and reads it until it has been quiet a while.
fn collect_one(listener: TcpListener) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return Vec::new();
        };
        conn.set_read_timeout(Some(Duration::from_millis(500))).ok();
        let mut bytes = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        bytes
    })
}

#[test]
fn a_tcp_collector_away_and_back_gets_every_window_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let dir = temp("tcp");
    let mut s = sink(&format!("tcp://127.0.0.1:{port}"), &dir);
    let first = collect_one(listener);
    assert_eq!(s.take(&batch(1, 10)).resolved, [1]);
    // The collector reads, goes quiet and closes: it is away.
    let first = first.join().unwrap_or_default();
    assert!(s.take(&batch(2, 10)).resolved.is_empty());
    assert!(s.take(&batch(3, 10)).resolved.is_empty());
    assert_eq!(s.kept(), 2);
    // Back on the same port: a retry sends both, on a new session.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    let second = collect_one(listener);
    assert_eq!(s.retry().resolved, [2, 3]);
    assert_eq!(s.kept(), 0);
    drop(s);
    let second = second.join().unwrap_or_default();
    for (stream, windows) in [(first, 1), (second, 2)] {
        let mut c = Collector::new(DEFAULT_ENTERPRISE_NUMBER);
        let mut at = 0;
        while at + 4 <= stream.len() {
            let len = usize::from(u16::from_be_bytes([stream[at + 2], stream[at + 3]]));
            c.message(&stream[at..at + len], 1400);
            at += len;
        }
        assert_eq!(
            c.records.len(),
            windows * 13,
            "each window once, templates per connection"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_tcp_queue_drops_its_oldest_windows_beyond_the_bound() {
    let dir = temp("bound");
    let mut s = {
        let mut o = IpfixOptions {
            // Nothing listens on port 9 of loopback here.
            collectors: vec!["tcp://127.0.0.1:9".into()],
            queue_records: Some(30),
            ..Default::default()
        }
        .validate()
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("settings"));
        o.collectors.truncate(1);
        let t = Telemetry::new(&dir, Default::default());
        IpfixSink::new(o.collectors[0].clone(), &o, &Marks::new(&dir), &t)
    };
    let mut dropped = Vec::new();
    for seq in 1..=4 {
        dropped.extend(s.take(&batch(seq, 10)).resolved);
    }
    // 13 records a window, at most 30 kept: the two oldest go.
    assert_eq!(dropped, [1, 2]);
    assert_eq!(s.kept(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
