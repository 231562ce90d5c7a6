//! The on-disk queue of windows waiting for JetStream: every window is
//! written here first (a file per window, temporary name then rename), and
//! only removed once JetStream acknowledged all of it — so records survive
//! unreachable servers and agent restarts, and go out in order. The queue
//! is bounded in bytes; beyond it the oldest windows are dropped and
//! counted, never silently.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
};

use prost::Message;
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::{engine::WindowRecords, record::FlowLogRecord};

/// First line of every queue file; another layout is set aside, not misread.
const MAGIC: &str = "flowlog-jetstream-queue v1";
const SUFFIX: &str = "window";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("queue file {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What a queued window says about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowMeta {
    pub flow_log_id: String,
    pub project: Option<String>,
    pub logstore: Option<String>,
    pub start_ns: i128,
    pub end_ns: i128,
    pub records: u64,
    /// The window's number in the agent's journal: a window written again
    /// after a restart that the queue already took is not queued twice.
    #[serde(default)]
    pub journal_seq: Option<u64>,
}

/// A window read back from the queue.
#[derive(Debug)]
pub struct Queued {
    pub seq: u64,
    pub meta: WindowMeta,
    pub records: Vec<FlowLogRecord>,
}

struct Entry {
    seq: u64,
    bytes: u64,
    records: u64,
}

/// The queue's bookkeeping; the files are the truth.
pub struct Queue {
    dir: PathBuf,
    entries: VecDeque<Entry>,
    next_seq: u64,
    bytes: u64,
    max_bytes: u64,
    /// The highest journal number ever queued (kept in [`HIGH_WATER`]).
    high_water: u64,
    /// Unreadable files set aside.
    set_aside: u64,
}

/// Queue numbers stay below this: a file named beyond it is not the queue's.
const MAX_SEQ: u64 = 1 << 62;

/// Renames an unreadable queue file out of the queue (`<name>.bad`), for a
/// person to look at; it is never read again.
fn set_aside_file(path: &Path) {
    let mut bad = path.as_os_str().to_owned();
    bad.push(".bad");
    if let Err(e) = std::fs::rename(path, &bad) {
        warn!(file = %path.display(), error = %e, "cannot set a queue file aside; removing it");
        let _ = std::fs::remove_file(path);
    }
}

/// File of the highest journal number queued, which outlives the entries.
const HIGH_WATER: &str = "high-water";

/// What pushing a window did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Records of older windows dropped to stay within the bound.
    pub dropped_records: u64,
    /// The window was a replay the queue already had.
    pub already_queued: bool,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Queue {
    /// Opens (creating) the queue in `dir`, picking up windows a previous
    /// run left; leftover temporary files are removed.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut found = Vec::new();
        let mut high_water = std::fs::read_to_string(dir.join(HIGH_WATER))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let mut set_aside = 0u64;
        for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let Some(number) = name.strip_suffix(&format!(".{SUFFIX}")) else {
                continue;
            };
            // Numbers this queue hands out stay far below the top, so the
            // next one can always follow; anything else is not its file.
            let seq = number.parse::<u64>().ok().filter(|s| *s < MAX_SEQ);
            let meta = read_meta(&e.path());
            let (Some(seq), Ok(meta)) = (seq, meta) else {
                warn!(file = %e.path().display(), "setting aside a JetStream queue file that is not this queue's");
                set_aside_file(&e.path());
                set_aside += 1;
                continue;
            };
            let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
            high_water = high_water.max(meta.journal_seq.unwrap_or(0));
            found.push(Entry {
                seq,
                bytes,
                records: meta.records,
            });
        }
        found.sort_by_key(|e| e.seq);
        let next_seq = found.last().map_or(1, |e| e.seq + 1);
        let bytes = found.iter().map(|e| e.bytes).sum();
        Ok(Self {
            dir: dir.to_owned(),
            entries: found.into(),
            next_seq,
            bytes,
            max_bytes,
            high_water,
            set_aside,
        })
    }

    /// Files set aside as unreadable (renamed `*.bad`), since the start.
    pub fn set_aside(&self) -> u64 {
        self.set_aside
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{SUFFIX}"))
    }

    pub fn windows(&self) -> usize {
        self.entries.len()
    }

    pub fn records(&self) -> u64 {
        self.entries.iter().map(|e| e.records).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes a window durably, then drops the oldest windows while the
    /// queue is over its bound (the new one included, if it alone is).
    pub fn push(&mut self, batch: &WindowRecords) -> Result<Pushed, QueueError> {
        if batch.replay && batch.seq.is_some_and(|s| s <= self.high_water) {
            return Ok(Pushed {
                already_queued: true,
                ..Default::default()
            });
        }
        let meta = WindowMeta {
            flow_log_id: batch.flow_log_id.clone(),
            project: batch.logstore.as_ref().map(|l| l.project.clone()),
            logstore: batch.logstore.as_ref().map(|l| l.logstore.clone()),
            start_ns: batch.data.window.start_ns,
            end_ns: batch.data.window.end_ns,
            records: batch.data.len() as u64,
            journal_seq: batch.seq,
        };
        let seq = self.next_seq;
        let path = self.path(seq);
        let mut bytes = 0u64;
        let written = crate::durable::write_with(&path, None, |f| {
            let mut out = io::BufWriter::new(f);
            writeln!(out, "{MAGIC}")?;
            serde_json::to_writer(&mut out, &meta)?;
            out.write_all(b"\n")?;
            let mut buf = Vec::with_capacity(256);
            batch.data.try_for_each_record(|r| {
                buf.clear();
                r.encode_length_delimited(&mut buf).map_err(io::Error::other)?;
                out.write_all(&buf)
            })?;
            let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
            bytes = file.metadata()?.len();
            Ok(())
        })
        .map(|()| bytes);
        let bytes = match written {
            Ok(b) => b,
            Err(e) => return Err(QueueError::Io { path, source: e }),
        };
        self.next_seq += 1;
        self.bytes += bytes;
        if let Some(js) = batch.seq {
            self.high_water = self.high_water.max(js);
            let path = self.dir.join(HIGH_WATER);
            if let Err(e) = crate::durable::write(&path, self.high_water.to_string().as_bytes()) {
                warn!(file = %path.display(), error = %e, "cannot save the queue's high-water mark");
            }
        }
        self.entries.push_back(Entry {
            seq,
            bytes,
            records: meta.records,
        });
        let mut out = Pushed::default();
        while self.bytes > self.max_bytes {
            let Some(old) = self.entries.front().map(|e| e.seq) else {
                break;
            };
            let dropped = self.remove(old);
            out.dropped_records += dropped;
            error!(
                window = old,
                records = dropped,
                queue_bytes = self.max_bytes,
                "JetStream queue over its bound: oldest window dropped"
            );
        }
        Ok(out)
    }

    /// The oldest window, read back. A file that cannot be read is set aside
    /// (its records counted in the returned error's place by the caller).
    pub fn oldest(&mut self) -> Option<Result<Queued, (u64, QueueError)>> {
        let e = self.entries.front()?;
        let (seq, records) = (e.seq, e.records);
        let path = self.path(seq);
        Some(
            read_window(&path)
                .map(|(meta, recs)| Queued {
                    seq,
                    meta,
                    records: recs,
                })
                .map_err(|err| {
                    warn!(error = %err, "setting aside an unreadable JetStream queue file");
                    set_aside_file(&path);
                    self.forget(seq);
                    self.set_aside += 1;
                    (records, err)
                }),
        )
    }

    /// Drops a window from the bookkeeping; returns its record count.
    fn forget(&mut self, seq: u64) -> u64 {
        let Some(at) = self.entries.iter().position(|e| e.seq == seq) else {
            return 0;
        };
        let Some(e) = self.entries.remove(at) else {
            return 0;
        };
        self.bytes -= e.bytes;
        e.records
    }

    /// Removes a window (sent, or dropped); returns its record count.
    pub fn remove(&mut self, seq: u64) -> u64 {
        let records = self.forget(seq);
        let path = self.path(seq);
        if let Err(err) = std::fs::remove_file(&path)
            && err.kind() != io::ErrorKind::NotFound
        {
            warn!(file = %path.display(), error = %err, "cannot remove a JetStream queue file");
        }
        records
    }
}

fn corrupt(path: &Path, reason: String) -> QueueError {
    QueueError::Corrupt {
        path: path.to_owned(),
        reason,
    }
}

/// Opens a queue file and reads its two header lines.
fn open_header(path: &Path) -> Result<(BufReader<File>, WindowMeta), QueueError> {
    let mut r = BufReader::new(File::open(path).map_err(io_err(path))?);
    let mut line = String::new();
    r.read_line(&mut line).map_err(io_err(path))?;
    if line.trim_end() != MAGIC {
        return Err(corrupt(path, "not a flowlog queue file of this version".into()));
    }
    line.clear();
    r.read_line(&mut line).map_err(io_err(path))?;
    let meta = serde_json::from_str(&line).map_err(|e| corrupt(path, e.to_string()))?;
    Ok((r, meta))
}

fn read_meta(path: &Path) -> Result<WindowMeta, QueueError> {
    open_header(path).map(|(_, meta)| meta)
}

/// Reads a queue file: its header and every record.
pub fn read_window(path: &Path) -> Result<(WindowMeta, Vec<FlowLogRecord>), QueueError> {
    let (mut r, meta) = open_header(path)?;
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).map_err(io_err(path))?;
    let mut buf = rest.as_slice();
    let mut records = Vec::with_capacity(usize::try_from(meta.records).unwrap_or(0).min(1 << 20));
    while !buf.is_empty() {
        records.push(
            FlowLogRecord::decode_length_delimited(&mut buf).map_err(|e| corrupt(path, e.to_string()))?,
        );
    }
    if records.len() as u64 != meta.records {
        return Err(corrupt(
            path,
            format!("{} records, the header says {}", records.len(), meta.records),
        ));
    }
    Ok((meta, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(records: u64) -> String {
        let meta = WindowMeta {
            flow_log_id: "fl-1".into(),
            project: None,
            logstore: None,
            start_ns: 0,
            end_ns: 1,
            records,
            journal_seq: None,
        };
        format!("{MAGIC}\n{}\n", serde_json::to_string(&meta).unwrap())
    }

    #[test]
    fn files_that_are_not_the_queues_are_set_aside_and_counted() {
        let dir = std::env::temp_dir().join(format!("flowlog-queue-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A number no queue hands out (the next would overflow), garbage,
        // and a window whose records were cut short.
        std::fs::write(dir.join("18446744073709551615.window"), header(0)).unwrap();
        std::fs::write(dir.join("00000000000000000003.window"), b"not a queue file").unwrap();
        std::fs::write(dir.join("00000000000000000007.window"), header(2) + "\x05abc").unwrap();
        let mut q = Queue::open(&dir, 1 << 20).unwrap();
        assert_eq!((q.set_aside(), q.windows()), (2, 1));
        assert_eq!(q.next_seq, 8);
        assert!(matches!(q.oldest(), Some(Err((2, _)))));
        assert_eq!((q.set_aside(), q.windows()), (3, 0));
        let mut bad: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        bad.sort();
        assert_eq!(
            bad,
            vec![
                "00000000000000000003.window.bad",
                "00000000000000000007.window.bad",
                "18446744073709551615.window.bad"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
