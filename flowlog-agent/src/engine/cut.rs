//! A cut: every namespace drained once, the counts journaled, then
//! deleted from the kernel and handed to the flow logs using each
//! interface. A cut the journal refuses stays in the kernel and is read
//! again by the next one.

use tracing::error;

use super::{Engine, distribute, unix_i64};
use crate::{
    capture::{Deletion, Drained},
    journal::{CutRecord, NsCut, Target},
    window::WindowAggregate,
};

/// A drain of one namespace, not yet journaled.
pub(super) struct NsDrain {
    pub(super) netns: Option<String>,
    pub(super) drained: Drained,
    pub(super) deletion: Deletion,
    /// Who the counts belong to, when not the interfaces' users now (a
    /// restart's recovered counts belong to those of the last run).
    pub(super) targets: Option<Vec<Target>>,
}

impl Engine {
    /// Drains every namespace once and hands the flows to the flow logs;
    /// with `publish_due`, then publishes the windows that have ended.
    pub(super) async fn cut(&mut self, publish_due: bool) {
        let mut drained: Vec<NsDrain> = Vec::new();
        for (ns, cap) in &mut self.captures {
            // Entries a journaled drain left in the kernel go first: until
            // they are gone the generation must not flip back onto them.
            if let Err(e) = tokio::task::block_in_place(|| cap.retry_deletion()) {
                error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "drained entries still not deleted; not draining this namespace until they are");
                self.status.capture().drain_errors.inc();
                continue;
            }
            let started = std::time::Instant::now();
            let result = tokio::task::block_in_place(|| cap.drain());
            self.status
                .capture()
                .drain_duration
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok((d, deletion)) => {
                    self.jiffies = d.jiffies.or(self.jiffies);
                    drained.push(NsDrain {
                        netns: ns.clone(),
                        drained: d,
                        deletion,
                        targets: None,
                    });
                }
                Err(e) => {
                    error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "drain failed");
                    self.status.capture().drain_errors.inc();
                }
            }
        }
        let record = self.commit_cut(drained);
        for ns in record.namespaces {
            distribute(ns, &mut self.running);
        }
        if !publish_due {
            return;
        }
        let now = self.clock.unix_now_ns();
        let due: Vec<String> = self
            .running
            .iter()
            .filter(|(_, r)| r.schedule.is_due(now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(mut r) = self.running.remove(&id) else {
                continue;
            };
            let end = r.schedule.current().end_ns;
            self.flush(&mut r, end, true, None).await;
            self.running.insert(id, r);
        }
    }

    /// Journals drained namespaces as one cut, then deletes what was read
    /// from the kernel. Returns the cut, for its counts to be handed out.
    pub(super) fn commit_cut(&mut self, drained: Vec<NsDrain>) -> CutRecord {
        let mut record = CutRecord {
            seq: 0,
            at_ns: unix_i64(self.clock.unix_now_ns()),
            namespaces: Vec::with_capacity(drained.len()),
        };
        let mut deletions = Vec::with_capacity(drained.len());
        let mut side = Vec::with_capacity(drained.len());
        for NsDrain {
            netns: ns,
            drained: d,
            deletion,
            targets,
        } in drained
        {
            let Some(cap) = self.captures.get(&ns) else {
                continue;
            };
            side.push((d.malformed, d.overflow_events));
            record.namespaces.push(NsCut {
                netns: ns.clone(),
                cookie: cap.netns_cookie(),
                generation: cap.generation(),
                targets: targets.unwrap_or_else(|| self.users.targets(cap.netns(), cap.attached())),
                data: d.window,
            });
            deletions.push((ns, deletion));
        }
        let committed = match &mut self.journal {
            _ if record.namespaces.is_empty() => true,
            Some(j) => match tokio::task::block_in_place(|| j.commit(&mut record)) {
                Ok(()) => true,
                Err(e) => {
                    error!(error = %crate::capture::chain(&e), "cannot journal the cut; its counts stay in the kernel and the next cut reads them again");
                    false
                }
            },
            None => true,
        };
        for (ns, deletion) in deletions {
            let Some(cap) = self.captures.get_mut(&ns) else {
                continue;
            };
            if !committed {
                cap.untake(deletion);
                continue;
            }
            if let Err(e) = tokio::task::block_in_place(|| cap.delete(deletion)) {
                error!(netns = ns.as_deref().unwrap_or("-"), error = %e, "deleting drained entries failed; tried again before the next drain");
                self.status.capture().drain_errors.inc();
            }
        }
        self.journal_status();
        for (ns, (malformed, overflow_events)) in record.namespaces.iter().zip(side) {
            if let Some(cap) = self.captures.get(&ns.netns) {
                // Counts of a cut the journal refused are read again: only
                // the malformed deltas (already taken) are reported now.
                let (data, events) = if committed {
                    (&ns.data, overflow_events)
                } else {
                    (&WindowAggregate::default(), 0)
                };
                self.account(cap.as_ref(), data, &malformed, events);
            }
        }
        if !committed {
            // Nothing of it is handed out: the kernel still has it all.
            record.namespaces.clear();
        }
        record
    }
}
