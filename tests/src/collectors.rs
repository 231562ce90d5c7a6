//! Real IPFIX collectors from Debian, run on loopback for a test: nfdump's
//! `nfcapd`, pmacct's `nfacctd`, and a `tshark` capture whose packets
//! Wireshark's own dissector decodes afterwards. `cargo xtask test`
//! installs them.

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

/// A loopback port nothing listens on now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether something in this namespace listens on `port` (`/proc/net/udp`
/// or `tcp`, whose ports are hex).
fn bound(proto: &str, port: u16) -> bool {
    let needle = format!(":{port:04X} ");
    ["", "6"].iter().any(|v| {
        std::fs::read_to_string(format!("/proc/net/{proto}{v}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| format!("{a} ").ends_with(&needle))
            })
        })
    })
}

fn wait_bound(proto: &str, port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !bound(proto, port) {
        if let Some(s) = child.try_wait()? {
            bail!("{what} exited ({s}) before listening on {port}");
        }
        ensure!(
            Instant::now() < deadline,
            "{what} not listening on {port} after 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Sends SIGTERM and waits (bounded) for the process to end.
/// A collector's process, killed and reaped when its owner is dropped
/// (a test that fails half-way leaves no collector behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stop(child: &mut Child) {
    let _ = crate::agent::terminate(child, Duration::from_secs(10));
}

/// nfdump's collector, storing flows under its own directory.
pub struct Nfcapd {
    child: Reaped,
    dir: PathBuf,
    pub port: u16,
}

impl Nfcapd {
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut child = Command::new("nfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-t", "3600", "-w"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nfcapd (cargo xtask test installs nfdump)")?;
        wait_bound("udp", port, &mut child, "nfcapd")?;
        Ok(Self {
            child: Reaped(child),
            dir: dir.to_owned(),
            port,
        })
    }

    /// Stops the collector (it writes its file out) and reads every flow
    /// back with `nfdump -o json`.
    pub fn stop_and_read(mut self) -> anyhow::Result<Vec<Value>> {
        stop(&mut self.child.0);
        let out = Command::new("nfdump")
            .arg("-R")
            .arg(&self.dir)
            .args(["-o", "json", "-q"])
            .env("TZ", "UTC")
            .output()
            .context("running nfdump")?;
        ensure!(
            out.status.success(),
            "nfdump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let _ = std::fs::write(self.dir.join("nfdump.out"), text.as_bytes());
        // nfdump 1.7 prints one object per flow, comma-separated, in a list
        // that may end with a stray comma: read the objects one by one.
        let body = text.trim().trim_start_matches('[').trim_end_matches(']');
        let mut flows = Vec::new();
        let mut rest = body.trim_start_matches([',', ' ', '\n', '\t']);
        while !rest.is_empty() {
            let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            match it.next() {
                Some(Ok(v)) => flows.push(v),
                Some(Err(e)) => bail!("nfdump's JSON at {:?}: {e}", &rest[..rest.len().min(80)]),
                None => break,
            }
            rest = rest[it.byte_offset()..].trim_start_matches([',', ' ', '\n', '\t', '\r']);
        }
        Ok(flows)
    }
}

/// pmacct's NetFlow/IPFIX collector with its print plugin writing JSON.
pub struct Nfacctd {
    child: Reaped,
    output: PathBuf,
}

impl Nfacctd {
    /// `primitives`: an `aggregate_primitives` file; `aggregate`: the keys
    /// the print plugin groups by.
    pub fn start(dir: &Path, port: u16, primitives: &str, aggregate: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let output = dir.join("flows.json");
        std::fs::write(dir.join("primitives.lst"), primitives)?;
        let conf = format!(
            "daemonize: false\n\
             nfacctd_ip: 127.0.0.1\n\
             nfacctd_port: {port}\n\
             plugins: print\n\
             aggregate_primitives: {prim}\n\
             aggregate: {aggregate}\n\
             print_output: json\n\
             print_output_file: {out}\n\
             print_refresh_time: 1\n\
             print_output_file_append: true\n",
            prim = dir.join("primitives.lst").display(),
            out = output.display(),
        );
        std::fs::write(dir.join("nfacctd.conf"), conf)?;
        let log = std::fs::File::create(dir.join("nfacctd.log"))?;
        let mut child = Command::new("nfacctd")
            .arg("-f")
            .arg(dir.join("nfacctd.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nfacctd (cargo xtask test installs pmacct)")?;
        wait_bound("udp", port, &mut child, "nfacctd")?;
        Ok(Self {
            child: Reaped(child),
            output,
        })
    }

    /// Stops the collector (the print plugin writes what it holds) and
    /// reads its JSON lines.
    pub fn stop_and_read(mut self) -> anyhow::Result<Vec<Value>> {
        stop(&mut self.child.0);
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("nfacctd's line {l}")))
            .collect()
    }
}

/// A `tshark` capture on the loopback device.
pub struct Capture {
    child: Reaped,
    pcap: PathBuf,
}

impl Capture {
    /// Captures packets matching `filter` (a capture filter) on `lo`.
    pub fn start(dir: &Path, filter: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let pcap = dir.join("capture.pcap");
        let log = dir.join("tshark.log");
        let mut child = Command::new("tshark")
            .args(["-i", "lo", "-f", filter, "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting tshark (cargo xtask test installs it)")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Capturing on")) {
            if let Some(s) = child.try_wait()? {
                bail!(
                    "tshark exited ({s}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            ensure!(Instant::now() < deadline, "tshark not capturing after 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child: Reaped(child),
            pcap,
        })
    }

    /// Stops the capture; packets still in the kernel's buffer are
    /// written out on SIGINT.
    pub fn stop(&mut self) {
        let _ = crate::agent::signal_and_wait(&mut self.child.0, libc::SIGINT, Duration::from_secs(10));
    }

    fn read(&self, decode_as: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&self.pcap)
            .args(["-d", decode_as])
            // Only the packets of the port decoded (`udp.port==4739`).
            .args(["-Y", decode_as.split(',').next().unwrap_or_default()])
            .args(args)
            .output()
            .context("running tshark -r")?;
        ensure!(
            out.status.success(),
            "tshark -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `fields` of every packet of the port `decode_as` decodes (e.g.
    /// `udp.port==4739,cflow`): per packet, per field, every occurrence.
    pub fn fields(&self, decode_as: &str, fields: &[&str]) -> anyhow::Result<Vec<Vec<Vec<String>>>> {
        let mut args = vec![
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=~",
        ];
        for f in fields {
            args.extend(["-e", f]);
        }
        let text = self.read(decode_as, &args)?;
        Ok(text
            .lines()
            .map(|l| {
                l.split('|')
                    .map(|c| {
                        c.split('~')
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .collect()
            })
            .collect())
    }

    /// Wireshark's warnings and errors (malformed packets, data without a
    /// template, …) for each packet of the port `decode_as` decodes —
    /// chat and notes, such as TCP's own connection events, left out — with
    /// the packet's set ids: per packet, (set ids, messages).
    pub fn expert(&self, decode_as: &str) -> anyhow::Result<Vec<(Vec<String>, Vec<String>)>> {
        /// Wireshark's PI_WARN: warnings and errors are at least this.
        const WARNING: u64 = 6_291_456;
        let packets = self.fields(
            decode_as,
            &["cflow.flowset_id", "_ws.expert.severity", "_ws.expert.message"],
        )?;
        Ok(packets
            .into_iter()
            .map(|mut p| {
                p.resize(3, Vec::new());
                let severities: Vec<u64> = p[1].iter().map(|v| v.parse().unwrap_or(u64::MAX)).collect();
                let messages = p[2]
                    .iter()
                    .zip(severities)
                    .filter(|(_, s)| *s >= WARNING)
                    .map(|(m, _)| m.clone())
                    .collect();
                (std::mem::take(&mut p[0]), messages)
            })
            .collect())
    }
}
