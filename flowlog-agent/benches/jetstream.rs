//! JetStream benchmark (run by `cargo xtask bench`): records per second
//! from the agent's publishing path (on-disk queue, protobuf batches,
//! acknowledged publishes) into one real `nats-server`, and from the stream
//! into a Logstore by one `flowlog collect` consumer. Prints one JSON object.

#[path = "common/args.rs"]
mod args;

use args::arg;
use std::time::{Duration, Instant};

use flowlog_agent::{
    collect::{self, CollectSettings},
    engine::WindowRecords,
    model::{AttachmentInfo, ClockOffset, Identity, LogstoreRef, Window},
    publish::{
        Sink as _,
        sinks::jetstream::{JetStream, JetStreamPublisher},
    },
    telemetry::{AgentInfo, Telemetry},
    window::{FlowTable, WindowAggregate},
};

use flowlog_common::{FlowKey, FlowStats};
use flowlog_tests::nats::{NatsServer, server_program};

/// One window of `n` distinct IPv4 flows on four attachments.
fn window(n: u32, w: u32) -> WindowRecords {
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

fn main() -> anyhow::Result<()> {
    let total = arg("--records", 1_000_000) as u32;
    let per_window = 100_000.min(total);
    let windows = total.div_ceil(per_window);
    let Some(program) = server_program() else {
        anyhow::bail!("nats-server not found: run through cargo xtask bench");
    };
    let dir = std::env::temp_dir().join(format!("flowlog-bench-js-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let server = NatsServer::start(&program, &dir)?;
    let batches: Vec<WindowRecords> = (0..windows).map(|w| window(per_window, w)).collect();
    let records: u64 = batches.iter().map(|b| b.data.len() as u64).sum();

    // Agent side: from handing windows over to every record acknowledged.
    let status = Telemetry::new(&dir, AgentInfo::default());
    // The sender runs on the runtime the publisher is started from.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let entered = rt.enter();
    let mut publisher = JetStreamPublisher::start(
        JetStream {
            servers: vec![server.url()],
            subject: "flowlog.records".into(),
            stream: "FLOWLOG".into(),
            replicas: 1,
            auth: Default::default(),
            queue_bytes: 8 << 30,
            duplicate_window: Duration::from_secs(600),
        },
        &dir.join("agent"),
        status.clone(),
    )?;
    let started = Instant::now();
    for b in &batches {
        publisher.take(b);
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while status.jetstream().published_records.get() < records {
        anyhow::ensure!(Instant::now() < deadline, "publishing did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    let publish_secs = started.elapsed().as_secs_f64();
    publisher.close();
    drop(entered);

    // Central side: one collector drains the stream into a Logstore.
    let started = Instant::now();
    let collected = rt.block_on(collect::run(
        CollectSettings {
            servers: vec![server.url()],
            stream: "FLOWLOG".into(),
            consumer: "bench".into(),
            data_dir: dir.join("central"),
            auth: Default::default(),
            batch: 256,
            ack_wait: Duration::from_secs(30),
            metrics_listen: None,
            exit_when_idle: true,
        },
        std::future::pending(),
    ))?;
    // The last, empty fetch waited out its 1 s expiry.
    let collect_secs = (started.elapsed().as_secs_f64() - 1.0).max(1e-3);
    anyhow::ensure!(
        collected.records == records,
        "collected {} of {records} records",
        collected.records
    );
    let out = serde_json::json!({
        "jetstream": {
            "records": records,
            "publish_seconds": publish_secs,
            "publish_records_per_s": records as f64 / publish_secs,
            "collect_seconds": collect_secs,
            "collect_records_per_s": records as f64 / collect_secs,
            "collect_files": collected.files,
        }
    });
    println!("{out}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
