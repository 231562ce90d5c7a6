//! Whole windows or nothing: file sinks write through a spool that takes a
//! failed window back (truncates to where the window began), so a full disk
//! costs that window's records — counted — but never leaves a torn record
//! that would break every reader of the file after it.

use std::{
    fs::{File, OpenOptions},
    io::{self, Stdout, Write},
    path::{Path, PathBuf},
};

use crate::journal::marks::FileId;

/// Bytes gathered before they are handed to the kernel.
const SPOOL_BYTES: usize = 1 << 16;

/// Where a sink's bytes end up.
pub trait Target: Write + Send {
    /// The current end, to truncate back to; `None` when the output cannot
    /// be taken back (a terminal or a pipe).
    fn end(&self) -> Option<u64>;
    fn truncate(&mut self, at: u64) -> io::Result<()>;
    /// Makes written bytes durable where that means anything.
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Which file this is (`None`: a stream), so a rotated file is never
    /// cut back.
    fn file_id(&self) -> Option<FileId> {
        None
    }
    /// Called before each window: a file that was rotated away is
    /// reopened at its path.
    fn refresh(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink's file, opened for appending, that follows its path: when the
/// path names another file (logrotate moved the old one away) or none, the
/// next window goes to a new file at the path.
pub struct AppendFile {
    path: PathBuf,
    file: File,
}

fn id_of(m: &std::fs::Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    FileId {
        dev: m.dev(),
        ino: m.ino(),
    }
}

impl AppendFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }
}

impl Write for AppendFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Target for AppendFile {
    fn end(&self) -> Option<u64> {
        self.file.end()
    }

    fn truncate(&mut self, at: u64) -> io::Result<()> {
        Target::truncate(&mut self.file, at)
    }

    fn sync(&mut self) -> io::Result<()> {
        Target::sync(&mut self.file)
    }

    fn file_id(&self) -> Option<FileId> {
        self.file.file_id()
    }

    fn refresh(&mut self) -> io::Result<()> {
        let open = self.file.metadata().map(|m| id_of(&m)).ok();
        let at_path = std::fs::metadata(&self.path).map(|m| id_of(&m)).ok();
        if at_path.is_none() || at_path != open {
            *self = Self::open(&self.path)?;
            tracing::info!(path = %self.path.display(), "output file was moved away; writing to a new one");
        }
        Ok(())
    }
}

impl Target for File {
    fn end(&self) -> Option<u64> {
        self.metadata().ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    fn truncate(&mut self, at: u64) -> io::Result<()> {
        self.set_len(at)
    }

    fn file_id(&self) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = self.metadata().ok().filter(|m| m.is_file())?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.sync_data() {
            // Character devices and pipes (e.g. /dev/null) have nothing to sync.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            other => other,
        }
    }
}

impl Target for Stdout {
    fn end(&self) -> Option<u64> {
        None
    }

    fn truncate(&mut self, _at: u64) -> io::Result<()> {
        Ok(())
    }
}

pub struct Spool<W> {
    out: W,
    buf: Vec<u8>,
    /// The output's end before the current window.
    mark: Option<u64>,
    /// Bytes of the current window already handed to `out`.
    spilled: bool,
}

impl<W: Target> Spool<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(SPOOL_BYTES),
            mark: None,
            spilled: false,
        }
    }

    /// Writes one window: `each` appends records to the buffer it is given.
    /// On failure the window is taken back out of the output and the error
    /// returned.
    pub fn window(&mut self, each: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        self.buf.clear();
        self.out.refresh()?;
        self.mark = self.out.end();
        self.spilled = false;
        let result = each(self).and_then(|()| self.commit());
        if result.is_err() {
            self.buf.clear();
            if let (Some(at), true) = (self.mark, self.spilled)
                && let Err(e) = self.out.truncate(at)
            {
                tracing::error!(error = %e, "cannot take a failed window back out of the file");
            }
        }
        result
    }

    /// Where the next window begins, in which file (`None`: a stream).
    /// A file rotated away is reopened first.
    pub fn position(&mut self) -> Option<(u64, FileId)> {
        if let Err(e) = self.out.refresh() {
            tracing::warn!(error = %e, "cannot reopen the output file");
        }
        Some((self.out.end()?, self.out.file_id()?))
    }

    /// Cuts the output back to `at`: a window begun before a crash.
    pub fn rewind(&mut self, at: u64) -> io::Result<()> {
        self.out.truncate(at)
    }

    /// The buffer to append the next record to.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Called after each record: hands full buffers on.
    pub fn record_done(&mut self) -> io::Result<()> {
        if self.buf.len() >= SPOOL_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.spilled = true;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn commit(&mut self) -> io::Result<()> {
        self.spill()?;
        self.out.flush()?;
        self.out.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file that fails writes once it would pass `room` bytes, like a
    /// full disk.
    struct Small {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Small {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room.saturating_sub(self.data.len()));
            if n == 0 && !b.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.data.extend_from_slice(&b[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Target for Small {
        fn end(&self) -> Option<u64> {
            Some(self.data.len() as u64)
        }

        fn truncate(&mut self, at: u64) -> io::Result<()> {
            self.data.truncate(at as usize);
            Ok(())
        }
    }

    fn lines(s: &mut Spool<Small>, n: usize, width: usize) -> io::Result<()> {
        s.window(|s| {
            for _ in 0..n {
                s.buffer().extend(std::iter::repeat_n(b'x', width));
                s.buffer().push(b'\n');
                s.record_done()?;
            }
            Ok(())
        })
    }

    #[test]
    fn a_window_that_does_not_fit_leaves_the_file_as_it_was() {
        let mut s = Spool::new(Small {
            data: Vec::new(),
            room: 3 * SPOOL_BYTES,
        });
        lines(&mut s, 10, 99).unwrap();
        assert_eq!(s.out.data.len(), 1000);
        // Spills twice before the disk is full: all of it is taken back.
        let err = lines(&mut s, 4000, 99).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(s.out.data.len(), 1000);
        // Room again for small windows; nothing of the failed one shows.
        lines(&mut s, 5, 99).unwrap();
        assert_eq!(
            s.out.data,
            vec![[[b'x'; 99].as_slice(), b"\n"].concat(); 15].concat()
        );
    }
}
