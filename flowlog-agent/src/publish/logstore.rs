//! Writing windows into the embedded Logstores, with retry: a window that
//! cannot be written (disk full, permissions) is kept and written again
//! later, in order, up to a bound on kept records; beyond it the oldest
//! windows are dropped with an error log and counted in the status.

use std::{collections::VecDeque, sync::Arc};

use tracing::{error, info, warn};

use crate::{engine::WindowRecords, model::LogstoreRef, store::Writer, window::WindowData};

struct Pending {
    dest: LogstoreRef,
    flow_log_id: String,
    data: Arc<WindowData>,
    /// The window's number in the journal.
    seq: Option<u64>,
}

/// What one call did, for the status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub files_written: u64,
    pub records_written: u64,
    pub write_errors: u64,
    pub dropped_records: u64,
    /// Journal numbers of the windows written or given up on.
    pub resolved: Vec<u64>,
}

pub struct LogstoreSink {
    writer: Writer,
    pending: VecDeque<Pending>,
    pending_records: usize,
    max_pending_records: usize,
}

impl LogstoreSink {
    pub fn new(writer: Writer, max_pending_records: usize) -> Self {
        Self {
            writer,
            pending: VecDeque::new(),
            pending_records: 0,
            max_pending_records,
        }
    }

    pub fn pending_records(&self) -> usize {
        self.pending_records
    }

    /// Queues a window (if it has a Logstore), writes whatever can be
    /// written, oldest first, then holds what is left to the bound: the
    /// oldest kept windows go first, and a window that alone exceeds it is
    /// not kept at all.
    pub fn publish(&mut self, batch: &WindowRecords) -> Outcome {
        if let Some(dest) = &batch.logstore {
            self.pending_records += batch.data.len();
            self.pending.push_back(Pending {
                dest: dest.clone(),
                flow_log_id: batch.flow_log_id.clone(),
                data: batch.data.clone(),
                seq: batch.seq,
            });
        }
        let mut out = self.retry();
        while self.pending_records > self.max_pending_records {
            let Some(old) = self.pending.pop_front() else {
                break;
            };
            self.pending_records -= old.data.len();
            out.dropped_records += old.data.len() as u64;
            out.resolved.extend(old.seq);
            error!(
                flow_log = %old.flow_log_id,
                start = old.data.window.start_secs(),
                records = old.data.len(),
                "Logstore write backlog over its bound: window dropped"
            );
        }
        out
    }

    /// Writes kept windows until one fails.
    pub fn retry(&mut self) -> Outcome {
        let mut out = Outcome::default();
        while let Some(p) = self.pending.front() {
            match self.writer.write(&p.dest, &p.flow_log_id, &p.data) {
                Ok(path) => {
                    if out.write_errors > 0 || self.pending.len() > 1 {
                        info!(file = %path.display(), "kept window written");
                    }
                    self.pending_records -= p.data.len();
                    out.records_written += p.data.len() as u64;
                    out.resolved.extend(p.seq);
                    self.pending.pop_front();
                    out.files_written += 1;
                }
                Err(e) => {
                    warn!(
                        logstore = %format!("{}/{}", p.dest.project, p.dest.logstore),
                        kept_windows = self.pending.len(),
                        kept_records = self.pending_records,
                        error = %crate::capture::chain(&e),
                        "Logstore write failed; keeping the records to retry"
                    );
                    out.write_errors += 1;
                    break;
                }
            }
        }
        out
    }
}
