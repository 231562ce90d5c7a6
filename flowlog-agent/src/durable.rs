//! The one way the agent replaces a file: write a temporary file beside it,
//! fsync it, rename it over the target, fsync the directory. A crash at any
//! instant leaves the old content or the new one, never half of either, and
//! a failed write leaves no temporary file behind.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Distinguishes temporary files of concurrent writers in one process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// The hidden temporary name a write of `path` goes through (readers of a
/// directory skip names starting with a dot).
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Whether `name` is a temporary file this module leaves only when the
/// process died mid-write (safe to remove at start).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Removes temporary files an earlier process left in `dir` when it died
/// mid-write.
pub fn clean(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if is_temporary(&e.file_name().to_string_lossy()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Replaces `path` with `bytes` (see the module doc).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, None, |f| f.write_all(bytes))
}

/// Replaces `path` with what `fill` writes, creating the file with `mode`
/// (default 0644 less the umask).
pub fn write_with(
    path: &Path,
    mode: Option<u32>,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temporary(path);
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(m) = mode {
            options.mode(m);
        }
        let mut file = options.open(&tmp)?;
        fill(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes a rename or removal in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_directory(dir)
}

/// Makes renames and removals in `dir` durable.
pub fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A writer that counts and checksums what passes through it.
pub struct Summed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W> Summed<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }

    /// Bytes and CRC-32 so far.
    pub fn sum(&self) -> (u64, u32) {
        (self.bytes, self.crc.clone().finalize())
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flowlog-durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).ok();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_failed_write_keeps_the_old_content_and_leaves_nothing_behind() {
        let dir = scratch("fail");
        let path = dir.join("state.json");
        write(&path, b"old").unwrap();
        let err = write_with(&path, None, |f| {
            f.write_all(b"half of the n")?;
            Err(io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "interrupted");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(&dir), vec!["state.json"]);
        write(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Set in the child of the test below: the file it rewrites forever.
    const CHILD_ENV: &str = "FLOWLOG_DURABLE_TEST_TARGET";

    /// Not a test of its own: the body of the writer process the test
    /// below starts (this test binary, filtered to this name) and kills.
    #[test]
    fn rewriter_child() {
        let Some(path) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let path = PathBuf::from(path);
        let versions: Vec<Vec<u8>> = (1..=u8::MAX).map(|i| vec![i; 1 << 20]).collect();
        loop {
            for v in &versions {
                let _ = write(&path, v);
            }
        }
    }

    /// A writer process killed (SIGKILL) at many instants while it rewrites
    /// a file over and over: the file always holds one whole version,
    /// never a torn mix.
    #[test]
    fn a_writer_killed_mid_write_never_leaves_half_a_file() {
        let dir = scratch("kill");
        let path = dir.join("target.bin");
        write(&path, &[0u8; 1 << 20]).unwrap();
        let exe = std::env::current_exe().unwrap();
        for round in 0..12u64 {
            let mut child = std::process::Command::new(&exe)
                .args(["--exact", "durable::tests::rewriter_child", "--test-threads=1"])
                .env(CHILD_ENV, &path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20 + round * 7));
            child.kill().unwrap();
            child.wait().unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), 1 << 20, "round {round}: torn length");
            assert!(got.iter().all(|b| *b == got[0]), "round {round}: mixed versions");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
