//! `cargo xtask vendor-console`: fetches the console's charting library
//! from the npm registry at its pinned version, checks the tarball against
//! the registry's integrity hash, and rewrites the vendored files and their
//! `SHA256SUMS` (which the agent's build checks).

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail, ensure};

use crate::run;

/// The pinned package.
const PACKAGE: &str = "echarts@6.1.0";
/// Files taken from the tarball, and their names under console/vendor/.
const FILES: &[(&str, &str)] = &[
    ("package/dist/echarts.min.js", "echarts.min.js"),
    ("package/LICENSE", "LICENSE-echarts"),
    ("package/NOTICE", "NOTICE-echarts"),
    // ECharts bundles parts of d3 under this licence.
    ("package/licenses/LICENSE-d3", "LICENSE-d3"),
];

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn run_vendor(root: &Path) -> anyhow::Result<()> {
    let work = root.join("target/vendor-console");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let integrity = output(Command::new("npm").args(["view", PACKAGE, "dist.integrity"]))?;
    let sha512 = integrity
        .strip_prefix("sha512-")
        .with_context(|| format!("unexpected integrity {integrity:?} for {PACKAGE}"))?
        .to_owned();
    let tarball = output(
        Command::new("npm")
            .args(["pack", PACKAGE, "--silent", "--pack-destination"])
            .arg(&work),
    )?;
    let tarball = work.join(tarball.lines().last().unwrap_or_default());
    let got = output(Command::new("sh").arg("-c").arg(format!(
        "openssl dgst -sha512 -binary '{}' | openssl base64 -A",
        tarball.display()
    )))?;
    ensure!(
        got == sha512,
        "{} does not match the registry's integrity sha512-{sha512}",
        tarball.display()
    );
    run(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(&work))?;
    let vendor = root.join("flowlog-agent/console/vendor");
    let mut sums = String::new();
    for (from, to) in FILES {
        let dest = vendor.join(to);
        std::fs::copy(work.join(from), &dest).with_context(|| format!("{from} is not in {PACKAGE}"))?;
        let sum = output(Command::new("sha256sum").arg(&dest))?;
        let hash = sum.split_whitespace().next().unwrap_or_default();
        sums.push_str(&format!("{hash}  {to}\n"));
    }
    std::fs::write(vendor.join("SHA256SUMS"), sums)?;
    std::fs::remove_dir_all(&work)?;
    eprintln!("vendored {PACKAGE} (sha512-{sha512}) into {}", vendor.display());
    Ok(())
}
