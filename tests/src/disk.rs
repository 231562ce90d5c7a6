//! A small tmpfs standing in for a disk that fills up.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::ensure;

/// A tmpfs mounted over a directory; lazily unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, bytes: u64) -> anyhow::Result<Self> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path)
            .output()?;
        ensure!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// Writes a file until the filesystem is full; returns its path.
    pub fn fill(&self) -> anyhow::Result<PathBuf> {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 4096];
        // Bounded: a tmpfs of `size` cannot take more than size / 4 KiB chunks.
        for _ in 0..1 << 20 {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(filler),
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("{} never filled up", self.path.display())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
