//! The control loop: one task that owns the state and the kernel side and
//! wakes for whatever comes first — a window deadline, a ring with events,
//! an API call, a finished namespace load, a timer, SIGHUP, windows every
//! sink has, or the shutdown signal — so none of them ever interleave.

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{signal::unix::Signal, sync::mpsc, time::Interval};
use tracing::info;

use super::{activation, json_answer};
use crate::{
    api::{ApiError, Call, Reply, actions::Action},
    control::Control,
    model::clock,
    store,
};

/// How often Active flow logs whose interfaces were missing are retried.
const RETRY_EVERY: Duration = Duration::from_secs(10);
/// How often expired Logstore partitions are removed.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);
/// How often past hours' small Logstore files are merged.
const COMPACT_EVERY: Duration = Duration::from_secs(600);
/// The longest sleep when no window is open.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

enum Wake {
    Deadline,
    Rings(Option<String>),
    Call(Call),
    Retry,
    Retention,
    Compact,
    /// SIGHUP: reload the region table.
    Reload,
    /// Windows every sink has.
    Resolved(Vec<u64>),
    /// A namespace finished loading for an activation.
    Loaded(Box<activation::Loaded>),
    Stop,
}

pub struct ControlLoop {
    pub control: Control,
    pub calls: mpsc::Receiver<Call>,
    pub resolved: mpsc::UnboundedReceiver<u64>,
    hangup: Option<Signal>,
    data_dir: PathBuf,
    retry: Interval,
    retention: Interval,
    compaction: Interval,
    compacting: Arc<AtomicBool>,
    activations: activation::Activations,
}

impl ControlLoop {
    pub async fn new(
        control: Control,
        calls: mpsc::Receiver<Call>,
        resolved: mpsc::UnboundedReceiver<u64>,
        hangup: Option<Signal>,
        data_dir: &std::path::Path,
    ) -> Self {
        let retry = tokio::time::interval(RETRY_EVERY);
        // Retention ran at start and compaction need not: both first fire
        // one period from now.
        let mut retention = tokio::time::interval(RETENTION_EVERY);
        retention.tick().await;
        let mut compaction = tokio::time::interval(COMPACT_EVERY);
        compaction.tick().await;
        Self {
            control,
            calls,
            resolved,
            hangup,
            data_dir: data_dir.to_owned(),
            retry,
            retention,
            compaction,
            compacting: Arc::new(AtomicBool::new(false)),
            activations: activation::Activations::default(),
        }
    }

    /// Handles whatever comes, until `shutdown` resolves or the API's
    /// channel closes.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.next(&mut shutdown).await {
                Wake::Stop => break,
                wake => self.handle(wake).await,
            }
        }
    }

    async fn next(&mut self, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> Wake {
        let wait = self.control.engine.next_deadline().map_or(IDLE_WAIT, |d| {
            Duration::from_nanos((d - clock::unix_now_ns()).max(0) as u64)
        });
        let hangup = async {
            match self.hangup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => Wake::Deadline,
            ns = self.control.engine.rings_ready() => match ns {
                Some(ns) => Wake::Rings(ns),
                None => Wake::Deadline,
            },
            call = self.calls.recv() => match call {
                Some(c) => Wake::Call(c),
                None => Wake::Stop,
            },
            _ = self.retry.tick() => Wake::Retry,
            _ = self.retention.tick() => Wake::Retention,
            _ = self.compaction.tick() => Wake::Compact,
            Some(()) = hangup => Wake::Reload,
            loaded = self.activations.next() => Wake::Loaded(Box::new(loaded)),
            Some(first) = self.resolved.recv() => {
                let mut seqs = vec![first];
                while let Ok(s) = self.resolved.try_recv() {
                    seqs.push(s);
                }
                Wake::Resolved(seqs)
            }
            () = shutdown => Wake::Stop,
        }
    }

    async fn handle(&mut self, wake: Wake) {
        let control = &mut self.control;
        match wake {
            Wake::Deadline => {
                if control
                    .engine
                    .next_deadline()
                    .is_some_and(|d| d <= clock::unix_now_ns())
                {
                    control.engine.tick().await;
                }
            }
            Wake::Rings(ns) => control.engine.poll_rings(&ns),
            Wake::Loaded(done) => self.activations.loaded(control, *done).await,
            Wake::Call(call) => self.call(call).await,
            Wake::Retention => control.expire_logstores(),
            Wake::Compact => self.compact(),
            Wake::Reload => {
                info!("SIGHUP: reloading the region table");
                // Its outcome is logged and shown in the status.
                let _ = control.reload_regions();
            }
            Wake::Retry => {
                for spec in control.unattached_specs() {
                    if let Some((spec, _)) = self.activations.start(control, spec, None) {
                        control.retry_unattached(spec).await;
                    }
                }
            }
            Wake::Resolved(seqs) => control.engine.resolved(&seqs),
            Wake::Stop => {}
        }
    }

    async fn call(&mut self, Call { action, reply }: Call) {
        let control = &mut self.control;
        match action {
            Action::ActiveFlowLog(r) => {
                // Namespaces to load are loaded off the loop; the answer
                // waits for them, the loop does not.
                match control.check_activation(&r) {
                    Err(e) => {
                        let _ = reply.send(Reply::Done(Err(e.into())));
                    }
                    Ok(spec) => {
                        if let Some((spec, reply)) = self.activations.start(control, spec, Some(reply)) {
                            let result = control.finish_activation(&spec.id).await;
                            if let Some(r) = reply {
                                let _ = r.send(Reply::Done(json_answer(result)));
                            }
                        }
                    }
                }
            }
            // Queries run elsewhere: the loop only checks and hands them on.
            Action::GetLogs(q) => {
                let _ = reply.send(match control.get_logs(q) {
                    Ok(q) => Reply::Query(q),
                    Err(e) => Reply::Done(Err(e.into())),
                });
            }
            action => {
                let result = control.apply(action).await.map_err(ApiError::from);
                let answer = match (result, control.take_published()) {
                    (Ok(v), Some(published)) => Reply::Published(v, published),
                    (result, _) => Reply::Done(result),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// One compaction pass at a time, in a process of its own.
    fn compact(&self) {
        if !self.compacting.swap(true, Ordering::SeqCst) {
            let (dir, busy) = (self.data_dir.clone(), self.compacting.clone());
            tokio::spawn(async move {
                store::compact::run_in_background(std::path::Path::new("/proc/self/exe"), &dir).await;
                busy.store(false, Ordering::SeqCst);
            });
        }
    }
}
