//! IPFIX export against real collectors from Debian, on loopback, with
//! traffic of known size through the netns router:
//!
//! - nfdump's `nfcapd` stores every record, and `nfdump -o json` shows each
//!   five-tuple with the agent's packets, bytes, first and last times and
//!   interfaces, IPv4 and IPv6 alike;
//! - pmacct's `nfacctd`, its `aggregate_primitives` written from the table
//!   in docs/ipfix.md, prints `rtt`, `account-id`, the attachment, the
//!   regions and `log-status` as the JSON records have them;
//! - Wireshark's dissector (`tshark`) decodes every message with no expert
//!   warning, and the sequence numbers add up to the records sent;
//! - a collector restarted mid-stream over UDP decodes again once the
//!   templates are refreshed;
//! - over TCP a collector that goes away and comes back gets every window
//!   the agent kept meanwhile, once.
//!
//! The independent measure is the agent's own JSON records of the same run
//! (themselves checked against the hosts' traffic by the capture tests).

use std::{
    collections::BTreeMap,
    io::Read as _,
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use flowlog_tests::{
    agent::{Agent, TempDir, num},
    collectors::{Capture, Nfacctd, Nfcapd, free_port},
    privileged,
    topology::{A_V4, B_V4, B_V6, RouterTopology},
    traffic,
};
use serde_json::Value;

/// The agent's configuration: both router interfaces with ids and regions,
/// a region table, and `ipfix` as the `[output.ipfix]` section's body.
fn config(t: &RouterTopology, ipfix: &str) -> String {
    let attachments = t.labelled_attachments_toml();
    format!(
        r#"window-secs = 1

{attachments}
[[region]]
cidr = "10.1.0.0/24"
region-id = "cn-hangzhou"
network = "vpc-a"

[[region]]
cidr = "fd01::/64"
region-id = "cn-hangzhou"

[[region]]
cidr = "10.2.0.0/24"
region-id = "cn-shanghai"

[output.ipfix]
{ipfix}
"#
    )
}

fn start_agent(dir: &Path, t: &RouterTopology, ipfix: &str) -> anyhow::Result<Agent> {
    let path = dir.join("flowlog.toml");
    std::fs::write(&path, config(t, ipfix))?;
    Agent::start_in(dir, &["--config", path.to_str().unwrap_or_default()])
}

fn ifindex(t: &RouterTopology, name: &str) -> anyhow::Result<u64> {
    let out = t.router.ip(&["-j", "link", "show", name])?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["ifindex"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no ifindex for {name}: {out}"))
}

/// `2026-12-07T17:57:27.245` (nfdump's UTC, with TZ=UTC) in Unix ms.
fn nfdump_ms(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f").ok())
        .map_or(-1, |t| t.and_utc().timestamp_millis())
}

/// What nfdump and the JSON records must agree on for one flow record.
type FlowRow = (String, String, u64, u64, u64, u64, u64, u64, i64, i64, u64, u64);

fn json_row(r: &Value, ifindex_of: &BTreeMap<String, u64>) -> FlowRow {
    let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
    let n = |k: &str| num(&r[k]).unwrap_or(0);
    let out = r["direction"] == "out";
    let ifx = ifindex_of.get(&s("interface")).copied().unwrap_or(0);
    (
        s("srcaddr"),
        s("dstaddr"),
        n("srcport"),
        n("dstport"),
        n("protocol"),
        u64::from(out),
        n("packets"),
        n("bytes"),
        r["first-seen"].as_i64().unwrap_or(0),
        r["last-seen"].as_i64().unwrap_or(0),
        if out { 0 } else { ifx },
        if out { ifx } else { 0 },
    )
}

fn nfdump_row(f: &Value) -> FlowRow {
    let addr = |v4: &str, v6: &str| f[v4].as_str().or(f[v6].as_str()).unwrap_or_default().to_owned();
    let n = |k: &str| f[k].as_u64().unwrap_or(0);
    (
        addr("src4_addr", "src6_addr"),
        addr("dst4_addr", "dst6_addr"),
        n("src_port"),
        n("dst_port"),
        n("proto"),
        n("direction"),
        n("in_packets"),
        n("in_bytes"),
        nfdump_ms(&f["first"]),
        nfdump_ms(&f["last"]),
        n("input_snmp"),
        n("output_snmp"),
    )
}

/// pmacct's `aggregate_primitives`, one line per enterprise element of
/// docs/ipfix.md's table, named by its record field (`-` → `_`).
fn primitives_from_the_docs() -> anyhow::Result<String> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ipfix.md"))?;
    let mut out = String::new();
    for row in page
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("PEN:"))
    {
        let c: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
        let (id, kind, len, field) = (c[2].trim_start_matches("PEN:"), c[3], c[4], c[5]);
        let (len, semantics) = if kind == "string" {
            ("vlen".to_owned(), "str")
        } else {
            (len.to_owned(), "u_int")
        };
        out += &format!(
            "name={} field_type=32473:{id} len={len} semantics={semantics}\n",
            field.replace('-', "_")
        );
    }
    anyhow::ensure!(out.lines().count() >= 16, "too few enterprise rows:\n{out}");
    Ok(out)
}

/// The keys nfacctd groups by, and how to read them from a JSON record and
/// from nfacctd's output (`None`: nfacctd's own name for a standard one).
const PMACCT_KEYS: [(&str, &str, Option<&str>); 11] = [
    ("src_host", "srcaddr", Some("ip_src")),
    ("dst_host", "dstaddr", Some("ip_dst")),
    ("src_port", "srcport", Some("port_src")),
    ("dst_port", "dstport", Some("port_dst")),
    ("rtt", "rtt", None),
    ("account_id", "account-id", None),
    ("attachment_id", "attachment-id", None),
    ("src_region_id", "src-region-id", None),
    ("dst_region_id", "dst-region-id", None),
    ("src_network", "src-network", None),
    ("log_status", "log-status", None),
];

fn pmacct_key_of_json(r: &Value) -> String {
    PMACCT_KEYS
        .iter()
        .map(|(_, field, _)| match &r[*field] {
            Value::Null if *field == "rtt" || field.ends_with("port") => "0".to_owned(),
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn pmacct_key_of_output(o: &Value) -> String {
    PMACCT_KEYS
        .iter()
        .map(|(name, _, theirs)| match &o[theirs.unwrap_or(name)] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Per tshark-decoded capture: no expert warning, and every message's
/// sequence number is the data records before it. Returns (records, bytes).
fn check_capture(cap: &Capture, decode_as: &str) -> anyhow::Result<(u64, u64)> {
    let said: Vec<String> = cap.expert(decode_as)?.into_iter().flat_map(|(_, m)| m).collect();
    anyhow::ensure!(said.is_empty(), "tshark's expert info: {said:?}");
    let packets = cap.fields(decode_as, &["cflow.sequence", "cflow.octets"])?;
    let (mut records, mut bytes) = (0u64, 0u64);
    for (i, p) in packets.iter().enumerate() {
        let seq: u64 = p[0].first().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        anyhow::ensure!(
            seq == records,
            "message {i}: sequence {seq}, {records} records before it"
        );
        records += p[1].len() as u64;
        bytes += p[1].iter().filter_map(|b| b.parse::<u64>().ok()).sum::<u64>();
    }
    Ok((records, bytes))
}

#[test]
fn nfdump_pmacct_and_wireshark_read_every_record_as_the_agent_wrote_it() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let (p_nfcapd, p_pmacct) = (free_port()?, free_port()?);
    let cap = Capture::start(
        &dir.path().join("capture"),
        &format!("udp port {p_nfcapd} or udp port {p_pmacct}"),
    )?;
    let nfcapd = Nfcapd::start(&dir.path().join("nfcapd"), p_nfcapd)?;
    let aggregate: Vec<&str> = PMACCT_KEYS.iter().map(|k| k.0).collect();
    let pmacct = Nfacctd::start(
        &dir.path().join("nfacctd"),
        p_pmacct,
        &primitives_from_the_docs()?,
        &aggregate.join(", "),
    )?;
    let agent = start_agent(
        dir.path(),
        &t,
        &format!(r#"collectors = ["127.0.0.1:{p_nfcapd}", "udp://127.0.0.1:{p_pmacct}"]"#),
    )?;
    traffic::udp(
        &t.a,
        &t.b,
        SocketAddr::new(B_V4.parse()?, 9996),
        &[100, 200, 1200],
    )?;
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V6.parse()?, 9996), &[300, 40])?;
    traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9997), 200_000)?;
    agent.wait_windows(4, Duration::from_secs(30))?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    // UDP on loopback arrives at once; a moment for the collectors to read.
    std::thread::sleep(Duration::from_millis(500));
    let mut cap = cap;
    cap.stop();
    let flows = nfcapd.stop_and_read()?;
    let printed = pmacct.stop_and_read()?;
    let records = &done.records;
    assert!(
        records
            .iter()
            .any(|r| r["srcaddr"] == B_V6 || r["dstaddr"] == B_V6),
        "IPv6 traffic"
    );
    assert!(
        records.iter().any(|r| num(&r["rtt"]).is_some_and(|v| v > 0)),
        "a TCP handshake RTT"
    );

    // nfdump: every flow record once, with its counts, times and interface.
    let ifindex_of: BTreeMap<String, u64> = [
        ("r-a".to_owned(), ifindex(&t, "r-a")?),
        ("r-b".to_owned(), ifindex(&t, "r-b")?),
    ]
    .into();
    let ok: Vec<&Value> = records.iter().filter(|r| r["log-status"] == "OK").collect();
    let mut want: Vec<FlowRow> = ok.iter().map(|r| json_row(r, &ifindex_of)).collect();
    let mut got: Vec<FlowRow> = flows
        .iter()
        .filter(|f| f["src4_addr"].is_string() || f["src6_addr"].is_string())
        .map(nfdump_row)
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "nfdump's flows differ from the agent's records");
    let others = flows.len() - got.len();
    assert_eq!(
        others,
        records.len() - ok.len(),
        "NODATA/SKIPDATA records in nfdump"
    );

    // pmacct: the enterprise elements, read through the documented table.
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &ok {
        let e = want.entry(pmacct_key_of_json(r)).or_default();
        e.0 += num(&r["packets"]).unwrap_or(0);
        e.1 += num(&r["bytes"]).unwrap_or(0);
    }
    let mut got: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for o in printed.iter().filter(|o| o["log_status"] == "OK") {
        let e = got.entry(pmacct_key_of_output(o)).or_default();
        e.0 += o["packets"].as_u64().unwrap_or(0);
        e.1 += o["bytes"].as_u64().unwrap_or(0);
    }
    assert_eq!(got, want, "nfacctd's aggregates differ from the agent's records");
    assert!(
        want.keys()
            .any(|k| k.contains("|cn-hangzhou|cn-shanghai|vpc-a|OK")),
        "regions and network came through: {want:?}"
    );

    // Wireshark: both collectors' streams decode cleanly and add up.
    let all_bytes: u64 = records.iter().map(|r| num(&r["bytes"]).unwrap_or(0)).sum();
    for port in [p_nfcapd, p_pmacct] {
        let (n, bytes) = check_capture(&cap, &format!("udp.port=={port},cflow"))?;
        assert_eq!((n, bytes), (records.len() as u64, all_bytes), "port {port}");
    }
    Ok(())
}

/// Sends a UDP datagram from host a to host b every 100 ms until `stop`.
fn steady_udp(t: &RouterTopology, stop: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let socket = t.a.run(|| std::net::UdpSocket::bind((A_V4, 0)))??;
    let dst: SocketAddr = SocketAddr::new(B_V4.parse()?, 9998);
    Ok(std::thread::spawn(move || {
        for _ in 0..600 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let _ = socket.send_to(&[0u8; 64], dst);
            std::thread::sleep(Duration::from_millis(100));
        }
    }))
}

#[test]
fn a_udp_collector_restarted_mid_stream_decodes_again_within_the_refresh() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let port = free_port()?;
    let first = Nfcapd::start(&dir.path().join("first"), port)?;
    let refresh = 2;
    let agent = start_agent(
        dir.path(),
        &t,
        &format!("collectors = [\"127.0.0.1:{port}\"]\ntemplate-refresh-secs = {refresh}"),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let sender = steady_udp(&t, stop.clone())?;
    agent.wait_windows(3, Duration::from_secs(20))?;
    let before = first.stop_and_read()?;
    // The new collector, and a capture that begins with it: it has seen no
    // template yet.
    let cap = Capture::start(&dir.path().join("capture"), &format!("udp port {port}"))?;
    let restarted_ms = chrono::Utc::now().timestamp_millis();
    let second = Nfcapd::start(&dir.path().join("second"), port)?;
    let published = num(&agent.status()?["windows-published"]).unwrap_or(0);
    agent.wait_windows(published + 2 * refresh + 2, Duration::from_secs(30))?;
    stop.store(true, Ordering::SeqCst);
    let _ = sender.join();
    let done = agent.stop()?;
    std::thread::sleep(Duration::from_millis(500));
    let mut cap = cap;
    cap.stop();
    let after = second.stop_and_read()?;
    assert!(!before.is_empty(), "the first collector had records");
    // Every record of a window that began a refresh interval (and one
    // window) after the restart is in the new collector.
    let settled_secs = restarted_ms / 1000 + refresh as i64 + 1;
    let ifindex_of = BTreeMap::new();
    let strip = |mut r: FlowRow| {
        (r.10, r.11) = (0, 0);
        r
    };
    let late: Vec<FlowRow> = done
        .records
        .iter()
        .filter(|r| r["log-status"] == "OK" && r["start"].as_i64().is_some_and(|s| s >= settled_secs))
        .map(|r| strip(json_row(r, &ifindex_of)))
        .collect();
    assert!(late.len() >= 4, "windows after the restart: {}", late.len());
    let got: Vec<FlowRow> = after.iter().map(|f| strip(nfdump_row(f))).collect();
    for r in &late {
        assert!(got.contains(r), "the restarted collector lacks {r:?}");
    }
    // Wireshark, listening from the restart on, cannot decode data until
    // the templates come again; from then on it decodes every message,
    // and they keep coming.
    let packets = cap.expert(&format!("udp.port=={port},cflow"))?;
    let is_template = |(sets, _): &(Vec<String>, Vec<String>)| sets.iter().any(|s| s == "2");
    let first = packets.iter().position(is_template).unwrap_or(packets.len());
    assert!(first < packets.len(), "no template after the restart");
    for (i, (_, said)) in packets.iter().enumerate() {
        if i < first {
            assert!(
                said.iter().any(|m| m.contains("no template")),
                "packet {i}: {said:?}"
            );
        } else {
            assert!(said.is_empty(), "packet {i}, after the templates: {said:?}");
        }
    }
    assert!(
        packets.iter().filter(|p| is_template(p)).count() >= 2,
        "templates refreshed"
    );
    Ok(())
}

/// A TCP collector of the test's own: accepts one connection at a time and
/// keeps what arrives, until `stop`.
fn tcp_collector(listener: TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let _ = listener.set_nonblocking(true);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = [0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        }
        got
    })
}

#[test]
fn a_tcp_collector_away_and_back_gets_every_kept_window() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let port = free_port()?;
    let cap = Capture::start(&dir.path().join("capture"), &format!("tcp port {port}"))?;
    let stop_first = Arc::new(AtomicBool::new(false));
    let first = tcp_collector(TcpListener::bind(("127.0.0.1", port))?, stop_first.clone());
    let agent = start_agent(
        dir.path(),
        &t,
        &format!("collectors = [\"tcp://127.0.0.1:{port}\"]"),
    )?;
    let stop_traffic = Arc::new(AtomicBool::new(false));
    let sender = steady_udp(&t, stop_traffic.clone())?;
    agent.wait_windows(2, Duration::from_secs(20))?;
    // The collector goes away (its socket closed); windows are kept.
    stop_first.store(true, Ordering::SeqCst);
    let _ = first.join();
    let published = num(&agent.status()?["windows-published"]).unwrap_or(0);
    agent.wait_windows(published + 3, Duration::from_secs(20))?;
    let sink = format!("ipfix:tcp://127.0.0.1:{port}");
    let away = agent.status()?["ipfix"][&sink].clone();
    assert_eq!(away["connected"], false, "{away}");
    assert!(
        num(&away["queued-records"]).is_some_and(|n| n > 0),
        "windows kept: {away}"
    );
    // Back: everything kept arrives, then the stream goes on.
    let stop_second = Arc::new(AtomicBool::new(false));
    let second = tcp_collector(TcpListener::bind(("127.0.0.1", port))?, stop_second.clone());
    let published = num(&agent.status()?["windows-published"]).unwrap_or(0);
    agent.wait_windows(published + 3, Duration::from_secs(20))?;
    stop_traffic.store(true, Ordering::SeqCst);
    let _ = sender.join();
    let done = agent.stop()?;
    std::thread::sleep(Duration::from_millis(500));
    stop_second.store(true, Ordering::SeqCst);
    let _ = second.join();
    let mut cap = cap;
    cap.stop();
    let decode = format!("tcp.port=={port},cflow");
    // Refused connections while the collector was away are TCP's resets,
    // not the exporter's doing; anything else is a fault.
    let said: Vec<String> = cap
        .expert(&decode)?
        .into_iter()
        .flat_map(|(_, m)| m)
        .filter(|m| m != "Connection reset (RST)")
        .collect();
    anyhow::ensure!(said.is_empty(), "tshark's expert info: {said:?}");
    let packets = cap.fields(&decode, &["cflow.octets"])?;
    let records: u64 = packets.iter().map(|p| p[0].len() as u64).sum();
    let bytes: u64 = packets
        .iter()
        .flat_map(|p| p[0].iter().filter_map(|b| b.parse::<u64>().ok()))
        .sum();
    let want_bytes: u64 = done.records.iter().map(|r| num(&r["bytes"]).unwrap_or(0)).sum();
    assert_eq!(
        (records, bytes),
        (done.records.len() as u64, want_bytes),
        "every window once over the two connections"
    );
    Ok(())
}
