//! The fan-out: one tokio task per sink, fed every window in order, and a
//! coordinator that tells the engine when a window is in all of them.
//!
//! Sinks run side by side, so a slow one (a Logstore fsyncing, a full
//! JetStream queue) holds up only its own channel; a sink's calls go to
//! the blocking pool, one at a time. A window is *taken* when every sink
//! has had it (status.json is written and a DeactiveFlowLog caller woken
//! then), and *resolved* when every sink is done with it — written, or
//! given up on and counted — and only then may the journal let it go.
//! Kept windows (the Logstore's) are retried on a timer that runs only
//! while something is kept.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};
use tracing::{info, warn};

use super::{Sink, Taken};
use crate::{engine::WindowRecords, telemetry::Telemetry};

/// Windows queued per sink before the fan-out waits for it.
const SINK_QUEUE: usize = 4;
/// How often kept windows are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// One window as the sinks see it: numbered in arrival order.
struct Handed {
    n: u64,
    window: Arc<WindowRecords>,
}

/// What a sink task reports back.
struct Report {
    /// The window it just took, if the report is about one.
    took: Option<u64>,
    taken: Taken,
}

/// A window not yet taken by every sink.
struct Waiting {
    sinks_left: usize,
    failed: u64,
    window: Arc<WindowRecords>,
    published: Option<oneshot::Sender<()>>,
}

/// Starts the fan-out on the current runtime. It ends when `input`
/// closes, after every sink has closed (a last, bounded retry of what they
/// keep); its journal numbers of resolved windows go to `resolved`.
pub fn spawn(
    sinks: Vec<Box<dyn Sink>>,
    input: mpsc::Receiver<WindowRecords>,
    resolved: mpsc::UnboundedSender<u64>,
    telemetry: Telemetry,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(sinks, input, resolved, telemetry))
}

async fn run(
    sinks: Vec<Box<dyn Sink>>,
    mut input: mpsc::Receiver<WindowRecords>,
    resolved: mpsc::UnboundedSender<u64>,
    telemetry: Telemetry,
) {
    let count = sinks.len();
    let (report_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let mut feeds = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    for sink in sinks {
        let (tx, rx) = mpsc::channel::<Handed>(SINK_QUEUE);
        feeds.push(tx);
        tasks.spawn(run_sink(sink, rx, report_tx.clone()));
    }
    drop(report_tx);
    let mut state = Coordinator {
        count,
        next: 0,
        waiting: HashMap::new(),
        unresolved: HashMap::new(),
        resolved,
        telemetry,
    };
    // Windows in; reports back. Reports are read while a window waits for
    // a slow sink's queue, so no sink waits on the coordinator.
    let mut open = true;
    while open {
        tokio::select! {
            w = input.recv() => match w {
                Some(w) => state.hand_out(w, &feeds, &mut reports).await,
                None => open = false,
            },
            Some(r) = reports.recv() => state.report(r),
        }
    }
    drop(feeds);
    while let Some(r) = reports.recv().await {
        state.report(r);
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "a sink task failed");
        }
    }
}

struct Coordinator {
    count: usize,
    next: u64,
    waiting: HashMap<u64, Waiting>,
    /// Journal number → sinks still to resolve it.
    unresolved: HashMap<u64, usize>,
    resolved: mpsc::UnboundedSender<u64>,
    telemetry: Telemetry,
}

impl Coordinator {
    async fn hand_out(
        &mut self,
        mut w: WindowRecords,
        feeds: &[mpsc::Sender<Handed>],
        reports: &mut mpsc::UnboundedReceiver<Report>,
    ) {
        let n = self.next;
        self.next += 1;
        let published = w.published.take();
        let window = Arc::new(w);
        if let Some(seq) = window.seq {
            self.unresolved.insert(seq, self.count);
        }
        self.waiting.insert(
            n,
            Waiting {
                sinks_left: self.count,
                failed: 0,
                window: window.clone(),
                published,
            },
        );
        for feed in feeds {
            let mut send = std::pin::pin!(feed.send(Handed {
                n,
                window: window.clone(),
            }));
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() {
                            warn!("a sink task is gone; the window stays in the journal");
                        }
                        break;
                    }
                    Some(r) = reports.recv() => self.report(r),
                }
            }
        }
        if self.count == 0 {
            self.finish(n);
        }
    }

    fn report(&mut self, r: Report) {
        for seq in r.taken.resolved {
            if let Some(left) = self.unresolved.get_mut(&seq) {
                *left -= 1;
                if *left == 0 {
                    self.unresolved.remove(&seq);
                    let _ = self.resolved.send(seq);
                }
            }
        }
        let Some(n) = r.took else { return };
        let done = self.waiting.get_mut(&n).is_some_and(|w| {
            w.sinks_left -= 1;
            w.failed += u64::from(r.taken.failed);
            w.sinks_left == 0
        });
        if done {
            self.finish(n);
        }
    }

    /// Every sink has had window `n`.
    fn finish(&mut self, n: u64) {
        let Some(mut w) = self.waiting.remove(&n) else {
            return;
        };
        let data = &w.window.data;
        let sinks = self.telemetry.sinks();
        sinks.windows_published.inc();
        sinks.records_published.inc_by(data.len() as u64);
        sinks.publish_errors.inc_by(w.failed);
        if self.count == 0
            && let Some(seq) = w.window.seq
        {
            self.unresolved.remove(&seq);
            let _ = self.resolved.send(seq);
        }
        {
            let mut info = self.telemetry.info();
            info.last_window_start = Some(data.window.start_secs());
            info.last_window_end = Some(data.window.end_secs());
        }
        info!(
            flow_log = %w.window.flow_log_id,
            start = data.window.start_secs(),
            end = data.window.end_secs(),
            records = data.len(),
            replay = w.window.replay,
            "window published"
        );
        if let Err(e) = self.telemetry.persist() {
            warn!(error = %e, "cannot write status file");
        }
        if let Some(tx) = w.published.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs `call` on the sink on the blocking pool, and hands the sink back.
async fn blocking<T: Send + 'static>(
    sink: Box<dyn Sink>,
    call: impl FnOnce(&mut dyn Sink) -> T + Send + 'static,
) -> Option<(Box<dyn Sink>, T)> {
    let done = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let out = call(sink.as_mut());
        (sink, out)
    })
    .await;
    match done {
        Ok(d) => Some(d),
        Err(e) => {
            warn!(error = %e, "a sink call failed; the sink stops, its windows stay in the journal");
            None
        }
    }
}

/// One sink's task: windows in order, kept ones retried while there are
/// any, and a last chance when the input closes.
async fn run_sink(
    sink: Box<dyn Sink>,
    mut input: mpsc::Receiver<Handed>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kept = sink.kept();
    let mut sink = Some(sink);
    while let Some(s) = sink.take() {
        tokio::select! {
            h = input.recv() => {
                let Some(h) = h else {
                    sink = Some(s);
                    break;
                };
                let Some((s, taken)) = blocking(s, move |s| s.take(&h.window)).await else { return };
                kept = s.kept();
                let _ = reports.send(Report { took: Some(h.n), taken });
                sink = Some(s);
            }
            _ = retry.tick(), if kept > 0 => {
                let Some((s, taken)) = blocking(s, |s| s.retry()).await else { return };
                kept = s.kept();
                let _ = reports.send(Report { took: None, taken });
                sink = Some(s);
            }
        }
    }
    if let Some(s) = sink
        && let Some((_, taken)) = blocking(s, |s| s.close()).await
    {
        let _ = reports.send(Report { took: None, taken });
    }
}
