//! The documents name only things that exist: every source path the README
//! and `docs/` quote (`engine/mod.rs`, `rtt/`, `benches/logstore.rs`) is a
//! file or folder of the workspace, so the architecture page cannot drift
//! from the layout it describes. Placeholders (`<data-dir>/…`, `DIR/…`) are
//! not paths of the workspace and are left alone.

use std::path::{Path, PathBuf};

/// Where a quoted path may live.
const ROOTS: &[&str] = &[
    "",
    "flowlog-agent",
    "flowlog-agent/src",
    "flowlog-ebpf/src",
    "flowlog-common/src",
    "tests",
    "tests/tests",
    "xtask/src",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Backticked spans that look like a source file or a folder.
fn quoted_paths(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.ends_with(".rs") || s.ends_with('/'))
        .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .filter(|s| !s.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect()
}

#[test]
fn every_path_the_documents_quote_exists() {
    let root = workspace();
    let mut documents = vec![root.join("README.md")];
    let docs = std::fs::read_dir(root.join("docs")).expect("docs/ is in the workspace");
    for entry in docs {
        let path = entry.expect("docs/ can be listed").path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in &documents {
        let text = std::fs::read_to_string(doc).expect("a document reads as UTF-8");
        for quoted in quoted_paths(&text) {
            checked += 1;
            if !ROOTS.iter().any(|r| root.join(r).join(quoted).exists()) {
                missing.push(format!("{}: `{quoted}`", doc.display()));
            }
        }
    }
    assert!(
        checked > 10,
        "only {checked} quoted paths found: is the pattern still right?"
    );
    assert!(
        missing.is_empty(),
        "documents quote paths that do not exist:\n{}",
        missing.join("\n")
    );
}

/// The architecture page's layout block: each folder or file at the start
/// of a line, and each `name.rs` or `name/` it names in parentheses, exists
/// where the block puts it.
#[test]
fn the_layout_block_matches_the_tree() {
    let root = workspace();
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let block = doc
        .split("## Layout")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("a fenced block under ## Layout");
    let (mut top, mut parent) = (PathBuf::new(), PathBuf::new());
    let mut missing = Vec::new();
    let mut checked = 0;
    for line in block.lines() {
        let indent = line.len() - line.trim_start().len();
        let first = line.split_whitespace().next().unwrap_or_default();
        let named = first.ends_with('/') || first.ends_with(".rs");
        if named && indent == 0 {
            top = root.join(first);
            parent = top.clone();
        } else if named && indent == 2 {
            parent = top.join(first);
        }
        let mut here: Vec<PathBuf> = Vec::new();
        if named && indent <= 2 {
            here.push(parent.clone());
        }
        for group in line.split('(').skip(1).filter_map(|g| g.split(')').next()) {
            for item in group.split(", ") {
                let plain = item.chars().all(|c| c.is_ascii_lowercase() || "_./".contains(c));
                if plain && (item.ends_with(".rs") || item.ends_with('/')) && !item.contains("//") {
                    here.push(parent.join(item));
                }
            }
        }
        for path in here {
            checked += 1;
            if !path.exists() {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        checked > 30,
        "only {checked} layout entries found: is the parser still right?"
    );
    assert!(
        missing.is_empty(),
        "docs/architecture.md's layout names what is not there:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_pattern_finds_paths_and_skips_placeholders() {
    let found =
        quoted_paths("see `engine/mod.rs`, `rtt/`, `<data-dir>/journal/`, `DIR/logstores/` and `cargo test`");
    assert_eq!(found, ["engine/mod.rs", "rtt/"]);
}
