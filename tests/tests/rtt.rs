//! Handshake RTT on a real kernel: the router↔b link is a TAP wire that
//! delays every frame by 20 ms each way, so a new TCP connection from a to b
//! has a 40 ms round trip.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use flowlog_tests::{
    Filter,
    agent::Agent,
    privileged,
    topology::{A_V4, B_V4, RouterOptions, RouterTopology},
    traffic,
    wire::drop_first_syn,
};
use serde_json::Value;

const ONE_WAY: Duration = Duration::from_millis(20);
const WANT_US: i64 = 40_000;
const TOLERANCE_US: i64 = 2_000;

fn delayed(drop_syn: bool) -> anyhow::Result<RouterTopology> {
    RouterTopology::with(RouterOptions {
        b_delay: Some(ONE_WAY),
        drop_to_b: drop_syn.then(drop_first_syn),
        ..Default::default()
    })
}

/// The TCP records of the connection from `port` to 8000 on `interface`.
fn tcp_records<'a>(records: &'a [Value], interface: &str, port: u16) -> Vec<&'a Value> {
    let up = Filter {
        interface: Some(interface),
        protocol: Some(6),
        srcport: Some(port.into()),
        dstport: Some(8000),
        log_status: Some("OK"),
        ..Default::default()
    };
    let down = Filter {
        interface: Some(interface),
        protocol: Some(6),
        srcport: Some(8000),
        dstport: Some(port.into()),
        log_status: Some("OK"),
        ..Default::default()
    };
    records
        .iter()
        .filter(|r| up.matches(r) || down.matches(r))
        .collect()
}

fn assert_rtt_near_40ms(records: &[&Value], what: &str) {
    assert!(!records.is_empty(), "{what}: no records");
    for r in records {
        let rtt = r["rtt"]
            .as_i64()
            .unwrap_or_else(|| panic!("{what}: no rtt on {r}"));
        assert!(
            (rtt - WANT_US).abs() <= TOLERANCE_US,
            "{what}: rtt {rtt} µs, want 40 ms ± 2 ms: {r}"
        );
        let legs = r["rtt-server-side"].as_i64().unwrap_or(-1) + r["rtt-client-side"].as_i64().unwrap_or(-1);
        assert_eq!(legs, rtt, "{what}: legs must add up: {r}");
    }
}

#[test]
fn router_measures_the_full_round_trip() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = delayed(false)?;
    let agent = Agent::start(&t.agent_args("tc", &[]))?;
    let tcp = traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 8000), 64 << 10)?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    for iface in ["r-a", "r-b"] {
        assert_rtt_near_40ms(&tcp_records(&done.records, iface, tcp.client_port), iface);
    }
    // On r-a the delay is all on the server side; on r-b too (the wire is
    // beyond it), and the client side is the local hop only.
    for r in tcp_records(&done.records, "r-a", tcp.client_port) {
        assert!(r["rtt-client-side"].as_i64() < Some(TOLERANCE_US), "{r}");
    }
    // UDP and ICMP never carry an RTT.
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 8001), &[10]).ok();
    assert!(
        done.records
            .iter()
            .filter(|r| r["protocol"] != 6)
            .all(|r| r["rtt"].is_null())
    );
    Ok(())
}

#[test]
fn host_attached_client_measures_the_round_trip() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = delayed(false)?;
    let agent = Agent::start(&["--netns", t.a.name(), "-i", "eth0"])?;
    let tcp = traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 8000), 64 << 10)?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let records = tcp_records(&done.records, "eth0", tcp.client_port);
    assert_rtt_near_40ms(&records, "host a eth0");
    Ok(())
}

#[test]
fn retransmitted_syn_never_inflates_the_rtt() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    // The wire eats the first SYN; the client retransmits it ~1 s later.
    let t = delayed(true)?;
    let agent = Agent::start(&["--netns", t.router.name(), "-i", "r-a", "-i", "r-b"])?;
    let tcp = traffic::tcp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 8000), 4 << 10)?;
    assert!(tcp.client_retrans >= 1, "the SYN was not retransmitted: {tcp:?}");
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    for iface in ["r-a", "r-b"] {
        let records = tcp_records(&done.records, iface, tcp.client_port);
        assert!(!records.is_empty());
        for r in records {
            if let Some(rtt) = r["rtt"].as_i64() {
                assert!(
                    (rtt - WANT_US).abs() <= TOLERANCE_US,
                    "{iface}: inflated rtt {rtt}: {r}"
                );
            }
        }
    }
    // Karn's rule: r-a saw both SYNs, so its handshake is skipped.
    assert!(
        done.agent_status["rtt-ambiguous"].as_u64() >= Some(1),
        "{}",
        done.agent_status
    );
    Ok(())
}

#[test]
fn long_transfer_keeps_its_rtt_in_later_windows() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = delayed(false)?;
    let agent = Agent::start(&["--netns", t.router.name(), "-i", "r-a", "--window-secs", "1"])?;
    let listener = t.b.run(|| TcpListener::bind("0.0.0.0:8000"))??;
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut buf = [0u8; 4096];
        let mut n = 0;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k,
            }
        }
    });
    let dst: SocketAddr = SocketAddr::new(B_V4.parse()?, 8000);
    let mut c =
        t.a.run(move || TcpStream::connect_timeout(&dst, Duration::from_secs(5)))??;
    let port = c.local_addr()?.port();
    // A trickle across at least three window boundaries.
    for _ in 0..35 {
        c.write_all(&[7u8; 1000])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(c);
    let received = server.join().map_err(|_| anyhow::anyhow!("server panicked"))??;
    assert_eq!(received, 35_000);
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let records: Vec<&Value> = tcp_records(&done.records, "r-a", port)
        .into_iter()
        .filter(|r| r["srcaddr"] == A_V4)
        .collect();
    let windows: std::collections::BTreeSet<i64> =
        records.iter().filter_map(|r| r["start"].as_i64()).collect();
    assert!(
        windows.len() >= 3,
        "want records in several windows, got {windows:?}"
    );
    assert_rtt_near_40ms(&records, "every window of the transfer");
    Ok(())
}
