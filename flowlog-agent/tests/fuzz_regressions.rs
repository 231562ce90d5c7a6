//! Replays the committed fuzz corpus and every input that once crashed a
//! target (`tests/fuzz/{corpus,regressions}/<target>/`) through the fuzz
//! targets' own bodies, so `cargo xtask test` keeps them fixed without the
//! nightly toolchain or libFuzzer.

#[allow(dead_code)]
#[path = "../../tests/fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// A fuzz target's name and body.
type Target = (&'static str, fn(&[u8]));

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz");
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for f in dir.flatten() {
            let bytes = std::fs::read(f.path()).unwrap_or_else(|e| panic!("{}: {e}", f.path().display()));
            run(&bytes);
            n += 1;
        }
    }
    n
}

#[test]
fn committed_fuzz_inputs_run_clean() {
    let all: [Target; 5] = [
        ("api_request", targets::api_request::run),
        ("config_file", targets::config_file::run),
        ("state_files", targets::state_files::run),
        ("ring_events", targets::ring_events::run),
        ("sql_params", targets::sql_params::run),
    ];
    for (name, run) in all {
        let n = replay(name, run);
        assert!(n > 0, "no committed inputs for fuzz target {name}");
    }
}
