//! Starting again after a stop or a crash: attach the flow logs that were
//! active, settle what the kernel holds against the journal, rebuild open
//! windows from their cuts, and write sealed windows once more.

use std::{collections::BTreeMap, sync::Arc};

use tracing::{error, info, warn};

use super::{Engine, FlowLogSpec, NsDrain, Rendering, WindowRecords, distribute, unix_i64};
use crate::{
    capture::CaptureError,
    journal::{OpenWindow, SealedWindow},
    model::clock,
    model::{Identity, LogstoreRef, Window},
    record::format::LogFormat,
    window::WindowAggregate,
};

impl Engine {
    /// Restarts the flow logs that were active when the agent stopped, all
    /// before the first drain: whatever pinned maps counted meanwhile
    /// belongs to all of them. Returns each one's outcome.
    pub async fn restore(&mut self, specs: Vec<FlowLogSpec>) -> Vec<(String, Result<(), CaptureError>)> {
        // The windows that were open when the last run ended; starting a
        // flow log opens a fresh one in the ledger, decided on below.
        let mut previous: BTreeMap<String, OpenWindow> = self
            .journal
            .as_ref()
            .map(|j| j.ledger().open.clone())
            .unwrap_or_default();
        if let Some(j) = &mut self.journal {
            j.ledger_mut().open.clear();
            j.log_open();
        }
        let out: Vec<(String, Result<(), CaptureError>)> = specs
            .into_iter()
            .map(|spec| (spec.id.clone(), self.start(spec)))
            .collect();
        if let Some(pins) = &self.pins {
            let in_use = self.captures.keys().cloned().collect();
            pins.sweep(&in_use);
        }
        // What the kernel's idle generations hold that no cut file has is
        // journaled first, as one more cut of the last run (its windows own
        // it, through the replays below; nothing is handed out live).
        let recovered = self.settle_idle_generations();
        let _ = self.commit_cut(recovered);
        let latest = self.journal.as_ref().map(|j| j.next_cut().saturating_sub(1));
        let now = clock::unix_now_ns();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            let Some(open) = previous.remove(&id) else {
                continue;
            };
            let continues = self.running.get(&id).is_some_and(|r| {
                let adopted = r
                    .spec
                    .attachments
                    .iter()
                    .all(|a| self.captures.get(&a.netns).is_some_and(|c| c.adopted()));
                // Slots mean the same only over the same attachments (an
                // empty list: a window carried over from before the
                // journal, with no cuts of its own).
                let same = open.spec.attachments.is_empty()
                    || open.spec.attachments == r.spec.window_spec().attachments;
                adopted && same
            });
            if continues && i128::from(open.start_ns) <= now {
                self.resume(&id, open, latest);
            } else {
                // Counting stopped with the agent, or the attachments
                // changed: what the journal holds of the old window is a
                // window of its own.
                self.seal_leftover(&id, open, latest);
                if let (Some(j), Some(r)) = (&mut self.journal, self.running.get(&id)) {
                    let first = j.next_cut();
                    j.ledger_mut().open(
                        &id,
                        unix_i64(r.schedule.current().start_ns),
                        first,
                        r.spec.window_spec(),
                    );
                }
            }
        }
        for (id, open) in previous {
            self.seal_leftover(&id, open, latest);
        }
        self.save_journal();
        self.republish_sealed().await;
        out
    }

    /// For each adopted namespace, what its idle generation holds: entries
    /// the newest cut already journaled (the last run died deleting them)
    /// are deleted uncounted; anything else (it died between a flip and
    /// the commit) is returned, for the users the newest cut names.
    fn settle_idle_generations(&mut self) -> Vec<NsDrain> {
        let marks = self
            .journal
            .as_ref()
            .map(|j| j.last_generations())
            .unwrap_or_default();
        let mut out = Vec::new();
        for (ns, cap) in &mut self.captures {
            if !cap.adopted() {
                continue;
            }
            let netns = ns.as_deref().unwrap_or("-");
            let (d, deletion) = match tokio::task::block_in_place(|| cap.read_idle()) {
                Ok(x) => x,
                Err(e) => {
                    error!(netns, error = %e, "cannot read the idle generation");
                    continue;
                }
            };
            self.jiffies = d.jiffies.or(self.jiffies);
            let mark = marks.get(&(ns.clone(), cap.netns_cookie()));
            if mark.is_some_and(|(generation, _)| *generation == cap.generation()) {
                if !deletion.is_empty() {
                    info!(
                        netns,
                        flows = d.map_flows,
                        "deleting drained entries the journal already holds"
                    );
                }
                if let Err(e) = tokio::task::block_in_place(|| cap.delete(deletion)) {
                    error!(netns, error = %e, "deleting journaled entries failed; tried again before the next drain");
                }
            } else {
                if d.map_flows > 0 || !d.window.skipped.is_empty() {
                    info!(
                        netns,
                        flows = d.map_flows,
                        "recovered counts an earlier run had drained but not journaled"
                    );
                }
                out.push(NsDrain {
                    netns: ns.clone(),
                    drained: d,
                    deletion,
                    targets: mark.map(|(_, targets)| targets.clone()),
                });
            }
        }
        out
    }

    /// Carries on a window the last run had open: its start, and the cuts
    /// it had already taken.
    fn resume(&mut self, id: &str, open: OpenWindow, latest: Option<u64>) {
        let aggregate = self.replay(id, open.first_cut, latest);
        let Some(r) = self.running.get_mut(id) else { return };
        r.schedule.resume_from(i128::from(open.start_ns));
        r.aggregate = aggregate;
        info!(flow_log = %id, start = open.start_ns / 1_000_000_000, "window resumed where the last run left it");
        if let Some(j) = &mut self.journal {
            j.ledger_mut()
                .open(id, open.start_ns, open.first_cut, r.spec.window_spec());
        }
    }

    /// Seals a window the last run had open and that cannot go on: it ends
    /// at the last cut that fed it. A window no cut fed is dropped.
    fn seal_leftover(&mut self, id: &str, open: OpenWindow, latest: Option<u64>) {
        let Some(j) = &mut self.journal else { return };
        let Some(last) = latest.filter(|l| *l >= open.first_cut) else {
            return;
        };
        let end = j
            .cuts_in(last, Some(last))
            .first()
            .map_or(open.start_ns, |c| c.at_ns)
            .max(open.start_ns);
        j.ledger_mut().open(id, open.start_ns, open.first_cut, open.spec);
        if let Some(seq) = j.ledger_mut().seal(id, end, last) {
            info!(flow_log = %id, window = seq, "window of the last run sealed where its counting stopped");
        }
    }

    /// One flow log's share of the journaled cuts `first..=last`.
    fn replay(&mut self, flow_log: &str, first: u64, last: Option<u64>) -> WindowAggregate {
        let mut aggregate = WindowAggregate::default();
        let Some(j) = &mut self.journal else {
            return aggregate;
        };
        for cut in j.cuts_in(first, last) {
            for ns in cut.namespaces {
                distribute(
                    ns,
                    &mut super::One {
                        flow_log,
                        aggregate: &mut aggregate,
                    },
                );
            }
        }
        aggregate
    }

    /// Renders the sealed windows the sinks had not all confirmed, oldest
    /// first, and publishes them again as replays.
    async fn republish_sealed(&mut self) {
        let sealed: Vec<SealedWindow> = self
            .journal
            .as_ref()
            .map(|j| j.ledger().sealed.clone())
            .unwrap_or_default();
        for w in sealed {
            let aggregate = self.replay(&w.flow_log, w.first_cut, Some(w.last_cut));
            let format = w
                .spec
                .log_format
                .as_deref()
                .and_then(|f| LogFormat::parse(f).ok())
                .map(Arc::new);
            let logstore = match (&w.spec.project, &w.spec.logstore) {
                (Some(p), Some(l)) => Some(LogstoreRef {
                    project: p.clone(),
                    logstore: l.clone(),
                }),
                _ => None,
            };
            let rendering = Rendering {
                window: Window {
                    start_ns: i128::from(w.start_ns),
                    end_ns: i128::from(w.end_ns),
                },
                attachments: self.attachment_infos(&w.spec.attachments),
                identity: Identity {
                    account_id: w.spec.account_id.clone(),
                    cen_id: w.spec.cen_id.clone(),
                    flow_log_id: w.flow_log.clone(),
                },
                format,
                regions: self.regions.current(),
            };
            let Some(data) = self.render(&w.flow_log, rendering, aggregate).await else {
                continue;
            };
            info!(flow_log = %w.flow_log, window = w.seq, records = data.len(), "writing a sealed window again");
            let batch = WindowRecords {
                flow_log_id: w.flow_log.clone(),
                logstore,
                data: Arc::new(data),
                seq: Some(w.seq),
                replay: true,
                published: None,
            };
            if self.publish.send(batch).await.is_err() {
                warn!(flow_log = %w.flow_log, "publisher gone; the window stays in the journal");
            }
        }
    }
}
