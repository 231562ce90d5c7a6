//! The engine without a kernel ([`super::fake`]): windows cut at
//! boundaries, interfaces shared between flow logs, activations rolled
//! back — the netns tests check the same against real packets.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use super::{
    FlowLogSpec,
    fake::{S, harness, packets},
};
use crate::{capture::CaptureError, config::Attachment, model::Identity, record::LOG_STATUS_NODATA};

fn spec(id: &str, interfaces: &[&str], window_secs: u64) -> FlowLogSpec {
    FlowLogSpec {
        id: id.into(),
        identity: Identity {
            account_id: "1".into(),
            cen_id: "cen-test".into(),
            flow_log_id: id.into(),
        },
        attachments: interfaces
            .iter()
            .map(|i| Attachment {
                interface: (*i).into(),
                ..Default::default()
            })
            .collect(),
        window: Duration::from_secs(window_secs),
        logstore: None,
        format: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_cut_at_boundaries_with_each_packet_in_one_window() {
    let mut h = harness(&[("eth0", 2)], 1_000 * S + S / 2);
    h.engine
        .activate(spec("fl-a", &["eth0"], 60))
        .await
        .expect("activates");
    assert_eq!(h.engine.next_deadline(), Some(1_020 * S));
    h.kernel.count("eth0", 10);
    // Before the boundary nothing is due.
    h.clock.set(1_019 * S);
    h.engine.tick().await;
    assert!(h.nothing_published());
    h.kernel.count("eth0", 5);
    h.clock.set(1_020 * S);
    h.engine.tick().await;
    let (w, records) = h.next_window();
    assert_eq!(
        (w.data.window.start_ns, w.data.window.end_ns),
        (1_000 * S + S / 2, 1_020 * S)
    );
    assert_eq!(packets(&records), BTreeMap::from([("eth0".into(), 15)]));
    // The next window starts where this one ended; an idle one says NODATA.
    h.clock.set(1_080 * S);
    h.engine.tick().await;
    let (w, records) = h.next_window();
    assert_eq!(
        (w.data.window.start_ns, w.data.window.end_ns),
        (1_020 * S, 1_080 * S)
    );
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].log_status, LOG_STATUS_NODATA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_interval_applies_from_the_next_boundary() {
    let mut h = harness(&[("eth0", 2)], 0);
    h.engine
        .activate(spec("fl-a", &["eth0"], 60))
        .await
        .expect("activates");
    h.engine.set_window("fl-a", Duration::from_secs(600));
    assert_eq!(h.engine.next_deadline(), Some(60 * S));
    h.clock.set(60 * S);
    h.engine.tick().await;
    let (w, _) = h.next_window();
    assert_eq!(w.data.window.end_ns, 60 * S);
    assert_eq!(h.engine.next_deadline(), Some(600 * S));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_logs_sharing_an_interface_share_its_hooks_and_each_gets_its_packets() {
    let mut h = harness(&[("eth0", 2), ("eth1", 3)], 0);
    h.engine
        .activate(spec("fl-a", &["eth0", "eth1"], 60))
        .await
        .expect("a activates");
    h.engine
        .activate(spec("fl-b", &["eth1"], 60))
        .await
        .expect("b activates");
    assert_eq!(
        h.kernel.lock().attach_calls,
        ["eth0", "eth1"],
        "eth1 is attached once"
    );
    assert_eq!(h.kernel.lock().loads, 1, "one namespace, loaded once");
    h.kernel.count("eth0", 7);
    h.kernel.count("eth1", 4);
    h.clock.set(60 * S);
    h.engine.tick().await;
    let mut by_flow_log = BTreeMap::new();
    for _ in 0..2 {
        let (w, records) = h.next_window();
        by_flow_log.insert(w.flow_log_id.clone(), packets(&records));
    }
    assert_eq!(
        by_flow_log,
        BTreeMap::from([
            (
                "fl-a".to_owned(),
                BTreeMap::from([("eth0".into(), 7), ("eth1".into(), 4)])
            ),
            ("fl-b".to_owned(), BTreeMap::from([("eth1".into(), 4)])),
        ])
    );
    // fl-a goes: eth0 is released, eth1 stays for fl-b.
    let _ = h.engine.deactivate("fl-a").await;
    assert_eq!(h.kernel.lock().attached, BTreeSet::from(["eth1".to_owned()]));
    let _ = h.engine.deactivate("fl-b").await;
    assert!(h.kernel.lock().attached.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_activation_leaves_nothing_attached_and_shared_hooks_in_place() {
    let mut h = harness(&[("eth0", 2), ("eth1", 3)], 0);
    h.engine
        .activate(spec("fl-a", &["eth1"], 60))
        .await
        .expect("a activates");
    // eth0 attaches, eth1 is shared, "gone0" does not exist.
    let err = h
        .engine
        .activate(spec("fl-b", &["eth0", "eth1", "gone0"], 60))
        .await
        .expect_err("an interface is missing");
    assert!(matches!(err, CaptureError::NoInterface { .. }), "{err}");
    assert!(!h.engine.is_running("fl-b"));
    assert_eq!(h.kernel.lock().attached, BTreeSet::from(["eth1".to_owned()]));
    // fl-a still counts on eth1, and alone.
    h.kernel.count("eth1", 3);
    h.clock.set(60 * S);
    h.engine.tick().await;
    let (w, records) = h.next_window();
    assert_eq!(w.flow_log_id, "fl-a");
    assert_eq!(packets(&records), BTreeMap::from([("eth1".into(), 3)]));
    assert!(h.nothing_published());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_publishes_the_partial_window_up_to_now() {
    let mut h = harness(&[("eth0", 2)], 0);
    h.engine
        .activate(spec("fl-a", &["eth0"], 60))
        .await
        .expect("activates");
    h.kernel.count("eth0", 9);
    h.clock.set(25 * S);
    let done = h.engine.deactivate("fl-a").await;
    assert!(done.is_some());
    let (w, records) = h.next_window();
    assert_eq!((w.data.window.start_ns, w.data.window.end_ns), (0, 25 * S));
    assert_eq!(packets(&records), BTreeMap::from([("eth0".into(), 9)]));
    assert!(h.engine.next_deadline().is_none());
    assert!(h.kernel.lock().attached.is_empty());
}
