//! IPFIX benchmark (run by `cargo xtask bench`): one window of 1M flows
//! (`--records N`) rendered into its records as every sink sees them,
//! then encoded as IPFIX messages, then sent through the sink to a UDP
//! socket on loopback that a thread drains. Medians of three runs, one
//! core each. Prints one JSON object.

#[path = "common/args.rs"]
mod args;
#[path = "common/window.rs"]
mod window;

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use args::arg;
use flowlog_agent::{
    journal::marks::Marks,
    publish::{
        Sink as _,
        sinks::ipfix::{IpfixOptions, IpfixSink, encode::Encoder},
    },
    telemetry::{AgentInfo, Telemetry},
};
use window::window;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let records = arg("--records", 1_000_000) as u32;
    let batch = window(records, 0);
    let n = batch.data.len() as f64;
    let (mut render, mut encode, mut send) = (Vec::new(), Vec::new(), Vec::new());
    let (mut messages, mut bytes) = (0usize, 0usize);
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let addr = rx.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let drain = {
        let (stop, received) = (stop.clone(), received.clone());
        rx.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                if rx.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let dir = std::env::temp_dir().join(format!("flowlog-ipfix-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let settings = IpfixOptions {
        collectors: vec![addr.to_string()],
        ..Default::default()
    }
    .validate()
    .map_err(anyhow::Error::msg)?
    .ok_or_else(|| anyhow::anyhow!("no collector"))?;
    let telemetry = Telemetry::new(&dir, AgentInfo::default());
    let mut sink = IpfixSink::new(
        settings.collectors[0].clone(),
        &settings,
        &Marks::new(&dir),
        &telemetry,
    );
    for _ in 0..3 {
        let t = Instant::now();
        let mut count = 0u64;
        let _ = batch.data.try_for_each_record(|_| {
            count += 1;
            Ok::<(), ()>(())
        });
        render.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(count as f64 == n, "rendered {count} of {n}");

        let mut encoder = Encoder::new(0, 32473, settings.mtu);
        let t = Instant::now();
        let out = encoder.window(&batch.data, 0, &mut Vec::new());
        encode.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(out.records as f64 == n, "encoded {} of {n}", out.records);
        messages = out.messages.len();
        bytes = out.messages.iter().map(Vec::len).sum();

        let t = Instant::now();
        let taken = sink.take(&batch);
        send.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(!taken.failed, "the sink could not send");
    }
    stop.store(true, Ordering::SeqCst);
    let _ = drain.join();
    let _ = std::fs::remove_dir_all(&dir);
    let (render, encode, send) = (median(render), median(encode), median(send));
    println!(
        "{}",
        serde_json::json!({"ipfix": {
            "records": n,
            "render_seconds": render,
            "encode_seconds": encode,
            "send_seconds": send,
            // Encoding alone: what the exporter adds to the rendering every
            // sink shares.
            "encode_records_per_s": n / (encode - render).max(1e-9),
            "render_and_encode_records_per_s": n / encode,
            "send_records_per_s": n / send,
            "messages": messages,
            "bytes_per_record": bytes as f64 / n,
            "datagrams_received": received.load(Ordering::Relaxed),
        }})
    );
    Ok(())
}
