//! The publisher: one thread that hands each finished window to every sink
//! in turn, and tells the engine when a window is in all of them (the
//! journal then lets it go).
//!
//! A window written again after a restart (a replay) must not be doubled:
//! before a sink writes a journaled window, its mark records the window's
//! number and where it begins in the file (see [`crate::journal::marks`]);
//! the Logstore replaces the window's own file; JetStream messages carry
//! ids the server deduplicates.

use std::{collections::HashMap, time::Duration};

use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    Sink,
    jetstream::JetStreamPublisher,
    logstore::{LogstoreSink, Outcome},
};
use crate::{
    engine::WindowRecords,
    journal::marks::{Mark, Marks, Plan, plan},
    telemetry::{SinkLabels, Telemetry, gauge_value},
};

/// How long a stopping agent keeps retrying windows the Logstore has not
/// taken before leaving them to the journal.
const EXIT_RETRY: Duration = Duration::from_secs(10);

/// Everything windows are published to.
pub struct Sinks {
    /// Line and protobuf sinks (stdout, files).
    pub lines: Vec<Box<dyn Sink>>,
    pub marks: Marks,
    pub logstores: LogstoreSink,
    pub jetstream: Option<JetStreamPublisher>,
}

/// Starts the publisher thread. It ends when `input` closes, after a last
/// bounded retry of what the Logstore still holds.
pub fn spawn(
    mut sinks: Sinks,
    mut input: mpsc::Receiver<WindowRecords>,
    resolved: mpsc::UnboundedSender<u64>,
    status: Telemetry,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut marks: HashMap<String, Option<Mark>> = HashMap::new();
        loop {
            // With windows kept for retry, wake up every second to retry.
            let batch = if sinks.logstores.pending_records() > 0 {
                match input.try_recv() {
                    Ok(b) => b,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_secs(1));
                        let o = sinks.logstores.retry();
                        record_logstore(&status, &o, &sinks.logstores, &resolved);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match input.blocking_recv() {
                    Some(b) => b,
                    None => break,
                }
            };
            publish(&mut sinks, &mut marks, batch, &resolved, &status);
        }
        if let Some(js) = sinks.jetstream.take() {
            js.shutdown();
        }
        // Last chances for kept windows before the agent exits.
        let deadline = std::time::Instant::now() + EXIT_RETRY;
        loop {
            let o = sinks.logstores.retry();
            record_logstore(&status, &o, &sinks.logstores, &resolved);
            if sinks.logstores.pending_records() == 0 || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if sinks.logstores.pending_records() > 0 {
            warn!(
                records = sinks.logstores.pending_records(),
                "the Logstore could not take these records before exit; they stay in the journal \
                 and are written at the next start"
            );
        }
    })
}

/// One window to every sink.
fn publish(
    sinks: &mut Sinks,
    marks: &mut HashMap<String, Option<Mark>>,
    mut batch: WindowRecords,
    resolved: &mpsc::UnboundedSender<u64>,
    status: &Telemetry,
) {
    let mut errors = 0u64;
    for sink in &mut sinks.lines {
        let name = sink.name().to_owned();
        let mark = marks
            .entry(name.clone())
            .or_insert_with(|| sinks.marks.load(&name));
        let result = write_marked(sink.as_mut(), &sinks.marks, mark, &batch);
        let Some(result) = result else { continue };
        let (figures, labels) = (status.sinks(), SinkLabels::of(&name));
        match &result {
            Ok(()) => {
                figures
                    .records_by_sink
                    .get_or_create(&labels)
                    .inc_by(batch.data.len() as u64);
            }
            Err(_) => {
                figures.errors_by_sink.get_or_create(&labels).inc();
                figures
                    .dropped_by_sink
                    .get_or_create(&labels)
                    .inc_by(batch.data.len() as u64);
            }
        }
        if let Err(e) = result {
            error!(sink = %name, error = %e, records = batch.data.len(), "publish failed; the window's records are not in this sink");
            errors += 1;
        }
    }
    // JetStream's queue takes the window before the Logstore can report
    // it resolved: the journal must not let go of a window some sink has
    // not yet got.
    if let Some(js) = &sinks.jetstream {
        js.publish(&batch);
    }
    let o = sinks.logstores.publish(&batch);
    record_logstore(status, &o, &sinks.logstores, resolved);
    // Without a Logstore the window is in every sink now; with one, when
    // the Logstore reports it written or given up.
    if batch.logstore.is_none()
        && let Some(seq) = batch.seq
    {
        let _ = resolved.send(seq);
    }
    let figures = status.sinks();
    figures.windows_published.inc();
    figures.records_published.inc_by(batch.data.len() as u64);
    figures.publish_errors.inc_by(errors);
    {
        let mut info = status.info();
        info.last_window_start = Some(batch.data.window.start_secs());
        info.last_window_end = Some(batch.data.window.end_secs());
    }
    info!(
        flow_log = %batch.flow_log_id,
        start = batch.data.window.start_secs(),
        end = batch.data.window.end_secs(),
        records = batch.data.len(),
        replay = batch.replay,
        "window published"
    );
    if let Err(e) = status.persist() {
        warn!(error = %e, "cannot write status file");
    }
    if let Some(tx) = batch.published.take() {
        let _ = tx.send(());
    }
}

/// Writes a window to one sink, once: `None` when the sink already has
/// it (a replay of a window it finished).
fn write_marked(
    sink: &mut dyn Sink,
    marks: &Marks,
    mark: &mut Option<Mark>,
    batch: &WindowRecords,
) -> Option<std::io::Result<()>> {
    let Some(seq) = batch.seq else {
        return Some(sink.write(&batch.data));
    };
    let name = sink.name().to_owned();
    let position = sink.position();
    match plan(mark.as_ref(), seq, batch.replay, position.map(|(_, f)| f)) {
        Plan::Skip => {
            info!(sink = %name, window = seq, "the sink already has this window");
            return None;
        }
        Plan::Rewind(at) => {
            info!(sink = %name, window = seq, offset = at, "cutting back a window begun before a restart");
            if let Err(e) = sink.rewind(at) {
                return Some(Err(e));
            }
        }
        Plan::Write => {}
    }
    let position = sink.position();
    let mut m = Mark {
        seq,
        offset: position.map(|(at, _)| at),
        file: position.map(|(_, f)| f),
        complete: false,
    };
    let save = |m: &Mark| {
        if let Err(e) = marks.save(&name, m) {
            // Without its mark a replay may write the window twice here;
            // the window itself still goes out.
            warn!(sink = %name, error = %e, "cannot save the sink's mark");
        }
    };
    save(&m);
    let result = sink.write(&batch.data);
    // A failed window was taken back out of the file; the mark stays
    // "begun" so a replay writes it again rather than skipping it.
    if result.is_ok() {
        m.complete = true;
        save(&m);
    }
    *mark = Some(m);
    Some(result)
}

fn record_logstore(
    status: &Telemetry,
    o: &Outcome,
    logstores: &LogstoreSink,
    resolved: &mpsc::UnboundedSender<u64>,
) {
    for seq in &o.resolved {
        let _ = resolved.send(*seq);
    }
    let (sinks, labels) = (status.sinks(), SinkLabels::of("logstore"));
    sinks
        .records_by_sink
        .get_or_create(&labels)
        .inc_by(o.records_written);
    sinks.errors_by_sink.get_or_create(&labels).inc_by(o.write_errors);
    sinks
        .dropped_by_sink
        .get_or_create(&labels)
        .inc_by(o.dropped_records);
    let l = status.logstore();
    l.files_written.inc_by(o.files_written);
    l.write_errors.inc_by(o.write_errors);
    l.dropped_records.inc_by(o.dropped_records);
    l.pending_records
        .set(gauge_value(logstores.pending_records() as u64));
}
