//! Exact counting on a real kernel: a router namespace between two hosts,
//! the agent attached to the router's interfaces, known traffic.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use flowlog_tests::{
    Filter,
    agent::Agent,
    packet::{Count, Reference, Tuple},
    privileged, sum,
    topology::{A_V4, A_V6, B_V4, B_V6, HostPair, PAIR_A_V4, PAIR_B_V4, RouterTopology},
    traffic,
};
use serde_json::Value;

/// Payload sizes; the largest fills a 1500-byte MTU exactly over IPv6 (and
/// leaves room over IPv4), so nothing fragments.
const UDP_SIZES: [usize; 6] = [1, 100, 512, 1000, 1400, 1452];

fn udp_sizes(repeat: usize) -> Vec<usize> {
    UDP_SIZES
        .iter()
        .copied()
        .cycle()
        .take(UDP_SIZES.len() * repeat)
        .collect()
}

/// Asserts a flow appears with exactly `want` on an interface/direction.
fn assert_flow(records: &[Value], f: Filter<'_>, want: Count) {
    let (packets, bytes, n) = sum(records, &f);
    assert!(n > 0, "no record for {f:?}");
    assert_eq!((packets, bytes), (want.packets, want.bytes), "counts for {f:?}");
}

fn flow<'a>(
    interface: &'a str,
    direction: &'a str,
    proto: u64,
    src: &'a str,
    sport: u64,
    dst: &'a str,
    dport: u64,
) -> Filter<'a> {
    Filter {
        interface: Some(interface),
        direction: Some(direction),
        protocol: Some(proto),
        srcaddr: Some(src),
        srcport: Some(sport),
        dstaddr: Some(dst),
        dstport: Some(dport),
        log_status: Some("OK"),
    }
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Every flow of the test's own traffic (between the two hosts; not the
/// kernel's own neighbour discovery) carries first/last-seen between when
/// that traffic started and ended. The kernel stamps jiffies, so allow two
/// ticks of the slowest kernel tick rate (100 Hz) either side.
fn assert_seen_within(records: &[Value], from_ms: i64, to_ms: i64) {
    const SLACK_MS: i64 = 20;
    let hosts = [A_V4, B_V4, A_V6, B_V6];
    let ours = |r: &&Value| {
        r["log-status"] == "OK"
            && hosts.iter().any(|h| r["srcaddr"] == *h)
            && hosts.iter().any(|h| r["dstaddr"] == *h)
    };
    let mut n = 0;
    for r in records.iter().filter(ours) {
        let (Some(first), Some(last)) = (r["first-seen"].as_i64(), r["last-seen"].as_i64()) else {
            panic!("flow without first/last-seen: {r}");
        };
        assert!(
            from_ms - SLACK_MS <= first && first <= last && last <= to_ms + SLACK_MS,
            "first/last-seen {first}..{last} outside the traffic ({from_ms}..{to_ms}): {r}"
        );
        n += 1;
    }
    assert!(n > 0, "no flows");
}

/// No two records describe the same flow, direction and window.
fn assert_no_duplicates(records: &[Value]) {
    let mut seen = HashSet::new();
    for r in records.iter().filter(|r| r["log-status"] == "OK") {
        let id = format!(
            "{} {} {} {}:{} {}:{} {}",
            r["interface"],
            r["direction"],
            r["protocol"],
            r["srcaddr"],
            r["srcport"],
            r["dstaddr"],
            r["dstport"],
            r["start"]
        );
        assert!(seen.insert(id.clone()), "duplicate record {id}");
    }
}

fn router_counts_exactly(mode: &str) -> anyhow::Result<()> {
    let t = RouterTopology::new()?;
    let agent = Agent::start(&t.agent_args(mode, &["--window-secs", "600"]))?;
    // The kernel's own packet tap on the router's interface is the truth:
    // it sees what crossed r-a (after anything the link itself dropped).
    let reference = Reference::start(&t.router, "r-a")?;

    let sizes = udp_sizes(5);
    let traffic_from = now_ms();
    let udp4_port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 5001), &sizes)?;
    let udp6_port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V6.parse()?, 5002), &sizes)?;
    let tcp4 = traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 5003), 4 << 20)?;
    let tcp6 = traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V6.parse()?, 5004), 1 << 20)?;
    traffic::ping(&t.a, B_V4.parse()?, 5, 56)?;
    traffic::ping(&t.a, B_V6.parse()?, 5, 56)?;
    let traffic_to = now_ms();

    let captured = reference.finish()?;
    let done = agent.stop()?;
    assert!(done.status.success(), "agent failed:\n{}", done.stderr);
    let r = &done.records;
    assert_no_duplicates(r);
    assert_seen_within(r, traffic_from, traffic_to);

    // UDP: what was sent, datagram by datagram.
    let udp = |per_packet_overhead: usize| Count {
        packets: sizes.len() as u64,
        bytes: sizes.iter().map(|s| (s + per_packet_overhead) as u64).sum(),
    };
    for (iface, dir) in [("r-a", "in"), ("r-b", "out")] {
        assert_flow(
            r,
            flow(iface, dir, 17, A_V4, udp4_port.into(), B_V4, 5001),
            udp(28),
        );
        assert_flow(
            r,
            flow(iface, dir, 17, A_V6, udp6_port.into(), B_V6, 5002),
            udp(48),
        );
        assert_flow(
            r,
            flow(iface, dir, 1, A_V4, 0, B_V4, 0),
            Count {
                packets: 5,
                bytes: 5 * 84,
            },
        );
        assert_flow(
            r,
            flow(iface, dir, 58, A_V6, 0, B_V6, 0),
            Count {
                packets: 5,
                bytes: 5 * 104,
            },
        );
    }
    for (iface, dir) in [("r-b", "in"), ("r-a", "out")] {
        assert_flow(
            r,
            flow(iface, dir, 1, B_V4, 0, A_V4, 0),
            Count {
                packets: 5,
                bytes: 5 * 84,
            },
        );
        assert_flow(
            r,
            flow(iface, dir, 58, B_V6, 0, A_V6, 0),
            Count {
                packets: 5,
                bytes: 5 * 104,
            },
        );
    }

    // TCP: packets and bytes from the reference capture on r-a, which must
    // agree with the hosts' own segment counts when nothing was lost.
    for (tcp, a, b, port) in [(tcp4, A_V4, B_V4, 5003u16), (tcp6, A_V6, B_V6, 5004u16)] {
        let up = captured[&Tuple::new(false, 6, a, tcp.client_port, b, port)?];
        let down = captured[&Tuple::new(true, 6, b, port, a, tcp.client_port)?];
        if tcp.client_retrans == 0 && tcp.server_retrans == 0 {
            assert_eq!(
                up.packets,
                u64::from(tcp.client_segs_out),
                "capture vs TCP_INFO {tcp:?}"
            );
            // The client's count of segments received includes the SYN-ACK,
            // which the server sends from its listener's request socket.
            assert_eq!(
                down.packets,
                u64::from(tcp.client_segs_in),
                "capture vs TCP_INFO {tcp:?}"
            );
        } else {
            // Native XDP on veth queues frames in a 256-entry ring that can
            // overflow before the program runs: those never crossed r-a.
            assert!(up.packets <= u64::from(tcp.client_segs_out), "{up:?} vs {tcp:?}");
        }
        for (iface, dir) in [("r-a", "in"), ("r-b", "out")] {
            assert_flow(
                r,
                flow(iface, dir, 6, a, tcp.client_port.into(), b, port.into()),
                up,
            );
        }
        for (iface, dir) in [("r-b", "in"), ("r-a", "out")] {
            assert_flow(
                r,
                flow(iface, dir, 6, b, port.into(), a, tcp.client_port.into()),
                down,
            );
        }
    }
    Ok(())
}

#[test]
fn router_tc_counts_every_packet_and_byte() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    router_counts_exactly("tc")
}

#[test]
fn router_xdp_counts_every_packet_and_byte() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    router_counts_exactly("xdp")
}

#[test]
fn host_attached_counts_both_directions() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let p = HostPair::new()?;
    let agent = Agent::start(&["--netns", p.a.name(), "-i", "eth0", "--window-secs", "600"])?;
    let sizes = udp_sizes(3);
    let out_port = traffic::udp(&p.a, &p.b, SocketAddr::new(PAIR_B_V4.parse()?, 6001), &sizes)?;
    let in_port = traffic::udp(&p.b, &p.a, SocketAddr::new(PAIR_A_V4.parse()?, 6002), &sizes[..7])?;
    let tcp = traffic::tcp(&p.b, &p.a, SocketAddr::new(PAIR_A_V4.parse()?, 6003), 1 << 20)?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let r = &done.records;
    let bytes = |s: &[usize]| s.iter().map(|x| (x + 28) as u64).sum::<u64>();
    assert_flow(
        r,
        flow("eth0", "out", 17, PAIR_A_V4, out_port.into(), PAIR_B_V4, 6001),
        Count {
            packets: sizes.len() as u64,
            bytes: bytes(&sizes),
        },
    );
    assert_flow(
        r,
        flow("eth0", "in", 17, PAIR_B_V4, in_port.into(), PAIR_A_V4, 6002),
        Count {
            packets: 7,
            bytes: bytes(&sizes[..7]),
        },
    );
    // b is the TCP client here: a receives its segments, sends the server's.
    let (pk_in, ..) = sum(
        r,
        &flow(
            "eth0",
            "in",
            6,
            PAIR_B_V4,
            tcp.client_port.into(),
            PAIR_A_V4,
            6003,
        ),
    );
    let (pk_out, ..) = sum(
        r,
        &flow(
            "eth0",
            "out",
            6,
            PAIR_A_V4,
            6003,
            PAIR_B_V4,
            tcp.client_port.into(),
        ),
    );
    assert_eq!(
        (pk_in, pk_out),
        (u64::from(tcp.client_segs_out), u64::from(tcp.client_segs_in)),
        "{tcp:?}"
    );
    Ok(())
}

#[test]
fn windows_partition_traffic_without_loss_or_duplicates() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let agent = Agent::start(&t.agent_args("tc", &["--window-secs", "1"]))?;
    // One flow, ~4 s of traffic at 50 datagrams/s: it spans 4-5 windows,
    // and sends continue right through every generation flip.
    let dst = SocketAddr::new(B_V4.parse()?, 7001);
    let mut port = 0;
    let mut sent = 0u64;
    let mut bytes = 0u64;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let sizes = [64, 700, 1300, 90, 400];
        port = traffic::udp_from_port(&t.a, &t.b, port, dst, &sizes)?;
        sent += sizes.len() as u64;
        bytes += sizes.iter().map(|s| (s + 28) as u64).sum::<u64>();
        std::thread::sleep(Duration::from_millis(100));
    }
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let r = &done.records;
    assert_no_duplicates(r);
    for (iface, dir) in [("r-a", "in"), ("r-b", "out")] {
        let f = flow(iface, dir, 17, A_V4, port.into(), B_V4, 7001);
        let (p, b, windows) = sum(r, &f);
        assert_eq!((p, b), (sent, bytes), "{iface} {dir}");
        assert!(
            windows >= 3,
            "expected the flow in several windows, got {windows}"
        );
    }
    // Window bounds tile time: each record's window is 1 s, aligned.
    for rec in r.iter().filter(|x| x["log-status"] == "OK") {
        let (s, e) = (
            rec["start"].as_i64().unwrap_or(0),
            rec["end"].as_i64().unwrap_or(0),
        );
        assert!(e - s >= 1 && e - s <= 2, "window {s}..{e}");
    }
    Ok(())
}

#[test]
fn protobuf_file_matches_json_records() -> anyhow::Result<()> {
    use prost::Message as _;
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let pb = flowlog_tests::agent::TempDir::new()?;
    let pb_path = pb.path().join("records.pb");
    let pb_arg = pb_path.to_string_lossy().into_owned();
    let agent = Agent::start(&[
        "--netns",
        t.router.name(),
        "-i",
        "r-a",
        "--protobuf-file",
        &pb_arg,
    ])?;
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 7100), &[10, 20, 30])?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let bytes = std::fs::read(&pb_path)?;
    let mut buf = bytes.as_slice();
    let mut decoded = Vec::new();
    while !buf.is_empty() {
        decoded.push(flowlog_agent::record::FlowLogRecord::decode_length_delimited(
            &mut buf,
        )?);
    }
    assert_eq!(decoded.len(), done.records.len());
    let from_pb: Vec<Value> = decoded
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    assert_eq!(from_pb, done.records);
    let (p, b, _) = sum(
        &from_pb,
        &Filter {
            dstport: Some(7100),
            ..Default::default()
        },
    );
    assert_eq!((p, b), (3, 10 + 20 + 30 + 3 * 28));
    Ok(())
}

#[test]
fn xdp_falls_back_to_generic_mode_and_says_so() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    // Loopback has no native XDP: the agent must fall back to generic XDP.
    let ns = flowlog_tests::netns::Netns::new("lo")?;
    let agent = Agent::start(&["--netns", ns.name(), "-i", "lo", "--mode", "xdp"])?;
    let status = agent.status()?;
    assert_eq!(
        status["attachments"][0]["ingress-hook"], "xdp-generic",
        "{status}"
    );
    let dst = SocketAddr::new("127.0.0.1".parse()?, 7200);
    traffic::udp(&ns, &ns, dst, &[10, 20])?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stderr.contains("using generic (SKB) XDP"), "{}", done.stderr);
    let f = |dir| Filter {
        interface: Some("lo"),
        direction: Some(dir),
        dstport: Some(7200),
        ..Default::default()
    };
    assert_eq!(sum(&done.records, &f("in")), (2, 30 + 56, 1));
    assert_eq!(sum(&done.records, &f("out")), (2, 30 + 56, 1));
    Ok(())
}
