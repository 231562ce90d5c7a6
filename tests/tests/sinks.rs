//! File sinks live with log rotation: when logrotate moves the JSON file
//! away, the next window goes to a new file at the same path, and the
//! two files together hold every record once.

use std::{net::SocketAddr, time::Duration};

use flowlog_tests::{
    Filter,
    agent::{Agent, read_json_lines},
    privileged, sum,
    topology::{B_V4, RouterTopology},
    traffic,
};

#[test]
fn a_rotated_json_file_is_followed_and_nothing_is_lost_or_doubled() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::ipv4_only()?;
    let agent = Agent::start(&t.agent_args("tc", &["--window-secs", "1", "--no-rtt"]))?;
    let dst = SocketAddr::new(B_V4.parse()?, 9600);
    let port = traffic::udp(&t.a, &t.b, dst, &[])?;
    let mut sent = 0u64;
    for _ in 0..3 {
        traffic::udp_from_port(&t.a, &t.b, port, dst, &[100; 10])?;
        sent += 10;
        std::thread::sleep(Duration::from_millis(500));
    }
    let f = Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        srcport: Some(u64::from(port)),
        log_status: Some("OK"),
        ..Default::default()
    };
    // Until the file holds some of them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sum(&agent.records()?, &f).0 == 0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no records written");
        std::thread::sleep(Duration::from_millis(100));
    }
    // logrotate's default: rename, then the writer must notice.
    let path = agent.dir().join("records.jsonl");
    let rotated = agent.dir().join("records.jsonl.1");
    std::fs::rename(&path, &rotated)?;
    for _ in 0..3 {
        traffic::udp_from_port(&t.a, &t.b, port, dst, &[100; 10])?;
        sent += 10;
        std::thread::sleep(Duration::from_millis(500));
    }
    // Read before the stop: the agent's directory goes with it.
    let old = read_json_lines(&rotated)?;
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    let new = done.records;
    let (p_old, _, _) = sum(&old, &f);
    let (p_new, _, _) = sum(&new, &f);
    assert!(
        p_old > 0 && p_new > 0,
        "old file {p_old} ({} records), new file {p_new} ({} records)\n{}",
        old.len(),
        new.len(),
        done.stderr
    );
    assert_eq!(p_old + p_new, sent);
    assert!(
        done.stderr.contains("output file was moved away"),
        "{}",
        done.stderr
    );
    Ok(())
}
