//! Handshake RTT on a real kernel: the router↔b link is a TAP wire that
//! delays every frame by 20 ms each way, so a new TCP connection from a to b
//! has a round trip of at least 40 ms. The agent's figures are bracketed by
//! two independent measures of the same handshake, taken in the same run,
//! whose intervals nest around the agent's by the order packets move in:
//!
//! - the wire's own record (it took the SYN after every hook saw it leave,
//!   and delivered the SYN-ACK before any hook saw it come back): the
//!   server side is at least that;
//! - the client's own `connect()` time (the SYN leaves after the call, the
//!   SYN-ACK wakes it after every hook saw it): the server side is at most
//!   that.
//!
//! On an idle machine the two are a few hundred microseconds apart, so a
//! wrong RTT shows; on a loaded one both stretch with the real handshake,
//! so load never fails the test.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener},
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
/// Clock reads on either side of a bound (the agent's hook, the wire's and
/// the client's `Instant`s all read CLOCK_MONOTONIC).
const CLOCK_SLACK_US: i64 = 100;

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

/// The wire's measure of a connection's handshake, in µs.
fn wire_us(t: &RouterTopology, client_port: u16) -> i64 {
    let wire = t.wire.as_ref().unwrap_or_else(|| panic!("no delay wire"));
    let d = wire
        .handshake(client_port)
        .unwrap_or_else(|| panic!("the wire saw no handshake from port {client_port}"));
    // The fixture itself: never less than its delay each way.
    assert!(d >= ONE_WAY * 2, "the wire carried the handshake in {d:?}");
    d.as_micros() as i64
}

/// The bracket a server-side leg must lie in, in µs.
#[derive(Clone, Copy, Debug)]
struct Bracket {
    /// The wire's measure: nested inside the agent's.
    wire_us: i64,
    /// The client's `connect()` time: the agent's nested inside it.
    connect_us: i64,
}

impl Bracket {
    fn new(wire_us: i64, connect: Duration) -> Self {
        Self {
            wire_us,
            connect_us: connect.as_micros() as i64,
        }
    }
}

/// Every record carries the handshake RTT: its leg beyond the wire inside
/// the bracket, the other leg local (never the wire's delay), and the two
/// adding up.
fn assert_rtt_matches_the_wire(records: &[&Value], b: Bracket, what: &str) {
    assert!(!records.is_empty(), "{what}: no records");
    assert!(
        b.connect_us + CLOCK_SLACK_US >= b.wire_us,
        "{what}: the client's connect() took less than the wire: {b:?}"
    );
    for r in records {
        let rtt = r["rtt"]
            .as_i64()
            .unwrap_or_else(|| panic!("{what}: no rtt on {r}"));
        let server = r["rtt-server-side"].as_i64().unwrap_or(-1);
        let client = r["rtt-client-side"].as_i64().unwrap_or(-1);
        assert_eq!(server + client, rtt, "{what}: legs must add up: {r}");
        assert!(
            server >= b.wire_us - CLOCK_SLACK_US && server <= b.connect_us + CLOCK_SLACK_US,
            "{what}: server side {server} µs outside [wire {}, connect() {}] µs: {r}",
            b.wire_us,
            b.connect_us
        );
        assert!(
            (0..ONE_WAY.as_micros() as i64).contains(&client),
            "{what}: client side {client} µs is not a local hop: {r}"
        );
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
    // On both router interfaces the wire is on the server side; the
    // client side is the local hop only.
    let b = Bracket::new(wire_us(&t, tcp.client_port), tcp.connect);
    for iface in ["r-a", "r-b"] {
        assert_rtt_matches_the_wire(&tcp_records(&done.records, iface, tcp.client_port), b, iface);
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
    let b = Bracket::new(wire_us(&t, tcp.client_port), tcp.connect);
    assert_rtt_matches_the_wire(&records, b, "host a eth0");
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
    // Measured at all, it is the retransmitted SYN's handshake, never one
    // that includes the second the first SYN waited: connect() took that
    // second too, so the wire plus one more one-way delay bounds it here.
    let wire = wire_us(&t, tcp.client_port);
    let b = Bracket {
        wire_us: wire,
        connect_us: wire + ONE_WAY.as_micros() as i64,
    };
    assert!(
        tcp.connect >= Duration::from_millis(900),
        "the first SYN was not dropped: {tcp:?}"
    );
    for iface in ["r-a", "r-b"] {
        let records = tcp_records(&done.records, iface, tcp.client_port);
        assert!(!records.is_empty());
        let measured: Vec<&Value> = records.into_iter().filter(|r| !r["rtt"].is_null()).collect();
        if !measured.is_empty() {
            assert_rtt_matches_the_wire(&measured, b, iface);
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
    let (mut c, connect) = traffic::connect_timed(&t.a, dst)?;
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
    assert_rtt_matches_the_wire(
        &records,
        Bracket::new(wire_us(&t, port), connect),
        "every window of the transfer",
    );
    Ok(())
}
