//! log-status on a real kernel: NODATA for idle windows, SKIPDATA with exact
//! skipped counts when the flow map and overflow ring are both too small.

use std::{collections::BTreeMap, time::Duration};

use flowlog_tests::{
    Filter,
    agent::Agent,
    packet::{frames, inject},
    privileged, sum,
    topology::{HostPair, RouterTopology},
};

#[test]
fn idle_interface_gets_one_nodata_record_per_window() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    // IPv4 only with static neighbours: the link carries nothing at all.
    let p = HostPair::with(true)?;
    let agent = Agent::start(&["--netns", p.a.name(), "-i", "eth0", "--window-secs", "1"])?;
    agent.wait_windows(4, Duration::from_secs(15))?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let mut per_window: BTreeMap<(i64, i64), Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &done.records {
        per_window
            .entry((r["start"].as_i64().unwrap_or(0), r["end"].as_i64().unwrap_or(0)))
            .or_default()
            .push(r);
    }
    assert!(per_window.len() >= 4, "{per_window:?}");
    for ((start, end), records) in &per_window {
        assert_eq!(records.len(), 1, "window {start}..{end}: {records:?}");
        let r = records[0];
        assert_eq!(r["log-status"], "NODATA", "{r}");
        assert_eq!(r["interface"], "eth0");
        assert!(
            r["srcaddr"].is_null() && r["dstaddr"].is_null() && r["protocol"].is_null(),
            "{r}"
        );
        assert!(
            r["direction"].is_null() && r["packets"] == 0 && r["bytes"] == 0,
            "{r}"
        );
        assert!(end > start, "{r}");
    }
    // Inner windows are whole, aligned seconds.
    let inner: Vec<_> = per_window.keys().skip(1).take(per_window.len() - 2).collect();
    assert!(inner.iter().all(|(s, e)| e - s == 1), "{inner:?}");
    Ok(())
}

#[test]
fn full_maps_yield_skipdata_with_exact_counts() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    // 8 flows fit; the ring holds a few dozen events.
    let agent = Agent::start(&[
        "--netns",
        t.router.name(),
        "-i",
        "r-a",
        "--mode",
        "tc",
        "--flow-map-entries",
        "8",
        "--overflow-ring-bytes",
        "4096",
        "--no-rtt",
    ])?;
    // 3000 distinct five-tuples, each one packet, in one burst.
    const N: u16 = 3000;
    let (batch, sent_bytes) = frames::distinct_udp(N, 10_000, 9, 50);
    inject(&t.a, "eth0", &batch)?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let r = &done.records;
    let ok = sum(
        r,
        &Filter {
            interface: Some("r-a"),
            direction: Some("in"),
            srcaddr: Some("10.1.0.2"),
            log_status: Some("OK"),
            ..Default::default()
        },
    );
    let skipped = sum(
        r,
        &Filter {
            interface: Some("r-a"),
            direction: Some("in"),
            log_status: Some("SKIPDATA"),
            ..Default::default()
        },
    );
    assert!(
        ok.0 > 0 && skipped.0 > 0,
        "both paths must be exercised: ok {ok:?} skipped {skipped:?}"
    );
    assert_eq!(
        ok.0 + skipped.0,
        u64::from(N),
        "packets: ok {ok:?} + skipped {skipped:?}"
    );
    assert_eq!(
        ok.1 + skipped.1,
        sent_bytes,
        "bytes: ok {ok:?} + skipped {skipped:?}"
    );
    // The overflow ring saved some of what the map could not hold.
    assert!(ok.2 > 8, "only the map's flows were saved: {ok:?}");
    // SKIPDATA records name the attachment and direction, not a five-tuple.
    for s in r.iter().filter(|x| x["log-status"] == "SKIPDATA") {
        assert!(s["srcaddr"].is_null() && s["direction"] == "in", "{s}");
    }
    Ok(())
}

/// Flows per flood round: twenty times what the flow map holds.
const FLOOD_FLOWS: u16 = 20_480;

#[test]
fn flood_beyond_map_capacity_is_accounted_exactly_over_several_windows() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    let agent = Agent::start(&[
        "--netns",
        t.router.name(),
        "-i",
        "r-a",
        "--mode",
        "tc",
        "--window-secs",
        "1",
        "--flow-map-entries",
        "1024",
        "--overflow-ring-bytes",
        "65536",
        "--no-rtt",
    ])?;
    // Rounds spread over about five windows.
    let (mut packets, mut bytes) = (0u64, 0u64);
    for round in 0..20 {
        // All new flows: the destination port names the round.
        let (batch, b) = frames::distinct_udp(FLOOD_FLOWS, 1024, 20_000 + round, 32);
        inject(&t.a, "eth0", &batch)?;
        packets += batch.len() as u64;
        bytes += b;
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let flood = |status| Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        log_status: Some(status),
        ..Default::default()
    };
    let ok = sum(
        &done.records,
        &Filter {
            srcaddr: Some("10.1.0.2"),
            ..flood("OK")
        },
    );
    let skipped = sum(&done.records, &flood("SKIPDATA"));
    assert_eq!(
        ok.0 + skipped.0,
        packets,
        "packets: ok {ok:?} + skipped {skipped:?}"
    );
    assert_eq!(ok.1 + skipped.1, bytes, "bytes: ok {ok:?} + skipped {skipped:?}");
    // Several windows each filled the map and skipped the rest.
    let mut windows: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in done
        .records
        .iter()
        .filter(|r| r["interface"] == "r-a" && r["direction"] == "in")
    {
        let w = windows.entry(r["start"].to_string()).or_default();
        match r["log-status"].as_str() {
            Some("OK") => w.0 += 1,
            Some("SKIPDATA") => w.1 += 1,
            _ => {}
        }
    }
    let overloaded = windows
        .values()
        .filter(|(ok, skip)| *ok >= 1024 && *skip == 1)
        .count();
    assert!(
        overloaded >= 3,
        "windows (OK records, SKIPDATA records): {windows:?}"
    );
    Ok(())
}

/// A flood of distinct IPv6 flows fills the IPv6 map, and the status and
/// the metrics say so against the IPv6 map's own capacity, while the IPv4
/// map stays as empty as its traffic.
#[test]
fn each_family_s_map_fill_is_reported_against_its_own_capacity() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let p = HostPair::new()?;
    let addr = format!("127.0.0.1:{}", flowlog_tests::free_port()?);
    let agent = Agent::start(&[
        "--netns",
        p.b.name(),
        "-i",
        "eth0",
        "--mode",
        "tc",
        "--window-secs",
        "2",
        "--flow-map-entries",
        "65536",
        "--flow-map-entries-ipv6",
        "1024",
        "--metrics-listen",
        &addr,
    ])?;
    // 3,000 distinct IPv6 flows from a to b: three times the IPv6 map.
    let (a6, b6) = (
        "fd03::2".parse::<std::net::Ipv6Addr>()?.octets(),
        "fd03::3".parse::<std::net::Ipv6Addr>()?.octets(),
    );
    let flood: Vec<Vec<u8>> = (0..3000u16)
        .map(|i| {
            let udp = frames::udp(20_000 + i, 7_000, 0);
            let mut f = frames::eth(0x86dd);
            f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x03, 0x03]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x03, 0x02]);
            [f, frames::ipv6(a6, b6, 17, &udp)].concat()
        })
        .collect();
    inject(&p.a, "eth0", &flood)?;
    // Watch the status until a drain shows the flood (bounded).
    let (mut best6, mut with4) = (0.0f64, 1.0f64);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline && best6 < 1.0 {
        let s = agent.ok("DescribeAgentStatus", serde_json::json!({}));
        let fill = &s["FlowMaps"][0];
        let ratio6 = fill["Ipv6"]["FillRatio"].as_f64().unwrap_or(0.0);
        if ratio6 > best6 {
            best6 = ratio6;
            with4 = fill["Ipv4"]["FillRatio"].as_f64().unwrap_or(1.0);
            assert_eq!(fill["Ipv6"]["FlowMapEntries"], 1024, "{fill}");
            assert_eq!(fill["Ipv4"]["FlowMapEntries"], 65536, "{fill}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(best6, 1.0, "the IPv6 map never showed full");
    assert!(with4 < 0.01, "IPv4 fill {with4} beside a pure IPv6 flood");
    // The metric carries the family.
    let text = flowlog_tests::scrape_metrics(&addr)?;
    let netns = p.b.name();
    for family in ["ipv4", "ipv6"] {
        let series = format!("flowlog_flow_map_fill_ratio{{netns=\"{netns}\",family=\"{family}\"}}");
        assert!(text.contains(&series), "no {series} in\n{text}");
    }
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    Ok(())
}
