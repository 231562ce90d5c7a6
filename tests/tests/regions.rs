//! Region enrichment on real captures: the router between host a
//! (10.1.0.0/24, fd01::/64) and host b (10.2.0.0/24, fd02::/64), a region
//! table placing them in two regions, attachments carrying their own id and
//! region. Every record is labelled by longest-prefix match, the traffic
//! matrix by region pair equals what was sent, a reload takes effect from
//! the next window, and a bad table is refused with its line while the old
//! one stays in force.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use flowlog_tests::{
    agent::{Agent, TempDir, logstore_json, num},
    privileged,
    topology::{A_V4, A_V6, B_V4, B_V6, RouterTopology},
    traffic,
};
use serde_json::{Value, json};

/// The agent's configuration: two attachments with ids and regions, and a
/// region table (`b_region` for host b's networks).
fn config(t: &RouterTopology, b_region: &str, extra: &str) -> String {
    let attachments = t.labelled_attachments_toml();
    format!(
        r#"window-secs = 1
rtt = false

{attachments}
# Everything private is "corp" unless a longer prefix says otherwise.
[[region]]
cidr = "10.0.0.0/8"
region-id = "corp"

[[region]]
cidr = "10.1.0.0/24"
region-id = "cn-hangzhou"
network = "vpc-a"

[[region]]
cidr = "fd01::/64"
region-id = "cn-hangzhou"
network = "vpc-a"

[[region]]
cidr = "10.2.0.0/24"
region-id = "{b_region}"

[[region]]
cidr = "fd02::/64"
region-id = "{b_region}"
{extra}"#
    )
}

fn region_of(addr: &str, b_region: &str) -> &'static str {
    match addr {
        A_V4 | A_V6 => "cn-hangzhou",
        B_V4 | B_V6 if b_region == "cn-shanghai" => "cn-shanghai",
        B_V4 | B_V6 => "cn-beijing",
        a if a.starts_with("10.") => "corp",
        _ => "",
    }
}

/// `flowlog analyze … traffic-matrix --by-region` over the agent's own
/// Logstore, as JSON rows.
fn region_matrix(data: &Path) -> anyhow::Result<Vec<Value>> {
    let args = ["traffic-matrix", "--by-region"];
    Ok(logstore_json(data, ("default", "flowlogs"), "analyze", &args)?.0)
}

/// Records with traffic between the hosts (UDP to `port`).
fn to_port(records: &[Value], port: u64) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["log-status"] == "OK" && r["dstport"] == port)
        .collect()
}

#[test]
fn records_carry_regions_by_longest_prefix_and_reloads_apply_from_the_next_window() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let file = dir.path().join("flowlog.toml");
    std::fs::write(&file, config(&t, "cn-shanghai", ""))?;
    let a = Agent::start_in(dir.path(), &["--config", file.to_str().unwrap_or_default()])?;
    assert_eq!(a.status()?["region-table-entries"], 5);

    // Known traffic a → b over both families.
    let v4 = [100, 200, 300];
    let v6 = [400, 500];
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9990), &v4)?;
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V6.parse()?, 9990), &v6)?;
    a.wait_windows(2, Duration::from_secs(20))?;

    let records = a.records()?;
    let ours = to_port(&records, 9990);
    assert_eq!(ours.len(), 4, "in at r-a and out at r-b, per family: {ours:?}");
    for r in &records {
        // Every record carries its attachment's id and region.
        let (att, region) = match r["interface"].as_str() {
            Some("r-a") => ("tr-att-a", "cn-hangzhou"),
            _ => ("tr-att-b", "cn-shanghai"),
        };
        assert_eq!(
            (r["attachment-id"].as_str(), r["region-id"].as_str()),
            (Some(att), Some(region)),
            "{r}"
        );
        if r["log-status"] != "OK" {
            assert!(
                r["src-region-id"].is_null() && r["dst-region-id"].is_null(),
                "{r}"
            );
            continue;
        }
        // Every address labelled: its region, or explicitly "".
        for (addr, region, network) in [
            ("srcaddr", "src-region-id", "src-network"),
            ("dstaddr", "dst-region-id", "dst-network"),
        ] {
            let a = r[addr].as_str().unwrap_or_default();
            assert_eq!(
                r[region].as_str(),
                Some(region_of(a, "cn-shanghai")),
                "{addr} of {r}"
            );
            let want_network = (region_of(a, "cn-shanghai") == "cn-hangzhou").then_some("vpc-a");
            assert_eq!(r[network].as_str(), want_network, "{network} of {r}");
        }
    }

    // The region-pair matrix: what a sent to b, once (where it entered).
    let sent_bytes: u64 =
        v4.iter().map(|s| s + 28).sum::<usize>() as u64 + v6.iter().map(|s| s + 48).sum::<usize>() as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        let rows = region_matrix(dir.path())?;
        let row = rows
            .iter()
            .find(|r| r["src_region"] == "cn-hangzhou" && r["dst_region"] == "cn-shanghai")
            .cloned();
        if row
            .as_ref()
            .is_some_and(|r| num(&r["bytes"]).unwrap_or(0) == sent_bytes)
            || Instant::now() > deadline
        {
            break row;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let row = row.ok_or_else(|| anyhow::anyhow!("no cn-hangzhou → cn-shanghai row"))?;
    assert_eq!(
        (num(&row["bytes"]).unwrap_or(0), num(&row["packets"]).unwrap_or(0)),
        (sent_bytes, 5),
        "{row}"
    );

    // Reload: host b moves to another region, from each window after the
    // reload on.
    std::fs::write(&file, config(&t, "cn-beijing", ""))?;
    let (code, answer) = a.call("ReloadRegionTable", json!({}))?;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["Entries"], 5);
    let reloaded_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9991), &[64])?;
        std::thread::sleep(Duration::from_millis(100));
    }
    a.wait_windows(2, Duration::from_secs(20))?;

    // A bad table (the same prefix twice) through SIGHUP: refused with the
    // line and the reason; the table in force stays.
    std::fs::write(
        &file,
        config(
            &t,
            "cn-guangzhou",
            "\n[[region]]\ncidr = \"10.2.0.0/24\"\nregion-id = \"cn-shenzhen\"\n",
        ),
    )?;
    let pid = a.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.status()?["region-table-error"].is_null() {
        anyhow::ensure!(Instant::now() < deadline, "SIGHUP had no effect: {}", a.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let error = a.status()?["region-table-error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("already mapped on line"), "{error}");
    let dup_line = config(&t, "x", "\n[[region]]\n").lines().count();
    assert!(error.contains(&format!("line {dup_line}:")), "{error}");
    assert!(
        a.stderr().contains("the previous table stays in force"),
        "{}",
        a.stderr()
    );
    // The API says the same for a bad CIDR.
    std::fs::write(
        &file,
        config(
            &t,
            "cn-beijing",
            "\n[[region]]\ncidr = \"10.300.0.0/16\"\nregion-id = \"x\"\n",
        ),
    )?;
    let (code, answer) = a.call("ReloadRegionTable", json!({}))?;
    assert_eq!(
        (code, answer["Code"].as_str()),
        (400, Some("InvalidRegionTable")),
        "{answer}"
    );
    let msg = answer["Message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("line {dup_line}: bad CIDR \"10.300.0.0/16\"")),
        "{msg}"
    );
    traffic::udp(&t.a, &t.b, SocketAddr::new(B_V4.parse()?, 9992), &[64])?;
    let done = a.stop()?;
    assert!(done.status.success(), "{}", done.stderr);

    // Before the reload's window: the old region; windows that started
    // after it: the new one; the refused tables never applied.
    let labels = |port: u64| -> Vec<(i64, String)> {
        to_port(&done.records, port)
            .iter()
            .filter(|r| r["dstaddr"] == B_V4)
            .map(|r| {
                (
                    r["start"].as_i64().unwrap_or(0),
                    r["dst-region-id"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    };
    assert!(labels(9990).iter().all(|(_, l)| l == "cn-shanghai"));
    let after = labels(9991);
    assert!(
        after.iter().any(|(s, l)| *s > reloaded_at && l == "cn-beijing"),
        "{after:?}"
    );
    for (start, label) in &after {
        if *start > reloaded_at {
            assert_eq!(label, "cn-beijing", "window at {start} started after the reload");
        } else {
            assert!(label == "cn-shanghai" || label == "cn-beijing", "{label}");
        }
    }
    // One label per window: never half a window each.
    for (start, label) in &after {
        assert!(
            after.iter().filter(|(s, _)| s == start).all(|(_, l)| l == label),
            "{after:?}"
        );
    }
    let last = labels(9992);
    assert!(
        !last.is_empty() && last.iter().all(|(_, l)| l == "cn-beijing"),
        "{last:?}"
    );
    Ok(())
}
