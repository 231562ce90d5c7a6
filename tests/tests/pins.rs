//! Pinned state is an explicit promise: an agent asked to pin that cannot
//! refuses to start (instead of running unpinned and losing every count at
//! its next restart), says whether it pins in its status and metrics, and
//! `flowlog unpin` removes the agent's own pins and nothing else.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context as _;
use flowlog_tests::{
    agent::{Agent, TempDir, binary, pin_dir},
    free_port, hooks_gone, hooks_on, privileged, scrape_metrics,
    topology::RouterTopology,
};

/// Runs `flowlog <args>` to its end: (success, stdout + stderr).
fn flowlog(args: &[&str], extra: &[&Path]) -> anyhow::Result<(bool, String)> {
    let out = Command::new(binary()?)
        .args(args)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .context("running flowlog")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// `flowlog agent` with its own data directory and the given pin dir.
fn agent_with_pin_dir(pins: &Path, ns: &str) -> anyhow::Result<(bool, String)> {
    let dir = TempDir::new()?;
    let out = Command::new(binary()?)
        .args(["agent", "--netns", ns, "-i", "r-a", "--mode", "tc", "--data-dir"])
        .arg(dir.path())
        .arg("--pin-dir")
        .arg(pins)
        .stdin(Stdio::null())
        .output()
        .context("running flowlog agent")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_pin_directory_that_cannot_be_used_stops_the_agent() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    let plain = TempDir::new()?;
    let (ok, err) = agent_with_pin_dir(plain.path(), t.router.name())?;
    assert!(!ok, "an agent pinning to an ordinary directory started:\n{err}");
    assert!(
        err.contains(&plain.path().display().to_string()) && err.contains("not on a bpf filesystem"),
        "{err}"
    );
    let dotted = PathBuf::from("/sys/fs/bpf/flowlog-test/with.dot");
    let (ok, err) = agent_with_pin_dir(&dotted, t.router.name())?;
    assert!(!ok, "an agent pinning to {} started:\n{err}", dotted.display());
    assert!(
        err.contains(&dotted.display().to_string()) && err.contains("dot"),
        "{err}"
    );
    // Neither left anything attached.
    assert_eq!(hooks_on(&t.router, "r-a")?, (0, 0, false));
    Ok(())
}

#[test]
fn status_and_metrics_say_whether_state_is_pinned() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    let t = RouterTopology::new()?;
    for (extra, pinned) in [(&[][..], true), (&["--no-pin"][..], false)] {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec!["--netns", t.router.name(), "-i", "r-a", "--mode", "tc"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--metrics-listen", &addr]);
        let agent = Agent::start(&args)?;
        let status = agent.status()?;
        assert_eq!(status["pinned"], pinned, "{status}");
        let want = format!("flowlog_pinned {}", u8::from(pinned));
        let text = scrape_metrics(&addr)?;
        assert!(text.lines().any(|l| l == want), "no `{want}` in\n{text}");
        let done = agent.stop()?;
        assert!(done.status.success(), "{}", done.stderr);
    }
    Ok(())
}

#[test]
fn unpin_removes_the_agents_pins_and_nothing_else() -> anyhow::Result<()> {
    if !privileged() {
        return Ok(());
    }
    // An ordinary directory tree is refused and left whole.
    let plain = TempDir::new()?;
    std::fs::create_dir_all(plain.path().join("v1/host"))?;
    std::fs::write(plain.path().join("v1/host/precious.txt"), "keep me")?;
    let (ok, out) = flowlog(&["unpin", "--pin-dir"], &[plain.path()])?;
    assert!(!ok && out.contains("not on a bpf filesystem"), "{out}");
    assert!(
        plain.path().join("v1/host/precious.txt").exists(),
        "unpin removed an ordinary file"
    );

    let t = RouterTopology::new()?;
    let dir = TempDir::new()?;
    let pins = pin_dir(dir.path());
    let args = ["--netns", t.router.name(), "-i", "r-a", "--mode", "tc"];
    let agent = Agent::start_in(dir.path(), &args)?;
    // Refused while the agent runs on it, naming it.
    let (ok, out) = flowlog(&["unpin", "--pin-dir"], &[&pins])?;
    assert!(
        !ok && out.contains("an agent is running") && out.contains("pid"),
        "{out}"
    );
    assert_eq!(
        hooks_on(&t.router, "r-a")?,
        (1, 1, false),
        "hooks after a refused unpin"
    );
    let done = agent.stop()?;
    assert!(done.status.success(), "{}", done.stderr);
    assert_eq!(
        hooks_on(&t.router, "r-a")?,
        (1, 1, false),
        "pinned hooks outlive the agent"
    );

    // Something foreign inside the layout: refused, nothing removed.
    let foreign = pins.join("v1").join("not-a-namespace");
    std::fs::create_dir(&foreign)?;
    let (ok, out) = flowlog(&["unpin", "--pin-dir"], &[&pins])?;
    assert!(!ok && out.contains("not-a-namespace"), "{out}");
    assert_eq!(
        hooks_on(&t.router, "r-a")?,
        (1, 1, false),
        "hooks after a refused unpin"
    );
    std::fs::remove_dir(&foreign)?;

    let (ok, out) = flowlog(&["unpin", "--pin-dir"], &[&pins])?;
    assert!(ok && out.contains("2 links detached"), "{out}");
    assert_eq!(hooks_gone(&t.router, "r-a")?, (0, 0, false), "hooks after unpin");
    assert!(!pins.exists(), "the emptied pin directory stays");
    Ok(())
}
