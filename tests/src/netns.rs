//! Network namespaces owned by a test: created with `ip netns add`, removed
//! (with every interface inside) when dropped.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::Path,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

const PREFIX: &str = "flt";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Removes namespaces left behind by test processes that no longer exist
/// (a test killed before its destructors ran).
pub fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sh(&["ip", "netns", "del", &name]);
        }
    }
    // Pinned state of test agents (`flowlog-test-<pid>-<n>`) of runs that
    // died before cleaning up.
    for entry in std::fs::read_dir("/sys/fs/bpf/flowlog-test")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("flowlog-test-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A namespace that is deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `flt<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> anyhow::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        sh(&["ip", "netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// Packets an interface of the namespace dropped on receive before any
    /// hook saw them (backlog overflow), from the kernel's own counters.
    /// (`/sys/class/net` shows the namespace sysfs was mounted in, not the
    /// thread's, so this asks `ip`.)
    pub fn rx_dropped(&self, ifname: &str) -> anyhow::Result<u64> {
        let out = self.ip(&["-j", "-s", "link", "show", "dev", ifname])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("ip -j -s link: {out}"))?;
        v[0]["stats64"]["rx"]["dropped"]
            .as_u64()
            .with_context(|| format!("no rx drop counter for {ifname} in {out}"))
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        self.run(move || std::fs::write(&path, value).with_context(|| format!("writing {path}")))?
    }

    /// Runs `f` on a thread inside the namespace. Sockets created there stay
    /// in the namespace after `f` returns.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: valid namespace fd; only this thread changes namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns {}: {}", self.name, std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Spawns a long-lived thread inside the namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<T>>> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        let name = self.name.clone();
        Ok(std::thread::spawn(move || {
            // SAFETY: as in `run`.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {name}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        }))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}
