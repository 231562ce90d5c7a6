//! Writing windows into the embedded Logstores, with retry: a window that
//! cannot be written (disk full, permissions) is kept and written again
//! later, in order, up to a bound on kept records; beyond it the oldest
//! windows are dropped with an error log and counted in the status. Its
//! configuration is `logstore-buffer-records`.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::{error, info, warn};

use crate::{
    engine::WindowRecords,
    model::LogstoreRef,
    publish::{Sink, Taken},
    store::Writer,
    telemetry::{SinkLabels, Telemetry, gauge_value},
    window::WindowData,
};

/// Records kept for retry at most, by default, and the largest bound
/// `logstore-buffer-records` may set.
pub const DEFAULT_BUFFER_RECORDS: usize = 2_000_000;
const BUFFER_RECORDS_MAX: usize = 100_000_000;

/// How long a stopping agent keeps retrying windows the Logstore has not
/// taken before leaving them to the journal, and the wait between tries.
const EXIT_RETRY: Duration = Duration::from_secs(10);
const EXIT_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Checks `logstore-buffer-records` (default when absent).
pub fn buffer_records(v: Option<u64>) -> Result<usize, String> {
    let n = v.unwrap_or(DEFAULT_BUFFER_RECORDS as u64);
    if !(1..=BUFFER_RECORDS_MAX as u64).contains(&n) {
        return Err(format!(
            "logstore-buffer-records must be between 1 and {BUFFER_RECORDS_MAX}, got {n}"
        ));
    }
    Ok(n as usize)
}

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
    telemetry: Telemetry,
}

impl Sink for LogstoreSink {
    fn name(&self) -> &str {
        "logstore"
    }

    fn take(&mut self, batch: &WindowRecords) -> Taken {
        let mut out = self.publish(batch);
        // A flow log without a Logstore has nothing to wait for here.
        if batch.logstore.is_none() {
            out.resolved.extend(batch.seq);
        }
        self.report(out)
    }

    fn kept(&self) -> usize {
        self.pending.len()
    }

    fn retry(&mut self) -> Taken {
        let out = self.retry_kept();
        self.report(out)
    }

    fn close(&mut self) -> Taken {
        let deadline = Instant::now() + EXIT_RETRY;
        let mut taken = self.retry();
        while self.pending_records > 0 && Instant::now() < deadline {
            std::thread::sleep(EXIT_RETRY_PAUSE);
            taken.resolved.extend(self.retry().resolved);
        }
        if self.pending_records > 0 {
            warn!(
                records = self.pending_records,
                "the Logstore could not take these records before exit; they stay in the journal \
                 and are written at the next start"
            );
        }
        taken
    }
}

impl LogstoreSink {
    pub fn new(writer: Writer, max_pending_records: usize, telemetry: Telemetry) -> Self {
        Self {
            writer,
            pending: VecDeque::new(),
            pending_records: 0,
            max_pending_records,
            telemetry,
        }
    }

    /// Counts what a call did.
    fn report(&self, o: Outcome) -> Taken {
        let (sinks, labels) = (self.telemetry.sinks(), SinkLabels::of("logstore"));
        sinks
            .records_by_sink
            .get_or_create(&labels)
            .inc_by(o.records_written);
        sinks.errors_by_sink.get_or_create(&labels).inc_by(o.write_errors);
        sinks
            .dropped_by_sink
            .get_or_create(&labels)
            .inc_by(o.dropped_records);
        let l = self.telemetry.logstore();
        l.files_written.inc_by(o.files_written);
        l.write_errors.inc_by(o.write_errors);
        l.dropped_records.inc_by(o.dropped_records);
        l.pending_records.set(gauge_value(self.pending_records as u64));
        Taken {
            resolved: o.resolved,
            failed: false,
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
        let mut out = self.retry_kept();
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
    pub fn retry_kept(&mut self) -> Outcome {
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
