//! JetStream benchmark (run by `cargo xtask bench`): records per second
//! from the agent's publishing path (on-disk queue, protobuf batches,
//! acknowledged publishes) into one real `nats-server`, and from the stream
//! into a Logstore by one `flowlog collect` consumer. Prints one JSON object.

#[path = "common/args.rs"]
mod args;
#[path = "common/window.rs"]
mod window;

use std::time::{Duration, Instant};

use args::arg;
use flowlog_agent::{
    collect::{self, CollectSettings},
    engine::WindowRecords,
    publish::{
        Sink as _,
        sinks::jetstream::{JetStream, JetStreamPublisher},
    },
    telemetry::{AgentInfo, Telemetry},
};
use flowlog_tests::nats::{NatsServer, server_program};
use window::window;

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
