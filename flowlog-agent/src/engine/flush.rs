//! The end of a window: sealed in the journal's ledger, turned into
//! records off the control loop, and handed to the publisher once the seal
//! is on disk.

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::{error, warn};

use super::{Engine, Running, WindowRecords, unix_i64};
use crate::{
    enrich::RegionTable,
    journal::SpecAttachment,
    model::{AttachmentInfo, ClockOffset, Identity, Window},
    record::format::LogFormat,
    telemetry::JournalTotals,
    window::{WindowAggregate, WindowData},
};

/// Sealed windows held back while the ledger cannot be saved, at most:
/// beyond, they go out with the risk said in the log.
const MAX_HELD: usize = 64;

/// What turning an aggregate into records needs besides the counts.
pub(super) struct Rendering {
    pub(super) window: Window,
    pub(super) attachments: Vec<AttachmentInfo>,
    pub(super) identity: Identity,
    pub(super) format: Option<Arc<LogFormat>>,
    pub(super) regions: Arc<RegionTable>,
}

impl Engine {
    /// Ends a flow log's window at `end`: seals it in the journal, turns
    /// its aggregate into records and hands them to the publisher. With
    /// `reopen`, the flow log's next window starts at `end` (with any
    /// pending length or format change).
    pub(super) async fn flush(
        &mut self,
        r: &mut Running,
        end: i128,
        reopen: bool,
        published: Option<oneshot::Sender<()>>,
    ) {
        let now = self.clock.unix_now_ns();
        let window = r.schedule.close(end, now, reopen);
        let aggregate = std::mem::take(&mut r.aggregate);
        let regions = std::mem::replace(&mut r.regions, self.regions.current());
        let spec = r.spec.clone();
        let seq = self.journal.as_mut().and_then(|j| {
            let last = j.next_cut().saturating_sub(1);
            j.ledger_mut().seal(&spec.id, unix_i64(end), last)
        });
        if reopen {
            if let Some(f) = r.next_format.take() {
                r.spec.format = f;
            }
            if let Some(j) = &mut self.journal {
                let first = j.next_cut();
                j.ledger_mut()
                    .open(&r.spec.id, unix_i64(end), first, r.spec.window_spec());
            }
        }
        // Sealed before any sink sees a record of it.
        let sealed = self.save_journal();
        let rendering = Rendering {
            window,
            attachments: self.attachment_infos(&spec.window_spec().attachments),
            identity: spec.identity.clone(),
            format: spec.format.clone(),
            regions,
        };
        let Some(data) = self.render(&spec.id, rendering, aggregate).await else {
            // Finishing it failed (a bug, and it would fail again): the
            // window is lost, said loudly, and the journal lets go of it.
            if let (Some(j), Some(seq)) = (&mut self.journal, seq) {
                j.ledger_mut().resolve(seq);
                j.stats.windows_lost += 1;
            }
            self.save_journal();
            return;
        };
        let batch = WindowRecords {
            flow_log_id: spec.id.clone(),
            logstore: spec.logstore.clone(),
            data: Arc::new(data),
            seq,
            replay: false,
            published,
        };
        self.send(batch, sealed).await;
    }

    /// Turns an aggregate into a finished window, off the control loop
    /// (sorting a million flows takes a moment).
    pub(super) async fn render(
        &self,
        id: &str,
        r: Rendering,
        aggregate: WindowAggregate,
    ) -> Option<WindowData> {
        let mut clock = ClockOffset::sample();
        if let Some(j) = self.jiffies {
            clock = clock.with_jiffies(j);
        }
        match tokio::task::spawn_blocking(move || {
            aggregate
                .finish(r.window, r.attachments, r.identity, clock, r.regions)
                .with_format(r.format)
        })
        .await
        {
            Ok(d) => Some(d),
            Err(e) => {
                error!(flow_log = %id, error = %e, "finishing the window failed; it stays in the journal");
                None
            }
        }
    }

    /// Hands a window to the publisher once its seal is on disk; before,
    /// it waits with the windows held before it.
    pub(super) async fn send(&mut self, batch: WindowRecords, sealed: bool) {
        if !sealed && self.held.len() < MAX_HELD {
            warn!(flow_log = %batch.flow_log_id, held = self.held.len() + 1, "the ledger cannot be saved; the window waits");
            self.held.push(batch);
            return;
        }
        if !sealed {
            error!(flow_log = %batch.flow_log_id, "the ledger still cannot be saved; publishing the window anyway: a crash now may write it twice");
        }
        for held in std::mem::take(&mut self.held) {
            if self.publish.send(held).await.is_err() {
                warn!("publisher gone; a held window stays in the journal");
            }
        }
        let id = batch.flow_log_id.clone();
        if self.publish.send(batch).await.is_err() {
            warn!(flow_log = %id, "publisher gone; the window stays in the journal");
        }
    }

    /// Saves the ledger; whether it is on disk.
    pub(super) fn save_journal(&mut self) -> bool {
        let saved = match &mut self.journal {
            Some(j) => tokio::task::block_in_place(|| j.save_or_log()),
            None => true,
        };
        self.journal_status();
        saved
    }

    pub(super) fn journal_status(&self) {
        if let Some(j) = &self.journal {
            self.status.journal().update(JournalTotals {
                cuts_written: j.stats.cuts_written,
                bytes_written: j.stats.bytes_written,
                write_errors: j.stats.write_errors,
                cuts_lost: j.stats.cuts_lost,
                sealed_windows: j.ledger().sealed.len() as u64,
                windows_lost: j.stats.windows_lost,
            });
        }
    }
}

impl Engine {
    /// A window's attachments as records name them: slot i is attachment
    /// i, with its index in the kernel where it is attached.
    pub(super) fn attachment_infos(&self, attachments: &[SpecAttachment]) -> Vec<AttachmentInfo> {
        attachments
            .iter()
            .enumerate()
            .map(|(slot, a)| AttachmentInfo {
                ifindex: slot as u32,
                kernel_ifindex: self
                    .captures
                    .get(&a.netns)
                    .and_then(|c| c.attached().find(|x| x.info.interface == a.interface))
                    .map_or(0, |x| x.info.ifindex),
                interface: a.interface.clone(),
                netns: a.netns.clone(),
                attachment_id: a.attachment_id.clone(),
                region_id: a.region_id.clone(),
            })
            .collect()
    }
}
