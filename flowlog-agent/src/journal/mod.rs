//! The journal: nothing drained from the kernel exists only in the agent's
//! memory.
//!
//! ```text
//! <data-dir>/journal/
//!   cuts/<seq>.cut   every cut's drained counts, written before the
//!                    kernel entries are deleted (cut.rs)
//!   ledger.json      open and sealed windows of each flow log, and the
//!                    cuts they own (ledger.rs)
//!   marks/<sink>     how far each file sink got (marks.rs)
//! ```
//!
//! The life of a count: programs add it to the active generation; a cut
//! flips the generation, reads the old one, writes the cut file (fsynced,
//! renamed into place: the commit point), and only then deletes the old
//! entries from the kernel. The count lives in its flow log's open window;
//! when the window ends it is sealed in the ledger (saved before the
//! records go anywhere) and handed to the sinks; once every sink has it,
//! the ledger lets it go and cut files no window needs are removed.
//!
//! A restart redoes what was in flight. For each adopted namespace, the
//! newest cut file that names it says which generation programs counted
//! into after that cut: if they still do, the idle generation's entries
//! are already in that file (the agent died while deleting them) and are
//! deleted uncounted; otherwise the agent died between a flip and its
//! commit, and they are read as a new cut. Open windows are rebuilt from
//! their cuts; sealed windows are rendered again and written once more to
//! sinks that can tell they have them (the Logstore replaces the file of the
//! same window, file sinks cut back to where the window began, JetStream
//! messages carry the same ids).

pub mod cut;
pub mod ledger;
pub mod marks;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use tracing::{error, info, warn};

pub use cut::{CutRecord, NsCut, Target, User};
pub use ledger::{Ledger, OpenWindow, SealedWindow, SpecAttachment, WindowSpec};

use crate::durable;

const CUTS: &str = "cuts";
const LEDGER: &str = "ledger.json";
/// The window progress file of earlier versions: flow log → last end.
const LEGACY_PROGRESS: &str = "windows.json";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal file {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What the journal did, for the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub cuts_written: u64,
    pub bytes_written: u64,
    pub write_errors: u64,
    /// Cuts a window needed that were missing or unreadable at a restart.
    pub cuts_lost: u64,
    /// Windows that could not be turned into records (a bug): lost.
    pub windows_lost: u64,
}

pub struct Journal {
    dir: PathBuf,
    ledger: Ledger,
    /// Cut files on disk.
    cuts: BTreeSet<u64>,
    next_cut: u64,
    pub stats: JournalStats,
}

/// A cut file's magic, length and header, read alone.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut head = vec![0u8; cut::HEAD_BYTES];
    f.read_exact(&mut head)?;
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let mut rest = vec![0u8; len];
    f.read_exact(&mut rest)?;
    head.extend_from_slice(&rest);
    Ok(head)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Journal {
    /// Opens (creating) the journal of a data directory. A ledger that
    /// cannot be read stops the agent: what it would replay is unknown.
    pub fn open(data_dir: &Path) -> Result<Self, JournalError> {
        let dir = data_dir.join("journal");
        let cuts_dir = dir.join(CUTS);
        std::fs::create_dir_all(&cuts_dir).map_err(io_err(&cuts_dir))?;
        let mut cuts = BTreeSet::new();
        for e in std::fs::read_dir(&cuts_dir).map_err(io_err(&cuts_dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if durable::is_temporary(&name) {
                let _ = std::fs::remove_file(e.path());
            } else if let Some(seq) = name.strip_suffix(".cut").and_then(|s| s.parse::<u64>().ok()) {
                cuts.insert(seq);
            }
        }
        let path = dir.join(LEDGER);
        let ledger = match std::fs::read(&path) {
            Ok(bytes) => {
                let l: Ledger = serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                if l.version != ledger::VERSION {
                    return Err(JournalError::Corrupt {
                        path,
                        reason: format!(
                            "ledger version {} (this build reads {})",
                            l.version,
                            ledger::VERSION
                        ),
                    });
                }
                l
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let next_cut = cuts
            .last()
            .map_or(1, |s| s + 1)
            .max(ledger.next_cut)
            .max(ledger.cuts_named_end());
        let mut journal = Self {
            dir,
            ledger,
            cuts,
            next_cut,
            stats: JournalStats::default(),
        };
        journal.adopt_legacy(data_dir);
        Ok(journal)
    }

    /// An earlier version kept only each flow log's last window end: its
    /// next window starts there (counting went on in pinned maps).
    fn adopt_legacy(&mut self, data_dir: &Path) {
        let path = data_dir.join(LEGACY_PROGRESS);
        let Ok(bytes) = std::fs::read(&path) else { return };
        match serde_json::from_slice::<BTreeMap<String, i64>>(&bytes) {
            Ok(ends) => {
                for (id, end) in ends {
                    if end >= 0 && !self.ledger.open.contains_key(&id) {
                        self.ledger.open(&id, end, self.next_cut, WindowSpec::default());
                    }
                }
                if self.save().is_ok() {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(e) => warn!(path = %path.display(), error = %e, "ignoring unreadable window progress"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The sequence number the next cut gets.
    pub fn next_cut(&self) -> u64 {
        self.next_cut
    }

    fn cut_path(&self, seq: u64) -> PathBuf {
        self.dir.join(CUTS).join(format!("{seq:020}.cut"))
    }

    /// Numbers `cut` and writes it durably. The number is used up even on
    /// failure, so a window that needs the cut finds it missing at a restart
    /// rather than another cut in its place.
    pub fn commit(&mut self, cut: &mut CutRecord) -> Result<(), JournalError> {
        cut.seq = self.next_cut;
        self.next_cut += 1;
        let path = self.cut_path(cut.seq);
        let mut bytes = 0u64;
        let result = durable::write_with(&path, Some(0o600), |f| {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            cut::encode(cut, &mut w)?;
            let f = w.into_inner().map_err(std::io::IntoInnerError::into_error)?;
            bytes = f.metadata()?.len();
            Ok(())
        });
        match result {
            Ok(()) => {
                self.cuts.insert(cut.seq);
                self.stats.cuts_written += 1;
                self.stats.bytes_written += bytes;
                Ok(())
            }
            Err(e) => {
                self.stats.write_errors += 1;
                Err(io_err(&path)(e))
            }
        }
    }

    /// Reads cut `seq` back.
    pub fn read(&self, seq: u64) -> Result<CutRecord, JournalError> {
        let path = self.cut_path(seq);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        cut::decode(&bytes).map_err(|e| JournalError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// The cuts in `first..=last` (`last` open: up to the newest), read
    /// back in order. A missing or unreadable one is logged and counted,
    /// and skipped: its counts are lost, the rest are not.
    pub fn cuts_in(&mut self, first: u64, last: Option<u64>) -> Vec<CutRecord> {
        let last = last.unwrap_or(self.next_cut.saturating_sub(1));
        let mut out = Vec::new();
        for seq in first..=last {
            if !self.cuts.contains(&seq) {
                if seq < self.next_cut {
                    error!(
                        cut = seq,
                        "a window needs a cut the journal does not have (it could not be written); its counts are lost"
                    );
                    self.stats.cuts_lost += 1;
                }
                continue;
            }
            match self.read(seq) {
                Ok(c) => out.push(c),
                Err(e) => {
                    error!(error = %crate::capture::chain(&e), "cut unreadable; its counts are lost");
                    self.stats.cuts_lost += 1;
                }
            }
        }
        out
    }

    /// For each (netns, cookie): the generation the newest cut file naming
    /// that namespace left programs counting into, and who used its
    /// interfaces then.
    pub fn last_generations(&self) -> BTreeMap<(Option<String>, u64), (u32, Vec<Target>)> {
        let mut out = BTreeMap::new();
        for &seq in &self.cuts {
            let path = self.cut_path(seq);
            let header = read_head(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| cut::decode_header(&bytes).map_err(|e| e.to_string()));
            match header {
                Ok(namespaces) => {
                    for (netns, cookie, generation, targets) in namespaces {
                        out.insert((netns, cookie), (generation, targets));
                    }
                }
                Err(e) => warn!(path = %path.display(), error = %e, "cut header unreadable"),
            }
        }
        out
    }

    /// Saves the ledger, then removes cut files no window needs (the
    /// newest is kept: it tells a restart where each namespace stood).
    pub fn save(&mut self) -> Result<(), JournalError> {
        let path = self.dir.join(LEDGER);
        self.ledger.next_cut = self.next_cut;
        let bytes = serde_json::to_vec_pretty(&self.ledger).map_err(|e| JournalError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        durable::write(&path, &bytes).map_err(io_err(&path))?;
        self.prune();
        Ok(())
    }

    fn prune(&mut self) {
        let keep_from = self.ledger.oldest_needed_cut().unwrap_or(self.next_cut);
        let newest = self.cuts.last().copied();
        let old: Vec<u64> = self
            .cuts
            .iter()
            .copied()
            .filter(|s| *s < keep_from && Some(*s) != newest)
            .collect();
        for seq in old {
            let path = self.cut_path(seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    self.cuts.remove(&seq);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.cuts.remove(&seq);
                }
                Err(e) => warn!(path = %path.display(), error = %e, "cannot remove a cut file"),
            }
        }
    }

    /// Saves the ledger, logging a failure; whether it is on disk.
    pub fn save_or_log(&mut self) -> bool {
        match self.save() {
            Ok(()) => true,
            Err(e) => {
                error!(error = %crate::capture::chain(&e), "cannot save the window ledger");
                self.stats.write_errors += 1;
                false
            }
        }
    }

    /// Cut files on disk (for the status and tests).
    pub fn cut_files(&self) -> usize {
        self.cuts.len()
    }

    pub fn log_open(&self) {
        info!(
            dir = %self.dir.display(),
            open = self.ledger.open.len(),
            sealed = self.ledger.sealed.len(),
            cuts = self.cuts.len(),
            "journal opened"
        );
    }
}

#[cfg(test)]
mod tests;
