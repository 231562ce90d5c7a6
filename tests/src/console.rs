//! The web console as a child process (`flowlog console`), and the browser
//! driver (`tests/console/drive.py`: Playwright driving Debian's Chromium)
//! that reads what its pages show.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

/// Longest a driver phase may take before it is killed.
const PHASE_TIMEOUT: Duration = Duration::from_secs(240);

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after {timeout:?}")
}

/// A running `flowlog console`, stopped on drop.
pub struct Console {
    child: Child,
    pub addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Console {
    /// `flowlog console --data-dir data --console-listen listen <extra>`,
    /// once it listens. Its log goes to `<data>/console-<port>.log`.
    pub fn start(data: &Path, listen: SocketAddr, extra: &[&str]) -> anyhow::Result<Self> {
        let log = data.join(format!("console-{}.log", listen.port()));
        let child = Command::new(crate::agent::binary()?)
            .arg("console")
            .arg("--data-dir")
            .arg(data)
            .arg("--console-listen")
            .arg(listen.to_string())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning flowlog console")?;
        let mut c = Self {
            child,
            addr: listen,
            log,
        };
        let connect = if listen.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], listen.port()))
        } else {
            listen
        };
        if let Err(e) = wait_listening(connect, Duration::from_secs(20)) {
            let _ = c.child.kill();
            bail!("{e}: {}", c.log());
        }
        if let Some(status) = c.child.try_wait()? {
            bail!("flowlog console exited ({status}): {}", c.log());
        }
        Ok(c)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one phase of the browser driver against `url` with the page state
/// `query` (the console's URL parameters) and `args` (`--name value`
/// pairs); returns what it printed. `None` when there is no Python venv
/// (outside CI only: [`crate::python`]).
pub fn drive(phase: &str, url: &str, query: &str, args: &[(&str, &str)]) -> anyhow::Result<Option<Value>> {
    let Some(python) = crate::python() else {
        return Ok(None);
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/console/drive.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(phase)
        .args(["--url", url, "--query", query])
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in args {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let mut child = cmd.spawn().context("starting the browser driver")?;
    // Read both pipes as the driver writes, so a large answer never blocks it.
    let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out_pipe = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err_pipe = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("browser phase {phase} still running after {PHASE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out_pipe.join().unwrap_or_default();
    let stderr = err_pipe.join().unwrap_or_default();
    if !status.success() {
        bail!("browser phase {phase} failed ({status}):\n{stderr}\n{stdout}");
    }
    let v: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("browser phase {phase} printed no JSON:\n{stdout}\n{stderr}"))?;
    let errors = v["console_errors"].as_array().map_or(0, Vec::len);
    let foreign = v["foreign_requests"].as_array().map_or(0, Vec::len);
    if errors > 0 || foreign > 0 {
        bail!(
            "browser phase {phase}: console errors {} and requests to other hosts {}",
            v["console_errors"],
            v["foreign_requests"]
        );
    }
    Ok(Some(v))
}
