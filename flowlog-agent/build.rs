//! Builds the kernel programs (flowlog-ebpf, via aya-build and the nightly
//! toolchain), generates the record types from `proto/flowlog.proto` with
//! a pure-Rust protobuf compiler, so no system `protoc` is needed, and
//! embeds the web console's files (`console/`): vendored files must match
//! the hashes pinned in `console/vendor/SHA256SUMS`, and each file is
//! stored gzipped too.
use std::{io::Write as _, path::Path};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    build_records()?;
    build_console()?;
    build_ebpf()
}

/// Content type by file extension; files of other kinds are not served.
fn mime(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

fn build_console() -> anyhow::Result<()> {
    use sha2::Digest as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    println!("cargo:rerun-if-changed={}", root.display());
    let pinned = std::fs::read_to_string(root.join("vendor/SHA256SUMS"))
        .context("reading console/vendor/SHA256SUMS")?;
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("vendor")] {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = e?.path();
            println!("cargo:rerun-if-changed={}", path.display());
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("console");
    std::fs::create_dir_all(&out)?;
    let mut table = String::from("&[\n");
    let mut vendored = 0;
    for path in files {
        let rel = path.strip_prefix(&root)?.to_string_lossy().into_owned();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(&path)?;
        let hash = hex::encode(sha2::Sha256::digest(&bytes));
        if rel.starts_with("vendor/") && name != "SHA256SUMS" {
            let want = pinned
                .lines()
                .find_map(|l| l.split_once("  ").filter(|(_, f)| *f == name).map(|(h, _)| h))
                .ok_or_else(|| anyhow!("console/{rel} has no hash in console/vendor/SHA256SUMS"))?;
            if want != hash {
                return Err(anyhow!(
                    "console/{rel} has SHA-256 {hash}, but SHA256SUMS pins {want}: re-vendor it with `cargo xtask vendor-console`"
                ));
            }
            vendored += 1;
        }
        // Licences and notices are served as text beside what they cover.
        let kind = mime(&name).or_else(|| rel.starts_with("vendor/").then_some("text/plain; charset=utf-8"));
        let Some(kind) = kind else { continue };
        let gz = out.join(format!("{}.gz", rel.replace('/', "__")));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&bytes)?;
        std::fs::write(&gz, enc.finish()?)?;
        table.push_str(&format!(
            "    Asset {{ path: {:?}, mime: {kind:?}, etag: \"\\\"{}\\\"\", raw: include_bytes!({:?}), gzip: include_bytes!({:?}) }},\n",
            format!("/{rel}"),
            &hash[..16],
            path.display().to_string(),
            gz.display().to_string(),
        ));
    }
    if vendored == 0 {
        return Err(anyhow!("console/vendor holds no pinned files"));
    }
    table.push(']');
    std::fs::write(out.join("assets.rs"), table)?;
    Ok(())
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
