//! The kernel seam: what the engine needs of one namespace's capture
//! ([`FlowSource`]) and of loading one ([`SourceLoader`]), so that routing,
//! window scheduling and the journal's handling of cuts can be tested
//! without root, with a source that hands out counts a test chose.
//! [`NetnsCapture`] and [`KernelLoader`] are the real ones.

use std::{future::Future, pin::Pin};

use super::{
    AttachedInterface, CaptureError, CaptureSettings, Deletion, Drained, MapFill, NetnsCapture, pins::PinRoot,
};
use crate::{config::Attachment, rtt::RttStats};

/// A future the engine waits on, borrowed from a source.
pub type Ready<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One network namespace's programs and maps.
///
/// A drain takes what the idle generation holds without deleting it:
/// [`Self::delete`] follows once the counts are journaled, and
/// [`Self::untake`] gives them back when the journal refused them.
pub trait FlowSource: Send {
    fn netns(&self) -> Option<&str>;
    /// Hooks one more interface; on failure nothing of it stays attached.
    fn attach(&mut self, a: &Attachment) -> Result<AttachedInterface, CaptureError>;
    fn detach(&mut self, interface: &str);
    fn attached(&self) -> Box<dyn Iterator<Item = &AttachedInterface> + '_>;
    /// Nothing attached any more.
    fn is_empty(&self) -> bool;
    /// Carries on from state an earlier run pinned.
    fn adopted(&self) -> bool;
    /// Forgets pinned state (the namespace is no longer needed).
    fn unpin(&self);
    fn generation(&self) -> u32;
    fn netns_cookie(&self) -> u64;
    /// Flips the generation and reads the one programs just left.
    fn drain(&mut self) -> Result<(Drained, Deletion), CaptureError>;
    /// Reads the idle generation without flipping (a restart's recovery).
    fn read_idle(&mut self) -> Result<(Drained, Deletion), CaptureError>;
    fn delete(&mut self, d: Deletion) -> Result<(), CaptureError>;
    /// Deletes what an earlier journaled drain could not.
    fn retry_deletion(&mut self) -> Result<(), CaptureError>;
    fn untake(&mut self, d: Deletion);
    /// Resolves when the overflow or handshake ring has events.
    fn rings_ready(&self) -> Ready<'_>;
    /// Reads both rings.
    fn poll_rings(&mut self);
    fn rtt_stats(&self) -> RttStats;
    fn last_map_flows(&self) -> MapFill;
}

/// Loads a namespace's source; shared with the thread that loads large
/// maps off the control loop.
pub trait SourceLoader: Send + Sync {
    fn load(&self, netns: Option<&str>, first_interface: &str) -> Result<Box<dyn FlowSource>, CaptureError>;
}

/// Loads the kernel programs and maps ([`NetnsCapture::load`]).
#[derive(Clone)]
pub struct KernelLoader {
    pub settings: CaptureSettings,
    pub pins: Option<PinRoot>,
}

impl SourceLoader for KernelLoader {
    fn load(&self, netns: Option<&str>, first_interface: &str) -> Result<Box<dyn FlowSource>, CaptureError> {
        let cap = NetnsCapture::load(netns, first_interface, &self.settings, self.pins.as_ref())?;
        Ok(Box::new(cap))
    }
}

impl FlowSource for NetnsCapture {
    fn netns(&self) -> Option<&str> {
        NetnsCapture::netns(self)
    }

    fn attach(&mut self, a: &Attachment) -> Result<AttachedInterface, CaptureError> {
        NetnsCapture::attach(self, a)
    }

    fn detach(&mut self, interface: &str) {
        NetnsCapture::detach(self, interface);
    }

    fn attached(&self) -> Box<dyn Iterator<Item = &AttachedInterface> + '_> {
        Box::new(NetnsCapture::attached(self))
    }

    fn is_empty(&self) -> bool {
        NetnsCapture::is_empty(self)
    }

    fn adopted(&self) -> bool {
        NetnsCapture::adopted(self)
    }

    fn unpin(&self) {
        NetnsCapture::unpin(self);
    }

    fn generation(&self) -> u32 {
        NetnsCapture::generation(self)
    }

    fn netns_cookie(&self) -> u64 {
        NetnsCapture::netns_cookie(self)
    }

    fn drain(&mut self) -> Result<(Drained, Deletion), CaptureError> {
        NetnsCapture::drain(self)
    }

    fn read_idle(&mut self) -> Result<(Drained, Deletion), CaptureError> {
        NetnsCapture::read_idle(self)
    }

    fn delete(&mut self, d: Deletion) -> Result<(), CaptureError> {
        NetnsCapture::delete(self, d)
    }

    fn retry_deletion(&mut self) -> Result<(), CaptureError> {
        NetnsCapture::retry_deletion(self)
    }

    fn untake(&mut self, d: Deletion) {
        NetnsCapture::untake(self, d);
    }

    fn rings_ready(&self) -> Ready<'_> {
        Box::pin(async move {
            // Either ring; a readiness error (never expected on a ring fd)
            // counts as ready so the caller polls and moves on.
            let overflow = Box::pin(async { self.ring().readable().await.map(|mut g| g.clear_ready()) });
            let handshakes = Box::pin(async {
                self.handshake_ring()
                    .readable()
                    .await
                    .map(|mut g| g.clear_ready())
            });
            let _ = futures_util::future::select(overflow, handshakes).await;
        })
    }

    fn poll_rings(&mut self) {
        self.poll_overflow();
        self.poll_handshakes();
    }

    fn rtt_stats(&self) -> RttStats {
        NetnsCapture::rtt_stats(self)
    }

    fn last_map_flows(&self) -> MapFill {
        NetnsCapture::last_map_flows(self)
    }
}
