//! Builds the kernel programs (flowlog-ebpf, via aya-build and the nightly
//! toolchain) and generates the record types from `proto/flowlog.proto` with
//! a pure-Rust protobuf compiler, so no system `protoc` is needed.
use std::path::Path;

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    build_records()?;
    build_ebpf()
}

fn build_records() -> anyhow::Result<()> {
    let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let proto = proto_dir.join("flowlog.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&proto_dir]).context("compiling flowlog.proto")?;
    prost_build::Config::new()
        .type_attribute(
            ".flowlog.v1.FlowLogRecord",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"kebab-case\")]",
        )
        .compile_fds(fds)
        .context("generating record types")
}

fn build_ebpf() -> anyhow::Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("agent manifest has no parent directory"))?
        .join("flowlog-ebpf");
    let root_dir = manifest
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", manifest.display()))?;
    // aya-build relays every line the nested cargo prints as a build
    // warning; a quiet nested cargo leaves only real compiler messages.
    // SAFETY: single-threaded build script, before spawning anything.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "flowlog-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
