//! Support code for flowlog's kernel integration tests (`tests/tests/`), and
//! for the demo behind `cargo xtask run`: namespaces, topologies, known
//! traffic, raw frames, a reference capture, the agent as a child process,
//! NATS servers and TLS certificates for them.
//!
//! Everything here works on real kernels objects; tests need root.

pub mod agent;
pub mod api;
pub mod collectors;
pub mod console;
pub mod disk;
pub mod nats;
pub mod netns;
pub mod packet;
pub mod tls;
pub mod topology;
pub mod traffic;
pub mod wire;

use serde_json::Value;

/// True when the tests can run. Without root they skip, unless `CI=true`,
/// where a skip would hide that nothing was tested: then it panics.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        netns::sweep_stale();
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("integration tests need root (eBPF, namespaces); CI=true forbids skipping them");
    }
    eprintln!("skipping: integration tests need root");
    false
}

/// The Python interpreter of the venv `cargo xtask test` prepares (with
/// DuckDB, for reading Logstore files with another engine). `None` skips
/// those checks outside CI; under `CI=true` a missing venv is a failure.
pub fn python() -> Option<std::path::PathBuf> {
    match std::env::var_os("FLOWLOG_PYTHON") {
        Some(p) => Some(p.into()),
        None if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("FLOWLOG_PYTHON is not set: run the tests through `cargo xtask test`, which prepares it")
        }
        None => {
            eprintln!("note: FLOWLOG_PYTHON not set; skipping the DuckDB interop check");
            None
        }
    }
}

/// Which records to add up.
#[derive(Clone, Debug, Default)]
pub struct Filter<'a> {
    pub interface: Option<&'a str>,
    pub direction: Option<&'a str>,
    pub protocol: Option<u64>,
    pub srcaddr: Option<&'a str>,
    pub dstaddr: Option<&'a str>,
    pub srcport: Option<u64>,
    pub dstport: Option<u64>,
    pub log_status: Option<&'a str>,
}

impl Filter<'_> {
    pub fn matches(&self, r: &Value) -> bool {
        let s = |field: &str, want: Option<&str>| want.is_none_or(|w| r[field].as_str() == Some(w));
        let n = |field: &str, want: Option<u64>| want.is_none_or(|w| r[field].as_u64() == Some(w));
        s("interface", self.interface)
            && s("direction", self.direction)
            && n("protocol", self.protocol)
            && s("srcaddr", self.srcaddr)
            && s("dstaddr", self.dstaddr)
            && n("srcport", self.srcport)
            && n("dstport", self.dstport)
            && s("log-status", self.log_status)
    }
}

/// (packets, bytes, records) over the matching records.
pub fn sum(records: &[Value], f: &Filter<'_>) -> (u64, u64, usize) {
    records
        .iter()
        .filter(|r| f.matches(r))
        .fold((0, 0, 0), |(p, b, n), r| {
            (
                p + r["packets"].as_u64().unwrap_or(0),
                b + r["bytes"].as_u64().unwrap_or(0),
                n + 1,
            )
        })
}

/// Programs hooked to `ifname` in `ns`: (TCX ingress, TCX egress, XDP).
pub fn hooks_on(ns: &netns::Netns, ifname: &str) -> anyhow::Result<(usize, usize, bool)> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let name = ifname.to_owned();
    let (ingress, egress) = ns.run(move || -> anyhow::Result<(usize, usize)> {
        let i = SchedClassifier::query_tcx(&name, TcAttachType::Ingress)?.1.len();
        let e = SchedClassifier::query_tcx(&name, TcAttachType::Egress)?.1.len();
        Ok((i, e))
    })??;
    let link = ns.ip(&["-d", "link", "show", "dev", ifname])?;
    Ok((ingress, egress, link.contains("xdp")))
}

/// The windows an interface's records cover, each once, in order; asserts
/// there are at least `min` and that every one between the first and the
/// last (both partial) is `len` seconds long, back to back: no cut was
/// held up or skipped.
pub fn assert_windows_back_to_back(records: &[Value], interface: &str, len: i64, min: usize) {
    let mut windows: Vec<(i64, i64)> = records
        .iter()
        .filter(|r| r["interface"] == interface)
        .filter_map(|r| Some((r["start"].as_i64()?, r["end"].as_i64()?)))
        .collect();
    windows.sort_unstable();
    windows.dedup();
    assert!(windows.len() >= min, "{windows:?}");
    for w in windows.windows(2) {
        assert_eq!(w[0].1, w[1].0, "a gap or overlap between windows: {windows:?}");
    }
    for w in &windows[1..windows.len() - 1] {
        assert_eq!(w.1 - w.0, len, "a window of another length: {windows:?}");
    }
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Peak resident memory (VmHWM) of a running process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The agent's Prometheus text from `GET /metrics` on `addr`, checked to
/// be a 200 in the text exposition format.
pub fn scrape_metrics(addr: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no body"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    anyhow::ensure!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    Ok(body.to_owned())
}

/// One metric's value from the agent's /metrics: the line that begins with
/// `line_prefix` (name and labels); 0 when absent.
pub fn metric(addr: &str, line_prefix: &str) -> anyhow::Result<u64> {
    let text = scrape_metrics(addr)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// [`hooks_on`] once it shows no hook, or after 5 s: the kernel releases a
/// link whose last reference went away (an unpinned link, a closed fd)
/// asynchronously, so "detached" may take a moment to show.
pub fn hooks_gone(ns: &netns::Netns, ifname: &str) -> anyhow::Result<(usize, usize, bool)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let h = hooks_on(ns, ifname)?;
        if h == (0, 0, false) || std::time::Instant::now() > deadline {
            return Ok(h);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Records of one flow (flow log, interface, direction, five-tuple) never
/// describe the same packets twice: ordered by first-seen, each record's
/// window starts no earlier and its packets come no earlier than the
/// previous record's (window bounds are whole seconds, so two sub-second
/// windows may share them; first/last-seen are milliseconds from kernel
/// ticks, so allow one tick at the slowest rate, 10 ms).
pub fn assert_records_disjoint(records: &[Value]) {
    let mut flows: std::collections::BTreeMap<String, Vec<(i64, i64, i64, i64)>> = Default::default();
    for r in records.iter().filter(|r| r["log-status"] == "OK") {
        let id = format!(
            "{} {} {} {} {}:{} {}:{}",
            r["flow-log-id"],
            r["interface"],
            r["direction"],
            r["protocol"],
            r["srcaddr"],
            r["srcport"],
            r["dstaddr"],
            r["dstport"]
        );
        let n = |f: &str| r[f].as_i64().unwrap_or(0);
        flows
            .entry(id)
            .or_default()
            .push((n("first-seen"), n("last-seen"), n("start"), n("end")));
    }
    for (id, mut spans) in flows {
        spans.sort();
        for w in spans.windows(2) {
            let ((_, last, start, end), (first, _, next_start, next_end)) = (w[0], w[1]);
            assert!(
                last <= first + 10 && start <= next_start && end <= next_end,
                "records of {id} overlap: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
}
