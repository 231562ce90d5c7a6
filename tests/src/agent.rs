//! Running the real `flowlog` binary as a child process and reading what it
//! published.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// The agent binary: `$FLOWLOG_BIN`, else `target/<profile>/flowlog` next
/// to this test executable (`cargo xtask test` builds it first).
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FLOWLOG_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let bin = dir.join("flowlog");
    if !bin.exists() {
        bail!(
            "{} not found: build it first (cargo xtask test does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A scratch directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> anyhow::Result<Self> {
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("flowlog-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // What agents of this directory pinned (detaches their hooks).
        let _ = std::fs::remove_dir_all(pin_dir(&self.0));
    }
}

/// Mounts bpffs once per test process if the machine has none, before
/// parallel agents could race to mount it (a second mount would hide the
/// first one's pins).
fn ensure_bpffs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let target = "/sys/fs/bpf";
        let mounted = rustix::fs::statfs(target).is_ok_and(|st| st.f_type == libc::BPF_FS_MAGIC);
        if !mounted {
            let _ = rustix::mount::mount(
                "bpf",
                target,
                "bpf",
                rustix::mount::MountFlags::empty(),
                c"mode=0700",
            );
        }
    });
}

/// Where an agent with data directory `dir` pins kernel state: one bpffs
/// directory per test agent, so parallel tests never adopt each other's
/// maps, and removed with the data directory.
pub fn pin_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map_or_else(|| "agent".into(), |n| n.to_string_lossy().into_owned());
    PathBuf::from("/sys/fs/bpf/flowlog-test").join(name)
}

/// A running agent writing JSON records to a file in its directory.
pub struct Agent {
    child: Option<Child>,
    dir: PathBuf,
    _owned: Option<TempDir>,
}

/// What a stopped agent left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub records: Vec<Value>,
    pub stderr: String,
    pub agent_status: Value,
}

impl Agent {
    /// Starts `flowlog agent <args>` and waits until it reports capture
    /// running (status.json), or fails with its stderr.
    pub fn start(args: &[&str]) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        let mut agent = Self::start_in(dir.path(), args)?;
        agent._owned = Some(dir);
        Ok(agent)
    }

    /// Starts an agent on an existing data directory (restarts keep state,
    /// records and logs there).
    pub fn start_in(dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        ensure_bpffs();
        let records = dir.join("records.jsonl");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log"))?;
        let mut cmd = Command::new(binary()?);
        cmd.arg("agent").args(args);
        if !args.iter().any(|a| *a == "--pin-dir" || *a == "--no-pin") {
            cmd.arg("--pin-dir").arg(pin_dir(dir));
        }
        cmd.arg("--data-dir")
            .arg(dir)
            .arg("--json-file")
            .arg(&records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // A previous run's status must not pass for this one's.
        let _ = std::fs::remove_file(dir.join("status.json"));
        let child = cmd.spawn().context("spawning flowlog")?;
        let mut agent = Self {
            child: Some(child),
            dir: dir.to_owned(),
            _owned: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent.child_mut()?.try_wait()? {
                bail!("agent exited ({status}) before running:\n{}", agent.stderr());
            }
            if agent.status().is_ok_and(|s| s["state"] == "running") {
                return Ok(agent);
            }
            if Instant::now() > deadline {
                bail!("agent not running after 30 s:\n{}", agent.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn child_mut(&mut self) -> anyhow::Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("agent already stopped"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// Calls an API action over the Unix socket.
    pub fn call(&self, action: &str, params: Value) -> anyhow::Result<(u16, Value)> {
        crate::api::call_unix(&self.socket(), action, &params)
    }

    /// Calls an action that must succeed (HTTP 200); panics with the answer
    /// otherwise.
    pub fn ok(&self, action: &str, params: Value) -> Value {
        let (status, v) = self
            .call(action, params.clone())
            .unwrap_or_else(|e| panic!("{action} {params}: {e:#}"));
        assert_eq!(status, 200, "{action} {params}: {v}");
        v
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The agent's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// SIGKILL: no partial window, no detach by the agent itself.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// The agent's status.json.
    pub fn status(&self) -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(self.dir.join("status.json"))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Records published so far.
    pub fn records(&self) -> anyhow::Result<Vec<Value>> {
        read_json_lines(&self.dir.join("records.jsonl"))
    }

    /// Waits until at least `n` windows have been published.
    pub fn wait_windows(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .status()
                .is_ok_and(|s| s["windows-published"].as_u64() >= Some(n))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "fewer than {n} windows published in {timeout:?}:\n{}",
            self.stderr()
        )
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<Finished> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow::anyhow!("agent already stopped"))?;
        let status = terminate(&mut child, Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("agent: {e:#}\n{}", self.stderr()))?;
        Ok(Finished {
            status,
            records: self.records()?,
            stderr: self.stderr(),
            agent_status: self.status().unwrap_or(Value::Null),
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn read_json_lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("bad record line: {l}")))
        .collect()
}

/// SIGTERM, then the exit status once the process ends; SIGKILL and an
/// error if it takes longer than `within`.
pub fn terminate(
    child: &mut std::process::Child,
    within: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    signal_and_wait(child, libc::SIGTERM, within)
}

/// `signal`, then the exit status once the process ends; SIGKILL and an
/// error if it takes longer than `within`.
pub fn signal_and_wait(
    child: &mut std::process::Child,
    signal: libc::c_int,
    within: Duration,
) -> anyhow::Result<std::process::ExitStatus> {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not stop within {within:?} of signal {signal}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `flowlog agent <args>` expecting it to fail within 30 s; returns
/// (exit code, stderr).
pub fn run_expecting_failure(args: &[&str]) -> anyhow::Result<(i32, String)> {
    let dir = TempDir::new()?;
    let err_path = dir.path().join("stderr.log");
    let mut child = Command::new(binary()?)
        .arg("agent")
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--pin-dir")
        .arg(pin_dir(dir.path()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("running flowlog")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("flowlog {args:?} still running after 30 s; expected an error");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.success() {
        bail!("flowlog {args:?} succeeded; expected an error:\n{stderr}");
    }
    Ok((status.code().unwrap_or(-1), stderr))
}

/// Runs a local Logstore command, `flowlog query …` or `flowlog analyze …`:
/// `command` with `--data-dir data --project P --logstore L --format F`,
/// then `args` (the SQL, or the analysis and its flags). Returns stdout and
/// stderr; a non-zero exit is an error carrying stderr.
pub fn logstore_command(
    data: &Path,
    (project, logstore): (&str, &str),
    command: &str,
    format: &str,
    args: &[&str],
) -> anyhow::Result<(String, String)> {
    let out = Command::new(binary()?)
        .arg(command)
        .arg("--data-dir")
        .arg(data)
        .args(["--project", project, "--logstore", logstore, "--format", format])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running flowlog")?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("flowlog {command} failed ({}): {stderr}", out.status);
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
}

/// [`logstore_command`] with `--format json`, its rows parsed.
pub fn logstore_json(
    data: &Path,
    target: (&str, &str),
    command: &str,
    args: &[&str],
) -> anyhow::Result<(Vec<Value>, String)> {
    let (stdout, stderr) = logstore_command(data, target, command, "json", args)?;
    let rows = serde_json::from_str(&stdout).with_context(|| format!("not JSON rows: {stdout}"))?;
    Ok((rows, stderr))
}

/// A count or sum from a JSON query row: a number, or a number as text
/// (64-bit results may come as strings). `None` when absent or not numeric.
pub fn num(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}
