//! A synthetic window for the publishing benchmarks: `n` distinct IPv4
//! TCP flows on four attachments, as the agent hands windows to its sinks.

use flowlog_agent::{
    engine::WindowRecords,
    model::{AttachmentInfo, ClockOffset, Identity, LogstoreRef, Window},
    window::{FlowTable, WindowAggregate},
};
use flowlog_common::{FlowKey, FlowStats};

/// One window of `n` distinct IPv4 flows on four attachments.
pub fn window(n: u32, w: u32) -> WindowRecords {
    let mut flows = FlowTable::default();
    for i in 0..n {
        let mut src = [0u8; 16];
        src[10] = 0xff;
        src[11] = 0xff;
        src[12..].copy_from_slice(&[10, 1, (i >> 8) as u8, i as u8]);
        let mut dst = src;
        dst[13] = 2;
        flows.push(
            FlowKey {
                src_addr: src,
                dst_addr: dst,
                ifindex: i % 4,
                src_port: (i % 60_000) as u16 + 1024,
                dst_port: 443,
                protocol: 6,
                direction: (i % 2) as u8,
                ip_version: 4,
                generation: 0,
            },
            FlowStats {
                packets: u64::from(i % 100 + 1),
                bytes: u64::from(i % 100 + 1) * 800,
                tcp_flags: 0x18,
                ..Default::default()
            },
        );
    }
    let agg = WindowAggregate {
        flows,
        ..Default::default()
    };
    let start = 1_800_000_000_000_000_000i128 + i128::from(w) * 60_000_000_000;
    let data = agg.finish(
        Window {
            start_ns: start,
            end_ns: start + 60_000_000_000,
        },
        (0..4)
            .map(|i| AttachmentInfo {
                ifindex: i,
                interface: format!("eth{i}"),
                netns: None,
                ..Default::default()
            })
            .collect(),
        Identity {
            account_id: "bench".into(),
            cen_id: "cen-bench".into(),
            flow_log_id: "fl-bench".into(),
        },
        ClockOffset::sample(),
        Default::default(),
    );
    WindowRecords {
        flow_log_id: "fl-bench".into(),
        logstore: Some(LogstoreRef {
            project: "bench".into(),
            logstore: "flows".into(),
        }),
        data: std::sync::Arc::new(data),
        seq: None,
        replay: false,
        published: None,
    }
}
