//! How far each file sink got: before a sink writes a sealed window it
//! records the window's number and where in the file it begins; after, that
//! it finished. A window replayed after a crash is then skipped (the sink
//! has it), cut back out and written again (the sink had begun it), or
//! written (it never reached the sink) — once in every case.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable;

/// A file's identity, so a rotated file is never cut back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Where one sink stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Mark {
    /// The last window begun.
    pub seq: u64,
    /// Its first byte in the file (`None`: a stream such as stdout).
    pub offset: Option<u64>,
    pub file: Option<FileId>,
    pub complete: bool,
}

/// What to do with a window at a sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Write,
    /// The sink has it whole.
    Skip,
    /// The sink has part of it: truncate to this offset, then write.
    Rewind(u64),
}

/// The plan for window `seq` at a sink whose mark is `mark` and whose file
/// is now `file`. Windows that are not replays always go out: their
/// numbers are new.
pub fn plan(mark: Option<&Mark>, seq: u64, replay: bool, file: Option<FileId>) -> Plan {
    let Some(m) = mark.filter(|_| replay) else {
        return Plan::Write;
    };
    match seq.cmp(&m.seq) {
        std::cmp::Ordering::Less => Plan::Skip,
        std::cmp::Ordering::Greater => Plan::Write,
        std::cmp::Ordering::Equal if m.complete => Plan::Skip,
        std::cmp::Ordering::Equal => match (m.offset, m.file, file) {
            (Some(at), Some(was), Some(now)) if was == now => Plan::Rewind(at),
            // Rotated away or a stream: what was begun cannot be taken back.
            _ => Plan::Write,
        },
    }
}

/// The marks of every sink, one small file each.
#[derive(Clone, Debug)]
pub struct Marks {
    dir: PathBuf,
}

impl Marks {
    pub fn new(journal_dir: &Path) -> Self {
        Self {
            dir: journal_dir.join("marks"),
        }
    }

    /// A sink's names hold paths: the file is named by a hash.
    fn path(&self, sink: &str) -> PathBuf {
        let h = Sha256::digest(sink.as_bytes());
        self.dir.join(format!("{}.json", hex::encode(&h[..12])))
    }

    pub fn load(&self, sink: &str) -> Option<Mark> {
        let bytes = std::fs::read(self.path(sink)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, sink: &str, mark: &Mark) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(mark).map_err(std::io::Error::other)?;
        durable::write(&self.path(sink), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_window_is_written_exactly_once() {
        let f = Some(FileId { dev: 1, ino: 2 });
        let begun = Mark {
            seq: 7,
            offset: Some(100),
            file: f,
            complete: false,
        };
        let done = Mark {
            complete: true,
            ..begun.clone()
        };
        assert_eq!(plan(Some(&begun), 7, true, f), Plan::Rewind(100));
        assert_eq!(plan(Some(&done), 7, true, f), Plan::Skip);
        assert_eq!(plan(Some(&done), 6, true, f), Plan::Skip);
        assert_eq!(plan(Some(&done), 8, true, f), Plan::Write);
        assert_eq!(plan(None, 8, true, f), Plan::Write);
        assert_eq!(plan(Some(&done), 3, false, f), Plan::Write);
        // Rotated: the begun part is in another file now.
        assert_eq!(
            plan(Some(&begun), 7, true, Some(FileId { dev: 1, ino: 3 })),
            Plan::Write
        );
    }
}
