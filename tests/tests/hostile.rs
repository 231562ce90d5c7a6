//! Malformed frames injected raw on a real link, and bad configuration: how
//! each is counted or refused, and that nothing is left behind.

use std::net::SocketAddr;

use flowlog_tests::{
    Filter,
    agent::{Agent, TempDir, run_expecting_failure},
    hooks_gone, hooks_on,
    packet::{frames, inject},
    privileged, sum,
    topology::{B_V4, RouterTopology},
    traffic,
};
use serde_json::Value;

const A: [u8; 4] = [10, 1, 0, 2];
const B: [u8; 4] = [10, 2, 0, 2];

fn repeat(frame: Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    vec![frame; n]
}

fn tagged(tags: &[u16], inner_ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = frames::eth(tags[0]);
    for (i, _) in tags.iter().enumerate() {
        let next = tags.get(i + 1).copied().unwrap_or(inner_ethertype);
        f.extend_from_slice(&[0, 10 + i as u8]);
        f.extend_from_slice(&next.to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

fn malformed(status: &Value, key: &str) -> u64 {
    status["malformed"][key]["packets"].as_u64().unwrap_or(0)
}

/// Each class of bad frame is sent a distinct number of times so the counts
/// identify it.
fn hostile_frames(mode: &str) -> anyhow::Result<()> {
    let t = RouterTopology::new()?;
    let agent = Agent::start(&t.agent_args(mode, &[]))?;
    let udp = frames::udp(1111, 2222, 50);
    let mut batch = Vec::new();
    // Ethernet header then 10 bytes of an IPv4 header.
    batch.extend(repeat([frames::eth(0x0800), vec![0x45; 10]].concat(), 2));
    // IHL 4.
    let mut ihl4 = frames::ipv4(A, B, 17, 0, &udp);
    ihl4[0] = 0x44;
    batch.extend(repeat([frames::eth(0x0800), ihl4].concat(), 3));
    // Total length beyond the frame.
    let mut long = frames::ipv4(A, B, 17, 0, &udp);
    long[2..4].copy_from_slice(&1400u16.to_be_bytes());
    batch.extend(repeat([frames::eth(0x0800), long].concat(), 4));
    // TCP header cut to 10 bytes by the IP length.
    let cut_tcp = frames::ipv4(A, B, 6, 0, &[0x0d, 0x05, 0x0d, 0x06, 0, 0, 0, 0, 0, 0]);
    batch.extend(repeat([frames::eth(0x0800), cut_tcp].concat(), 5));
    // IPv6 with nine destination-options headers before UDP.
    let mut chain = Vec::new();
    for i in 0..9 {
        chain.extend_from_slice(&[if i == 8 { 17 } else { 60 }, 0, 0, 0, 0, 0, 0, 0]);
    }
    chain.extend_from_slice(&udp);
    let mut a6 = [0u8; 16];
    a6[..2].copy_from_slice(&[0xfd, 0x01]);
    a6[15] = 2;
    let mut b6 = a6;
    b6[1] = 0x02;
    batch.extend(repeat(
        [frames::eth(0x86dd), frames::ipv6(a6, b6, 60, &chain)].concat(),
        6,
    ));
    // Not IP at all.
    batch.extend(repeat([frames::eth(0x88b5), vec![0; 46]].concat(), 7));
    // Three stacked VLAN tags around a valid packet.
    let ip = frames::ipv4(A, B, 17, 0, &udp);
    batch.extend(repeat(tagged(&[0x88a8, 0x8100, 0x8100], 0x0800, &ip), 8));
    // Two stacked tags: a valid, counted UDP flow.
    batch.extend(repeat(tagged(&[0x88a8, 0x8100], 0x0800, &ip), 9));
    // Non-first fragments: counted with ports 0, payload never read as ports.
    let frag = frames::ipv4(A, B, 17, 0x0010, &frames::udp(4444, 5555, 32));
    batch.extend(repeat([frames::eth(0x0800), frag].concat(), 10));
    // A VLAN tag cut short.
    batch.extend(repeat([frames::eth(0x8100), vec![0, 1]].concat(), 11));
    inject(&t.a, "eth0", &batch)?;

    // The agent still counts ordinary traffic exactly afterwards.
    let port = traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9100), &[100, 200])?;
    let done = agent.stop()?;
    assert!(done.status.success(), "agent failed:\n{}", done.stderr);
    let s = &done.agent_status;
    let r = &done.records;
    assert_eq!(malformed(s, "r-a/in/truncated_l3"), 2, "{s}");
    assert_eq!(malformed(s, "r-a/in/bad_l3"), 3 + 4, "{s}");
    assert_eq!(malformed(s, "r-a/in/truncated_l4"), 5, "{s}");
    assert_eq!(malformed(s, "r-a/in/ipv6_ext_chain"), 6, "{s}");
    assert_eq!(malformed(s, "r-a/in/non_ip"), 7, "{s}");
    assert_eq!(malformed(s, "r-a/in/vlan_depth"), 8, "{s}");
    // The kernel frees a frame with a cut VLAN tag before TC runs; XDP sees it.
    let cut_tag = if mode == "xdp" { 11 } else { 0 };
    assert_eq!(malformed(s, "r-a/in/truncated_l2"), cut_tag, "{s}");

    let vlan_flow = Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        srcport: Some(1111),
        dstport: Some(2222),
        ..Default::default()
    };
    assert_eq!(sum(r, &vlan_flow), (9, 9 * 78, 1), "two-tag flow");
    let frag_flow = Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        protocol: Some(17),
        srcaddr: Some("10.1.0.2"),
        srcport: Some(0),
        dstport: Some(0),
        ..Default::default()
    };
    assert_eq!(sum(r, &frag_flow), (10, 10 * 60, 1), "non-first fragments");
    // Garbage never turned into a flow: no ports from the cut TCP header
    // or from inside the fragments.
    for port in [0x0d05, 0x0d06, 4444, 5555] {
        let f = Filter {
            srcport: Some(port),
            ..Default::default()
        };
        let g = Filter {
            dstport: Some(port),
            ..Default::default()
        };
        assert_eq!(sum(r, &f).2 + sum(r, &g).2, 0, "port {port} appeared in a record");
    }
    let ok = Filter {
        interface: Some("r-a"),
        direction: Some("in"),
        srcport: Some(port.into()),
        dstport: Some(9100),
        ..Default::default()
    };
    assert_eq!(sum(r, &ok), (2, 100 + 200 + 56, 1));
    Ok(())
}

#[test]
fn malformed_frames_at_tc_are_counted_as_documented() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    hostile_frames("tc")
}

#[test]
fn malformed_frames_at_xdp_are_counted_as_documented() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    hostile_frames("xdp")
}

#[test]
fn missing_interface_fails_and_leaves_nothing_attached() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    for mode in ["tc", "xdp"] {
        let (code, err) = run_expecting_failure(&[
            "--netns",
            t.router.name(),
            "-i",
            "r-a",
            "-i",
            "nope",
            "--mode",
            mode,
        ])?;
        assert_eq!(code, 1);
        assert!(
            err.contains("interface nope") && err.contains("does not exist"),
            "{err}"
        );
        // r-a was attached before nope failed; it must be clean again.
        assert_eq!(
            hooks_on(&t.router, "r-a")?,
            (0, 0, false),
            "{mode}: r-a left hooked"
        );
    }
    // While an agent runs, the hooks are there (so the check above can fail).
    let agent = Agent::start(&["--netns", t.router.name(), "-i", "r-a", "--mode", "xdp"])?;
    assert_eq!(hooks_on(&t.router, "r-a")?, (0, 1, true));
    agent.stop()?;
    assert_eq!(hooks_gone(&t.router, "r-a")?, (0, 0, false));
    Ok(())
}

#[test]
fn bad_configuration_is_refused_clearly() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let dir = TempDir::new()?;
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "window-secs = 60\nflow-map-entries = \"many\"\n")?;
    let unknown_key = dir.path().join("unknown.toml");
    std::fs::write(&unknown_key, "[[attachment]]\ninterface = \"lo\"\nspeed = 10\n")?;
    let bad_toml = bad_toml.to_string_lossy().into_owned();
    let unknown_key = unknown_key.to_string_lossy().into_owned();
    let a_dir = dir.path().to_string_lossy().into_owned();
    let cases: [(Vec<&str>, &str); 7] = [
        (
            vec!["-i", "lo", "--window-secs", "0"],
            "window must be between 1 and 86400 seconds",
        ),
        (
            vec!["--config", "/nonexistent/flowlog.toml"],
            "cannot read config file /nonexistent/flowlog.toml",
        ),
        (vec!["--config", &a_dir], "Is a directory"),
        (vec!["--config", &bad_toml], "line 2, column 20"),
        (vec!["--config", &unknown_key], "unknown field `speed`"),
        (
            vec!["-i", "lo", "--netns", "no-such-ns"],
            "cannot open network namespace \"no-such-ns\"",
        ),
        (
            vec!["--api-listen", "0.0.0.0:17654"],
            "refusing to listen on 0.0.0.0:17654",
        ),
    ];
    for (args, want) in cases {
        let (code, err) = run_expecting_failure(&args)?;
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in:\n{err}");
    }
    Ok(())
}
