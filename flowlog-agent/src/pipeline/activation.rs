//! Activations that need a network namespace loaded. Loading preallocates
//! the flow maps — seconds for millions of entries — so it runs on a
//! blocking thread while the control loop goes on cutting windows and
//! answering calls; the activation finishes once its namespaces are in.

use std::collections::BTreeSet;

use tokio::{sync::oneshot, task::JoinSet};
use tracing::warn;

use crate::{
    api::{ApiError, Reply},
    capture::{CaptureError, FlowSource},
    control::{Control, attach_failed},
    engine::FlowLogSpec,
};

/// A namespace load that finished: which namespace, and its source or why not.
pub type Loaded = (Option<String>, Result<Box<dyn FlowSource>, CaptureError>);

/// An activation waiting for its namespaces.
struct Waiting {
    spec: FlowLogSpec,
    /// The API call to answer (`None`: a retry of an Active flow log).
    reply: Option<oneshot::Sender<Reply>>,
    /// Why a namespace it needs could not be loaded.
    failed: Option<String>,
}

#[derive(Default)]
pub struct Activations {
    loads: JoinSet<Loaded>,
    loading: BTreeSet<Option<String>>,
    waiting: Vec<Waiting>,
}

impl Activations {
    /// Starts loading what `spec` needs. Returns `spec` and `reply` back
    /// when nothing needs loading: the caller activates at once.
    pub fn start(
        &mut self,
        control: &Control,
        spec: FlowLogSpec,
        reply: Option<oneshot::Sender<Reply>>,
    ) -> Option<(FlowLogSpec, Option<oneshot::Sender<Reply>>)> {
        let missing = control.engine.missing_namespaces(&spec);
        let already = self.waiting.iter().any(|w| w.spec.id == spec.id);
        if missing.is_empty() && !already {
            return Some((spec, reply));
        }
        let loader = control.engine.loader();
        for (netns, first) in missing {
            if self.loading.insert(netns.clone()) {
                let loader = loader.clone();
                self.loads.spawn_blocking(move || {
                    let result = loader.load(netns.as_deref(), &first);
                    (netns, result)
                });
            }
        }
        self.waiting.push(Waiting {
            spec,
            reply,
            failed: None,
        });
        None
    }

    /// The next load to finish; pending for ever while none runs.
    pub async fn next(&mut self) -> Loaded {
        loop {
            match self.loads.join_next().await {
                Some(Ok(done)) => return done,
                Some(Err(e)) => warn!(error = %e, "a namespace load panicked"),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// A load finished: the engine gets the namespace, and every
    /// activation it completes is finished (or refused with the load's
    /// error).
    pub async fn loaded(&mut self, control: &mut Control, (netns, result): Loaded) {
        self.loading.remove(&netns);
        match result {
            Ok(cap) => control.engine.add_capture(netns, cap),
            Err(e) => {
                let reason = crate::capture::chain(&e);
                for w in &mut self.waiting {
                    if w.failed.is_none() && w.spec.attachments.iter().any(|a| a.netns == netns) {
                        w.failed = Some(reason.clone());
                    }
                }
            }
        }
        let (ready, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.failed.is_some() || control.engine.missing_namespaces(&w.spec).is_empty());
        self.waiting = waiting;
        for w in ready {
            let id = w.spec.id.clone();
            let answer = match (w.failed, w.reply.is_some()) {
                (Some(reason), _) => Err(ApiError::from(attach_failed(&id, &reason))),
                (None, true) => super::json_answer(control.finish_activation(&id).await),
                (None, false) => {
                    control.retry_unattached(w.spec).await;
                    Ok(serde_json::Value::Null)
                }
            };
            if let Some(reply) = w.reply {
                let _ = reply.send(Reply::Done(answer));
            }
        }
        // Namespaces loaded for activations that failed or were given up.
        if self.loading.is_empty() && self.waiting.is_empty() {
            control.engine.drop_idle_captures();
        }
    }
}
